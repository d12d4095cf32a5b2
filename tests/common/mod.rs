//! Helpers shared by the Rust integration tests.
#![allow(dead_code)]

use minerva::engine::{GenerateParams, SamplingParams};

/// The model: $MINERVA_MODEL, else the default one (fetched if missing).
pub fn model_path() -> String {
    if let Ok(p) = std::env::var("MINERVA_MODEL") {
        return p;
    }
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/fetch-model.sh");
    let out = std::process::Command::new(script)
        .output()
        .expect("run scripts/fetch-model.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-model.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// Greedy, `max_tokens` exactly (end-of-generation ignored), no prompt cache.
pub fn greedy(max_tokens: u32) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams {
            seed: 1,
            ..SamplingParams::greedy()
        },
        ignore_eos: true,
        cache_prompt: false,
        ..Default::default()
    }
}
