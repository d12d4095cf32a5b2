//! The one place where minerva calls llama.cpp. Everything here is a small safe wrapper over
//! `llama-cpp-sys-2`; every `unsafe` block says why it is sound. Every call that can throw a C++
//! exception goes through the exception boundary in `shim.cpp` ([`shim`]), so that none can reach
//! Rust (which would abort the process).

mod shim;

use super::error::{Error, Result, Status};
use super::log;
use llama_cpp_sys_2 as sys;
use shim::check;
use std::ffi::{c_void, CStr};
use std::ptr::NonNull;
use std::sync::OnceLock;

pub type Token = sys::llama_token;

/// Initialises llama.cpp's backends and routes its logging, once per process.
pub fn init_backend() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // SAFETY: called once, before any other llama.cpp call of minerva; the trampoline is a
        // plain function that lives for the whole process.
        unsafe { sys::llama_log_set(Some(log::llama_log_trampoline), std::ptr::null_mut()) };
        #[cfg(feature = "portable")]
        let (dir, dynamic) = (backend_dir(), true);
        #[cfg(not(feature = "portable"))]
        let (dir, dynamic) = (None::<std::ffi::CString>, false);
        let dir_ptr = dir.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
        // SAFETY: dir_ptr is NULL or a NUL-terminated path that outlives the call.
        if let Err(e) = check(
            unsafe { shim::mshim_backend_init(dir_ptr, dynamic) },
            "backend init",
        ) {
            log::log(log::Level::Error, &e.message);
        }
    });
}

/// The portable build's backends are separate files (one CPU backend per instruction set, GPU
/// backends). They are loaded from $MINERVA_BACKEND_DIR if set, else from the folder that holds
/// libminerva itself (ship them side by side), else from where the build put them.
#[cfg(feature = "portable")]
fn backend_dir() -> Option<std::ffi::CString> {
    let own_dir = || {
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the address of a function of this library and fills `info`;
        // dli_fname, when set, is a NUL-terminated path owned by the dynamic loader.
        let found = unsafe { libc::dladdr(backend_dir as *const c_void, &mut info) } != 0;
        if !found || info.dli_fname.is_null() {
            return None;
        }
        let path = unsafe { CStr::from_ptr(info.dli_fname) }
            .to_string_lossy()
            .into_owned();
        let dir = std::path::Path::new(&path).parent()?.to_path_buf();
        let has_cpu_backend = std::fs::read_dir(&dir)
            .ok()?
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("libggml-cpu"));
        has_cpu_backend.then(|| dir.to_string_lossy().into_owned())
    };
    std::env::var("MINERVA_BACKEND_DIR")
        .ok()
        .or_else(own_dir)
        .or_else(|| sys::BACKENDS_DIR.map(String::from))
        .and_then(|d| std::ffi::CString::new(d).ok())
}

/// What kind of device a ggml device is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    Cpu,
    Cuda,
    Metal,
    Vulkan,
    Other,
}

/// A compute device that ggml knows of.
#[derive(Clone, Debug)]
pub struct Device {
    raw: sys::ggml_backend_dev_t,
    pub kind: DeviceKind,
    pub is_gpu: bool,
    pub description: String,
    pub free_bytes: usize,
}

// SAFETY: a ggml device handle points into ggml's static device registry, which lives for the whole
// process and is safe to query from any thread.
unsafe impl Send for Device {}
unsafe impl Sync for Device {}

fn cstr_lossy(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        return String::new();
    }
    // SAFETY: ggml returns NUL-terminated strings that live as long as the registry.
    unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Every device ggml can use, in registry order.
