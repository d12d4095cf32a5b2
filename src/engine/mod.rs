//! Safe Rust over llama.cpp: models, devices, the engine thread and its streams.
//! Nothing here knows of C; `crate::ffi` is the C surface over it.
//!
//! [`Engine`] (this file) loads a model and owns its engine thread; the thread's loop is
//! `scheduler/`; every call into llama.cpp is under `llama/`.

pub mod cache;
mod callback;
pub mod chat;
pub mod constraint;
mod device;
pub mod embed;
pub mod error;
#[doc(hidden)]
pub mod faults;
pub mod gguf;
pub(crate) mod host;
pub(crate) mod llama;
pub mod log;
pub mod params;
pub mod rpc;
mod scheduler;
mod stack;
pub mod stream;
pub mod text;

pub use callback::{current_engine_thread, in_callback};
pub use error::{Error, Result, Status};
pub use llama::{DeviceKind, SamplingParams};
pub use params::*;
pub use stream::{Control, FinishFn, FinishReason, ReadResult, Stats, Stream, TokenFn};

use constraint::Vocabulary;
use llama::{ContextParams, Model, Sampler};
use scheduler::{Mailbox, Request, Scheduler};
use std::ffi::CString;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Instant;

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
    /// Length of the vectors `embed` gives.
    pub embedding_dims: u32,
    /// The CPU backend in use, e.g. "x86-64 AVX-512 VBMI VNNI (icelake)".
    pub cpu_variant: String,
    /// Each device that holds layers, with how many.
    pub devices: String,
    /// Tokens are picked inside llama.cpp's graph, on the device that computes the logits
    /// (`device::samples_on_backend`).
    pub backend_sampling: bool,
    /// Bytes of KV cache one token takes (0: the model's header does not say).
    pub kv_bytes_per_token: u64,
    /// LoRA adapters loaded with the model.
    pub lora_count: usize,
}

/// One loaded model, its context and its engine thread.
pub struct Engine {
    id: u64,
    mailbox: Arc<Mailbox>,
    thread: Option<JoinHandle<()>>,
    model: Arc<Model>,
    info: EngineInfo,
    /// The ChatML fallback was announced (once per engine).
    chatml_warned: std::sync::atomic::AtomicBool,
    /// The chat formats llama.cpp found in templates, per inputs (see chat/format.rs).
    chat_formats: chat::format::Formats,
    /// The token table of constrained decoding, built at the first stream that needs it.
    vocabulary: OnceLock<Result<Arc<Vocabulary>>>,
    /// Each LoRA adapter's scale for streams that choose none, and the adapters' files (name
    /// and size, for saved caches).
    lora_defaults: Vec<f32>,
    lora_files: Vec<String>,
}

