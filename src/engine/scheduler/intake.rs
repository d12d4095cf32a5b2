//! Where streams come in: the engine thread's sleep and wake-up, queued streams that were
//! cancelled, and admission (a queued stream gets a free slot, its prompt tokenized here and
//! placed on cached cells).

use super::plan::place;
use super::request::Request;
use super::slot::Active;
use super::{Scheduler, COALESCE_MAX};
use crate::engine::error::{Error, Status};
use crate::engine::stream::FinishReason;
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::time::Instant;

impl Scheduler {
    /// Sleeps while there is nothing to do. Returns false when the engine shuts down.
    pub(super) fn intake(&mut self) -> bool {
        let mut inc = self.mailbox.incoming.lock();
        let was_idle = !self.has_active();
        loop {
            self.embedder.jobs.extend(inc.embeds.drain(..));
            if inc.shutdown {
                return false;
            }
            // Queued streams wait for a free slot (with every slot's stream waiting for the
            // constraint thread, the engine sleeps until a token comes back).
            let admissible = inc.queue.front().is_some_and(|r| {
                r.prefill == Some(true) || self.slots[..self.streams].iter().any(Option::is_none)
            });
            if admissible
                || !inc.cache_jobs.is_empty()
                || self.has_runnable()
                || !inc.sampled.is_empty()
                || self.embedder.has_work()
            {
                break;
            }
            self.mailbox.wake.wait(&mut inc);
        }
        if was_idle {
            // Streams started together (a game starting its characters' lines in one frame)
            // arrive microseconds apart. Waking on the first alone would decode its prompt by
            // itself and the others a whole step later: while a caller is still inside
            // Engine::start, wait for it, COALESCE_MAX at most. A lone stream waits for nothing.
            let deadline = Instant::now() + COALESCE_MAX;
            while inc.queue.len() < self.streams
                && self.mailbox.submitting.load(Ordering::Acquire) > 0
            {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                self.mailbox.wake.wait_for(&mut inc, deadline - now);
                if inc.shutdown {
                    return false;
                }
            }
        }
        true
    }

