//! The prompt cache's game state on the engine thread: pinned prefixes (computed by a prefill
//! into sequences of their own, beyond the stream slots, and never evicted), and the save and
//! load of every cached prefix between steps.
//!
//! A prefill is a request like a stream's that generates nothing: its prompt is computed in the
//! batches with the other streams' work, oldest first, and it ends when its last token is in the
//! cache. An unpinned one takes a stream slot as a stream does (its cells then stay as that
//! slot's cache, evicted as any other); a pinned one takes a pinned sequence.

use super::request::{CacheJob, Request};
use super::slot::Active;
use super::Scheduler;
use crate::engine::cache::format::Entry;
use crate::engine::error::{Error, Result, Status};
use crate::engine::llama::Token;
use crate::engine::stream::FinishReason;

fn common_prefix(a: &[Token], b: &[Token]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}

impl Scheduler {
    /// Cells a pinned prefix may hold at most in all: one stream's whole context stays free.
    fn pin_room(&self) -> usize {
        (self.context_tokens * self.streams).saturating_sub(self.context_tokens)
    }

    /// Tokens pinned now (prefills being computed counted whole).
    fn pinned_tokens(&self) -> usize {
        (self.streams..self.slots.len())
            .map(|i| match &self.slots[i] {
                Some(a) => a.req.tokens.len(),
                None => self.kv[i].len(),
            })
            .sum()
    }

    fn publish_pinned(&self) {
        let pinned: usize = (self.streams..self.kv.len())
            .map(|i| self.kv[i].len())
            .sum();
        self.mailbox
            .pinned_tokens
            .store(pinned, std::sync::atomic::Ordering::Relaxed);
    }

    /// Checks that `more` tokens may be pinned beside what is pinned.
    fn check_pin_room(&self, more: usize) -> Result<()> {
        let pinned = self.pinned_tokens();
        let room = self.pin_room();
        if pinned + more > room {
            return Err(Error::new(
                Status::ContextFull,
                format!(
                    "pinning {more} more tokens would leave less than one stream's context free: \
                     {pinned} tokens are pinned, and pinned prefixes may hold {room} of the \
                     cache's {} (context_tokens x max_streams, less context_tokens)",
                    self.context_tokens * self.streams
                ),
            ));
        }
        Ok(())
    }

    /// A pinned sequence free for a new prefix.
    fn free_pin(&self) -> Option<usize> {
        (self.streams..self.slots.len()).find(|&i| self.slots[i].is_none() && self.kv[i].is_empty())
    }

    /// Places a pinned prefill (its prompt tokenized): on the longest cached prefix of its prompt,
    /// in a pinned sequence; ends it at once when that prefix is the whole prompt.
    pub(super) fn admit_pinned(&mut self, mut req: Request) {
        let tokens = &req.tokens;
        let pins = self.slots.len() - self.streams;
        let scales = req.params.lora_scales.as_deref().unwrap_or(&[]);
        if (self.streams..self.slots.len()).any(|i| {
            self.slots[i].is_none() && self.kv[i] == *tokens && self.kv_scales[i] == scales
        }) {
            // Pinned already.
            req.finish(Status::Ok, FinishReason::Length, None);
            return;
        }
        let Some(seq) = self.free_pin() else {
            let e = Error::new(
                Status::ContextFull,
                format!(
                    "every one of the engine's {pins} pinned prefixes is in use (an engine pins \
                     at most {pins} prefixes; unpinned prefills have no such bound)"
                ),
            );
            req.finish(e.status, FinishReason::Error, Some(&e));
            return;
        };
        if let Err(e) = self.check_pin_room(tokens.len()) {
            req.finish(e.status, FinishReason::Error, Some(&e));
            return;
        }
        let scales = req.params.lora_scales.clone().unwrap_or_default();
        let best = (0..self.kv.len())
            .filter(|&i| i != seq && self.kv_scales[i] == scales)
            .map(|i| (common_prefix(&self.kv[i], tokens), i))
            .max();
        self.kv_scales[seq] = scales;
        let mut reuse = 0;
        self.ctx.seq_rm(seq as i32, 0);
        self.kv[seq].clear();
        if let Some((n, src)) = best.filter(|(n, _)| *n > 0) {
            self.ctx.seq_share_prefix(src as i32, seq as i32, n as i32);
            if self.holds_prefix(seq as i32, n) {
                reuse = n;
                self.kv[seq] = tokens[..n].to_vec();
            } else {
                self.ctx.seq_rm(seq as i32, 0);
            }
        }
        if reuse == tokens.len() {
            self.publish_pinned();
            req.finish(Status::Ok, FinishReason::Length, None);
            return;
        }
        self.slots[seq] = Some(Active::new(req, seq as i32, reuse, self.steps));
    }

    /// Ends the prefills whose prompts are all in the cache now (after a decode). What is pinned
    /// is published first: a caller that sees its prefill done sees it counted.
    pub(super) fn end_prefills(&mut self) {
        let done: Vec<usize> = (0..self.slots.len())
            .filter(|&slot| {
                self.slots[slot].as_ref().is_some_and(|a| {
                    a.req.prefill.is_some() && a.in_batch == 0 && a.n_past == a.req.tokens.len()
                })
            })
            .collect();
        if done.is_empty() {
            return;
        }
        self.publish_pinned();
        for slot in done {
            self.clock += 1;
            self.last_used[slot] = self.clock;
            self.end(slot, Status::Ok, FinishReason::Length, None);
        }
    }