pub fn devices() -> Vec<Device> {
    init_backend();
    let mut out = Vec::new();
    // SAFETY: indices below ggml_backend_dev_count() are valid; the handles are static.
    unsafe {
        for i in 0..sys::ggml_backend_dev_count() {
            let raw = sys::ggml_backend_dev_get(i);
            if raw.is_null() {
                continue;
            }
            let ty = sys::ggml_backend_dev_type(raw);
            let reg = sys::ggml_backend_dev_backend_reg(raw);
            let reg_name = if reg.is_null() {
                String::new()
            } else {
                cstr_lossy(sys::ggml_backend_reg_name(reg))
            };
            let is_gpu =
                ty == sys::GGML_BACKEND_DEVICE_TYPE_GPU || ty == sys::GGML_BACKEND_DEVICE_TYPE_IGPU;
            let kind = if ty == sys::GGML_BACKEND_DEVICE_TYPE_CPU {
                DeviceKind::Cpu
            } else {
                match reg_name.to_ascii_lowercase().as_str() {
                    "cuda" => DeviceKind::Cuda,
                    "metal" | "mtl" => DeviceKind::Metal,
                    "vulkan" => DeviceKind::Vulkan,
                    _ => DeviceKind::Other,
                }
            };
            let (mut free, mut total) = (0usize, 0usize);
            let _ = check(
                shim::mshim_dev_memory(raw, &mut free, &mut total),
                "device memory",
            );
            out.push(Device {
                raw,
                kind,
                is_gpu,
                description: cstr_lossy(sys::ggml_backend_dev_description(raw)),
                free_bytes: free,
            });
        }
    }
    out
}

/// The facts minerva reads from a GGUF file's header before llama.cpp loads it.
#[derive(Debug, Default)]
pub struct GgufSummary {
    pub block_count: Option<u32>,
    pub embedding_length: Option<u32>,
    pub head_count: Option<u32>,
    pub head_count_kv: Option<u32>,
    pub key_length: Option<u32>,
    pub value_length: Option<u32>,
}

impl GgufSummary {
    /// Bytes of KV cache (f16 keys and values, every layer) per token, when the header says enough.
    pub fn kv_bytes_per_token(&self) -> Option<u64> {
        let layers = self.block_count? as u64;
        let heads = self.head_count.filter(|&h| h > 0)? as u64;
        let kv_heads = self.head_count_kv.unwrap_or(heads as u32) as u64;
        let head_dim = self.embedding_length? as u64 / heads;
        let k = self.key_length.map(u64::from).unwrap_or(head_dim);
        let v = self.value_length.map(u64::from).unwrap_or(head_dim);
        // Overflow means "more than any memory".
        Some(
            layers
                .checked_mul(kv_heads)
                .and_then(|x| x.checked_mul(k + v))
                .and_then(|x| x.checked_mul(2))
                .unwrap_or(u64::MAX),
        )
    }
}

/// Block size and bytes per block of ggml type `t`, None for a type ggml does not know (or no
/// longer supports).
fn ggml_type_info(t: u32) -> Option<(u64, u64)> {
    if t >= sys::GGML_TYPE_COUNT {
        return None;
    }
    // SAFETY: t is below GGML_TYPE_COUNT, so both look-ups index ggml's type table in bounds.
    let (block, size) = unsafe { (sys::ggml_blck_size(t as _), sys::ggml_type_size(t as _)) };
    (block > 0 && size > 0).then_some((block as u64, size as u64))
}

/// Checks a GGUF file with minerva's own reader (see `gguf.rs`) before llama.cpp sees it.
pub fn inspect_gguf(path: &std::path::Path, file_len: u64) -> Result<GgufSummary> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::new(Status::Io, format!("cannot read the file: {e}")))?;
    let g = super::gguf::read(std::io::BufReader::new(file), file_len, &ggml_type_info)
        .map_err(|e| Error::new(Status::Model, e))?;
    let u32_of = |name: &str| g.arch_u64(name).and_then(|v| u32::try_from(v).ok());
    Ok(GgufSummary {
        block_count: u32_of("block_count"),
        embedding_length: u32_of("embedding_length"),
        head_count: u32_of("attention.head_count"),
        head_count_kv: u32_of("attention.head_count_kv"),
        key_length: u32_of("attention.key_length"),
        value_length: u32_of("attention.value_length"),
    })
}

/// How to load a model.
pub struct ModelLoad<'a> {
    pub device: Option<&'a Device>,
    pub gpu_layers: i32,
    pub use_mmap: bool,
    /// Called with load progress 0..1; returning false aborts the load.
    pub progress: Option<&'a mut dyn FnMut(f32) -> bool>,
}

/// A loaded model. Shared between the engine thread and callers (tokenizing).
pub struct Model {
    raw: NonNull<sys::llama_model>,
    vocab: NonNull<sys::llama_vocab>,
    /// At most how many bytes of text one token stands for, when the vocabulary makes that a
    /// sound bound (see [`Model::min_tokens`]).
    bytes_per_token: Option<usize>,
    /// White space may give no token at all (some token strips the space beside it).
    strips_space: bool,
}