    pub(super) fn end_cancelled(&mut self) {
        // Taken out under the lock, finished after it (a finish callback may start a stream).
        let cancelled: VecDeque<Request> = {
            let mut inc = self.mailbox.incoming.lock();
            if !inc.queue.iter().any(|r| r.shared.is_cancelled()) {
                VecDeque::new()
            } else {
                let (gone, keep) = std::mem::take(&mut inc.queue)
                    .into_iter()
                    .partition(|r| r.shared.is_cancelled());
                inc.queue = keep;
                gone
            }
        };
        for mut req in cancelled {
            req.finish(Status::Cancelled, FinishReason::Cancelled, None);
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

    /// Gives free slots to the oldest queued streams, tokenizing each prompt here.
    pub(super) fn admit(&mut self) {
        self.steps += 1;
        loop {
            // Oldest first: a pinned prefill needs no stream slot.
            let stream_free = self.slots[..self.streams].iter().any(Option::is_none);
            let mut req = {
                let mut inc = self.mailbox.incoming.lock();
                match inc.queue.front() {
                    Some(r) if stream_free || r.prefill == Some(true) => {
                        inc.queue.pop_front().expect("a queued request")
                    }
                    _ => return,
                }
            };
            if let Err(e) = self.tokenize(&mut req) {
                req.finish(e.status, FinishReason::Error, Some(&e));
                continue;
            }
            if req.prefill == Some(true) {
                self.admit_pinned(req);
                continue;
            }
            // The sequences of pinned prefixes are sources of reuse, never a stream's slot.
            let busy: Vec<bool> = (0..self.slots.len())
                .map(|i| i >= self.streams || self.slots[i].is_some())
                .collect();
            let cache = req.params.cache_prompt && self.model.can_share_prefix();
            let scales = req.params.lora_scales.clone().unwrap_or_default();
            let usable: Vec<bool> = self.kv_scales.iter().map(|s| *s == scales).collect();
            let mut usable = usable;
            let (slot, reuse) = loop {
                let place = place(
                    &self.kv,
                    &busy,
                    &self.last_used,
                    &req.tokens,
                    cache,
                    &usable,
                )
                .expect("a slot is free");
                let slot = place.slot;
                let seq = slot as i32;
                let mut reuse = place.reuse;
                match place.source {
                    Some(src) if src == slot => {
                        // Reused in place: drop the cells past the shared prefix (a memory that
                        // cannot cut a sequence short is cleared instead, below).
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
                if reuse > 0 && !self.holds_prefix(seq, reuse) {
                    // The source does not hold what this reuse needs (a sequence loaded from a
                    // saved cache keeps only the window of a sliding-window layer): the next best
                    // source, if any.
                    self.ctx.seq_rm(seq, 0);
                    self.kv[slot].clear();
                    if let Some(src) = place.source {
                        usable[src] = false;
                        continue;
                    }
                    reuse = 0;
                }
                break (slot, reuse);
            };
            self.kv_scales[slot] = scales;
            let seq = slot as i32;
            if reuse == 0 {
                self.ctx.seq_rm(seq, 0);
            }
            self.kv[slot].truncate(reuse);
            debug_assert_eq!(self.kv[slot][..], req.tokens[..reuse]);
            self.clock += 1;
            self.last_used[slot] = self.clock;

            let mut active = Active::new(req, seq, reuse, self.steps);
            if self.ctx.samples_on_backend() {
                // Plain greedy: the greedy chain (attached from the start, or again). A chain that
                // can run in the graph: a copy of it. Other streams sample on the host from the
                // greedy chain's logits, which are the whole row.
                active.on_backend = match &active.sampler {
                    None => self.ctx.attach(seq, None),
                    Some(s) => match s.backend_chain() {
                        Some(chain) => self.ctx.attach(seq, Some(chain)),
                        None => {
                            self.ctx.attach(seq, None);
                            false
                        }
                    },
                };
            }
            self.slots[slot] = Some(active);
        }
    }

    /// Whether what llama.cpp holds for `seq` is exactly positions 0..n, and, for a model with
    /// sliding-window layers, the window before `n` (llama.cpp may have dropped cells that fell
    /// out of the window of a longer sequence).
    pub(super) fn holds_prefix(&mut self, seq: i32, n: usize) -> bool {
        let (pos_min, pos_max) = self.ctx.seq_pos_range(seq);
        let window = self.model.n_swa();
        let needed_min = if window > 0 {
            n.saturating_sub(window)
        } else {
            0
        };
        pos_max == n as i32 - 1 && pos_min >= 0 && pos_min as usize <= needed_min
    }

    /// The prompt's tokens, and the prompt's last tokens fed to the stream's penalties.
    pub(super) fn tokenize(&self, req: &mut Request) -> Result<(), Error> {
        let context = self.context_tokens;
        req.tokens = match self.model.tokenize_prompt(&req.prompt, context)? {
            Ok(tokens) => tokens,
            Err(counted) => {
                return Err(Error::new(
                    Status::ContextFull,
                    format!(
                        "the prompt is more than {context} tokens (counted {counted} before \
                         stopping); a stream holds at most {context} (context_tokens)"
                    ),
                ))
            }
        };
        if req.tokens.is_empty() {
            return Err(Error::invalid("the prompt is empty (it gives no tokens)"));
        }
        req.prompt = String::new();
        let p = &req.params.sampling;
        if let Some(s) = req.sampler.as_mut() {
            // The penalties see the prompt's last tokens (the grammar, apart from the chain,
            // constrains the output only).
            if p.repeat_penalty != 1.0 || p.presence_penalty != 0.0 || p.frequency_penalty != 0.0 {
                let n = p.repeat_last_n as usize;
                for &t in &req.tokens[req.tokens.len().saturating_sub(n)..] {
                    s.accept(t)?;
                }
            }
        }
        Ok(())
    }
}
