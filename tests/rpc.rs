//! Layers on other machines through ggml's RPC backend, run for real: minerva-rpc-server
//! processes on 127.0.0.1 (an RPC device is a GPU to llama.cpp, with the memory its server
//! advertises, so this runs minerva's whole offload path: gpu_layers, auto-fit, the CPU
//! fallback), and servers that are not there or are not RPC servers.

mod common;

use common::{greedy, model_path};
use minerva::engine::error::Status;
use minerva::engine::{DeviceKind, Engine, EngineConfig};
use std::net::{TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A minerva-rpc-server on 127.0.0.1, killed when dropped.
struct Server {
    child: Child,
    endpoint: String,
}

impl Server {
    fn start(mem_mib: usize) -> Server {
        let port = free_port();
        let child = Command::new(env!("CARGO_BIN_EXE_minerva-rpc-server"))
            .args(["--port", &port.to_string(), "--mem", &mem_mib.to_string()])
            .args(["--threads", "1"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start minerva-rpc-server");
        let endpoint = format!("127.0.0.1:{port}");
        // Ready when it accepts (the server serves that connection, which ends at once).
        let start = Instant::now();
        while TcpStream::connect(&endpoint).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "minerva-rpc-server did not listen on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Server { child, endpoint }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn engine_on(servers: &[&Server], gpu_layers: i32) -> Result<Engine, minerva::engine::Error> {
    let cfg = EngineConfig {
        max_streams: 1,
        context_tokens: 256,
        threads: 1,
        gpu_layers,
        rpc_servers: servers.iter().map(|s| s.endpoint.clone()).collect(),
        ..Default::default()
    };
    Engine::new(&model_path(), &cfg, None)
}

/// 24 greedy tokens.
fn text(engine: &Engine) -> String {
    let s = engine
        .start("The lighthouse keeper said", greedy(24), None, None)
        .unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let r = s.read(&mut buf, Some(Duration::from_secs(60)));
        out.extend_from_slice(&buf[..r.len]);
        if r.finished {
            break;
        }
    }
    assert_eq!(s.wait(None), Status::Ok);
    String::from_utf8(out).unwrap()
}

#[test]
fn servers_that_are_not_there_or_not_rpc_servers_are_errors() {
    let _one = common::one_at_a_time();
    let closed = format!("127.0.0.1:{}", free_port());
    let cfg = |servers: &str| EngineConfig {
        rpc_servers: vec![servers.to_string()],
        ..Default::default()
    };
    let e = Engine::new(&model_path(), &cfg(&closed), None)
        .err()
        .unwrap();
    assert_eq!(e.status, Status::Backend);
    assert!(e.message.contains(&closed), "{}", e.message);

    // Something else on the port: an HTTP-like server that answers garbage.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap().to_string();
    let t = std::thread::spawn(move || {
        use std::io::Write;
        let (mut s, _) = l.accept().unwrap();
        let _ = s.write_all(b"HTTP/1.1 400 Bad Request\r\n\r\n");
    });
    let e = Engine::new(&model_path(), &cfg(&addr), None).err().unwrap();
    assert_eq!(e.status, Status::Backend);
    assert!(
        e.message.contains(&addr) && e.message.contains("handshake"),
        "{}",
        e.message
    );
    t.join().unwrap();
}

#[test]
fn gpu_layers_zero_n_and_all_on_a_server_give_the_local_text() {
    let _one = common::one_at_a_time();
    let server = Server::start(4096);
    let local = {
        let e = engine_on(&[], 0).unwrap();
        text(&e)
    };

    // 0: the CPU only, although a server is given.
    let e = engine_on(&[&server], 0).unwrap();
    let i = e.info();
    assert_eq!((i.device_kind, i.gpu_layers), (Some(DeviceKind::Cpu), 0));
    assert_eq!(
        i.devices,
        format!("CPU: {} layers + output", i.total_layers)
    );
    assert_eq!(text(&e), local);
    drop(e);

    // N: N layers on the server (the output layer, which llama.cpp offloads first, and the 4
    // last ones), the rest on the CPU, which holds most of the model.
    let e = engine_on(&[&server], 5).unwrap();
    let i = e.info().clone();
    assert_eq!(i.gpu_layers, 4);
    assert_eq!(i.device_kind, Some(DeviceKind::Cpu));
    assert!(
        i.devices.starts_with("RPC")
            && i.devices.ends_with(&format!(
                " ({}): 4 layers + output, CPU: {} layers",
                server.endpoint,
                i.total_layers - 4
            )),
        "{}",
        i.devices
    );
    assert_eq!(text(&e), local, "5 layers on {}", server.endpoint);
    drop(e);

    // -1: all of them, the server holding the model.
    let e = engine_on(&[&server], -1).unwrap();
    let i = e.info().clone();
    println!("all layers: {} on {}", i.devices, i.device_name);
    assert_eq!(i.device_kind, Some(DeviceKind::Rpc));
    assert_eq!(i.gpu_layers, i.total_layers);
    assert!(
        i.device_name.contains(&server.endpoint),
        "{}",
        i.device_name
    );
    assert_eq!(
        i.devices,
        format!("{}: {} layers + output", i.device_name, i.total_layers)
    );
    // The local CPU backend repacks Q4_K weights for its fastest kernels; a server holds them as
    // the file has them, so its sums run in another order and greedy text may part after some
    // tokens (here after 8 of 24; with repacking off locally they were identical). The same
    // model must still be running: the texts share their start.
    let remote = text(&e);
    let same: usize = remote
        .chars()
        .zip(local.chars())
        .take_while(|(a, b)| a == b)
        .count();
    assert!(
        same >= 16,
        "all layers on {}: {remote:?} vs {local:?}",
        server.endpoint
    );
}

#[test]
fn too_little_memory_takes_what_fits_and_almost_none_falls_back() {
    let _one = common::one_at_a_time();
    // 640 MiB advertised: after the reserve for compute buffers (512 MiB), about 10 layers of
    // the 253 MB model fit.
    let small = Server::start(640);
    let e = engine_on(&[&small], -1).unwrap();
    let i = e.info().clone();
    println!("640 MiB: {} layers: {}", i.gpu_layers, i.devices);
    assert!(
        i.gpu_layers > 0 && i.gpu_layers < i.total_layers,
        "{} of {} layers",
        i.gpu_layers,
        i.total_layers
    );
    assert!(i.devices.contains("CPU: "), "{}", i.devices);
    assert!(!text(&e).is_empty());
    drop(e);
    drop(small);

    let tiny = Server::start(1);
    let e = engine_on(&[&tiny], -1).unwrap();
    let i = e.info();
    println!("1 MiB: {}", i.fallback_reason);
    assert_eq!((i.device_kind, i.gpu_layers), (Some(DeviceKind::Cpu), 0));
    assert!(
        i.fallback_reason.contains(&tiny.endpoint) && i.fallback_reason.contains("too little"),
        "{}",
        i.fallback_reason
    );
}

#[test]
fn two_servers_share_the_layers() {
    let _one = common::one_at_a_time();
    let a = Server::start(2048);
    let b = Server::start(2048);
    let e = engine_on(&[&a, &b], -1).unwrap();
    let i = e.info().clone();
    println!("two servers: {}", i.devices);
    assert!(
        i.devices.contains(&format!("({})", a.endpoint))
            && i.devices.contains(&format!("({})", b.endpoint))
            && !i.devices.contains("CPU"),
        "{}",
        i.devices
    );
    let two = text(&e);
    drop(e);
    // The same kernels as one server holding every layer: the same text.
    let one = text(&engine_on(&[&a], -1).unwrap());
    assert_eq!(two, one);
}
