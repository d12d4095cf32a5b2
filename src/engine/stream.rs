//! A stream's state shared between its handle (any thread) and the engine thread.

use super::error::{Error, Status};
use parking_lot::{Condvar, Mutex};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

/// What a token callback answers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Control {
    Continue,
    Stop,
}

/// Why a stream ended. Values are the C API's `minerva_finish_reason`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum FinishReason {
    #[default]
    Running = 0,
    Length = 1,
    Stop = 2,
    Eos = 3,
    Cancelled = 4,
    Error = 5,
}

/// Figures of one stream.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Stats {
    pub prompt_tokens: u32,
    pub cached_prompt_tokens: u32,
    pub generated_tokens: u32,
    pub time_to_first_token_ms: f64,
    pub prompt_tokens_per_second: f64,
    pub tokens_per_second: f64,
    pub finish_reason: FinishReason,
}

/// Receives a stream's text on the engine thread.
pub type TokenFn = Box<dyn FnMut(&str) -> Control + Send>;
/// Called once when a stream ends, after its last token callback.
pub type FinishFn = Box<dyn FnOnce(Status, FinishReason) + Send>;

#[derive(Default)]
struct State {
    /// Pull mode: text not yet read (always whole UTF-8 characters).
    text: VecDeque<u8>,
    /// Set once the stream has ended and its finish callback has returned.
    done: bool,
    status: Option<Status>,
    stats: Stats,
}

/// The part of a stream that both sides see.
pub struct StreamShared {
    cancel: AtomicBool,
    pull: bool,
    /// The stream has a token or a finish callback (user code that may still run).
    callbacks: bool,
    pub(crate) created: Instant,
    state: Mutex<State>,
    cond: Condvar,
    /// The engine's callback lock (see `Mailbox::callback_lock`).
    pub(crate) callback_lock: Arc<Mutex<()>>,
    error: OnceLock<String>,
    /// Chat streams with tools: the calls of the reply (JSON), set when the stream ends.
    tool_calls: OnceLock<String>,
    /// Chat streams: the reasoning of the reply so far (the template's format marks it).
    reasoning: Mutex<String>,
}

impl StreamShared {
    pub(crate) fn new(
        pull: bool,
        callbacks: bool,
        created: Instant,
        callback_lock: Arc<Mutex<()>>,
    ) -> Arc<StreamShared> {
        Arc::new(StreamShared {
            cancel: AtomicBool::new(false),
            pull,
            callbacks,
            created,
            state: Mutex::new(State::default()),
            cond: Condvar::new(),
            callback_lock,
            error: OnceLock::new(),
            tool_calls: OnceLock::new(),
            reasoning: Mutex::new(String::new()),
        })
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancel.load(Ordering::Relaxed)
    }

    pub(crate) fn is_done(&self) -> bool {
        self.state.lock().done
    }

    pub(crate) fn is_pull(&self) -> bool {
        self.pull
    }

    /// Engine thread: queues text for `read`.
    pub(crate) fn push_text(&self, text: &str) {
        let mut st = self.state.lock();
        st.text.extend(text.as_bytes());
        drop(st);
        self.cond.notify_all();
    }

    pub(crate) fn update_stats(&self, f: impl FnOnce(&mut Stats)) {
        f(&mut self.state.lock().stats);
    }

    /// Engine thread: more of a chat reply's reasoning.
    pub(crate) fn push_reasoning(&self, text: &str) {
        if !text.is_empty() {
            self.reasoning.lock().push_str(text);
        }
    }

    /// Engine thread: the reply's tool calls, before the finish callback runs.
    pub(crate) fn set_tool_calls(&self, json: String) {
        let _ = self.tool_calls.set(json);
    }

    /// Engine thread: records the end, before the finish callback runs.
    pub(crate) fn set_result(&self, status: Status, reason: FinishReason, error: Option<&Error>) {
        if let Some(e) = error {
            let _ = self.error.set(e.message.clone());
        }
        let mut st = self.state.lock();
        st.status = Some(status);
        st.stats.finish_reason = reason;
    }

    /// Engine thread: the finish callback has returned; waiters may go.
    pub(crate) fn set_done(&self) {
        self.state.lock().done = true;
        self.cond.notify_all();
    }
}

/// Where a stream waits until the engine thread takes it (the engine's mailbox, in the
/// scheduler): it can end a stream that has not run yet.
pub(crate) trait Queue: Send + Sync {
    /// Ends the stream here, on the caller's thread, if the engine thread has not taken it yet.
    /// Returns whether it did.
    fn end_queued(&self, shared: &Arc<StreamShared>) -> bool;
}

