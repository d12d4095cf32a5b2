//! Set-up shared by the Rust integration tests: the model, the default-model check, one test at a
//! time, engines through the Rust and the C API, greedy parameters, reading a stream to its end,
//! RPC servers.
#![allow(dead_code)]

use minerva::engine::{Engine, EngineConfig, GenerateParams, SamplingParams, Stream};
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
/// The repository's root.
pub fn root() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder of the built libminerva.so (and minerva-rpc-server), built first if needed (cargo
/// test does not build the cdylib by itself; a no-op when fresh).
pub fn lib_dir() -> std::path::PathBuf {
    static BUILT: OnceLock<std::path::PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            // The same build as these tests': their features, their target folder.
            let mut features: Vec<&str> = Vec::new();
            if cfg!(feature = "cuda") {
                features.push("cuda");
            }
            if cfg!(feature = "vulkan") {
                features.push("vulkan");
            }
            if cfg!(feature = "metal") {
                features.push("metal");
            }
            let mut cmd = std::process::Command::new(cargo);
            cmd.args(["build", "--release", "--lib", "--bins"])
                .current_dir(root());
            if !cfg!(feature = "portable") {
                cmd.arg("--no-default-features");
            }
            if !features.is_empty() {
                cmd.args(["--features", &features.join(",")]);
            }
            let st = cmd.status().expect("run cargo build");
            assert!(st.success(), "{cmd:?} failed");
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| root().join("target"));
            let dir = root().join(target).join("release");
            assert!(
                dir.join("libminerva.so").exists(),
                "no libminerva.so in {dir:?}"
            );
            dir
        })
        .clone()
}

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

/// The chat template the test model carries: Gemma 3's own (tests/templates/gemma3.jinja).
pub const CHAT_TEMPLATE: &str = include_str!("../templates/gemma3.jinja");

/// The test model with a chat template: a copy of the model with `tokenizer.chat_template` added
/// to its metadata (the default Gemma 3 270M GGUF carries none), made once beside the model and
/// reused while the template is the same.
pub fn chat_model_path() -> String {
    static PATH: OnceLock<String> = OnceLock::new();
    PATH.get_or_init(|| {
        let src = model_path();
        let hash = CHAT_TEMPLATE.bytes().fold(0xcbf29ce484222325u64, |h, b| {
            (h ^ b as u64).wrapping_mul(0x100000001b3)
        });
        let dst = format!("{}.chat-{hash:016x}.gguf", src.trim_end_matches(".gguf"));
        if !std::path::Path::new(&dst).exists() {
            let tmp = format!("{dst}.tmp{}", std::process::id());
            gguf_with_string(&src, &tmp, "tokenizer.chat_template", CHAT_TEMPLATE)
                .unwrap_or_else(|e| panic!("writing {tmp}: {e}"));
            std::fs::rename(&tmp, &dst).unwrap();
        }
        dst
    })
    .clone()
}