    /// Runs the saves and loads callers asked for.
    pub(super) fn run_cache_jobs(&mut self) {
        loop {
            let Some(job) = self.mailbox.incoming.lock().cache_jobs.pop_front() else {
                return;
            };
            match job {
                CacheJob::Save(answer) => {
                    let _ = answer.send(self.save());
                }
                CacheJob::Load(entries, answer) => {
                    let r = self.load(entries);
                    self.publish_pinned();
                    let _ = answer.send(r);
                }
            }
        }
    }

    /// Frees the cells of the least recently used stream slot that no stream holds (its cache).
    /// False when there is none.
    pub(super) fn evict_idle_cache(&mut self) -> bool {
        let Some(i) = (0..self.streams)
            .filter(|&i| self.slots[i].is_none() && !self.kv[i].is_empty())
            .min_by_key(|&i| self.last_used[i])
        else {
            return false;
        };
        self.ctx.seq_rm(i as i32, 0);
        self.kv[i].clear();
        true
    }

    /// Answers every waiting job with `why` (after a panic).
    pub(super) fn fail_cache_jobs(&mut self, why: &str) {
        self.fail_cache_jobs_with(Status::Internal, why);
    }

    pub(super) fn fail_cache_jobs_with(&mut self, status: Status, why: &str) {
        let jobs = std::mem::take(&mut self.mailbox.incoming.lock().cache_jobs);
        for job in jobs {
            let e = Error::new(status, why);
            match job {
                CacheJob::Save(a) => {
                    let _ = a.send(Err(e));
                }
                CacheJob::Load(_, a) => {
                    let _ = a.send(Err(e));
                }
            }
        }
    }

    /// Every cached prefix that no stream is computing: the stream slots' caches and the pinned
    /// prefixes.
    fn save(&mut self) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        for seq in 0..self.kv.len() {
            if self.slots[seq].is_some() || self.kv[seq].is_empty() {
                continue;
            }
            entries.push(Entry {
                pinned: seq >= self.streams,
                tokens: self.kv[seq].clone(),
                lora_scales: self.kv_scales[seq].clone(),
                state: self.ctx.seq_state(seq as i32)?,
            });
        }
        Ok(entries)
    }

    /// Puts saved prefixes into the cache: pinned ones into free pinned sequences, the others
    /// into stream slots no stream holds (empty ones first, then the least recently used), as
    /// many as there are such slots. Returns how many were loaded.
    fn load(&mut self, entries: Vec<Entry>) -> Result<usize> {
        let entries: Vec<Entry> = entries
            .into_iter()
            .filter(|e| {
                // A pinned prefix held already is not loaded twice.
                !(e.pinned
                    && (self.streams..self.kv.len()).any(|i| {
                        self.slots[i].is_none()
                            && self.kv[i] == e.tokens
                            && self.kv_scales[i] == e.lora_scales
                    }))
            })
            .collect();
        let want_pins = entries.iter().filter(|e| e.pinned).count();
        let free_pins = (self.streams..self.slots.len())
            .filter(|&i| self.slots[i].is_none() && self.kv[i].is_empty())
            .count();
        if want_pins > free_pins {
            return Err(Error::new(
                Status::ContextFull,
                format!(
                    "the cache holds {want_pins} pinned prefixes and the engine has room for \
                     {free_pins} more"
                ),
            ));
        }
        self.check_pin_room(
            entries
                .iter()
                .filter(|e| e.pinned)
                .map(|e| e.tokens.len())
                .sum(),
        )?;
        let mut loaded = 0;
        // The stream slots this load filled: a later entry does not overwrite an earlier one.
        let mut filled = vec![false; self.streams];
        for (i, e) in entries.into_iter().enumerate() {
            let seq = if e.pinned {
                self.free_pin()
            } else {
                (0..self.streams)
                    .filter(|&s| self.slots[s].is_none() && !filled[s])
                    .min_by_key(|&s| (!self.kv[s].is_empty(), self.last_used[s]))
            };
            let Some(seq) = seq else {
                continue; // more cached prefixes than idle stream slots
            };
            if seq < self.streams {
                filled[seq] = true;
            }
            self.ctx.seq_rm(seq as i32, 0);
            self.kv[seq].clear();
            // Room for it: idle stream slots' caches go, least recently used first.
            let mut put = self.ctx.set_seq_state(seq as i32, &e.state);
            while !put && self.evict_idle_cache() {
                put = self.ctx.set_seq_state(seq as i32, &e.state);
            }
            if !put || !self.holds_prefix(seq as i32, e.tokens.len()) {
                self.ctx.seq_rm(seq as i32, 0);
                return Err(Error::invalid(format!(
                    "llama.cpp refused cached prefix {i} ({} tokens): the cache has no room for \
                     it, or its state is not of this model and context ({loaded} loaded before it)",
                    e.tokens.len()
                )));
            }
            self.kv[seq] = e.tokens;
            self.kv_scales[seq] = e.lora_scales;
            self.clock += 1;
            self.last_used[seq] = self.clock;
            loaded += 1;
        }
        Ok(loaded)
    }
}