/// A caller's handle to a stream. Dropping it does not stop the stream (see [`Stream::cancel`]).
#[derive(Clone)]
pub struct Stream {
    pub(crate) shared: Arc<StreamShared>,
    /// The engine's queue, where the stream waits until the engine thread takes it.
    pub(crate) mailbox: Option<Arc<dyn Queue>>,
}

/// What [`Stream::read`] returned.
#[derive(Debug, PartialEq, Eq)]
pub struct ReadResult {
    pub len: usize,
    pub finished: bool,
}

fn deadline(timeout: Option<Duration>) -> Option<Instant> {
    timeout.map(|t| Instant::now() + t)
}

impl Stream {
    /// Asks the stream to end; takes effect within one engine step. Returns at once.
    pub fn cancel(&self) {
        self.shared.cancel.store(true, Ordering::Relaxed);
    }

    /// Cancels the stream, and if the engine thread has not taken it yet, ends it here and now
    /// (it never runs: its finish callback runs on this thread, before this returns, once no
    /// other callback of the engine is running). Returns whether it did; otherwise the engine
    /// thread ends it within a step. Inside a callback or on an engine thread it only cancels
    /// (waiting for the engine's callbacks there could wait for itself).
    pub fn cancel_queued(&self) -> bool {
        self.cancel();
        if super::in_callback() || super::current_engine_thread().is_some() {
            return false;
        }
        self.mailbox
            .as_ref()
            .is_some_and(|m| m.end_queued(&self.shared))
    }

    /// Waits until the stream has ended and its finish callback has returned. `None` waits
    /// without limit. Returns the final status, or `Status::Timeout`.
    pub fn wait(&self, timeout: Option<Duration>) -> Status {
        let until = deadline(timeout);
        let mut st = self.shared.state.lock();
        while !st.done {
            match until {
                None => self.shared.cond.wait(&mut st),
                Some(t) => {
                    if self.shared.cond.wait_until(&mut st, t).timed_out() && !st.done {
                        return Status::Timeout;
                    }
                }
            }
        }
        st.status.unwrap_or(Status::Internal)
    }

    pub fn is_done(&self) -> bool {
        self.shared.is_done()
    }

    /// Whether user code (a token or finish callback) may run for this stream.
    pub fn has_callbacks(&self) -> bool {
        self.shared.callbacks
    }

    /// Pull mode: copies up to `buf.len()` bytes of whole characters, waiting up to `timeout` for
    /// text (`None`: without limit). `buf` must hold at least 4 bytes.
    pub fn read(&self, buf: &mut [u8], timeout: Option<Duration>) -> ReadResult {
        debug_assert!(buf.len() >= 4);
        let until = deadline(timeout);
        let mut st = self.shared.state.lock();
        loop {
            if !st.text.is_empty() {
                let mut n = st.text.len().min(buf.len());
                // Cut on a character boundary: back up over continuation bytes.
                while n < st.text.len() && n > 0 && (st.text[n] & 0xC0) == 0x80 {
                    n -= 1;
                }
                for (dst, src) in buf.iter_mut().zip(st.text.drain(..n)) {
                    *dst = src;
                }
                let finished = st.done && st.text.is_empty();
                return ReadResult { len: n, finished };
            }
            if st.done {
                return ReadResult {
                    len: 0,
                    finished: true,
                };
            }
            match until {
                None => self.shared.cond.wait(&mut st),
                Some(t) => {
                    if self.shared.cond.wait_until(&mut st, t).timed_out()
                        && st.text.is_empty()
                        && !st.done
                    {
                        return ReadResult {
                            len: 0,
                            finished: false,
                        };
                    }
                }
            }
        }
    }

    pub fn stats(&self) -> Stats {
        self.shared.state.lock().stats
    }

    /// Once the stream has ended: the tool calls of its reply as a JSON array of
    /// `{"id", "name", "arguments"}` ("[]" when there are none). None while it runs.
    pub fn tool_calls(&self) -> Option<&str> {
        // Recorded before the finish callback runs: readable from inside it too.
        self.shared.state.lock().status?;
        Some(self.shared.tool_calls.get().map_or("[]", String::as_str))
    }

    /// Chat streams: the reasoning of the reply so far, kept apart from its text ("" when none).
    pub fn reasoning(&self) -> String {
        self.shared.reasoning.lock().clone()
    }

    /// The message of the error the stream ended with, "" when none. Lives as long as the stream.
    pub fn error(&self) -> &str {
        self.shared.error.get().map_or("", String::as_str)
    }
}