impl Engine {
    /// Loads `path` and starts the engine thread. `progress` gets load progress 0..1 and may
    /// return false to abort the load (`Status::Cancelled`).
    pub fn new(
        path: &str,
        config: &EngineConfig,
        progress: Option<&mut dyn FnMut(f32) -> bool>,
    ) -> Result<Engine> {
        config.check()?;
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

        let placed = device::load_model(path, &cpath, file_bytes, &summary, config, progress)?;
        let mut info = EngineInfo {
            file_bytes,
            device_kind: Some(placed.device_kind),
            device_name: placed.device_name,
            fallback_reason: placed.fallback_reason,
            gpu_layers: placed.gpu_layers,
            devices: placed.devices,
            ..Default::default()
        };
        let model = placed.model;
        let loras = load_loras(&model, &config.loras)?;
        info.lora_count = loras.len();
        let model = Arc::new(model);
        let n_ctx = config.context_tokens * config.max_streams;
        info.kv_bytes_per_token = summary.kv_bytes_per_token().unwrap_or(0);
        if let Some(per_token) = summary.kv_bytes_per_token() {
            let need = per_token.saturating_mul(n_ctx as u64);
            let on_gpu = info.device_kind != Some(DeviceKind::Cpu);
            let available = if on_gpu {
                placed.gpu_free_bytes
            } else {
                host::available_memory()
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
        let threads = host::decode_threads(config.threads);
        // Every generating stream needs a row in each batch.
        let batch_tokens = config.batch_tokens.max(config.max_streams);
        let ctx = llama::Context::new(
            model.clone(),
            &ContextParams {
                n_ctx,
                n_batch: batch_tokens,
                n_seq_max: config.max_streams,
                kept_seqs: cache::format::pinnable(config.max_streams),
                threads,
                embeddings: false,
                backend_sampling: device::samples_on_backend(placed.output_kind),
            },
        )?;
        let mut ctx = ctx;
        ctx.set_loras(llama::Loras::new(loras));
        info.backend_sampling = ctx.samples_on_backend();
        if info.backend_sampling {
            log::log_info!(
                "tokens are picked on the device that computes the logits (greedy, and sampling \
                 without grammar, bias or penalties); MINERVA_BACKEND_SAMPLING=0 turns it off"
            );
        }
        info.total_layers = model.n_layer();
        info.context_tokens = config.context_tokens;
        info.max_streams = config.max_streams;
        info.threads = threads;
        info.model_description = model.description();
        info.parameter_count = model.n_params();
        info.vocab_size = model.n_vocab() as u32;
        info.train_context_tokens = model.n_ctx_train();
        info.has_chat_template = model.has_chat_template();
        info.embedding_dims = model.n_embd_out() as u32;
        info.cpu_variant = llama::cpu_variant();
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
            embed::Embedder::new(
                model.clone(),
                threads,
                config.context_tokens as usize,
                summary.pooling_type,
                summary.causal,
            ),
        );
        let thread = std::thread::Builder::new()
            .name("minerva-engine".into())
            .stack_size(stack::DEEP_STACK)
            .spawn(move || {
                callback::enter_engine_thread(id);
                scheduler.run();
            })
            .map_err(|e| {
                Error::new(
                    Status::OutOfMemory,
                    format!("cannot start the engine thread: {e}"),
                )
            })?;
        log::log_info!(
            "engine {id}: {} on {}, CPU backend {} ({} threads, {} streams x {} tokens)",
            info.model_description,
            info.device_name,
            info.cpu_variant,
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
            chatml_warned: Default::default(),
            chat_formats: Default::default(),
            vocabulary: OnceLock::new(),
            lora_defaults: config.loras.iter().map(|(_, scale)| *scale).collect(),
            lora_files: config
                .loras
                .iter()
                .map(|(path, _)| {
                    let name = std::path::Path::new(path)
                        .file_name()
                        .map_or(path.clone(), |n| n.to_string_lossy().into_owned());
                    let bytes = std::fs::metadata(path).map_or(0, |m| m.len());
                    format!("{name} ({bytes} bytes)")
                })
                .collect(),
        })
    }

    pub fn id(&self) -> u64 {
        self.id
    }

    pub fn info(&self) -> &EngineInfo {
        &self.info
    }

    /// The tokens of `text` (see the C header's `minerva_tokenize`). With both flags, exactly the
    /// tokens a stream on `text` starts from.
    pub fn tokenize(&self, text: &str, add_special: bool, parse_special: bool) -> Result<Vec<i32>> {
        self.model.tokenize(text, add_special, parse_special)
    }

    /// The text of `tokens`; an id outside the vocabulary is refused, naming its index.
    pub fn detokenize(&self, tokens: &[i32], render_special: bool) -> Result<Vec<u8>> {
        let n = self.model.n_vocab();
        if let Some(i) = tokens.iter().position(|&t| t < 0 || t as usize >= n) {
            return Err(Error::invalid(format!(
                "tokens[{i}] is {}, outside the vocabulary (0..{n})",
                tokens[i]
            )));
        }
        self.model.detokenize(tokens, render_special)
    }

    /// Starts a stream. With `on_token` None the stream is in pull mode ([`Stream::read`]).
    /// `on_finish` is called exactly once, last, if this returns Ok: on the engine thread, or on
    /// the thread that frees the stream while it is still queued ([`Stream::cancel_queued`]).
    pub fn start(
        &self,
        prompt: &str,
        params: GenerateParams,
        on_token: Option<TokenFn>,
        on_finish: Option<FinishFn>,
    ) -> Result<Stream> {
        self.submit(prompt, params, on_token, on_finish, None)
    }