// SAFETY: llama.cpp's model and vocabulary are immutable after loading; llama-server and
// llama.cpp's own tools tokenize from several threads against one model.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

/// Why a load failed: aborted by the progress callback, or failed inside llama.cpp.
pub enum LoadError {
    Aborted,
    Failed(String),
}

struct ProgressCtx<'a> {
    f: &'a mut dyn FnMut(f32) -> bool,
    aborted: bool,
}

unsafe extern "C" fn progress_trampoline(progress: f32, user_data: *mut c_void) -> bool {
    // SAFETY: user_data is the &mut ProgressCtx that Model::load keeps alive across the load.
    let ctx = unsafe { &mut *(user_data as *mut ProgressCtx) };
    let go_on = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.f)(progress)))
        .unwrap_or(false);
    if !go_on {
        ctx.aborted = true;
    }
    go_on
}

impl Model {
    pub fn load(path: &CStr, opts: ModelLoad) -> std::result::Result<Model, LoadError> {
        init_backend();
        // SAFETY: plain value returned by llama.cpp.
        let mut mp = unsafe { sys::llama_model_default_params() };
        let mut devs: [sys::ggml_backend_dev_t; 2] = [std::ptr::null_mut(); 2];
        match opts.device {
            Some(d) => {
                devs[0] = d.raw;
                mp.n_gpu_layers = opts.gpu_layers;
            }
            None => {
                // CPU only: no device list entry and no layers offloaded.
                mp.n_gpu_layers = 0;
            }
        }
        // A NULL-terminated list: only the chosen GPU (or none, which leaves the CPU).
        mp.devices = devs.as_mut_ptr();
        mp.load_mode = if opts.use_mmap {
            sys::LLAMA_LOAD_MODE_MMAP
        } else {
            sys::LLAMA_LOAD_MODE_NONE
        };
        let mut no_progress = |_: f32| true;
        let has_progress = opts.progress.is_some();
        let mut pctx = ProgressCtx {
            f: opts.progress.unwrap_or(&mut no_progress),
            aborted: false,
        };
        if has_progress {
            mp.progress_callback = Some(progress_trampoline);
            mp.progress_callback_user_data = &mut pctx as *mut ProgressCtx as *mut c_void;
        }
        log::take_last_llama_error();
        let mut raw = std::ptr::null_mut();
        // SAFETY: path is NUL-terminated; `devs` and `pctx` outlive the call.
        let loaded = check(
            unsafe { shim::mshim_model_load(path.as_ptr(), mp, &mut raw) },
            "loading the model",
        );
        let Some(raw) = NonNull::new(raw) else {
            if pctx.aborted {
                return Err(LoadError::Aborted);
            }
            return Err(LoadError::Failed(match loaded {
                Err(e) => e.message,
                Ok(()) => log::take_last_llama_error(),
            }));
        };
        // SAFETY: raw is a valid model; its vocabulary lives as long as it.
        let vocab = unsafe { sys::llama_model_get_vocab(raw.as_ptr()) } as *mut sys::llama_vocab;
        let Some(vocab) = NonNull::new(vocab) else {
            // SAFETY: raw was loaded above and is freed once.
            unsafe { sys::llama_model_free(raw.as_ptr()) };
            return Err(LoadError::Failed("the model has no vocabulary".into()));
        };
        let mut model = Model {
            raw,
            vocab,
            bytes_per_token: None,
            strips_space: true,
        };
        model.measure_vocab();
        Ok(model)
    }

    /// Finds the bound behind [`Model::min_tokens`]: for the byte-level (BPE) and SentencePiece
    /// (SPM) tokenizers every byte of a text lies in exactly one token, and a token stands for
    /// the bytes of its piece (SPM: or one unknown character, at most 4 bytes).
    fn measure_vocab(&mut self) {
        // SAFETY: valid vocabulary.
        let ty = unsafe { sys::llama_vocab_type(self.vocab()) };
        if ty != sys::LLAMA_VOCAB_TYPE_BPE && ty != sys::LLAMA_VOCAB_TYPE_SPM {
            return;
        }
        let (mut longest, mut strips) = (0i32, true);
        // SAFETY: valid vocabulary; the out pointers are live locals.
        let ok = unsafe {
            check(
                shim::mshim_vocab_max_piece(self.vocab(), &mut longest),
                "vocab",
            )
            .and_then(|_| {
                check(
                    shim::mshim_vocab_strips_space(self.vocab(), &mut strips),
                    "vocab",
                )
            })
        };
        if ok.is_ok() && longest > 0 {
            self.bytes_per_token = Some((longest as usize).max(4));
            self.strips_space = strips;
        }
    }

