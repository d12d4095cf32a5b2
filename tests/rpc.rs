//! Layers on other machines through ggml's RPC backend, run for real: minerva-rpc-server
//! processes on 127.0.0.1 (an RPC device is a GPU to llama.cpp, with the memory its server
//! advertises, so this runs minerva's whole offload path: gpu_layers, auto-fit, the CPU
//! fallback), and servers that are not there or are not RPC servers.

mod common;

use common::{free_port, greedy, model_path, read_all, RpcServer as Server};
use minerva::engine::error::Status;
use minerva::engine::{DeviceKind, Engine, EngineConfig};
use std::net::TcpListener;

/// A server advertising `mem_mib` MiB, computing with one thread.
fn server(mem_mib: usize) -> Server {
    Server::start(&["--mem", &mem_mib.to_string(), "--threads", "1"])
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
    let text = read_all(&s);
    assert_eq!(s.wait(None), Status::Ok);
    text
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
    let server = server(4096);
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
    let small = server(640);
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

    let tiny = server(1);
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
    let a = server(2048);
    let b = server(2048);
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
    // A second engine on a server in use: not checked again (the server serves this process's
    // one connection), and the same kernels as two servers: the same text. Freed first, the
    // first engine's model keeps the servers in use until it is gone.
    let one_engine = engine_on(&[&a], -1).unwrap();
    drop(e);
    assert_eq!(text(&one_engine), two);
}
