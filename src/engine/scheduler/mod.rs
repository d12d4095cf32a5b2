//! The engine thread: continuous batching over one llama.cpp context.
//!
//! Each step of the loop
//! 1. ends cancelled streams (`intake.rs`),
//! 2. gives queued streams the free sequence slots, oldest first, tokenizing their prompts
//!    (`intake.rs`; up to `max_streams` run at once),
//! 3. puts the next piece of work of every running stream into one batch: the last sampled token
//!    of each generating stream first, then chunks of pending prompts, oldest first, within the
//!    prompt budget that keeps a generating step short (`plan.rs`), up to `batch_tokens` in all,
//! 4. decodes once,
//! 5. samples for each stream whose prompt is done, with that stream's own sampler, and hands it
//!    its text (whole UTF-8 characters, stop strings held back); a grammar that must filter the
//!    whole vocabulary does so on the constraint thread, and that stream sits out of the batches
//!    until its token comes back (`constrain.rs`),
//! 6. ends the streams that are done, which frees their KV cells at once.
//!
//! Callbacks run here, on this thread, under the engine's callback lock only (so that they run
//! one at a time with a finish callback run by a caller freeing a queued stream); no other lock
//! is held while a callback runs.

mod cache;
mod constrain;
mod intake;
mod pick;
mod plan;
mod profile;
mod request;
mod slot;

pub(crate) use request::{Mailbox, Request};

use super::embed::Embedder;
use super::error::{Error, Status};
use super::llama::{Batch, Context, Model, Token};
use super::stream::FinishReason;
use constrain::{Constrainer, Job};
use pick::Pick;
use plan::{generating_before_prompts, plan_batch, Pace, Work};
use profile::Profile;
pub(crate) use request::CacheJob;
use slot::Active;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After the engine wakes from idle, how long at most it waits for streams that callers are
/// starting at that moment.
const COALESCE_MAX: Duration = Duration::from_millis(2);

pub(crate) struct Scheduler {
    // Field order matters: the constraint thread ends before the model its samplers use, and the
    // context is dropped before the model it uses.
    constrainer: Constrainer,
    ctx: Context,
    model: Arc<Model>,
    mailbox: Arc<Mailbox>,
    /// Each sequence's stream: the first `streams` are the stream slots; the others hold pinned
    /// prefixes (`cache.rs`), and a stream there is a pinned prefill being computed.
    slots: Vec<Option<Active>>,
    streams: usize,
    /// The tokens held in each sequence's KV cells, position by position. A slot keeps its cells
    /// after its stream ends, so that a later stream whose prompt begins the same way reuses them
    /// (the prompt cache).
    kv: Vec<Vec<Token>>,
    /// The LoRA scales each sequence's cells were computed with (empty without adapters): a
    /// prefix is reused only by streams of the same scales.
    kv_scales: Vec<Vec<f32>>,
    /// When each slot was last given a stream (for choosing which cache to overwrite).
    last_used: Vec<u64>,
    clock: u64,
    /// Steps begun (admission runs once a step).
    steps: u64,
    batch: Batch,
    batch_tokens: usize,
    context_tokens: usize,
    /// Step times, for the prompt budget of steps that also generate.
    pace: Pace,
    /// Embedding calls, one decode of them after each generation step.
    embedder: Embedder,
    /// Where the steps' time went.
    profile: Profile,
    /// Threads that pick tokens side by side after a decode (the decoding threads').
    sample_threads: usize,
}

impl Scheduler {
    pub fn new(
        ctx: Context,
        model: Arc<Model>,
        mailbox: Arc<Mailbox>,
        max_streams: usize,
        batch: Batch,
        context_tokens: usize,
        embedder: Embedder,
    ) -> Scheduler {
        let batch_tokens = batch.capacity();
        let pinnable = crate::engine::cache::format::pinnable(max_streams as u32) as usize;
        let sample_threads = ctx.threads() as usize;
        Scheduler {
            constrainer: Constrainer::new(mailbox.clone()),
            ctx,
            model,
            mailbox,
            slots: (0..max_streams + pinnable).map(|_| None).collect(),
            streams: max_streams,
            kv: vec![Vec::new(); max_streams + pinnable],
            kv_scales: vec![Vec::new(); max_streams + pinnable],
            last_used: vec![0; max_streams + pinnable],
            clock: 0,
            steps: 0,
            batch,
            batch_tokens,
            context_tokens,
            pace: Pace::default(),
            embedder,
            profile: Profile::default(),
            sample_threads: sample_threads.max(1),
        }
    }

