//! Game state: the prompt cache prefilled, pinned, saved and loaded (see the C header's
//! `minerva_cache_*`): the engine's side. The bytes of a saved cache are [`format`]'s.

pub mod format;

use super::error::{Error, Result, Status};
use super::scheduler::CacheJob;
use super::Engine;
use format::{decode, encode, pinnable, Fit, MAX_SEQS};
use std::sync::atomic::Ordering;

impl Engine {
    /// What this engine's saved caches record, and what a cache must match to load here.
    pub fn cache_fit(&self) -> Fit {
        let i = &self.info;
        Fit {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            model: format!(
                "{}, {} parameters, {} layers, vocabulary {}, {} bytes",
                i.model_description, i.parameter_count, i.total_layers, i.vocab_size, i.file_bytes
            ),
            context_tokens: i.context_tokens,
            kv: if self.lora_files.is_empty() {
                "f16 keys and values, unified".to_owned()
            } else {
                format!(
                    "f16 keys and values, unified; LoRA adapters {}",
                    self.lora_files.join(", ")
                )
            },
            adapters: self.lora_files.len(),
        }
    }

    /// Tokens the engine's pinned prefixes hold now, and their bytes of KV cache (0 when the
    /// model's header does not say enough to count them).
    pub fn pinned(&self) -> (usize, u64) {
        let tokens = self.mailbox.pinned_tokens.load(Ordering::Relaxed);
        (
            tokens,
            self.info.kv_bytes_per_token.saturating_mul(tokens as u64),
        )
    }

    fn refuse_in_callback(what: &str) -> Result<()> {
        if super::in_callback() || super::current_engine_thread().is_some() {
            return Err(Error::invalid(format!(
                "{what} waits for the engine thread and cannot be called from inside a callback"
            )));
        }
        Ok(())
    }

    /// Computes `prompt`'s KV into the prompt cache now (see `minerva_cache_prefill`). Returns
    /// when it is there; runs in the engine's batches beside the other streams.
    pub fn cache_prefill(&self, prompt: &str, pin: bool) -> Result<()> {
        Self::refuse_in_callback("cache_prefill")?;
        if prompt.is_empty() {
            return Err(Error::invalid("the prompt to prefill is empty"));
        }
        if !self.model.can_share_prefix() {
            return Err(Error::invalid(
                "this model's memory (recurrent or hybrid) cannot share a cached prefix",
            ));
        }
        if pin && pinnable(self.info.max_streams) == 0 {
            return Err(Error::invalid(format!(
                "max_streams {} leaves no sequence for pinned prefixes (llama.cpp has {MAX_SEQS})",
                self.info.max_streams
            )));
        }
        let params = super::GenerateParams {
            cache_prompt: true,
            ..Default::default()
        };
        let s = self.submit(prompt, params, None, None, Some(pin))?;
        match s.wait(None) {
            Status::Ok => Ok(()),
            status => Err(Error::new(status, s.error().to_owned())),
        }
    }

    fn cache_job<T>(
        &self,
        job: impl FnOnce(std::sync::mpsc::SyncSender<Result<T>>) -> CacheJob,
    ) -> Result<T> {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        {
            let mut inc = self.mailbox.incoming.lock();
            if inc.shutdown {
                return Err(Error::new(Status::Cancelled, "the engine is shutting down"));
            }
            inc.cache_jobs.push_back(job(tx));
        }
        self.mailbox.wake.notify_one();
        rx.recv().unwrap_or_else(|_| {
            Err(Error::new(
                Status::Cancelled,
                "the engine shut down before the cache job ran",
            ))
        })
    }

    /// Every cached prefix no stream is computing, as bytes (see `minerva_cache_save`).
    pub fn cache_save(&self) -> Result<Vec<u8>> {
        Self::refuse_in_callback("cache_save")?;
        let entries = self.cache_job(CacheJob::Save)?;
        Ok(encode(&self.cache_fit(), &entries))
    }

    /// Loads what [`Engine::cache_save`] wrote. Returns how many prefixes were loaded.
    pub fn cache_load(&self, bytes: &[u8]) -> Result<usize> {
        Self::refuse_in_callback("cache_load")?;
        let entries = decode(bytes, &self.cache_fit())?;
        if entries.is_empty() {
            return Ok(0);
        }
        self.cache_job(|tx| CacheJob::Load(entries, tx))
    }

    pub fn cache_save_file(&self, path: &str) -> Result<()> {
        use std::io::Write;
        let bytes = self.cache_save()?;
        // Written whole or not at all: a temporary file of this call beside it, flushed to the
        // disk, renamed over it.
        static CALLS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = CALLS.fetch_add(1, Ordering::Relaxed);
        let tmp = format!("{path}.minerva-tmp-{}-{n}", std::process::id());
        let io = |e: std::io::Error| Error::new(Status::Io, format!("cannot write '{path}': {e}"));
        let written = std::fs::File::create(&tmp).and_then(|mut f| {
            f.write_all(&bytes)?;
            f.sync_all()
        });
        if let Err(e) = written.and_then(|_| std::fs::rename(&tmp, path)) {
            let _ = std::fs::remove_file(&tmp);
            return Err(io(e));
        }
        Ok(())
    }

    pub fn cache_load_file(&self, path: &str) -> Result<usize> {
        let bytes = std::fs::read(path)
            .map_err(|e| Error::new(Status::Io, format!("cannot read '{path}': {e}")))?;
        self.cache_load(&bytes)
    }
}
