//! Safe Rust over llama.cpp: models, devices, the engine thread and its streams.
//! Nothing here knows of C; `crate::ffi` is the C surface over it.

pub mod error;
#[doc(hidden)]
pub mod faults;
pub mod gguf;
pub(crate) mod llama;
pub mod log;
mod scheduler;
pub mod stream;
pub mod text;

pub use error::{Error, Result, Status};
pub use llama::{DeviceKind, SamplingParams};
pub use stream::{Control, FinishFn, FinishReason, ReadResult, Stats, Stream, TokenFn};

use llama::{ContextParams, Model, ModelLoad, Sampler};
use scheduler::{Mailbox, Request, Scheduler};
use std::cell::Cell;
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

/// Settings of an engine. See the C header for each field's meaning and default.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub gpu_layers: i32,
    pub context_tokens: u32,
    pub max_streams: u32,
    pub threads: u32,
    pub batch_tokens: u32,
    pub use_mmap: bool,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            gpu_layers: -1,
            context_tokens: 2048,
            max_streams: 4,
            threads: 0,
            batch_tokens: 512,
            use_mmap: true,
        }
    }
}

/// Limits on engine settings.
pub const MAX_STREAMS: u32 = 256;
pub const MIN_CONTEXT_TOKENS: u32 = 8;
pub const MAX_CONTEXT_TOKENS: u32 = 1 << 20;
pub const MAX_BATCH_TOKENS: u32 = 1 << 16;
pub const MAX_THREADS: u32 = 1024;
/// Limit on `repeat_last_n` (the penalty window never reaches past a stream's context anyway).
pub const MAX_REPEAT_LAST_N: u32 = MAX_CONTEXT_TOKENS;

/// What an engine runs on and what it loaded.
#[derive(Clone, Debug, Default)]
pub struct EngineInfo {
    pub device_kind: Option<DeviceKind>,
    pub device_name: String,
    pub fallback_reason: String,
    pub gpu_layers: i32,
    pub total_layers: i32,
    pub context_tokens: u32,
    pub max_streams: u32,
    pub threads: u32,
    pub model_description: String,
    pub parameter_count: u64,
    pub file_bytes: u64,
    pub vocab_size: u32,
    pub train_context_tokens: u32,
    pub has_chat_template: bool,
}

/// Settings of one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub cache_prompt: bool,
}

/// The seed value that asks for a new random seed for each stream.
pub const SEED_RANDOM: u64 = u64::MAX;

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            cache_prompt: true,
        }
    }
}

impl GenerateParams {
    /// Checks the values; the error names the field.
    pub fn check(&self) -> Result<()> {
        let s = &self.sampling;
        if !s.temperature.is_finite() || s.temperature < 0.0 {
            return Err(Error::invalid(format!(
                "temperature must be a finite number >= 0 (0 is greedy), got {}",
                s.temperature
            )));
        }
        if s.top_k < 0 {
            return Err(Error::invalid(format!(
                "top_k must be >= 0 (0 is off), got {}",
                s.top_k
            )));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return Err(Error::invalid(format!(
                "top_p must be in (0, 1] (1 is off), got {}",
                s.top_p
            )));
        }
        if !(0.0..=1.0).contains(&s.min_p) {
            return Err(Error::invalid(format!(
                "min_p must be in [0, 1] (0 is off), got {}",
                s.min_p
            )));
        }
        if !s.repeat_penalty.is_finite() || s.repeat_penalty <= 0.0 {
            return Err(Error::invalid(format!(
                "repeat_penalty must be a finite number > 0 (1 is off), got {}",
                s.repeat_penalty
            )));
        }
        if s.repeat_last_n > MAX_REPEAT_LAST_N {
            return Err(Error::invalid(format!(
                "repeat_last_n must be in 0..={MAX_REPEAT_LAST_N}, got {}",
                s.repeat_last_n
            )));
        }
        if let Some(i) = self.stop.iter().position(String::is_empty) {
            return Err(Error::invalid(format!("stop[{i}] is an empty string")));
        }
        Ok(())
    }
}

