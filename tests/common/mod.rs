//! Set-up shared by the Rust integration tests: the model, the default-model check, one test at a
//! time, engines through the Rust and the C API, greedy parameters.
#![allow(dead_code)]

use minerva::engine::{Engine, EngineConfig, GenerateParams, SamplingParams};
use minerva::ffi::{
    minerva_engine, minerva_engine_free, minerva_engine_new, minerva_engine_params,
    minerva_engine_params_init, MINERVA_OK,
};
use std::ffi::CString;
use std::sync::{Mutex, MutexGuard, OnceLock};

/// The model: $MINERVA_MODEL, else the default one (fetched if missing).
pub fn model_path() -> String {
    if let Ok(p) = std::env::var("MINERVA_MODEL") {
        return p;
    }
    let out = std::process::Command::new(script("fetch-model.sh"))
        .output()
        .expect("run scripts/fetch-model.sh");
    assert!(
        out.status.success(),
        "scripts/fetch-model.sh failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn script(name: &str) -> String {
    format!("{}/scripts/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// Whether the model is the default one (Gemma 3 270M Q4_K_M), by its sha256 as
/// scripts/fetch-model.sh knows it. Assertions that hold for that model only (its layers,
/// vocabulary, file size, exact greedy text) run only then, so that the suite passes on any model.
pub fn is_default_model() -> bool {
    static IS: OnceLock<bool> = OnceLock::new();
    *IS.get_or_init(|| {
        let fetch = std::fs::read_to_string(script("fetch-model.sh")).expect("fetch-model.sh");
        let want = fetch
            .lines()
            .find_map(|l| l.strip_prefix("SHA256="))
            .expect("SHA256= in fetch-model.sh")
            .trim()
            .to_string();
        let out = std::process::Command::new("sha256sum")
            .arg(model_path())
            .output()
            .expect("run sha256sum");
        let got = String::from_utf8_lossy(&out.stdout);
        let is = got.split_whitespace().next() == Some(want.as_str());
        if !is {
            eprintln!("not the default model: its model-specific assertions are skipped");
        }
        is
    })
}

/// The machine has few cores, and faults are process-wide: tests that load engines take turns.
pub fn one_at_a_time() -> MutexGuard<'static, ()> {
    static ONE: Mutex<()> = Mutex::new(());
    ONE.lock().unwrap_or_else(|e| e.into_inner())
}

/// An engine through the Rust API.
pub fn engine(max_streams: u32, context_tokens: u32) -> Engine {
    let cfg = EngineConfig {
        max_streams,
        context_tokens,
        ..Default::default()
    };
    Engine::new(&model_path(), &cfg, None).expect("engine")
}

/// An engine through the C API, shareable between threads; freed when dropped.
pub struct CEngine(pub *mut minerva_engine);
// SAFETY: the C API allows every engine call from any thread.
unsafe impl Send for CEngine {}
unsafe impl Sync for CEngine {}

impl CEngine {
    pub fn new(max_streams: u32, context_tokens: u32, batch_tokens: u32) -> CEngine {
        let path = CString::new(model_path()).unwrap();
        let mut e = std::ptr::null_mut();
        unsafe {
            let mut p: minerva_engine_params = std::mem::zeroed();
            minerva_engine_params_init(&mut p, std::mem::size_of_val(&p) as u32);
            p.max_streams = max_streams;
            p.context_tokens = context_tokens;
            p.batch_tokens = batch_tokens;
            assert_eq!(minerva_engine_new(path.as_ptr(), &p, &mut e), MINERVA_OK);
        }
        CEngine(e)
    }

    /// Frees the engine now (also while other threads' streams run on it).
    pub fn free(mut self) {
        unsafe { minerva_engine_free(std::mem::replace(&mut self.0, std::ptr::null_mut())) };
    }
}

impl Drop for CEngine {
    fn drop(&mut self) {
        unsafe { minerva_engine_free(self.0) };
    }
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
