//! scripts/gpu-backend.sh, run for real with the one backend module that builds on any machine:
//! ggml's RPC backend. It configures llama.cpp's source (the one minerva was built from) with
//! CMake, builds that module alone, and installs it into a copy of minerva's folder from which it
//! had been taken away; the copied minerva-rpc-server then serves an engine's layers with it. The
//! GPU modules (CUDA, Vulkan, HIP) go through the same lines with other CMake options
//! (scripts/gpu-check.sh on a GPU machine).

mod common;

use common::{lib_dir, model_path, root, RpcServer};
use minerva::engine::{DeviceKind, Engine, EngineConfig};
use std::process::Command;

#[test]
fn a_module_built_alone_is_installed_and_loaded() {
    let built = lib_dir();
    let copy = root().join("target/gpu-backend-test");
    let _ = std::fs::remove_dir_all(&copy);
    let folder = copy.join("minerva");
    std::fs::create_dir_all(&folder).unwrap();
    for e in std::fs::read_dir(built.join("minerva")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name != "libggml-rpc.so" && !name.ends_with(".tmp-copy") {
            std::fs::copy(e.path(), folder.join(&name)).unwrap();
        }
    }
    let server = copy.join("minerva-rpc-server");
    std::fs::copy(built.join("minerva-rpc-server"), &server).unwrap();

    // Without the module the server has nothing to serve with.
    let out = Command::new(&server)
        .args(["--port", &common::free_port().to_string()])
        .env_remove("MINERVA_BACKEND_DIR")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no RPC backend"), "{err}");

    // Built alone (a second run finds its build folder up to date) and installed.
    let start = std::time::Instant::now();
    let out = Command::new(root().join("scripts/gpu-backend.sh"))
        .args(["rpc", copy.to_str().unwrap(), "--jobs", "2", "--build"])
        .arg(root().join("target/gpu-backend/rpc"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "gpu-backend.sh failed:\n{err}");
    println!("{err}built and installed in {:?}", start.elapsed());
    let installed = folder.join("libggml-rpc.so");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        installed.to_str().unwrap()
    );

    // The copied server loads it and serves every layer of an engine.
    let s = RpcServer::start_at(&server, &["--mem", "4096", "--threads", "1"]);
    let _one = common::one_at_a_time();
    let cfg = EngineConfig {
        max_streams: 1,
        context_tokens: 256,
        threads: 1,
        gpu_layers: -1,
        rpc_servers: vec![s.endpoint.clone()],
        ..Default::default()
    };
    let e = Engine::new(&model_path(), &cfg, None).unwrap();
    let i = e.info().clone();
    assert_eq!(i.device_kind, Some(DeviceKind::Rpc), "{}", i.devices);
    assert_eq!(i.gpu_layers, i.total_layers);
    let st = e
        .start("The lighthouse keeper said", common::greedy(8), None, None)
        .unwrap();
    assert!(!common::read_all(&st).is_empty());

    // A folder of another ggml is refused: the module would not match its libggml-base.
    let other = copy.join("other");
    std::fs::create_dir_all(&other).unwrap();
    std::fs::write(other.join("libggml-base.so.0"), b"not ggml 0.0.0").unwrap();
    let out = Command::new(root().join("scripts/gpu-backend.sh"))
        .args(["rpc", other.to_str().unwrap(), "--build"])
        .arg(root().join("target/gpu-backend/rpc"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(!other.join("libggml-rpc.so").exists());
}
