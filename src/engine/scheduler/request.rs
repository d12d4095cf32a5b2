//! What callers hand to the engine thread: started streams, saves and loads of the prompt cache,
//! and the shutdown flag.

use crate::engine::cache::format::Entry;
use crate::engine::callback::callback_scope;
use crate::engine::constraint::Constraint;
use crate::engine::error::{Error, Result, Status};
use crate::engine::llama::{Sampler, Token};
use crate::engine::params::GenerateParams;
use crate::engine::stream::{FinishFn, FinishReason, Queue, StreamShared, TokenFn};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::AtomicUsize;
use std::sync::mpsc::SyncSender;
use std::sync::Arc;

/// A stream that was started and waits for the engine thread.
pub(crate) struct Request {
    pub shared: Arc<StreamShared>,
    /// The prompt's text; the engine thread tokenizes it when it takes the stream (so that
    /// starting a stream costs its caller no tokenizing).
    pub prompt: String,
    /// The prompt's tokens, once the engine thread has made them.
    pub tokens: Vec<Token>,
    pub params: GenerateParams,
    /// The stream's sampler chain, built by the caller (None: plain greedy, an argmax).
    pub sampler: Option<Sampler>,
    /// The stream's JSON schema or Lark grammar, compiled by the caller (`constraint/`): it masks
    /// the logits before the sampler picks.
    pub constraint: Option<Constraint>,
    pub on_token: Option<TokenFn>,
    pub on_finish: Option<FinishFn>,
    /// A prefill (`Engine::cache_prefill`), not a stream: its prompt's KV is computed into the
    /// cache and nothing is generated. Some(true): pinned.
    pub prefill: Option<bool>,
}

impl Request {
    /// Records the stream's end and calls its finish callback; waiters are released after it
    /// returns. The token callback is dropped first: it is never called again.
    pub fn finish(&mut self, status: Status, reason: FinishReason, err: Option<&Error>) {
        self.shared.set_result(status, reason, err);
        self.on_token = None;
        if let Some(f) = self.on_finish.take() {
            let _one_at_a_time = self.shared.callback_lock.lock();
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

/// A save or load of the prompt cache for the engine thread (`cache.rs`), with where its answer
/// goes.
pub(crate) enum CacheJob {
    Save(SyncSender<Result<Vec<Entry>>>),
    Load(Vec<Entry>, SyncSender<Result<usize>>),
}

/// What callers hand to the engine thread.
#[derive(Default)]
pub(crate) struct Incoming {
    /// Streams not yet taken by the engine thread, oldest first: they wait here for a free
    /// sequence slot, and a caller freeing one of them takes it back out (it never runs).
    pub queue: VecDeque<Request>,
    /// Embedding calls waiting for the engine thread.
    pub embeds: VecDeque<Arc<crate::engine::embed::EmbedJob>>,
    /// Saves and loads of the prompt cache, for the engine thread (`cache.rs`).
    pub cache_jobs: VecDeque<CacheJob>,
    /// Deferred samplings done by the constraint thread, for the engine thread to take.
    pub sampled: VecDeque<Sampled>,
    /// Queued streams that callers took back out and are ending on their own threads (their
    /// finish callbacks running): the engine thread's shutdown waits for them.
    pub finishing: usize,
    pub shutdown: bool,
}

/// The engine's mailbox: new streams and the shutdown flag, with a condvar to wake the thread.
#[derive(Default)]
pub(crate) struct Mailbox {
    pub incoming: Mutex<Incoming>,
    pub wake: Condvar,
    /// Callers inside `Engine::start` right now.
    pub submitting: AtomicUsize,
    /// Tokens the engine's pinned prefixes hold (`cache.rs`).
    pub pinned_tokens: AtomicUsize,
    /// Held while any of the engine's token or finish callbacks runs, whatever the thread: they
    /// run one at a time.
    pub callback_lock: Arc<Mutex<()>>,
}

impl Queue for Mailbox {
    /// Ends the stream here, on the caller's thread, if the engine thread has not taken it yet:
    /// it never runs, its finish callback runs now (one at a time with the engine's other
    /// callbacks). Returns whether it did.
    fn end_queued(&self, shared: &Arc<StreamShared>) -> bool {
        let req = {
            let mut inc = self.incoming.lock();
            let Some(i) = inc
                .queue
                .iter()
                .position(|r| Arc::ptr_eq(&r.shared, shared))
            else {
                return false;
            };
            inc.finishing += 1;
            inc.queue.remove(i)
        };
        if let Some(mut req) = req {
            req.finish(Status::Cancelled, FinishReason::Cancelled, None);
        }
        // The request (and its sampler) is gone: the engine may shut down.
        self.incoming.lock().finishing -= 1;
        self.wake.notify_all();
        true
    }
}

/// A token the constraint thread sampled (`constrain.rs`), handed back through the mailbox: the
/// stream's slot and sampler, and the token (None: stopped).
pub(crate) struct Sampled {
    pub slot: usize,
    pub shared: Arc<StreamShared>,
    pub sampler: Sampler,
    pub token: Result<Option<Token>>,
}
