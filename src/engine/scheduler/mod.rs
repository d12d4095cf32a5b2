//! The engine thread: continuous batching over one llama.cpp context.
//!
//! Each step of the loop
//! 1. takes newly started streams and ends cancelled ones,
//! 2. gives waiting streams the free sequence slots (up to `max_streams` run at once),
//! 3. puts the next piece of work of every running stream into one batch: the last sampled token
//!    of each generating stream first, then chunks of pending prompts, round robin, up to
//!    `batch_tokens` in all,
//! 4. decodes once,
//! 5. samples for each stream whose prompt is done, with that stream's own sampler, and hands it
//!    its text (whole UTF-8 characters, stop strings held back),
//! 6. ends the streams that are done, which frees their KV cells at once.
//!
//! Callbacks run here, on this thread. No lock is held while a callback runs.

use super::error::{Error, Status};
use super::llama::{argmax, Batch, Context, Model, Sampler, Token};
use super::stream::{Control, FinishFn, FinishReason, StreamShared, TokenFn};
use super::text::{StopMatcher, StopResult, Utf8Assembler};
use super::{callback_scope, GenerateParams};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// After the engine wakes from idle, how long at most it waits for streams that callers are
/// starting at that moment.
const COALESCE_MAX: Duration = Duration::from_millis(2);

/// A stream that was started and waits for the engine thread.
pub(crate) struct Request {
    pub shared: Arc<StreamShared>,
    pub tokens: Vec<Token>,
    pub params: GenerateParams,
    /// The stream's sampler chain, built by the caller (None: plain greedy, an argmax).
    pub sampler: Option<Sampler>,
    pub on_token: Option<TokenFn>,
    pub on_finish: Option<FinishFn>,
}

impl Request {
    /// Records the stream's end and calls its finish callback; waiters are released after it
    /// returns. The token callback is dropped first: it is never called again.
    fn finish(&mut self, status: Status, reason: FinishReason, err: Option<&Error>) {
        self.shared.set_result(status, reason, err);
        self.on_token = None;
        if let Some(f) = self.on_finish.take() {
            callback_scope(|| {
                let _ =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(status, reason)));
            });
        }
        self.shared.set_done();
    }
}

impl Request {
    /// A request that never reached the engine (the engine was shutting down): no callback may
    /// run for it, since its start failed.
    pub fn disarm(&mut self) {
        self.on_token = None;
        self.on_finish = None;
        self.shared.set_done();
    }
}

impl Drop for Request {
    /// A request dropped before it ended (only a bug can do that: a panic on the engine thread)
    /// still ends: its finish callback runs and its waiters are released.
    fn drop(&mut self) {
        if !self.shared.is_done() {
            let err = Error::new(Status::Internal, "internal error: the stream was lost");
            self.finish(Status::Internal, FinishReason::Error, Some(&err));
        }
    }
}

/// What callers hand to the engine thread.
#[derive(Default)]
pub(crate) struct Incoming {
    pub queue: VecDeque<Request>,
    pub shutdown: bool,
}

/// The engine's mailbox: new streams and the shutdown flag, with a condvar to wake the thread.
#[derive(Default)]
pub(crate) struct Mailbox {
    pub incoming: Mutex<Incoming>,
    pub wake: Condvar,
    /// Callers inside `Engine::start` right now (tokenizing a prompt).
    pub submitting: AtomicUsize,
}

/// A stream that holds a sequence slot.
struct Active {
    req: Request,
    seq: i32,
    /// Tokens of this stream in the KV cache (its next position).
    n_past: usize,
    /// Prompt tokens reused from the cache.
    cached: usize,
    /// Tokens put in the current batch.
    in_batch: usize,
    /// Output row in the current batch, if this stream samples after the decode.
    out_row: Option<i32>,
    /// The last sampled token, to be decoded next.
    next: Option<Token>,
    sampler: Option<Sampler>,
    utf8: Utf8Assembler,
    stop: StopMatcher,
    text: String,
    piece: Vec<u8>,
    generated: u32,
    prompt_started: Option<Instant>,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
}