    /// A lower bound on the number of tokens `text` gives, found in one pass over its bytes
    /// without tokenizing it (0 when the vocabulary gives no sound bound). Lets a prompt that
    /// cannot fit be refused before llama.cpp's tokenizer, whose special-token pass is quadratic
    /// in the number of special tokens written in the text, spends seconds on it.
    pub fn min_tokens(&self, text: &str) -> usize {
        let Some(per_token) = self.bytes_per_token else {
            return 0;
        };
        let counted = if self.strips_space {
            text.bytes().filter(|b| !b.is_ascii_whitespace()).count()
        } else {
            text.len()
        };
        counted.div_ceil(per_token)
    }

    fn vocab(&self) -> *const sys::llama_vocab {
        self.vocab.as_ptr()
    }

    /// Tokenizes `text`, adding BOS where the vocabulary asks for one and recognizing special
    /// tokens written in the text.
    pub fn tokenize(&self, text: &str) -> Result<Vec<Token>> {
        let len: i32 = text
            .len()
            .try_into()
            .map_err(|_| Error::invalid("prompt is longer than 2 GiB"))?;
        let mut tokens: Vec<Token> = vec![0; text.len() / 2 + 8];
        for _ in 0..2 {
            let mut n = 0;
            // SAFETY: text and tokens are valid for the lengths given.
            check(
                unsafe {
                    shim::mshim_tokenize(
                        self.vocab(),
                        text.as_ptr().cast(),
                        len,
                        tokens.as_mut_ptr(),
                        tokens.len() as i32,
                        true,
                        true,
                        &mut n,
                    )
                },
                "tokenizing the prompt",
            )?;
            if n >= 0 {
                tokens.truncate(n as usize);
                return Ok(tokens);
            }
            if n == i32::MIN {
                break;
            }
            tokens.resize((-n) as usize, 0);
        }
        Err(Error::invalid("the prompt could not be tokenized"))
    }

    /// Appends the bytes of `token` to `out` (special tokens render as nothing).
    pub fn token_piece(&self, token: Token, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let mut cap = 64i32;
        for _ in 0..2 {
            out.resize(start + cap as usize, 0);
            let mut n = 0;
            // SAFETY: the buffer has `cap` bytes of room; llama.cpp writes at most that many.
            let rc = unsafe {
                shim::mshim_token_to_piece(
                    self.vocab(),
                    token,
                    out[start..].as_mut_ptr().cast(),
                    cap,
                    false,
                    &mut n,
                )
            };
            if let Err(e) = check(rc, "rendering a token") {
                out.truncate(start);
                return Err(e);
            }
            if n >= 0 {
                out.truncate(start + n as usize);
                return Ok(());
            }
            cap = -n;
        }
        out.truncate(start);
        Err(Error::new(
            Status::Backend,
            "a token's text could not be rendered",
        ))
    }

    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: any token id is accepted; the vocabulary is valid.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), token) }
    }

    pub fn n_vocab(&self) -> usize {
        // SAFETY: valid vocabulary.
        unsafe { sys::llama_vocab_n_tokens(self.vocab()) }.max(0) as usize
    }

    pub fn n_layer(&self) -> i32 {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_layer(self.raw.as_ptr()) }
    }

    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_ctx_train(self.raw.as_ptr()) }.max(0) as u32
    }

    /// Whether cells of one sequence can be shared with another at a prefix: not for recurrent or
    /// hybrid memories, whose sequence copy takes the whole state.
    pub fn can_share_prefix(&self) -> bool {
        // SAFETY: valid model.
        unsafe {
            !sys::llama_model_is_recurrent(self.raw.as_ptr())
                && !sys::llama_model_is_hybrid(self.raw.as_ptr())
        }
    }

    /// The sliding attention window (0 when the model has none).
    pub fn n_swa(&self) -> usize {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_swa(self.raw.as_ptr()) }.max(0) as usize
    }

    pub fn n_params(&self) -> u64 {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_params(self.raw.as_ptr()) }
    }

    pub fn description(&self) -> String {
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length; llama.cpp NUL-terminates.
        let mut n = 0;
        let rc = unsafe {
            shim::mshim_model_desc(
                self.raw.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut n,
            )
        };
        if check(rc, "model description").is_err() {
            return String::new();
        }
        let n = (n.max(0) as usize).min(buf.len() - 1);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn has_chat_template(&self) -> bool {
        let mut t = std::ptr::null();
        // SAFETY: valid model; the default template is asked for.
        let rc = unsafe { shim::mshim_model_chat_template(self.raw.as_ptr(), &mut t) };
        check(rc, "chat template").is_ok() && !t.is_null()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: every Context borrowing this model was dropped first (Context holds an Arc).
        unsafe { sys::llama_model_free(self.raw.as_ptr()) }
    }
}