    /// Hands a stream, or a prefill (`prefill`: Some(pin), see [`Engine::cache_prefill`]), to
    /// the engine thread.
    fn submit(
        &self,
        prompt: &str,
        params: GenerateParams,
        on_token: Option<TokenFn>,
        on_finish: Option<FinishFn>,
        prefill: Option<bool>,
    ) -> Result<Stream> {
        params.check()?;
        let mut params = params;
        let n = self.lora_defaults.len();
        params.lora_scales = match params.lora_scales.take() {
            _ if n == 0 => None,
            None => Some(self.lora_defaults.clone()),
            Some(s) if s.len() == n => Some(s),
            Some(s) => {
                return Err(Error::invalid(format!(
                    "lora_scales has {} scales; the engine has {n} adapters",
                    s.len()
                )))
            }
        };
        let created = Instant::now();
        let n_vocab = self.model.n_vocab();
        let sampling = &params.sampling;
        if let Some(i) = sampling
            .logit_bias
            .iter()
            .position(|&(t, _)| t < 0 || t as usize >= n_vocab)
        {
            return Err(Error::invalid(format!(
                "logit_bias[{i}].token is {}, outside the vocabulary (0..{n_vocab})",
                sampling.logit_bias[i].0
            )));
        }
        if sampling.logit_bias.len() >= n_vocab {
            let mut banned = vec![false; n_vocab];
            for &(t, b) in &sampling.logit_bias {
                if b == f32::NEG_INFINITY {
                    banned[t as usize] = true;
                }
            }
            if banned.iter().all(|&b| b) {
                return Err(Error::invalid(format!(
                    "logit_bias bans every token of the vocabulary ({n_vocab}): nothing could be \
                     generated"
                )));
            }
        }
        let mut params = params;
        let constraint = self.constraint_for(&params)?;
        if constraint.is_none() {
            // A GBNF grammar, if any: llama.cpp's grammar sampler, in the chain.
            params.sampling.grammar = params.grammar.clone();
        }
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
        if prompt.is_empty() && !self.model.adds_bos() {
            return Err(Error::invalid("the prompt is empty (it gives no tokens)"));
        }
        // The prompt is tokenized by the engine thread (see Scheduler::admit); the penalties get
        // its last tokens there.
        let sampler = self.sampler_for(&params.sampling)?;
        let callbacks = on_token.is_some() || on_finish.is_some();
        let shared = stream::StreamShared::new(
            on_token.is_none(),
            callbacks,
            created,
            self.mailbox.callback_lock.clone(),
        );
        let req = Request {
            shared: shared.clone(),
            prompt: prompt.to_owned(),
            tokens: Vec::new(),
            params,
            sampler,
            constraint,
            on_token,
            on_finish,
            prefill,
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
        Ok(Stream {
            shared,
            mailbox: Some(self.mailbox.clone()),
        })
    }
}

impl Engine {
    /// The sampler chain of a new stream (None for plain greedy: an argmax is enough).
    fn sampler_for(&self, p: &SamplingParams) -> Result<Option<Sampler>> {
        if p.is_plain_greedy() {
            return Ok(None);
        }
        // llama.cpp's grammar code recurses along chains of rules: a thread of minerva's own.
        let build = || Sampler::new(p, &self.model, self.info.context_tokens);
        let sampler = if p.grammar.is_some() {
            stack::on_deep_stack(build)
        } else {
            build()
        };
        sampler.map(Some).map_err(|e| {
            if e.status == Status::InvalidArgument && p.grammar.is_some() {
                Error::invalid(format!("grammar: {}", e.message))
            } else {
                e
            }
        })
    }
}

impl Drop for Engine {
    /// Cancels every stream, waits until no callback of this engine can run, frees the model.
    ///
    /// Inside a callback (of another engine: the C layer ignores a free from the engine's own
    /// callbacks) it does not wait: the engine's thread ends its streams, runs their finish
    /// callbacks and frees the model on its own. Waiting there could deadlock: two engines whose
    /// callbacks free each other would each wait for the other's thread.
    fn drop(&mut self) {
        self.mailbox.incoming.lock().shutdown = true;
        self.mailbox.wake.notify_one();
        if let Some(t) = self.thread.take() {
            if current_engine_thread() == Some(self.id) || in_callback() {
                // The thread ends on its own and frees the context and the model.
                return;
            }
            let _ = t.join();
        }
    }
}

/// Loads the engine's LoRA adapters, each checked by minerva's GGUF reader first and then by
/// llama.cpp against the model; the error names the file.
fn load_loras(model: &Model, loras: &[(String, f32)]) -> Result<Vec<llama::Lora>> {
    let mut out = Vec::with_capacity(loras.len());
    for (i, (path, _)) in loras.iter().enumerate() {
        let meta = std::fs::metadata(path).map_err(|e| {
            Error::new(
                Status::Io,
                format!("cannot open LoRA adapter loras[{i}] '{path}': {e}"),
            )
        })?;
        llama::inspect_gguf(std::path::Path::new(path), meta.len()).map_err(|e| {
            Error::new(
                e.status,
                format!("LoRA adapter loras[{i}] '{path}': {}", e.message),
            )
        })?;
        out.push(model.load_lora(path)?);
    }
    Ok(out)
}

/// Routes llama.cpp's log lines through [`log`] (done by any engine creation too).
pub fn init_logging() {
    llama::init_backend();
}