pub(crate) struct Scheduler {
    // Field order matters: the context is dropped before the model it uses.
    ctx: Context,
    model: Arc<Model>,
    mailbox: Arc<Mailbox>,
    slots: Vec<Option<Active>>,
    /// The tokens held in each sequence's KV cells, position by position. A slot keeps its cells
    /// after its stream ends, so that a later stream whose prompt begins the same way reuses them
    /// (the prompt cache).
    kv: Vec<Vec<Token>>,
    /// When each slot was last given a stream (for choosing which cache to overwrite).
    last_used: Vec<u64>,
    clock: u64,
    waiting: VecDeque<Request>,
    batch: Batch,
    batch_tokens: usize,
    context_tokens: usize,
    /// Where the round robin over prompt chunks starts this step.
    rr: usize,
}

impl Scheduler {
    pub fn new(
        ctx: Context,
        model: Arc<Model>,
        mailbox: Arc<Mailbox>,
        max_streams: usize,
        batch: Batch,
        context_tokens: usize,
    ) -> Scheduler {
        let batch_tokens = batch.capacity();
        Scheduler {
            ctx,
            model,
            mailbox,
            slots: (0..max_streams).map(|_| None).collect(),
            kv: vec![Vec::new(); max_streams],
            last_used: vec![0; max_streams],
            clock: 0,
            waiting: VecDeque::new(),
            batch,
            batch_tokens,
            context_tokens,
            rr: 0,
        }
    }

