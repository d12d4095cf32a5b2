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
use std::sync::Arc;
use std::time::Instant;

/// A stream that was started and waits for the engine thread.
pub(crate) struct Request {
    pub shared: Arc<StreamShared>,
    pub tokens: Vec<Token>,
    pub params: GenerateParams,
    pub on_token: Option<TokenFn>,
    pub on_finish: Option<FinishFn>,
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
}

/// A stream that holds a sequence slot.
struct Active {
    req: Request,
    seq: i32,
    /// Tokens of this stream in the KV cache (its next position).
    n_past: usize,
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
        batch_tokens: usize,
        context_tokens: usize,
    ) -> Scheduler {
        Scheduler {
            ctx,
            model,
            mailbox,
            slots: (0..max_streams).map(|_| None).collect(),
            waiting: VecDeque::new(),
            batch: Batch::new(batch_tokens),
            batch_tokens,
            context_tokens,
            rr: 0,
        }
    }

    pub fn run(mut self) {
        while self.intake() {
            self.end_cancelled();
            self.admit();
            if !self.build_batch() {
                continue;
            }
            let rc = self.ctx.decode(&self.batch);
            if rc != 0 {
                self.fail_batch(rc);
                continue;
            }
            self.after_decode();
        }
        self.shutdown();
    }

    fn has_active(&self) -> bool {
        self.slots.iter().any(Option::is_some)
    }

    /// Moves new streams into the waiting queue; sleeps while there is nothing to do.
    /// Returns false when the engine shuts down.
    fn intake(&mut self) -> bool {
        let mut inc = self.mailbox.incoming.lock();
        loop {
            self.waiting.extend(inc.queue.drain(..));
            if inc.shutdown {
                return false;
            }
            if !self.waiting.is_empty() || self.has_active() {
                return true;
            }
            self.mailbox.wake.wait(&mut inc);
        }
    }

    fn end_cancelled(&mut self) {
        let mut i = 0;
        while i < self.waiting.len() {
            if self.waiting[i].shared.is_cancelled() {
                let req = self.waiting.remove(i).expect("index in range");
                finish_request(req, Status::Cancelled, FinishReason::Cancelled, None);
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
        for slot in 0..self.slots.len() {
            if self.waiting.is_empty() {
                return;
            }
            if self.slots[slot].is_some() {
                continue;
            }
            let req = self.waiting.pop_front().expect("not empty");
            let seq = slot as i32;
            self.ctx.seq_rm(seq, 0);
            let sampler = if req.params.sampling.is_plain_greedy() {
                None
            } else {
                let mut s = Sampler::new(&req.params.sampling, self.model.n_vocab());
                if req.params.sampling.repeat_penalty != 1.0 {
                    let n = req.params.sampling.repeat_last_n as usize;
                    for &t in &req.tokens[req.tokens.len().saturating_sub(n)..] {
                        s.accept(t);
                    }
                }
                Some(s)
            };
            let stops = req.params.stop.clone();
            req.shared
                .update_stats(|s| s.prompt_tokens = req.tokens.len() as u32);
            self.slots[slot] = Some(Active {
                req,
                seq,
                n_past: 0,
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

    /// A failed decode ends the streams that were in it; the others go on.
    fn fail_batch(&mut self, rc: i32) {
        let err = if rc == 1 {
            Error::new(
                Status::ContextFull,
                "the KV cache has no room for this stream's tokens",
            )
        } else {
            Error::new(Status::Backend, format!("llama_decode failed (code {rc})"))
        };
        for slot in 0..self.slots.len() {
            if self.slots[slot].as_ref().is_some_and(|a| a.in_batch > 0) {
                self.end(slot, err.status, FinishReason::Error, Some(err.clone()));
            }
        }
    }

    fn after_decode(&mut self) {
        for slot in 0..self.slots.len() {
            let Some(a) = self.slots[slot].as_mut() else {
                continue;
            };
            a.n_past += a.in_batch;
            a.in_batch = 0;
            let Some(row) = a.out_row.take() else {
                continue;
            };
            let token = match a.sampler.as_mut() {
                Some(s) => s.sample(&mut self.ctx, row),
                None => argmax(self.ctx.logits(row)),
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
        if a.first_token.is_none() {
            a.first_token = Some(now);
            let created = a.req.shared.created;
            let prompt_secs = a
                .prompt_started
                .map(|t| (now - t).as_secs_f64())
                .unwrap_or(0.0);
            let n_prompt = a.req.tokens.len();
            a.req.shared.update_stats(|s| {
                s.time_to_first_token_ms = (now - created).as_secs_f64() * 1000.0;
                s.prompt_tokens_per_second = if prompt_secs > 0.0 {
                    n_prompt as f64 / prompt_secs
                } else {
                    0.0
                };
            });
        }
        a.last_token = Some(now);
        let generated = a.generated;
        a.req
            .shared
            .update_stats(|s| s.generated_tokens = generated);

        if !a.req.params.ignore_eos && self.model.is_eog(token) {
            return Some((Status::Ok, FinishReason::Eos, None));
        }
        a.piece.clear();
        self.model.token_piece(token, &mut a.piece);
        a.text.clear();
        a.utf8.push(&a.piece, &mut a.text);
        if !a.text.is_empty() {
            let (out, stopped) = match a.stop.push(&a.text) {
                StopResult::Continue(t) => (t, false),
                StopResult::Stopped(t) => (t, true),
            };
            let control = deliver(&a.req.shared, &mut a.req.on_token, &out);
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
        self.ctx.seq_rm(a.seq, 0);
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
        finish_request(a.req, status, reason, err);
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
            for req in batch {
                finish_request(req, Status::Cancelled, FinishReason::Cancelled, None);
            }
        }
    }
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

/// Records a stream's end and calls its finish callback; waiters are released after it returns.
fn finish_request(mut req: Request, status: Status, reason: FinishReason, err: Option<Error>) {
    req.shared.set_result(status, reason, err.as_ref());
    // The token callback is dropped before the finish callback runs: it is never called again.
    req.on_token = None;
    if let Some(f) = req.on_finish.take() {
        callback_scope(|| {
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(status, reason)));
        });
    }
    req.shared.set_done();
}

#[cfg(test)]
mod tests {
    use super::{plan_batch, Work};

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