/// The largest micro-batch llama.cpp computes at once (its own default).
const MAX_UBATCH: u32 = 512;

/// Settings of a llama.cpp context.
pub struct ContextParams {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_seq_max: u32,
    pub threads: u32,
}

/// A llama.cpp context: the KV cache and the compute buffers. Used by the engine thread only.
pub struct Context {
    raw: NonNull<sys::llama_context>,
    n_vocab: usize,
    // Keeps the model alive as long as the context (dropped after `raw` is freed).
    _model: std::sync::Arc<Model>,
}

// SAFETY: a context is used by one thread at a time (the engine thread owns it).
unsafe impl Send for Context {}

impl Context {
    pub fn new(model: std::sync::Arc<Model>, p: &ContextParams) -> Result<Context> {
        // SAFETY: plain value returned by llama.cpp.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = p.n_ctx;
        cp.n_batch = p.n_batch;
        // llama.cpp splits a batch into micro-batches of n_ubatch tokens and sizes its compute
        // buffers for one of them (attention scores grow with n_ubatch x the cache): a large
        // batch_tokens must not become a compute buffer of gigabytes.
        cp.n_ubatch = p.n_batch.min(MAX_UBATCH);
        cp.n_seq_max = p.n_seq_max;
        // A batch never asks for more than one output row per stream. llama.cpp sizes its compute
        // buffer for the worst case, n_batch rows of logits (512 x 262,144 floats: over 500 MiB for
        // Gemma 3) unless told otherwise.
        cp.n_outputs_max = p.n_seq_max;
        cp.n_threads = p.threads as i32;
        cp.n_threads_batch = p.threads as i32;
        cp.no_perf = true;
        // One pool of cells for all streams: a stream's cells are free for any other as soon as
        // it ends, and streams may share cells holding the same prompt prefix.
        cp.kv_unified = true;
        log::take_last_llama_error();
        let mut raw = std::ptr::null_mut();
        // SAFETY: the model is valid and outlives the context (held in `_model`).
        let made = check(
            unsafe { shim::mshim_init_from_model(model.raw.as_ptr(), cp, &mut raw) },
            "creating the context",
        );
        let Some(raw) = NonNull::new(raw) else {
            let why = match made {
                Err(e) => e.message,
                Ok(()) => log::take_last_llama_error(),
            };
            return Err(Error::new(
                Status::OutOfMemory,
                format!(
                    "could not create a context of {} tokens for {} streams{}{}",
                    p.n_ctx,
                    p.n_seq_max,
                    if why.is_empty() { "" } else { ": " },
                    why.trim()
                ),
            ));
        };
        Ok(Context {
            raw,
            n_vocab: model.n_vocab(),
            _model: model,
        })
    }

    /// Decodes a batch. Returns llama_decode's code (0 is success), or the exception it threw.
    pub fn decode(&mut self, batch: &Batch) -> Result<i32> {
        let mut rc = 0;
        // SAFETY: the batch's arrays hold n_tokens valid entries (Batch::add keeps that true).
        check(
            unsafe { shim::mshim_decode(self.raw.as_ptr(), batch.raw, &mut rc) },
            "llama_decode",
        )?;
        Ok(rc)
    }