    pub fn run(mut self) {
        while self.intake() {
            // A bug must not leave streams waiting forever: a panic in a step ends the streams
            // that were running with MINERVA_ERR_INTERNAL, and the engine goes on serving.
            let step = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.step()));
            if step.is_err() {
                self.recover_from_panic();
            }
        }
        self.shutdown();
    }

    fn step(&mut self) {
        self.end_cancelled();
        self.admit();
        if !self.build_batch() {
            return;
        }
        let rc = match super::faults::take_decode_fault() {
            Some(rc) => rc,
            None => match self.ctx.decode(&self.batch) {
                Ok(rc) => rc,
                Err(e) => {
                    // llama.cpp threw: the streams in the batch end with its message.
                    self.end_batch(e);
                    return;
                }
            },
        };
        if rc != 0 {
            self.fail_batch(rc);
            return;
        }
        self.after_decode();
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

    /// Moves new streams into the waiting queue; sleeps while there is nothing to do.
    /// Returns false when the engine shuts down.
    fn intake(&mut self) -> bool {
        let mut inc = self.mailbox.incoming.lock();
        let was_idle = self.waiting.is_empty() && !self.has_active();
        loop {
            self.waiting.extend(inc.queue.drain(..));
            if inc.shutdown {
                return false;
            }
            if !self.waiting.is_empty() || self.has_active() {
                break;
            }
            self.mailbox.wake.wait(&mut inc);
        }
        if was_idle {
            // Streams started together (a game starting its characters' lines in one frame)
            // arrive one tokenization apart, a few hundred microseconds. Waking on the first alone
            // would decode its prompt by itself and the others a whole step later: while a caller
            // is still inside Engine::start (tokenizing the next prompt of the burst), wait for
            // it, COALESCE_MAX at most. A lone stream waits for nothing.
            let deadline = Instant::now() + COALESCE_MAX;
            while self.waiting.len() < self.slots.len()
                && self.mailbox.submitting.load(Ordering::Acquire) > 0
            {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                self.mailbox.wake.wait_for(&mut inc, deadline - now);
                self.waiting.extend(inc.queue.drain(..));
                if inc.shutdown {
                    return false;
                }
            }
        }
        true
    }

    fn end_cancelled(&mut self) {
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].shared.is_cancelled() {
                let mut req = self.waiting.remove(i).expect("index in range");
                req.finish(Status::Cancelled, FinishReason::Cancelled, None);
            } else {
                i += 1;
            }
        }
        for slot in 0..self.slots.len() {
            if self.slots[slot]
                .as_ref()
                .is_some_and(|a| a.req.shared.is_cancelled())
            {
                self.end(slot, Status::Cancelled, FinishReason::Cancelled, None);
            }
        }
    }

    fn admit(&mut self) {
        while !self.waiting.is_empty() {
            let busy: Vec<bool> = self.slots.iter().map(Option::is_some).collect();
            let req = &self.waiting[0];
            let cache = req.params.cache_prompt && self.model.can_share_prefix();
            let Some(place) = place(&self.kv, &busy, &self.last_used, &req.tokens, cache) else {
                return; // every slot is busy
            };
            let req = self.waiting.pop_front().expect("not empty");
            let slot = place.slot;
            let seq = slot as i32;
            let mut reuse = place.reuse;
            match place.source {
                Some(src) if src == slot => {
                    // Reused in place: drop the cells past the shared prefix (a memory that cannot
                    // cut a sequence short is cleared instead, below).
                    let cut = self.ctx.seq_rm(seq, reuse as i32);
                    reuse = if cut { reuse } else { 0 };
                }
                Some(src) => {
                    self.ctx.seq_rm(seq, 0);
                    self.ctx.seq_share_prefix(src as i32, seq, reuse as i32);
                    self.kv[slot] = self.kv[src][..reuse].to_vec();
                }
                None => {}
            }
            if reuse > 0 {
                // Check what llama.cpp holds now: exactly positions 0..reuse, and, for a model
                // with sliding-window layers, the window before `reuse` (llama.cpp may have
                // dropped cells that fell out of the window of a longer sequence).
                let (pos_min, pos_max) = self.ctx.seq_pos_range(seq);
                let window = self.model.n_swa();
                let needed_min = if window > 0 {
                    reuse.saturating_sub(window)
                } else {
                    0
                };
                if pos_max != reuse as i32 - 1 || pos_min < 0 || pos_min as usize > needed_min {
                    reuse = 0;
                }
            }
            if reuse == 0 {
                self.ctx.seq_rm(seq, 0);
            }
            self.kv[slot].truncate(reuse);
            debug_assert_eq!(self.kv[slot][..], req.tokens[..reuse]);
            self.clock += 1;
            self.last_used[slot] = self.clock;

            let stops = req.params.stop.clone();
            let mut req = req;
            let sampler = req.sampler.take();
            req.shared.update_stats(|s| {
                s.prompt_tokens = req.tokens.len() as u32;
                s.cached_prompt_tokens = reuse as u32;
            });
            self.slots[slot] = Some(Active {
                req,
                seq,
                n_past: reuse,
                cached: reuse,
                in_batch: 0,
                out_row: None,
                next: None,
                sampler,
                utf8: Utf8Assembler::default(),
                stop: StopMatcher::new(stops),
                text: String::new(),
                piece: Vec::new(),
                generated: 0,
                prompt_started: None,
                first_token: None,
                last_token: None,
            });
        }
    }

    /// Fills the batch. Returns false when there is nothing to decode.
    fn build_batch(&mut self) -> bool {
        self.batch.clear();
        let work: Vec<Work> = self
            .slots
            .iter()
            .map(|slot| match slot {
                None => Work::Idle,
                Some(a) if a.next.is_some() => Work::Generate,
                Some(a) => Work::Prompt(a.req.tokens.len() - a.n_past),
            })
            .collect();
        let plan = plan_batch(&work, self.batch_tokens, self.rr);
        self.rr = (self.rr + 1) % self.slots.len().max(1);
        for a in self.slots.iter_mut().flatten() {
            a.in_batch = 0;
            a.out_row = None;
        }
        for (slot, take) in plan {
            let a = self.slots[slot].as_mut().expect("planned slot is active");
            if let Some(t) = a.next {
                a.out_row = Some(self.batch.add(t, a.n_past as i32, a.seq, true));
            } else {
                let last = a.n_past + take == a.req.tokens.len();
                for j in 0..take {
                    let pos = a.n_past + j;
                    let output = last && j + 1 == take;
                    let row = self.batch.add(a.req.tokens[pos], pos as i32, a.seq, output);
                    if output {
                        a.out_row = Some(row);
                    }
                }
                a.prompt_started.get_or_insert_with(Instant::now);
            }
            a.in_batch = take;
        }
        !self.batch.is_empty()
    }

    /// A failed decode. When the KV cache has no room (code 1; llama.cpp then leaves the cache as it
    /// was), the stream in the batch that holds the most tokens ends with
    /// `MINERVA_ERR_CONTEXT_FULL`, which frees its cells, and the others are decoded again in the
    /// next step. On any other failure the streams in the batch end with `MINERVA_ERR_BACKEND`
    /// (their cells may be half written) and the engine goes on serving the rest.
    fn fail_batch(&mut self, rc: i32) {
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

    fn after_decode(&mut self) {
        for slot in 0..self.slots.len() {
            let Some(a) = self.slots[slot].as_mut() else {
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
            let Some(row) = a.out_row.take() else {
                continue;
            };
            let token = match a.sampler.as_mut() {
                Some(s) => s.sample(&mut self.ctx, row),
                None => {
                    let logits = self.ctx.logits(row);
                    if logits.is_empty() {
                        Err(Error::new(Status::Backend, "llama.cpp returned no logits"))
                    } else {
                        Ok(argmax(logits))
                    }
                }
            };
            let token = match token {
                Ok(t) => t,
                Err(e) => {
                    self.end(slot, e.status, FinishReason::Error, Some(e));
                    continue;
                }
            };
            if let Some((status, reason, err)) = self.on_token(slot, token) {
                self.end(slot, status, reason, err);
            }
        }
    }

    /// Handles one sampled token. Returns how the stream ends, if it does.
    fn on_token(
        &mut self,
        slot: usize,
        token: Token,
    ) -> Option<(Status, FinishReason, Option<Error>)> {
        let a = self.slots[slot].as_mut().expect("active slot");
        let now = Instant::now();
        a.generated += 1;
        a.last_token = Some(now);
        let generated = a.generated;
        // The first token also fixes the time to first token and the prompt rate.
        let first = a.first_token.is_none().then(|| {
            a.first_token = Some(now);
            let prompt_secs = a.prompt_started.map_or(0.0, |t| (now - t).as_secs_f64());
            let computed = (a.req.tokens.len() - a.cached) as f64;
            (
                (now - a.req.shared.created).as_secs_f64() * 1000.0,
                if prompt_secs > 0.0 {
                    computed / prompt_secs
                } else {
                    0.0
                },
            )
        });
        a.req.shared.update_stats(|s| {
            s.generated_tokens = generated;
            if let Some((ttft_ms, prompt_rate)) = first {
                s.time_to_first_token_ms = ttft_ms;
                s.prompt_tokens_per_second = prompt_rate;
            }
        });

        if !a.req.params.ignore_eos && self.model.is_eog(token) {
            return Some((Status::Ok, FinishReason::Eos, None));
        }
        a.piece.clear();
        if let Err(e) = self.model.token_piece(token, &mut a.piece) {
            return Some((e.status, FinishReason::Error, Some(e)));
        }
        a.text.clear();
        a.utf8.push(&a.piece, &mut a.text);
        if !a.text.is_empty() {
            // Without stop strings the text goes out as it is, without a copy.
            let (control, stopped) = if a.stop.is_empty() {
                (deliver(&a.req.shared, &mut a.req.on_token, &a.text), false)
            } else {
                let (out, stopped) = match a.stop.push(&a.text) {
                    StopResult::Continue(t) => (t, false),
                    StopResult::Stopped(t) => (t, true),
                };
                (deliver(&a.req.shared, &mut a.req.on_token, &out), stopped)
            };
            if stopped || control == Control::Stop {
                return Some((Status::Ok, FinishReason::Stop, None));
            }
        }
        if a.req.params.max_tokens > 0 && a.generated >= a.req.params.max_tokens {
            return Some((Status::Ok, FinishReason::Length, None));
        }
        if a.n_past >= self.context_tokens {
            return Some((
                Status::ContextFull,
                FinishReason::Error,
                Some(Error::new(
                    Status::ContextFull,
                    format!(
                        "the stream filled its context ({} tokens: {} of prompt, {} generated)",
                        self.context_tokens,
                        a.req.tokens.len(),
                        a.generated
                    ),
                )),
            ));
        }
        a.next = Some(token);
        None
    }

    /// Ends the stream in `slot`: delivers held-back text where the end is a natural one, frees its
    /// KV cells, records the result and calls its finish callback.
    fn end(&mut self, slot: usize, status: Status, reason: FinishReason, err: Option<Error>) {
        let mut a = self.slots[slot].take().expect("active slot");
        if reason == FinishReason::Error {
            // After a failed decode the cells may not match `kv`: drop them.
            self.ctx.seq_rm(a.seq, 0);
            self.kv[slot].clear();
        }
        if matches!(
            reason,
            FinishReason::Length | FinishReason::Eos | FinishReason::Error
        ) {
            a.utf8.finish();
            let rest = a.stop.flush();
            deliver(&a.req.shared, &mut a.req.on_token, &rest);
        }
        let gen_secs = match (a.first_token, a.last_token) {
            (Some(f), Some(l)) => (l - f).as_secs_f64(),
            _ => 0.0,
        };
        let tps = if a.generated > 1 && gen_secs > 0.0 {
            (a.generated - 1) as f64 / gen_secs
        } else {
            0.0
        };
        a.req.shared.update_stats(|s| s.tokens_per_second = tps);
        a.req.finish(status, reason, err.as_ref());
    }

    fn shutdown(&mut self) {
        for slot in 0..self.slots.len() {
            if self.slots[slot].is_some() {
                self.end(slot, Status::Cancelled, FinishReason::Cancelled, None);
            }
        }
        // Callbacks may have started streams while we ended the others: end those too.
        loop {
            let mut batch: VecDeque<Request> = std::mem::take(&mut self.waiting);
            batch.extend(self.mailbox.incoming.lock().queue.drain(..));
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

/// What a sequence slot needs from the next batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Work {
    Idle,
    /// One token: the last one sampled.
    Generate,
    /// This many prompt tokens are still to be computed.
    Prompt(usize),
}

/// Decides what goes into one batch of at most `budget` tokens: every generating stream's token
/// first (one each keeps every stream moving), then prompt chunks, round robin from slot `rr`, so
/// that a long prompt cannot hold back the others for more than one batch. Returns
/// (slot, tokens) pairs in slot order for generation, then in round-robin order for prompts.
fn plan_batch(work: &[Work], budget: usize, rr: usize) -> Vec<(usize, usize)> {
    let mut plan = Vec::new();
    let mut left = budget;
    for (slot, w) in work.iter().enumerate() {
        if *w == Work::Generate && left > 0 {
            plan.push((slot, 1));
            left -= 1;
        }
    }
    let n = work.len();
    for k in 0..n {
        if left == 0 {
            break;
        }
        let slot = (rr + k) % n;
        if let Work::Prompt(rest) = work[slot] {
            let take = rest.min(left);
            if take > 0 {
                plan.push((slot, take));
                left -= take;
            }
        }
    }
    plan
}

/// Where a new stream goes, and which cached cells it starts from.
#[derive(Debug, PartialEq, Eq)]
struct Placement {
    /// The free slot (sequence) the stream takes.
    slot: usize,
    /// The slot whose cells hold the reused prefix (`slot` itself when reused in place).
    source: Option<usize>,
    /// How many prompt tokens are reused: `kv[source][..reuse] == prompt[..reuse]`.
    reuse: usize,
}

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

/// Chooses a free slot for a stream with `prompt`. With `cache`, the longest prefix of the prompt
/// that any slot's cells hold (a running stream's or a finished one's) is reused, always leaving at
/// least one prompt token to compute (its logits give the first token). Without a reuse, the
/// stream takes an empty slot, else the one used least recently. None when every slot is busy.
fn place(
    kv: &[Vec<Token>],
    busy: &[bool],
    last_used: &[u64],
    prompt: &[Token],
    cache: bool,
) -> Option<Placement> {
    let fresh = (0..kv.len())
        .filter(|&i| !busy[i])
        .min_by_key(|&i| (!kv[i].is_empty(), last_used[i]))?;
    let max_reuse = prompt.len().saturating_sub(1);
    let best = (0..kv.len())
        .filter(|_| cache)
        .map(|i| (common_prefix(&kv[i], prompt).min(max_reuse), !busy[i], i))
        .max();
    match best {
        Some((reuse, true, i)) if reuse > 0 => Some(Placement {
            slot: i,
            source: Some(i),
            reuse,
        }),
        Some((reuse, false, i)) if reuse > 0 => Some(Placement {
            slot: fresh,
            source: Some(i),
            reuse,
        }),
        _ => Some(Placement {
            slot: fresh,
            source: None,
            reuse: 0,
        }),
    }
}

/// Hands text to the stream: its callback, or its pull buffer.
fn deliver(shared: &StreamShared, on_token: &mut Option<TokenFn>, text: &str) -> Control {
    if text.is_empty() {
        return Control::Continue;
    }
    match on_token {
        Some(f) if !shared.is_pull() => callback_scope(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(text)))
                .unwrap_or(Control::Stop)
        }),
        _ => {
            shared.push_text(text);
            Control::Continue
        }
    }
}

