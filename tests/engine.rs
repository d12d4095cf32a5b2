//! The Rust engine API on the real model (the C API has its own tests in tests/c/).

use minerva::engine::{Control, Engine, EngineConfig, FinishReason, GenerateParams, Status};
use std::sync::{Arc, Mutex};
use std::time::Duration;

fn model_path() -> String {
    std::env::var("MINERVA_MODEL").unwrap_or_else(|_| {
        let out = std::process::Command::new("scripts/fetch-model.sh")
            .output()
            .expect("run scripts/fetch-model.sh");
        assert!(out.status.success(), "fetch-model.sh failed");
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    })
}

fn greedy(max_tokens: u32) -> GenerateParams {
    GenerateParams {
        max_tokens,
        ignore_eos: true,
        ..GenerateParams::new(
            max_tokens,
            0.0,
            0,
            1.0,
            0.0,
            1.0,
            64,
            42,
            vec![],
            true,
            true,
        )
        .unwrap()
    }
}

#[test]
fn pull_and_callback_give_the_same_greedy_text() {
    let cfg = EngineConfig {
        max_streams: 2,
        context_tokens: 256,
        ..Default::default()
    };
    let engine = Engine::new(&model_path(), &cfg, None).expect("engine");
    let s = engine
        .start("The capital of France is", greedy(16), None, None)
        .unwrap();
    let mut pulled = Vec::new();
    let mut buf = [0u8; 64];
    loop {
        let r = s.read(&mut buf, Some(Duration::from_secs(30)));
        pulled.extend_from_slice(&buf[..r.len]);
        if r.finished {
            break;
        }
    }
    assert_eq!(s.wait(None), Status::Ok);
    assert_eq!(s.stats().finish_reason, FinishReason::Length);
    assert_eq!(s.stats().generated_tokens, 16);

    let got = Arc::new(Mutex::new(String::new()));
    let g = got.clone();
    let s2 = engine
        .start(
            "The capital of France is",
            greedy(16),
            Some(Box::new(move |t: &str| {
                g.lock().unwrap().push_str(t);
                Control::Continue
            })),
            None,
        )
        .unwrap();
    assert_eq!(s2.wait(None), Status::Ok);
    let pulled = String::from_utf8(pulled).unwrap();
    assert!(!pulled.is_empty());
    assert_eq!(*got.lock().unwrap(), pulled);
    eprintln!("text: {pulled:?} stats: {:?}", s2.stats());
}
