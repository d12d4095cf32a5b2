//! RPC peers that misbehave after ggml's handshake, and a server asked for absurd resources:
//! engine creation must end in bounded time with `MINERVA_ERR_BACKEND` naming the server (ggml's
//! client would wait for good on a silent server and abort the process on a closed connection or
//! a malformed answer), and the server must refuse what it cannot do.

mod common;

use common::model_path;
use minerva::engine::error::Status;
use minerva::engine::{Engine, EngineConfig};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

/// What a fake server does after answering the handshake.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Reads on and never answers.
    Silent,
    /// Closes the connection.
    Close,
    /// Answers with bytes that are not a reply.
    Garbage,
    /// Answers the device count with 0 devices.
    NoDevices,
    /// Answers a device's memory with more free than total.
    BadMemory,
}

/// Answers ggml's HELLO (protocol 7.0) on every connection, then does `after`. Runs until the
/// test process ends.
fn fake_server(after: After) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(s) = s else { return };
            std::thread::spawn(move || serve(s, after));
        }
    });
    addr
}

fn read_cmd(s: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let mut head = [0u8; 9];
    s.read_exact(&mut head).ok()?;
    let n = u64::from_ne_bytes(head[1..].try_into().unwrap()) as usize;
    let mut body = vec![0u8; n.min(1 << 20)];
    s.read_exact(&mut body).ok()?;
    Some((head[0], body))
}

fn reply(s: &mut TcpStream, data: &[u8]) {
    let _ = s.write_all(&(data.len() as u64).to_ne_bytes());
    let _ = s.write_all(data);
}

fn serve(mut s: TcpStream, after: After) {
    let Some((14, _)) = read_cmd(&mut s) else {
        return;
    };
    let mut hello = vec![7u8, 0, 0, 0];
    hello.extend_from_slice(&[0u8; 24]);
    reply(&mut s, &hello);
    match after {
        After::Silent => {
            let mut sink = [0u8; 4096];
            while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
        }
        After::Close => {}
        After::Garbage => {
            let _ = read_cmd(&mut s);
            let _ = s.write_all(b"\xff\xff\xff\xff\xff\xff\xff\xffgarbage");
        }
        After::NoDevices => {
            let _ = read_cmd(&mut s);
            reply(&mut s, &0u32.to_ne_bytes());
        }
        After::BadMemory => {
            while let Some((cmd, _)) = read_cmd(&mut s) {
                match cmd {
                    15 => reply(&mut s, &1u32.to_ne_bytes()),
                    11 => {
                        let mut m = (2u64 << 30).to_ne_bytes().to_vec();
                        m.extend_from_slice(&(1u64 << 30).to_ne_bytes());
                        reply(&mut s, &m);
                    }
                    _ => return,
                }
            }
        }
    }
}

#[test]
fn peers_that_misbehave_after_the_handshake_fail_engine_creation_in_bounded_time() {
    let _one = common::one_at_a_time();
    for (after, words) in [
        (After::Silent, "no answer to its device count within 5 s"),
        (After::Close, "closed the connection"),
        (After::Garbage, "malformed answer to its device count"),
        (After::NoDevices, "0 devices"),
        (After::BadMemory, "device 0's memory"),
    ] {
        let addr = fake_server(after);
        let cfg = EngineConfig {
            rpc_servers: vec![addr.clone()],
            gpu_layers: -1,
            threads: 1,
            ..Default::default()
        };
        let t = Instant::now();
        let e = Engine::new(&model_path(), &cfg, None).err().unwrap();
        println!(
            "{after:?}: {:.2} s: {}",
            t.elapsed().as_secs_f64(),
            e.message
        );
        assert_eq!(e.status, Status::Backend, "{after:?}: {}", e.message);
        assert!(
            e.message.contains(&addr) && e.message.contains(words),
            "{after:?}: {}",
            e.message
        );
        assert!(t.elapsed() < Duration::from_secs(20), "{after:?}");
    }
}