/// Copies the GGUF file `src` to `dst` with one more string key-value pair in its metadata.
pub fn gguf_with_string(src: &str, dst: &str, key: &str, value: &str) -> std::io::Result<()> {
    use std::io::{Read, Seek, SeekFrom, Write};
    let mut f = std::io::BufReader::new(std::fs::File::open(src)?);
    let mut head = [0u8; 24];
    f.read_exact(&mut head)?;
    assert_eq!(&head[..4], b"GGUF", "{src} is not a GGUF file");
    let n_tensors = u64::from_le_bytes(head[8..16].try_into().unwrap());
    let n_kv = u64::from_le_bytes(head[16..24].try_into().unwrap());
    let u32_ = |f: &mut dyn Read| -> std::io::Result<u32> {
        let mut b = [0u8; 4];
        f.read_exact(&mut b)?;
        Ok(u32::from_le_bytes(b))
    };
    let u64_ = |f: &mut dyn Read| -> std::io::Result<u64> {
        let mut b = [0u8; 8];
        f.read_exact(&mut b)?;
        Ok(u64::from_le_bytes(b))
    };
    let skip = |f: &mut std::io::BufReader<std::fs::File>, n: u64| f.seek_relative(n as i64);
    fn size_of(t: u32) -> u64 {
        match t {
            0 | 1 | 7 => 1,
            2 | 3 => 2,
            4..=6 => 4,
            10..=12 => 8,
            _ => panic!("GGUF value type {t} has no fixed size"),
        }
    }
    let mut alignment = 32u64;
    for _ in 0..n_kv {
        let klen = u64_(&mut f)?;
        let mut k = vec![0u8; klen as usize];
        f.read_exact(&mut k)?;
        assert_ne!(k, key.as_bytes(), "{src} already has {key}");
        let t = u32_(&mut f)?;
        match t {
            8 => {
                let n = u64_(&mut f)?;
                skip(&mut f, n)?;
            }
            9 => {
                let it = u32_(&mut f)?;
                let n = u64_(&mut f)?;
                if it == 8 {
                    for _ in 0..n {
                        let l = u64_(&mut f)?;
                        skip(&mut f, l)?;
                    }
                } else {
                    skip(&mut f, n * size_of(it))?;
                }
            }
            4 if k == b"general.alignment" => alignment = u32_(&mut f)? as u64,
            t => skip(&mut f, size_of(t))?,
        }
    }
    let kv_end = f.stream_position()?;
    for _ in 0..n_tensors {
        let l = u64_(&mut f)?;
        skip(&mut f, l)?;
        let dims = u32_(&mut f)?;
        skip(&mut f, dims as u64 * 8 + 4 + 8)?;
    }
    let infos_end = f.stream_position()?;
    let data_start = infos_end.div_ceil(alignment) * alignment;

    let mut src_file = std::fs::File::open(src)?;
    let mut out = std::io::BufWriter::new(std::fs::File::create(dst)?);
    out.write_all(&head[..16])?;
    out.write_all(&(n_kv + 1).to_le_bytes())?;
    let mut copy = |from: u64, to: u64, out: &mut dyn Write| -> std::io::Result<()> {
        src_file.seek(SeekFrom::Start(from))?;
        std::io::copy(&mut (&mut src_file).take(to - from), out)?;
        Ok(())
    };
    copy(24, kv_end, &mut out)?;
    out.write_all(&(key.len() as u64).to_le_bytes())?;
    out.write_all(key.as_bytes())?;
    out.write_all(&8u32.to_le_bytes())?;
    out.write_all(&(value.len() as u64).to_le_bytes())?;
    out.write_all(value.as_bytes())?;
    copy(kv_end, infos_end, &mut out)?;
    let written = infos_end + 8 + key.len() as u64 + 4 + 8 + value.len() as u64;
    let pad = written.div_ceil(alignment) * alignment - written;
    out.write_all(&vec![0u8; pad as usize])?;
    let end = std::fs::metadata(src)?.len();
    copy(data_start, end, &mut out)?;
    out.flush()
}

/// Reads a pull-mode stream to its end.
pub fn read_all(s: &Stream) -> String {
    let mut out = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let r = s.read(&mut buf, Some(std::time::Duration::from_secs(120)));
        out.extend_from_slice(&buf[..r.len]);
        if r.finished {
            break;
        }
    }
    String::from_utf8(out).unwrap()
}

/// A TCP port on 127.0.0.1 that nothing listens on (just freed).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minerva-rpc-server on 127.0.0.1, run from `/` with nothing in the environment pointing at
/// minerva, ready once it accepts a connection; killed when dropped.
pub struct RpcServer {
    child: std::process::Child,
    pub endpoint: String,
}

impl RpcServer {
    /// The server built with these tests.
    pub fn start(args: &[&str]) -> RpcServer {
        Self::start_at(
            std::path::Path::new(env!("CARGO_BIN_EXE_minerva-rpc-server")),
            args,
        )
    }

    /// The server at `bin` (an installed one, say), with `args` besides the port.
    pub fn start_at(bin: &std::path::Path, args: &[&str]) -> RpcServer {
        use std::time::{Duration, Instant};
        let port = free_port();
        let mut child = std::process::Command::new(bin)
            .args(["--port", &port.to_string()])
            .args(args)
            .current_dir("/")
            .env_remove("LD_LIBRARY_PATH")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("start {bin:?}: {e}"));
        let endpoint = format!("127.0.0.1:{port}");
        // Ready when it accepts (the server serves that connection, which ends at once).
        let start = Instant::now();
        while std::net::TcpStream::connect(&endpoint).is_err() {
            if let Ok(Some(st)) = child.try_wait() {
                panic!("{bin:?} exited: {st}");
            }
            assert!(
                start.elapsed() < Duration::from_secs(60),
                "{bin:?} did not listen on {endpoint}"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        RpcServer { child, endpoint }
    }
}

impl Drop for RpcServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An empty scratch folder target/tmp/<name> (emptied first).
pub fn scratch(name: &str) -> std::path::PathBuf {
    let dir = root().join("target/tmp").join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Runs a command that must succeed; its output.
pub fn run(cmd: &mut std::process::Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a bash script that must succeed; its output.
pub fn sh(script: &str) -> std::process::Output {
    run(std::process::Command::new("bash").args(["-c", script]))
}

/// The folder of the test LoRA adapters (scripts/lora-adapters.sh: voice.gguf, calm.gguf,
/// wrong-shape.gguf), written once beside the default model.
pub fn lora_dir() -> std::path::PathBuf {
    static DIR: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let out = std::process::Command::new(root().join("scripts/lora-adapters.sh"))
            .output()
            .expect("run scripts/lora-adapters.sh");
        assert!(
            out.status.success(),
            "scripts/lora-adapters.sh failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::path::PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}