    /// The logits of output row `i` of the last decode (empty if llama.cpp has none).
    pub fn logits(&mut self, i: i32) -> &[f32] {
        let mut p = std::ptr::null_mut();
        // SAFETY: valid context; llama.cpp checks the row.
        let rc = unsafe { shim::mshim_get_logits_ith(self.raw.as_ptr(), i, &mut p) };
        if check(rc, "logits").is_err() || p.is_null() {
            return &[];
        }
        // SAFETY: llama.cpp returned n_vocab floats for an output row of the last decode; they
        // stay valid until the next decode, which needs &mut self.
        unsafe { std::slice::from_raw_parts(p, self.n_vocab) }
    }

    /// Removes the cells of `seq` at positions `p0..` (all of them for p0 = 0). False when the
    /// memory cannot remove part of a sequence (or failed).
    pub fn seq_rm(&mut self, seq: i32, p0: i32) -> bool {
        let mut done = false;
        // SAFETY: valid context; llama.cpp checks the range.
        let rc = unsafe { shim::mshim_memory_seq_rm(self.raw.as_ptr(), seq, p0, &mut done) };
        check(rc, "seq_rm").is_ok() && done
    }

    /// The lowest and highest positions `seq` holds (-1 when it holds none, or on failure).
    pub fn seq_pos_range(&mut self, seq: i32) -> (i32, i32) {
        let (mut min, mut max) = (-1, -1);
        // SAFETY: valid context; any sequence id below n_seq_max.
        let rc =
            unsafe { shim::mshim_memory_seq_pos_range(self.raw.as_ptr(), seq, &mut min, &mut max) };
        if check(rc, "seq_pos").is_err() {
            return (-1, -1);
        }
        (min, max)
    }

    /// Makes the cells of `src` at positions `0..n` belong to `dst` too (no copy: the cache is
    /// unified, so cells are shared). The caller checks what `dst` holds afterwards.
    pub fn seq_share_prefix(&mut self, src: i32, dst: i32, n: i32) {
        // SAFETY: valid context; both ids are below n_seq_max.
        let rc = unsafe { shim::mshim_memory_seq_cp(self.raw.as_ptr(), src, dst, 0, n) };
        let _ = check(rc, "seq_cp");
    }

    pub fn raw(&mut self) -> *mut sys::llama_context {
        self.raw.as_ptr()
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: freed once; the model (in `_model`) is still alive here.
        unsafe { sys::llama_free(self.raw.as_ptr()) }
    }
}

/// A batch of tokens for one decode, each with its position, sequence and output flag.
pub struct Batch {
    raw: sys::llama_batch,
    cap: usize,
}

// SAFETY: the batch owns its arrays; only the engine thread uses it.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(cap: usize) -> Result<Batch> {
        // SAFETY: a zeroed llama_batch is plain data (counts and NULL pointers).
        let mut raw: sys::llama_batch = unsafe { std::mem::zeroed() };
        // SAFETY: allocates arrays of `cap` entries, one sequence id each.
        check(
            unsafe { shim::mshim_batch_init(cap as i32, &mut raw) },
            "allocating the batch",
        )?;
        if raw.token.is_null() || raw.seq_id.is_null() {
            return Err(Error::new(
                Status::OutOfMemory,
                "could not allocate the batch",
            ));
        }
        Ok(Batch { raw, cap })
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// How many tokens the batch holds at most.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    pub fn is_empty(&self) -> bool {
        self.raw.n_tokens == 0
    }

    /// Adds a token; returns its row index in the batch.
    pub fn add(&mut self, token: Token, pos: i32, seq: i32, output: bool) -> i32 {
        let i = self.raw.n_tokens as usize;
        assert!(i < self.cap, "batch overflow");
        // SAFETY: i < cap, and every array was allocated with cap entries (seq_id with one id).
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = seq;
            *self.raw.logits.add(i) = output as i8;
        }
        self.raw.n_tokens += 1;
        i as i32
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}

/// Sampling settings of one stream (see the C header for each field's meaning).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    /// `SEED_RANDOM` (u64::MAX): a new seed for each stream.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: u64::MAX,
        }
    }
}

