//! The Rust engine API on the real model (the C API has its own tests in tests/c/).

mod common;

use common::greedy;
use minerva::engine::{Control, FinishReason, Status};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[test]
fn pull_and_callback_give_the_same_greedy_text() {
    let _one = common::one_at_a_time();
    let engine = common::engine(2, 256);
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

/// scripts/test.sh runs the model-text tests a second time with one CPU variant forced
/// (MINERVA_BACKEND_DIR at a folder that holds only it) and names it in
/// MINERVA_EXPECT_CPU_VARIANT: that run must really be on it.
#[test]
fn the_cpu_variant_is_the_one_expected() {
    let Ok(want) = std::env::var("MINERVA_EXPECT_CPU_VARIANT") else {
        return;
    };
    let _one = common::one_at_a_time();
    let engine = common::engine(1, 128);
    let variant = engine.info().cpu_variant.clone();
    println!("CPU variant: {variant}");
    assert!(variant.contains(&want), "{variant}, not {want}");
}