    pub fn run(mut self) {
        while self.intake() {
            let jobs =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.run_cache_jobs()));
            if jobs.is_err() {
                self.fail_cache_jobs("internal error: a panic while saving or loading the cache");
            }
            // A bug must not leave streams waiting forever: a panic in a step ends the streams
            // that were running with MINERVA_ERR_INTERNAL, and the engine goes on serving.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step()));
            if step.is_err() {
                self.recover_from_panic();
            }
            // Embedding calls share the thread: one decode of them between generation steps.
            let embed =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.embedder.step()));
            if embed.is_err() {
                self.embedder
                    .fail_first("internal error: a panic while computing embeddings");
            }
        }
        self.shutdown();
    }

    fn step(&mut self) {
        let mut phases = profile::Step::start();
        self.end_cancelled();
        self.take_sampled();
        self.admit();
        if !self.build_batch() {
            return;
        }
        phases.decoding();
        let started = Instant::now();
        let rc = match super::faults::take_decode_fault() {
            Some(rc) => rc,
            None => match self.decode_and_mask() {
                Ok(rc) => rc,
                Err(e) => {
                    // llama.cpp threw: the streams in the batch end with its message.
                    self.end_batch(e);
                    return;
                }
            },
        };
        phases.decoded();
        if rc != 0 {
            self.fail_batch(rc);
            return;
        }
        let (generated, prompt) = self.batch_mix();
        self.pace.record(generated, prompt, started.elapsed());
        let (sample, deliver, tokens) = self.after_decode();
        self.profile.record(phases, sample, deliver, tokens);
    }

    /// Generating streams and prompt tokens in the current batch.
    fn batch_mix(&self) -> (usize, usize) {
        let mut mix = (0, 0);
        for a in self.slots.iter().flatten().filter(|a| a.in_batch > 0) {
            if a.next.is_some() {
                mix.0 += 1;
            } else {
                mix.1 += a.in_batch;
            }
        }
        mix
    }

    fn recover_from_panic(&mut self) {
        let err = Error::new(
            Status::Internal,
            "internal error: a panic on the engine thread ended this stream",
        );
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.end(
                        slot,
                        Status::Internal,
                        FinishReason::Error,
                        Some(err.clone()),
                    )
                }));
                // If `end` itself failed, dropping the request still ends it (Request::drop).
                self.slots[slot] = None;
                self.ctx.seq_rm(slot as i32, 0);
                self.kv[slot].clear();
            }
        }
    }

    fn has_active(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// Whether a stream has work for the next batch (not all of them waiting for the constraint
    /// thread).
    fn has_runnable(&self) -> bool {
        self.slots.iter().flatten().any(|a| !a.deferred)
    }

    /// Takes the tokens the constraint thread sampled back into their streams.
    fn take_sampled(&mut self) {
        let done = std::mem::take(&mut self.mailbox.incoming.lock().sampled);
        for d in done {
            let slot = d.slot;
            let Some(a) = self.slots[slot]
                .as_mut()
                .filter(|a| a.deferred && Arc::ptr_eq(&a.req.shared, &d.shared))
            else {
                continue; // the stream ended meanwhile
            };
            a.deferred = false;
            a.sampler = Some(d.sampler);
            let end = match d.token {
                Ok(Some(t)) => a.accept(t, &self.model, self.context_tokens),
                // Stopped: the stream was cancelled (end_cancelled ends it next step).
                Ok(None) => None,
                Err(e) => Some((e.status, FinishReason::Error, Some(e))),
            };
            if let Some((status, reason, err)) = end {
                self.end(slot, status, reason, err);
            }
        }
    }

    /// Fills the batch. Returns false when there is nothing to decode.
    fn build_batch(&mut self) -> bool {
        self.batch.clear();
        let set = self.lora_set_for_step();
        let work: Vec<Work> = self
            .slots
            .iter()
            .map(|slot| match slot {
                None => Work::Idle,
                Some(a) if a.deferred => Work::Idle,
                Some(a) if set.as_ref().is_some_and(|s| a.lora_scales() != &s[..]) => Work::Idle,
                Some(a) if a.next.is_some() => Work::Generate,
                Some(a) => Work::Prompt(a.req.tokens.len() - a.n_past),
            })
            .collect();
        // Oldest stream first: a burst of prompts gets its first tokens in turn.
        let mut order: Vec<usize> = (0..self.slots.len())
            .filter(|&i| work[i] != Work::Idle)
            .collect();
        order.sort_by_key(|&i| self.slots[i].as_ref().map(|a| a.req.shared.created));
        let generating = work.iter().filter(|w| **w == Work::Generate).count();
        let admitted: Vec<u64> = self
            .slots
            .iter()
            .map(|a| a.as_ref().map_or(0, |a| a.admitted))
            .collect();
        let earlier_generating = generating_before_prompts(&work, &admitted);
        let prompt_budget = if earlier_generating {
            self.pace.prompt_budget(generating, self.batch_tokens)
        } else {
            self.batch_tokens
        };
        let plan = plan_batch(&work, self.batch_tokens, prompt_budget, &order);
        for a in self.slots.iter_mut().flatten() {
            a.in_batch = 0;
            a.out_row = None;
        }
        for (slot, take) in plan {
            let a = self.slots[slot].as_mut().expect("planned slot is active");
            if let Some(t) = a.next {
                a.out_row = Some(self.batch.add(t, a.n_past as i32, a.seq, true));
            } else {
                let last = a.n_past + take == a.req.tokens.len() && a.req.prefill.is_none();
                for j in 0..take {
                    let pos = a.n_past + j;
                    let output = last && j + 1 == take;
                    let row = self.batch.add(a.req.tokens[pos], pos as i32, a.seq, output);
                    if output {
                        a.out_row = Some(row);
                    }
                }
                a.timing.prompt_started.get_or_insert_with(Instant::now);
            }
            a.in_batch = take;
            a.last_served = self.steps;
        }
        if let Some(set) = &set {
            self.ctx.apply_loras(set);
        }
        !self.batch.is_empty()
    }

    /// With LoRA adapters, a step decodes the streams of one set of scales (llama.cpp applies
    /// adapters to a whole context): the set of the runnable stream served longest ago (the
    /// oldest on a tie), so that the sets take turns. None without adapters.
    fn lora_set_for_step(&self) -> Option<Vec<f32>> {
        let runnable = || self.slots.iter().flatten().filter(|a| !a.deferred);
        if runnable().next()?.lora_scales().is_empty() {
            return None;
        }
        runnable()
            .min_by_key(|a| (a.last_served, a.req.shared.created))
            .map(|a| a.lora_scales().to_vec())
    }

    /// A failed decode. When the KV cache has no room (code 1; llama.cpp then leaves the cache as it
    /// was), the least recently used idle stream slot's cache goes first (pinned prefixes and
    /// loaded caches can fill the cells that finished streams left); with none left, the stream in
    /// the batch that holds the most tokens ends with
    /// `MINERVA_ERR_CONTEXT_FULL`, which frees its cells, and the others are decoded again in the
    /// next step. On any other failure the streams in the batch end with `MINERVA_ERR_BACKEND`
    /// (their cells may be half written) and the engine goes on serving the rest.
    fn fail_batch(&mut self, rc: i32) {
        if rc == 1 && self.evict_idle_cache() {
            // The cells of a finished stream's prompt (kept as cache) made room: decode again.
            for a in self.slots.iter_mut().flatten() {
                a.in_batch = 0;
                a.out_row = None;
            }
            return;
        }
        if rc == 1 {
            let victim = (0..self.slots.len())
                .filter(|&i| in_batch(&self.slots[i]))
                .max_by_key(|&i| self.slots[i].as_ref().map_or(0, |a| a.n_past + a.in_batch));
            if let Some(slot) = victim {
                let err = Error::new(
                    Status::ContextFull,
                    "the KV cache is full: this stream, the longest in the batch, ended to make room",
                );
                self.end(slot, Status::ContextFull, FinishReason::Error, Some(err));
            }
            for a in self.slots.iter_mut().flatten() {
                a.in_batch = 0;
                a.out_row = None;
            }
            return;
        }
        self.end_batch(Error::new(
            Status::Backend,
            format!("llama_decode failed (code {rc})"),
        ));
    }

    /// Ends every stream of the failed batch with `err`; their cells may be half written.
    fn end_batch(&mut self, err: Error) {
        for slot in 0..self.slots.len() {
            if in_batch(&self.slots[slot]) {
                self.end(slot, err.status, FinishReason::Error, Some(err.clone()));
            }
        }
    }

    /// Samples and hands out the tokens of the decode just done. Returns the time spent picking
    /// tokens, the time spent accepting them (text, callbacks), and how many were picked.
    fn after_decode(&mut self) -> (Duration, Duration, usize) {
        // The streams that sample, in slot order, and their output rows.
        let mut rows: Vec<(usize, i32)> = Vec::new();
        for slot in 0..self.slots.len() {
            // (Streams left out of this step, for another LoRA set's turn, have nothing here.)
            let Some(a) = self.slots[slot]
                .as_mut()
                .filter(|a| !a.deferred && a.in_batch > 0)
            else {
                continue;
            };
            match a.next {
                Some(t) if a.in_batch == 1 => self.kv[slot].push(t),
                _ => {
                    self.kv[slot].extend_from_slice(&a.req.tokens[a.n_past..a.n_past + a.in_batch])
                }
            }
            a.n_past += a.in_batch;
            a.in_batch = 0;
            if let Some(row) = a.out_row.take() {
                rows.push((slot, row));
            }
        }
        self.end_prefills();
        if rows.is_empty() {
            return (Duration::ZERO, Duration::ZERO, 0);
        }
        let t0 = Instant::now();
        let picks = self.pick(&rows);
        let sample = t0.elapsed();
        let (mut deliver, mut picked) = (Duration::ZERO, 0);
        for ((slot, row), pick) in rows.into_iter().zip(picks) {
            let t1 = Instant::now();
            let a = self.slots[slot].as_mut().expect("a stream that sampled");
            match pick {
                Pick::Token(token) => {
                    picked += 1;
                    if let Some((status, reason, err)) =
                        a.accept(token, &self.model, self.context_tokens)
                    {
                        self.end(slot, status, reason, err);
                    }
                }
                Pick::Deferred => {
                    // The grammar must filter every candidate: on the constraint thread, with a
                    // copy of the logits (the next decode overwrites them).
                    let job = Job {
                        slot,
                        shared: a.req.shared.clone(),
                        sampler: a.sampler.take().expect("sampler"),
                        logits: self.ctx.logits(row, slot as i32).to_vec(),
                    };
                    a.next = None;
                    a.deferred = true;
                    self.constrainer.submit(job);
                }
                Pick::Failed(e) => self.end(slot, e.status, FinishReason::Error, Some(e)),
            }
            deliver += t1.elapsed();
        }
        (sample, deliver, picked)
    }

    /// Ends the stream in `slot` (see [`Active::finish`]); after an error its KV cells go too.
    fn end(&mut self, slot: usize, status: Status, reason: FinishReason, err: Option<Error>) {
        let a = self.slots[slot].take().expect("active slot");
        if reason == FinishReason::Error {
            // After a failed decode the cells may not match `kv`: drop them.
            self.ctx.seq_rm(a.seq, 0);
            self.kv[slot].clear();
        }
        a.finish(status, reason, err);
    }

    fn shutdown(&mut self) {
        if let Some(line) = self.profile.summary() {
            super::log::log_info!("{line}");
        }
        self.end_all();
        self.fail_cache_jobs_with(Status::Cancelled, "the engine is shutting down");
        // The constraint thread stops within a slice of the vocabulary; its samplers go before
        // the model.
        self.constrainer.shut_down();
        self.mailbox.incoming.lock().sampled.clear();
        // Callers ending queued streams on their own threads: their requests go before the
        // context and the model.
        let mut inc = self.mailbox.incoming.lock();
        while inc.finishing > 0 {
            self.mailbox.wake.wait(&mut inc);
        }
    }

    fn end_all(&mut self) {
        self.embedder
            .jobs
            .extend(self.mailbox.incoming.lock().embeds.drain(..));
        self.embedder.cancel_all();
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.end(slot, Status::Cancelled, FinishReason::Cancelled, None);
            }
        }
        // Callbacks may have started streams while we ended the others: end those too.
        loop {
            let batch: VecDeque<Request> = std::mem::take(&mut self.mailbox.incoming.lock().queue);
            if batch.is_empty() {
                break;
            }
            for mut req in batch {
                req.finish(Status::Cancelled, FinishReason::Cancelled, None);
            }
        }
    }
}

/// Whether the slot's stream has tokens in the current batch.
fn in_batch(a: &Option<Active>) -> bool {
    a.as_ref().is_some_and(|a| a.in_batch > 0)
}