impl SamplingParams {
    /// The most likely token every time.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// llama.cpp's 32-bit seed, which reserves 0xFFFFFFFF for "random". A fixed seed is hashed
    /// with all of its 64 bits (SplitMix64's finalizer, a bijection) and folded to 32, so that
    /// seeds differing anywhere, high bits included, give unrelated streams; two distinct seeds
    /// meet on the same 32-bit seed with a chance of about one in four billion. u64::MAX draws a
    /// new seed for each stream.
    fn llama_seed(&self) -> u32 {
        if self.seed == u64::MAX {
            use std::hash::{BuildHasher, Hasher};
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            return (h.finish() as u32).min(u32::MAX - 1);
        }
        let h = mix64(self.seed);
        let folded = (h ^ (h >> 32)) as u32;
        if folded == u32::MAX {
            0x5EED
        } else {
            folded
        }
    }

    /// Greedy without penalties: an argmax over the logits does the same as the sampler chain,
    /// without sorting 262,144 candidates.
    pub fn is_plain_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.repeat_penalty == 1.0
    }
}

/// SplitMix64's output function: every input bit changes about half of the output bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A llama.cpp sampler chain.
pub struct Sampler {
    raw: NonNull<sys::llama_sampler>,
}

// SAFETY: owned by one stream and used by one thread at a time (created by the caller that starts
// the stream, then used by the engine thread only).
unsafe impl Send for Sampler {}

impl Sampler {
    /// The chain for `p`. `window` caps how many recent tokens the repeat penalty keeps (the
    /// stream's context: it never holds more).
    pub fn new(p: &SamplingParams, n_vocab: usize, window: u32) -> Result<Sampler> {
        let spec = shim::Sampling {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n.min(window).min(i32::MAX as u32) as i32,
            seed: p.llama_seed(),
            n_vocab: n_vocab.min(i32::MAX as usize) as i32,
        };
        let mut raw = std::ptr::null_mut();
        // SAFETY: spec is a live plain struct; the shim builds the chain or frees what it built.
        check(
            unsafe { shim::mshim_sampler_new(&spec, &mut raw) },
            "creating the sampler",
        )?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::new(Status::OutOfMemory, "could not create the sampler"))?;
        Ok(Sampler { raw })
    }

    /// Samples from output row `i` of the context's last decode and accepts the token.
    pub fn sample(&mut self, ctx: &mut Context, i: i32) -> Result<Token> {
        let mut t = 0;
        // SAFETY: valid sampler and context; i is an output row of the last decode.
        check(
            unsafe { shim::mshim_sampler_sample(self.raw.as_ptr(), ctx.raw(), i, &mut t) },
            "sampling",
        )?;
        Ok(t)
    }

    /// Feeds a token the stream already has (its prompt) to the penalties.
    pub fn accept(&mut self, token: Token) -> Result<()> {
        // SAFETY: valid sampler.
        check(
            unsafe { shim::mshim_sampler_accept(self.raw.as_ptr(), token) },
            "sampler accept",
        )
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: the chain frees the samplers it owns; freed once.
        unsafe { sys::llama_sampler_free(self.raw.as_ptr()) }
    }
}

/// Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler does).
pub fn argmax(logits: &[f32]) -> Token {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best = i;
        }
    }
    best as Token
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp throws std::out_of_range for a token id it does not know: through the shim that
    /// is an error with llama.cpp's words, not an abort of the process.
    #[test]
    fn a_cpp_exception_becomes_an_error() {
        let Ok(path) = std::env::var("MINERVA_MODEL") else {
            eprintln!("MINERVA_MODEL is not set: skipped");
            return;
        };
        let path = std::ffi::CString::new(path).unwrap();
        let model = Model::load(
            &path,
            ModelLoad {
                device: None,
                gpu_layers: 0,
                use_mmap: true,
                progress: None,
            },
        )
        .unwrap_or_else(|_| panic!("load {path:?}"));
        let mut piece = Vec::new();
        let err = model.token_piece(i32::MAX, &mut piece).unwrap_err();
        assert_eq!(err.status, Status::Backend, "{err}");
        assert!(err.message.starts_with("rendering a token: "), "{err}");
        assert!(piece.is_empty());
        // The model still works after the exception.
        model.token_piece(1, &mut piece).unwrap();
        assert!(model.min_tokens(&"x".repeat(1 << 20)) > 1000);
    }
}