#[cfg(test)]
mod tests {
    use super::{place, plan_batch, Placement, Work};

    /// Checks the promise of the prompt cache: reused cells hold exactly the prompt's tokens at the
    /// same positions, and at least one prompt token is left to compute.
    fn check(kv: &[Vec<i32>], busy: &[bool], prompt: &[i32], cache: bool) -> Placement {
        let p = place(kv, busy, &vec![0; kv.len()], prompt, cache).expect("a free slot");
        assert!(!busy[p.slot]);
        if let Some(src) = p.source {
            assert_eq!(kv[src][..p.reuse], prompt[..p.reuse]);
        } else {
            assert_eq!(p.reuse, 0);
        }
        assert!(p.reuse < prompt.len());
        p
    }

    #[test]
    fn reuses_a_finished_streams_prefix_in_place() {
        let kv = vec![vec![], vec![2, 10, 11, 12, 13, 50, 51]];
        let p = check(&kv, &[false, false], &[2, 10, 11, 12, 13, 14, 15], true);
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: Some(1),
                reuse: 5
            }
        );
    }

    #[test]
    fn shares_a_running_streams_prefix() {
        let kv = vec![vec![2, 7, 8, 9, 60, 61], vec![2, 7]];
        let p = check(&kv, &[true, false], &[2, 7, 8, 9, 1, 1], true);
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: Some(0),
                reuse: 4
            }
        );
    }

    #[test]
    fn identical_prompt_leaves_one_token_to_compute() {
        let kv = vec![vec![2, 3, 4, 5, 6, 7]];
        let p = check(&kv, &[false], &[2, 3, 4, 5], true);
        assert_eq!(p.reuse, 3);
    }

    #[test]
    fn cache_off_takes_an_empty_slot_and_reuses_nothing() {
        let kv = vec![vec![2, 3, 4], vec![]];
        let p = check(&kv, &[false, false], &[2, 3, 4, 5], false);
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: None,
                reuse: 0
            }
        );
    }

    #[test]
    fn without_a_match_the_least_recently_used_cache_goes() {
        let kv = vec![vec![2, 3], vec![2, 4]];
        let p = place(&kv, &[false, false], &[5, 1], &[9, 9, 9], true).unwrap();
        assert_eq!(
            p,
            Placement {
                slot: 1,
                source: None,
                reuse: 0
            }
        );
    }

    #[test]
    fn every_slot_busy() {
        assert!(place(&[vec![], vec![]], &[true, true], &[0, 0], &[1, 2], true).is_none());
    }

    #[test]
    fn generating_streams_get_one_token_each_first() {
        let work = [
            Work::Prompt(1000),
            Work::Generate,
            Work::Idle,
            Work::Generate,
        ];
        assert_eq!(plan_batch(&work, 8, 0), vec![(1, 1), (3, 1), (0, 6)]);
    }

    #[test]
    fn long_prompt_is_chunked_by_the_budget() {
        let mut rest = 1300;
        let mut chunks = Vec::new();
        while rest > 0 {
            let plan = plan_batch(&[Work::Prompt(rest)], 512, 0);
            assert_eq!(plan.len(), 1);
            chunks.push(plan[0].1);
            rest -= plan[0].1;
        }
        assert_eq!(chunks, vec![512, 512, 276]);
    }

    #[test]
    fn prompts_take_turns_round_robin() {
        let work = [Work::Prompt(1000), Work::Prompt(1000), Work::Prompt(10)];
        assert_eq!(plan_batch(&work, 100, 0), vec![(0, 100)]);
        assert_eq!(plan_batch(&work, 100, 1), vec![(1, 100)]);
        assert_eq!(plan_batch(&work, 100, 2), vec![(2, 10), (0, 90)]);
    }

    #[test]
    fn a_long_prompt_does_not_stop_generation() {
        // A stream generating while another one's 10,000-token prompt is processed gets its token
        // into every batch.
        let work = [Work::Prompt(10_000), Work::Generate];
        for rr in 0..4 {
            let plan = plan_batch(&work, 64, rr);
            assert_eq!(plan[0], (1, 1));
            assert_eq!(plan[1], (0, 63));
        }
    }

    #[test]
    fn budget_smaller_than_generating_streams() {
        let work = [Work::Generate; 5];
        assert_eq!(plan_batch(&work, 3, 0), vec![(0, 1), (1, 1), (2, 1)]);
    }

    #[test]
    fn nothing_to_do() {
        assert!(plan_batch(&[Work::Idle, Work::Idle], 512, 0).is_empty());
        assert!(plan_batch(&[], 512, 0).is_empty());
    }
}
