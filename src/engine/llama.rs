//! The one place where minerva calls llama.cpp. Everything here is a small safe wrapper over
//! `llama-cpp-sys-2`; every `unsafe` block says why it is sound.

use super::error::{Error, Result, Status};
use super::log;
use llama_cpp_sys_2 as sys;
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
        unsafe {
            sys::llama_log_set(Some(log::llama_log_trampoline), std::ptr::null_mut());
            #[cfg(feature = "portable")]
            load_backends();
            sys::llama_backend_init();
        }
    });
}

/// The portable build's backends are separate files (one CPU backend per instruction set, GPU
/// backends). They are loaded from $MINERVA_BACKEND_DIR if set, else from the folder that holds
/// libminerva itself (ship them side by side), else from where the build put them.
#[cfg(feature = "portable")]
fn load_backends() {
    let own_dir = || {
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the address of a function of this library and fills `info`;
        // dli_fname, when set, is a NUL-terminated path owned by the dynamic loader.
        let found = unsafe { libc::dladdr(load_backends as *const c_void, &mut info) } != 0;
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
    let dir = std::env::var("MINERVA_BACKEND_DIR")
        .ok()
        .or_else(own_dir)
        .or_else(|| sys::BACKENDS_DIR.map(String::from));
    match dir.and_then(|d| std::ffi::CString::new(d).ok()) {
        // SAFETY: a NUL-terminated path; ggml copies what it needs.
        Some(d) => unsafe { sys::ggml_backend_load_all_from_path(d.as_ptr()) },
        // SAFETY: no arguments; searches ggml's default places.
        None => unsafe { sys::ggml_backend_load_all() },
    }
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
            sys::ggml_backend_dev_memory(raw, &mut free, &mut total);
            let _ = total;
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
        // SAFETY: path is NUL-terminated; `devs` and `pctx` outlive the call.
        let raw = unsafe { sys::llama_model_load_from_file(path.as_ptr(), mp) };
        let Some(raw) = NonNull::new(raw) else {
            if pctx.aborted {
                return Err(LoadError::Aborted);
            }
            return Err(LoadError::Failed(log::take_last_llama_error()));
        };
        // SAFETY: raw is a valid model; its vocabulary lives as long as it.
        let vocab = unsafe { sys::llama_model_get_vocab(raw.as_ptr()) } as *mut sys::llama_vocab;
        let Some(vocab) = NonNull::new(vocab) else {
            // SAFETY: raw was loaded above and is freed once.
            unsafe { sys::llama_model_free(raw.as_ptr()) };
            return Err(LoadError::Failed("the model has no vocabulary".into()));
        };
        Ok(Model { raw, vocab })
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
            // SAFETY: text and tokens are valid for the lengths given.
            let n = unsafe {
                sys::llama_tokenize(
                    self.vocab(),
                    text.as_ptr().cast(),
                    len,
                    tokens.as_mut_ptr(),
                    tokens.len() as i32,
                    true,
                    true,
                )
            };
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
    pub fn token_piece(&self, token: Token, out: &mut Vec<u8>) {
        let start = out.len();
        out.resize(start + 64, 0);
        // SAFETY: the buffer has the given room; llama.cpp writes at most that many bytes.
        let mut n = unsafe {
            sys::llama_token_to_piece(
                self.vocab(),
                token,
                out[start..].as_mut_ptr().cast(),
                64,
                0,
                false,
            )
        };
        if n < 0 {
            out.resize(start + (-n) as usize, 0);
            // SAFETY: as above, with the size llama.cpp asked for.
            n = unsafe {
                sys::llama_token_to_piece(
                    self.vocab(),
                    token,
                    out[start..].as_mut_ptr().cast(),
                    -n,
                    0,
                    false,
                )
            };
        }
        out.truncate(start + n.max(0) as usize);
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
        let n =
            unsafe { sys::llama_model_desc(self.raw.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        let n = (n.max(0) as usize).min(buf.len() - 1);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn has_chat_template(&self) -> bool {
        // SAFETY: valid model; a NULL name asks for the default template.
        !unsafe { sys::llama_model_chat_template(self.raw.as_ptr(), std::ptr::null()) }.is_null()
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: every Context borrowing this model was dropped first (Context holds an Arc).
        unsafe { sys::llama_model_free(self.raw.as_ptr()) }
    }
}

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
        cp.n_ubatch = p.n_batch;
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
        // SAFETY: the model is valid and outlives the context (held in `_model`).
        let raw = unsafe { sys::llama_init_from_model(model.raw.as_ptr(), cp) };
        let Some(raw) = NonNull::new(raw) else {
            let why = log::take_last_llama_error();
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

    /// Decodes a batch. Returns llama_decode's code: 0 is success.
    pub fn decode(&mut self, batch: &Batch) -> i32 {
        // SAFETY: the batch's arrays hold n_tokens valid entries (Batch::add keeps that true).
        unsafe { sys::llama_decode(self.raw.as_ptr(), batch.raw) }
    }

    /// The logits of output row `i` of the last decode.
    pub fn logits(&mut self, i: i32) -> &[f32] {
        // SAFETY: i is an output row of the last decode; llama.cpp returns n_vocab floats that
        // stay valid until the next decode, which needs &mut self.
        unsafe {
            let p = sys::llama_get_logits_ith(self.raw.as_ptr(), i);
            if p.is_null() {
                return &[];
            }
            std::slice::from_raw_parts(p, self.n_vocab)
        }
    }

    /// Removes the cells of `seq` at positions `p0..` (all of them for p0 = 0). False when the
    /// memory cannot remove part of a sequence.
    pub fn seq_rm(&mut self, seq: i32, p0: i32) -> bool {
        // SAFETY: valid context; llama.cpp checks the range.
        unsafe {
            let mem = sys::llama_get_memory(self.raw.as_ptr());
            sys::llama_memory_seq_rm(mem, seq, p0, -1)
        }
    }

    /// The lowest and highest positions `seq` holds (-1 when it holds none).
    pub fn seq_pos_range(&mut self, seq: i32) -> (i32, i32) {
        // SAFETY: valid context; any sequence id below n_seq_max.
        unsafe {
            let mem = sys::llama_get_memory(self.raw.as_ptr());
            (
                sys::llama_memory_seq_pos_min(mem, seq),
                sys::llama_memory_seq_pos_max(mem, seq),
            )
        }
    }

    /// Makes the cells of `src` at positions `0..n` belong to `dst` too (no copy: the cache is
    /// unified, so cells are shared).
    pub fn seq_share_prefix(&mut self, src: i32, dst: i32, n: i32) {
        // SAFETY: valid context; both ids are below n_seq_max.
        unsafe {
            let mem = sys::llama_get_memory(self.raw.as_ptr());
            sys::llama_memory_seq_cp(mem, src, dst, 0, n);
        }
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
    pub fn new(cap: usize) -> Batch {
        // SAFETY: allocates arrays of `cap` entries, one sequence id each.
        let raw = unsafe { sys::llama_batch_init(cap as i32, 0, 1) };
        Batch { raw, cap }
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
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

    /// llama.cpp's 32-bit seed, which reserves 0xFFFFFFFF for "random": a fixed seed is folded
    /// into 32 bits; u64::MAX draws a new one.
    fn llama_seed(&self) -> u32 {
        if self.seed == u64::MAX {
            use std::hash::{BuildHasher, Hasher};
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            return (h.finish() as u32).min(u32::MAX - 1);
        }
        let folded = (self.seed ^ (self.seed >> 32)) as u32;
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

/// A llama.cpp sampler chain.
pub struct Sampler {
    raw: NonNull<sys::llama_sampler>,
}

// SAFETY: owned by one stream, used by the engine thread only.
unsafe impl Send for Sampler {}

impl Sampler {
    pub fn new(p: &SamplingParams, n_vocab: usize) -> Sampler {
        // SAFETY: each sampler created here is handed to the chain, which owns and frees it.
        unsafe {
            let mut cp = sys::llama_sampler_chain_default_params();
            cp.no_perf = true;
            let chain = sys::llama_sampler_chain_init(cp);
            if p.repeat_penalty != 1.0 {
                let last_n = p.repeat_last_n.min(i32::MAX as u32) as i32;
                sys::llama_sampler_chain_add(
                    chain,
                    sys::llama_sampler_init_penalties(
                        n_vocab as i32,
                        last_n,
                        p.repeat_penalty,
                        0.0,
                        0.0,
                    ),
                );
            }
            if p.temperature <= 0.0 {
                sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_greedy());
            } else {
                if p.top_k > 0 {
                    sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_top_k(p.top_k));
                }
                if p.top_p < 1.0 {
                    sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_top_p(p.top_p, 1));
                }
                if p.min_p > 0.0 {
                    sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_min_p(p.min_p, 1));
                }
                sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_temp(p.temperature));
                sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_dist(p.llama_seed()));
            }
            Sampler {
                raw: NonNull::new(chain).expect("llama_sampler_chain_init returned NULL"),
            }
        }
    }

    /// Samples from output row `i` of the context's last decode and accepts the token.
    pub fn sample(&mut self, ctx: &mut Context, i: i32) -> Token {
        // SAFETY: valid sampler and context; i is an output row of the last decode.
        unsafe { sys::llama_sampler_sample(self.raw.as_ptr(), ctx.raw(), i) }
    }

    /// Feeds a token the stream already has (its prompt) to the penalties.
    pub fn accept(&mut self, token: Token) {
        // SAFETY: valid sampler.
        unsafe { sys::llama_sampler_accept(self.raw.as_ptr(), token) }
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