thread_local! {
    /// The id of the engine whose thread this is (0: not an engine thread).
    static ENGINE_THREAD: Cell<u64> = const { Cell::new(0) };
    /// How deep this thread is inside user callbacks.
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` marked as a user callback, so that calls made from it that would block are refused.
pub(crate) fn callback_scope<R>(f: impl FnOnce() -> R) -> R {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            CALLBACK_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    CALLBACK_DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    f()
}

/// True inside a token, finish or progress callback: a call that waits would deadlock.
pub fn in_callback() -> bool {
    CALLBACK_DEPTH.with(|d| d.get() > 0)
}

/// The id of the engine whose thread is calling, if the caller is an engine thread.
pub fn current_engine_thread() -> Option<u64> {
    let id = ENGINE_THREAD.with(|e| e.get());
    (id != 0).then_some(id)
}

/// One loaded model, its context and its engine thread.
pub struct Engine {
    id: u64,
    mailbox: Arc<Mailbox>,
    thread: Option<JoinHandle<()>>,
    model: Arc<Model>,
    info: EngineInfo,
}

/// The CPUs this process may run on (affinity and cgroup quota included).
fn usable_cpus() -> u32 {
    std::thread::available_parallelism()
        .map(|n| n.get() as u32)
        .unwrap_or(1)
}

/// Decoding threads for a `threads` setting: 0 is one per physical core; more than the CPUs
/// the process may use is capped there (with a warning): llama.cpp's workers spin while they
/// wait for each other, so one more thread than CPUs makes decoding tens of times slower.
fn decode_threads(asked: u32) -> u32 {
    let cpus = usable_cpus();
    if asked == 0 {
        return physical_cores().min(cpus).max(1);
    }
    if asked > cpus {
        log::log_warn!(
            "threads {asked} is more than the {cpus} CPUs this process may use; using {cpus}"
        );
        return cpus;
    }
    asked
}

fn physical_cores() -> u32 {
    let logical = usable_cpus();
    // Linux: count distinct (physical id, core id) pairs.
    if let Ok(s) = std::fs::read_to_string("/proc/cpuinfo") {
        let mut cores = std::collections::HashSet::new();
        let mut phys = "";
        for line in s.lines() {
            let mut kv = line.splitn(2, ':').map(str::trim);
            match (kv.next(), kv.next()) {
                (Some("physical id"), Some(v)) => phys = v,
                (Some("core id"), Some(v)) => {
                    cores.insert((phys.to_string(), v.to_string()));
                }
                _ => {}
            }
        }
        if !cores.is_empty() {
            return (cores.len() as u32).clamp(1, logical);
        }
    }
    logical
}

/// Host memory available for new allocations (Linux: MemAvailable), if known.
fn available_memory() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = s.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

fn check_config(c: &EngineConfig) -> Result<()> {
    if !(MIN_CONTEXT_TOKENS..=MAX_CONTEXT_TOKENS).contains(&c.context_tokens) {
        return Err(Error::invalid(format!(
            "context_tokens must be in {MIN_CONTEXT_TOKENS}..={MAX_CONTEXT_TOKENS}, got {}",
            c.context_tokens
        )));
    }
    if !(1..=MAX_STREAMS).contains(&c.max_streams) {
        return Err(Error::invalid(format!(
            "max_streams must be in 1..={MAX_STREAMS}, got {}",
            c.max_streams
        )));
    }
    if (c.context_tokens as u64) * (c.max_streams as u64) > u32::MAX as u64 / 2 {
        return Err(Error::invalid(format!(
            "context_tokens * max_streams is too large ({} * {})",
            c.context_tokens, c.max_streams
        )));
    }
    if !(1..=MAX_BATCH_TOKENS).contains(&c.batch_tokens) {
        return Err(Error::invalid(format!(
            "batch_tokens must be in 1..={MAX_BATCH_TOKENS}, got {}",
            c.batch_tokens
        )));
    }
    if c.threads > MAX_THREADS {
        return Err(Error::invalid(format!(
            "threads must be in 0..={MAX_THREADS} (0: one per physical core), got {}",
            c.threads
        )));
    }
    Ok(())
}

/// How many layers to offload for `gpu_layers = -1`: all when the file fits in the device's free
/// memory with room to spare, else as many as fit.
fn layers_that_fit(dev: &llama::Device, file_bytes: u64, block_count: Option<u32>) -> i32 {
    let Some(n) = block_count.filter(|&n| n > 0) else {
        return -1;
    };
    let reserve = (dev.free_bytes as u64 / 10).max(512 << 20);
    let budget = (dev.free_bytes as u64).saturating_sub(reserve);
    let per_layer = (file_bytes / (n as u64 + 1)).max(1);
    let fit = budget / per_layer;
    if fit > n as u64 {
        -1
    } else {
        fit as i32
    }
}

/// Loads with `first` layers offloaded (negative: all `n_layers`), and after each failure with
/// half as many, down to one. Returns the model with the layers it holds, or the last failure's
/// words (None when the load was aborted by the progress callback). Every failure is logged.
fn load_with_retries<T>(
    first: i32,
    n_layers: i32,
    device: &str,
    mut load: impl FnMut(i32) -> std::result::Result<T, llama::LoadError>,
) -> std::result::Result<(T, i32), Option<String>> {
    let mut layers = first;
    loop {
        match load(layers) {
            Ok(m) => return Ok((m, layers)),
            Err(llama::LoadError::Aborted) => return Err(None),
            Err(llama::LoadError::Failed(why)) => {
                let tried = if layers < 0 { n_layers } else { layers };
                let reason = format!(
                    "loading {tried} layers on {device} failed: {}",
                    if why.is_empty() {
                        "unknown error"
                    } else {
                        why.trim()
                    }
                );
                let next = tried / 2;
                if next == 0 {
                    log::log_warn!("{reason}; falling back to the CPU");
                    return Err(Some(reason));
                }
                log::log_warn!("{reason}; retrying with {next} layers");
                layers = next;
            }
        }
    }
}

impl Engine {
    /// Loads `path` and starts the engine thread. `progress` gets load progress 0..1 and may
    /// return false to abort the load (`Status::Cancelled`).
    pub fn new(
        path: &str,
        config: &EngineConfig,
        mut progress: Option<&mut dyn FnMut(f32) -> bool>,
    ) -> Result<Engine> {
        check_config(config)?;
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::new(Status::Io, format!("cannot open model file '{path}': {e}")))?;
        if !meta.is_file() {
            return Err(Error::new(
                Status::Io,
                format!("model path '{path}' is not a regular file"),
            ));
        }
        std::fs::File::open(path)
            .map_err(|e| Error::new(Status::Io, format!("cannot read model file '{path}': {e}")))?;
        let file_bytes = meta.len();
        let cpath =
            CString::new(path).map_err(|_| Error::invalid("model_path contains a NUL byte"))?;
        let summary = llama::inspect_gguf(std::path::Path::new(path), file_bytes).map_err(|e| {
            Error::new(
                e.status,
                format!("cannot load model '{path}': {}", e.message),
            )
        })?;

        let mut info = EngineInfo {
            file_bytes,
            ..Default::default()
        };
        let devices = llama::devices();
        if devices.is_empty() {
            return Err(Error::new(
                Status::Backend,
                "no compute backend is loaded (a portable build needs its libggml-cpu-*.so files \
                 beside libminerva or in $MINERVA_BACKEND_DIR)",
            ));
        }
        let gpu = devices
            .into_iter()
            .filter(|d| d.is_gpu)
            .max_by_key(|d| d.free_bytes);
        let mut progress_wrapped = progress
            .as_mut()
            .map(|f| move |p: f32| callback_scope(|| f(p)));
        let mut load = |device: Option<&llama::Device>, layers: i32| {
            Model::load(
                &cpath,
                ModelLoad {
                    device,
                    gpu_layers: layers,
                    use_mmap: config.use_mmap,
                    progress: progress_wrapped
                        .as_mut()
                        .map(|f| f as &mut dyn FnMut(f32) -> bool),
                },
            )
        };
        let aborted = || {
            Error::new(
                Status::Cancelled,
                "model load cancelled by the progress callback",
            )
        };
        let mut model = None;
        if config.gpu_layers != 0 {
            match &gpu {
                None => {
                    info.fallback_reason = if cfg!(any(
                        feature = "cuda",
                        feature = "vulkan",
                        feature = "metal"
                    )) {
                        "no usable GPU device was found".into()
                    } else {
                        "minerva was built without a GPU backend (cargo features cuda, vulkan, metal)"
                            .into()
                    };
                }
                Some(dev) => {
                    let layers = if config.gpu_layers < 0 {
                        layers_that_fit(dev, file_bytes, summary.block_count)
                    } else {
                        config.gpu_layers
                    };
                    if layers == 0 {
                        info.fallback_reason = format!(
                            "{} has {} MiB free, too little for one layer",
                            dev.description,
                            dev.free_bytes >> 20
                        );
                    } else {
                        // Out of device memory: retry with half the layers, down to one, then
                        // the CPU.
                        let n_layers = summary.block_count.unwrap_or(1).max(1) as i32;
                        match load_with_retries(layers, n_layers, &dev.description, |l| {
                            load(Some(dev), l)
                        }) {
                            Ok((m, used)) => {
                                let n = m.n_layer();
                                info.gpu_layers = if used < 0 { n } else { used.min(n) };
                                info.device_kind = Some(dev.kind);
                                info.device_name = dev.description.clone();
                                model = Some(m);
                            }
                            Err(None) => return Err(aborted()),
                            Err(Some(reason)) => info.fallback_reason = reason,
                        }
                    }
                }
            }
        }
        let model = match model {
            Some(m) => m,
            None => {
                let m = load(None, 0).map_err(|e| match e {
                    llama::LoadError::Aborted => aborted(),
                    llama::LoadError::Failed(why) => Error::new(
                        Status::Model,
                        format!(
                            "cannot load model '{path}': {}",
                            if why.is_empty() {
                                "llama.cpp refused the file".to_string()
                            } else {
                                why.trim().to_string()
                            }
                        ),
                    ),
                })?;
                info.device_kind = Some(DeviceKind::Cpu);
                info.device_name = llama::devices()
                    .into_iter()
                    .find(|d| d.kind == DeviceKind::Cpu)
                    .map(|d| d.description)
                    .unwrap_or_else(|| "CPU".into());
                m
            }
        };
        let model = Arc::new(model);
        let n_ctx = config.context_tokens * config.max_streams;
        if let Some(per_token) = summary.kv_bytes_per_token() {
            let need = per_token.saturating_mul(n_ctx as u64);
            let on_gpu = info.device_kind != Some(DeviceKind::Cpu);
            let available = if on_gpu {
                gpu.as_ref().map(|d| d.free_bytes as u64)
            } else {
                available_memory()
            };
            if let Some(avail) = available.filter(|&a| need > a / 10 * 9) {
                return Err(Error::new(
                    Status::OutOfMemory,
                    format!(
                        "the KV cache for context_tokens {} x max_streams {} needs {} MiB; \
                         {} MiB of {} memory is available",
                        config.context_tokens,
                        config.max_streams,
                        need >> 20,
                        avail >> 20,
                        if on_gpu { "device" } else { "host" }
                    ),
                ));
            }
        }
        let threads = decode_threads(config.threads);
        // Every generating stream needs a row in each batch.
        let batch_tokens = config.batch_tokens.max(config.max_streams);
        let ctx = llama::Context::new(
            model.clone(),
            &ContextParams {
                n_ctx,
                n_batch: batch_tokens,
                n_seq_max: config.max_streams,
                threads,
            },
        )?;
        info.total_layers = model.n_layer();
        info.context_tokens = config.context_tokens;
        info.max_streams = config.max_streams;
        info.threads = threads;
        info.model_description = model.description();
        info.parameter_count = model.n_params();
        info.vocab_size = model.n_vocab() as u32;
        info.train_context_tokens = model.n_ctx_train();
        info.has_chat_template = model.has_chat_template();
        if config.context_tokens > info.train_context_tokens && info.train_context_tokens > 0 {
            log::log_warn!(
                "context_tokens {} exceeds the model's training context {}",
                config.context_tokens,
                info.train_context_tokens
            );
        }

        static NEXT_ID: AtomicU64 = AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let mailbox = Arc::new(Mailbox::default());
        let scheduler = Scheduler::new(
            ctx,
            model.clone(),
            mailbox.clone(),
            config.max_streams as usize,
            llama::Batch::new(batch_tokens as usize)?,
            config.context_tokens as usize,
        );
        let thread = std::thread::Builder::new()
            .name("minerva-engine".into())
            .spawn(move || {
                ENGINE_THREAD.with(|e| e.set(id));
                scheduler.run();
            })
            .map_err(|e| {
                Error::new(
                    Status::OutOfMemory,
                    format!("cannot start the engine thread: {e}"),
                )
            })?;
        log::log_info!(
            "engine {id}: {} on {} ({} threads, {} streams x {} tokens)",
            info.model_description,
            info.device_name,
            threads,
            config.max_streams,
            config.context_tokens
        );
        Ok(Engine {
            id,
            mailbox,
            thread: Some(thread),
            model,
            info,
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// Starts a stream. With `on_token` None the stream is in pull mode ([`Stream::read`]).
    /// `on_finish` is called exactly once, last, on the engine thread, if this returns Ok.
    pub fn start(
        &self,
        prompt: &str,
        params: GenerateParams,
        on_token: Option<TokenFn>,
        on_finish: Option<FinishFn>,
    ) -> Result<Stream> {
        params.check()?;
        let created = Instant::now();
        // Tell the engine thread that a stream is on its way (see Scheduler::intake).
        struct Submitting<'a>(&'a AtomicUsize);
        impl Drop for Submitting<'_> {
            fn drop(&mut self) {
                self.0.fetch_sub(1, Ordering::Release);
            }
        }
        self.mailbox.submitting.fetch_add(1, Ordering::AcqRel);
        let submitting = Submitting(&self.mailbox.submitting);
        let context = self.info.context_tokens as usize;
        // Refuse at once, in one pass over the bytes, what certainly cannot fit: llama.cpp's
        // tokenizer would spend seconds on megabytes of special tokens before saying so.
        let at_least = self.model.min_tokens(prompt);
        if at_least > context {
            return Err(Error::new(
                Status::ContextFull,
                format!(
                    "the prompt is {} bytes, at least {at_least} tokens; a stream holds at most \
                     {context} (context_tokens)",
                    prompt.len()
                ),
            ));
        }
        let tokens = self.model.tokenize(prompt)?;
        if tokens.is_empty() {
            return Err(Error::invalid("the prompt is empty (it gives no tokens)"));
        }
        if tokens.len() > context {
            return Err(Error::new(
                Status::ContextFull,
                format!(
                    "the prompt is {} tokens; a stream holds at most {context} (context_tokens)",
                    tokens.len(),
                ),
            ));
        }
        let sampler = self.sampler_for(&params.sampling, &tokens)?;
        let shared = stream::StreamShared::new(on_token.is_none(), created);
        let req = Request {
            shared: shared.clone(),
            tokens,
            params,
            sampler,
            on_token,
            on_finish,
        };
        {
            let mut inc = self.mailbox.incoming.lock();
            if inc.shutdown {
                let mut req = req;
                req.disarm();
                return Err(Error::new(Status::Cancelled, "the engine is shutting down"));
            }
            inc.queue.push_back(req);
            drop(submitting);
        }
        self.mailbox.wake.notify_one();
        Ok(Stream { shared })
    }
}

impl Engine {
    /// The sampler chain of a new stream (None for plain greedy: an argmax is enough), with the
    /// prompt's last tokens fed to the repeat penalty.
    fn sampler_for(&self, p: &SamplingParams, prompt: &[llama::Token]) -> Result<Option<Sampler>> {
        if p.is_plain_greedy() {
            return Ok(None);
        }
        let mut s = Sampler::new(p, self.model.n_vocab(), self.info.context_tokens)?;
        if p.repeat_penalty != 1.0 {
            let n = p.repeat_last_n as usize;
            for &t in &prompt[prompt.len().saturating_sub(n)..] {
                s.accept(t)?;
            }
        }
        Ok(Some(s))
    }
}

impl Drop for Engine {
    /// Cancels every stream, waits until no callback of this engine can run, frees the model.
    /// Must not run on the engine's own thread (the C layer refuses that case).
    fn drop(&mut self) {
        self.mailbox.incoming.lock().shutdown = true;
        self.mailbox.wake.notify_one();
        if let Some(t) = self.thread.take() {
            if current_engine_thread() == Some(self.id) {
                // Cannot join ourselves; the thread ends on its own and frees the context.
                log::log_warn!("engine {} dropped on its own thread", self.id);
                return;
            }
            let _ = t.join();
        }
    }
}

/// Routes llama.cpp's log lines through [`log`] (done by any engine creation too).
pub fn init_logging() {
    llama::init_backend();
}

#[cfg(test)]
mod tests {
    use super::{llama::LoadError, load_with_retries};

    #[test]
    fn gpu_load_retries_with_half_the_layers_down_to_one() {
        // A device where only 4 layers fit: all (18) fail, then 9, then 4 loads.
        let mut tried = Vec::new();
        let r = load_with_retries(-1, 18, "GPU", |l| {
            tried.push(l);
            if !(0..=4).contains(&l) {
                Err(LoadError::Failed("out of memory".into()))
            } else {
                Ok(l)
            }
        });
        assert_eq!(tried, vec![-1, 9, 4]);
        assert!(matches!(r, Ok((4, 4))));
    }

    #[test]
    fn gpu_load_falls_back_after_one_layer() {
        let mut tried = Vec::new();
        let r: Result<(u8, i32), _> = load_with_retries(12, 18, "GPU", |l| {
            tried.push(l);
            Err(LoadError::Failed("out of memory".into()))
        });
        assert_eq!(tried, vec![12, 6, 3, 1]);
        let reason = r.err().flatten().unwrap();
        assert!(
            reason.contains("loading 1 layers on GPU failed: out of memory"),
            "{reason}"
        );
    }

    #[test]
    fn an_aborted_gpu_load_is_not_retried() {
        let mut n = 0;
        let r: Result<(u8, i32), _> = load_with_retries(-1, 18, "GPU", |_| {
            n += 1;
            Err(LoadError::Aborted)
        });
        assert_eq!(n, 1);
        assert!(matches!(r, Err(None)));
    }
}