#[test]
fn the_server_refuses_absurd_thread_counts() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_minerva-rpc-server"))
        .args(["--port", "1", "--threads", "100000"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--threads: 100000 is more than 1024"), "{err}");
}

#[test]
fn a_server_with_more_threads_than_cpus_computes() {
    let _one = common::one_at_a_time();
    // More threads than this machine has: capped to its CPUs, as an engine's are.
    let server = common::RpcServer::start(&["--mem", "4096", "--threads", "1024"]);
    let cfg = EngineConfig {
        max_streams: 1,
        context_tokens: 256,
        threads: 1,
        gpu_layers: -1,
        rpc_servers: vec![server.endpoint.clone()],
        ..Default::default()
    };
    let e = Engine::new(&model_path(), &cfg, None).unwrap();
    assert_eq!(e.info().gpu_layers, e.info().total_layers);
    let s = e
        .start("The lighthouse keeper said", common::greedy(8), None, None)
        .unwrap();
    let text = common::read_all(&s);
    assert_eq!(s.wait(None), Status::Ok);
    assert!(!text.is_empty());
}

#[test]
fn auto_fit_gives_a_small_device_the_layers_that_fit() {
    let _one = common::one_at_a_time();
    // llama.cpp's own account of what each device got.
    let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let sink_lines = lines.clone();
    minerva::engine::log::set_sink(
        Some(std::sync::Arc::new(move |_, line: &str| {
            if line.contains("model buffer size") || line.contains("fitting layers") {
                sink_lines.lock().unwrap().push(line.trim().to_string());
            }
        })),
        minerva::engine::log::Level::Info,
    );
    let mut placed = Vec::new();
    for mem in [100, 200, 300, 500, 640, 900] {
        let server = common::RpcServer::start(&["--mem", &mem.to_string(), "--threads", "1"]);
        let cfg = EngineConfig {
            max_streams: 4,
            context_tokens: 2048,
            threads: 1,
            gpu_layers: -1,
            rpc_servers: vec![server.endpoint.clone()],
            ..Default::default()
        };
        let e = Engine::new(&model_path(), &cfg, None).unwrap();
        let i = e.info().clone();
        println!("{mem} MiB: {} ({})", i.devices, i.fallback_reason);
        for l in lines.lock().unwrap().drain(..) {
            println!("    {l}");
            // What the server holds stays within what it advertised.
            if let Some(mib) = l
                .strip_prefix("load_tensors:")
                .and_then(|r| r.trim().strip_prefix("RPC"))
                .and_then(|r| r.split('=').nth(1))
                .and_then(|r| r.trim().split(' ').next())
                .and_then(|v| v.parse::<f64>().ok())
            {
                assert!(mib < mem as f64, "{mem} MiB: {l}");
            }
        }
        let s = e
            .start("The lighthouse keeper said", common::greedy(4), None, None)
            .unwrap();
        common::read_all(&s);
        assert_eq!(s.wait(None), Status::Ok, "{mem} MiB: {}", s.error());
        placed.push((
            mem,
            i.gpu_layers,
            i.devices.contains("RPC") && i.devices.contains(" + output,"),
        ));
    }
    // More memory never gets fewer layers; 500 MiB holds layers (it got none before).
    for w in placed.windows(2) {
        assert!(w[0].1 <= w[1].1, "{placed:?}");
    }
    minerva::engine::log::set_sink(None, minerva::engine::log::Level::Warn);
    let at = |mem| placed.iter().find(|p| p.0 == mem).unwrap();
    assert!(at(500).1 > 0, "{placed:?}");
    assert_eq!(at(900).1, 18, "{placed:?}");
}

/// The fuzz target rpc_peer's property, on 200 drawn answers (a fixed seed): after the
/// handshake a peer sends bytes, then closes or falls silent; the check ends within its limits
/// with Ok or an error naming the server.
#[test]
fn drawn_answers_after_the_handshake_end_the_check_in_bounded_time() {
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed
    };
    let limit = Duration::from_millis(200);
    for round in 0..200 {
        let close = next() % 2 == 0;
        let len = (next() % 48) as usize;
        let mut answer: Vec<u8> = (0..len).map(|_| next() as u8).collect();
        // Now and then a plausible start: a reply size of 4 and a device count.
        if round % 5 == 0 {
            answer = [
                4u64.to_ne_bytes().to_vec(),
                (next() as u32 % 3).to_ne_bytes().to_vec(),
                answer,
            ]
            .concat();
        }
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        let peer = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if read_cmd(&mut s).is_none() {
                return;
            }
            let mut hello = vec![7u8, 0, 0, 0];
            hello.extend_from_slice(&[0u8; 24]);
            reply(&mut s, &hello);
            let _ = s.write_all(&answer);
            if !close {
                let mut sink = [0u8; 1024];
                while matches!(s.read(&mut sink), Ok(n) if n > 0) {}
            }
        });
        let t = Instant::now();
        let r = minerva::engine::rpc::check_server(&addr, limit);
        assert!(
            t.elapsed() < limit * 3 + Duration::from_millis(300),
            "round {round}: {:?}",
            t.elapsed()
        );
        if let Err(e) = &r {
            assert!(e.message.contains(&addr), "round {round}: {}", e.message);
        }
        peer.join().unwrap();
    }
}
