//! Logging: llama.cpp's lines and minerva's own go through one sink.
//!
//! By default only warnings and errors reach stderr. A sink set with [`set_sink`] receives whole
//! lines (llama.cpp writes lines in pieces; they are joined here), one call at a time.
//!
//! No thread ever waits for the sink. A line is queued; if no thread is delivering, the thread
//! that logged it delivers the queue (this line and whatever other threads add meanwhile), one
//! line at a time, with no lock held while the sink runs. A thread that logs while another one
//! delivers (or while its own sink call is on its stack) only queues. So a sink may call anything,
//! even something that waits for a thread that logs (freeing an engine), without a deadlock.
//! After [`set_sink`] returns, the old sink is never entered again.

use parking_lot::{Condvar, Mutex};
use std::cell::Cell;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(u32)]
pub enum Level {
    Debug = 0,
    Info = 1,
    Warn = 2,
    Error = 3,
    None = 4,
}

impl Level {
    /// Values above `None` are clamped to `None`.
    pub fn from_u32(v: u32) -> Level {
        match v {
            0 => Level::Debug,
            1 => Level::Info,
            2 => Level::Warn,
            3 => Level::Error,
            _ => Level::None,
        }
    }
}

pub type Sink = dyn Fn(Level, &str) + Send + Sync;

/// Lines queued for a sink that is busy: beyond this many, lines are counted and dropped (a sink
/// that blocks must not make minerva's memory grow without limit).
const MAX_QUEUED: usize = 4096;

struct Delivery {
    sink: Option<Arc<Sink>>,
    /// Bumped by every set_sink: which sink a call in progress belongs to.
    generation: u64,
    queue: VecDeque<(Level, String)>,
    dropped: u64,
    /// A thread is delivering the queue.
    delivering: bool,
    /// The generation of the sink being called right now, if one is.
    calling: Option<u64>,
}

static DELIVERY: Mutex<Delivery> = Mutex::new(Delivery {
    sink: None,
    generation: 0,
    queue: VecDeque::new(),
    dropped: 0,
    delivering: false,
    calling: None,
});
/// Signalled whenever a sink call returns.
static RETURNED: Condvar = Condvar::new();
/// Lines below this level are dropped before anything else (the fast path of llama.cpp's DEBUG
/// chatter).
static MIN_LEVEL: AtomicU32 = AtomicU32::new(Level::Warn as u32);

thread_local! {
    /// This thread is delivering (a sink call may be on its stack).
    static DELIVERING_HERE: Cell<bool> = const { Cell::new(false) };
}

/// Sets where log lines go. `None` restores the default (stderr). Lines below `min` are dropped.
/// Lines still queued for the old sink are dropped, and when this returns the old sink is not
/// running and will not run again: it waits for a call of the old sink in progress on another
/// thread to return. It does not wait when called from inside the sink itself, or from a user
/// callback or an engine thread (that call might be waiting for this thread).
pub fn set_sink(sink: Option<Arc<Sink>>, min: Level) {
    let mut d = DELIVERY.lock();
    d.sink = sink;
    d.generation += 1;
    d.queue.clear();
    d.dropped = 0;
    MIN_LEVEL.store(min as u32, Ordering::Relaxed);
    let generation = d.generation;
    if DELIVERING_HERE.try_with(Cell::get).unwrap_or(false) {
        return; // our own sink call returns after us; the next line goes to the new sink
    }
    if super::callback::in_callback() || super::callback::current_engine_thread().is_some() {
        // A sink call running on another thread may be waiting for this thread (a log callback
        // that frees this engine, or waits for one of its streams): waiting here could deadlock.
        return;
    }
    while d.calling.is_some_and(|g| g < generation) {
        RETURNED.wait(&mut d);
    }
}

/// Emits one whole line.
pub fn log(level: Level, line: &str) {
    if level == Level::None || (level as u32) < MIN_LEVEL.load(Ordering::Relaxed) {
        return;
    }
    let mut d = DELIVERY.lock();
    if d.sink.is_none() {
        drop(d);
        eprintln!("minerva: {line}");
        return;
    }
    if d.queue.len() >= MAX_QUEUED {
        d.dropped += 1;
        return;
    }
    d.queue.push_back((level, line.to_owned()));
    if d.delivering {
        return; // the delivering thread (perhaps this one, further up the stack) takes it
    }
    d.delivering = true;
    let _ = DELIVERING_HERE.try_with(|h| h.set(true));
    loop {
        let (level, line) = if d.dropped > 0 {
            let n = std::mem::take(&mut d.dropped);
            let line = format!("{n} log lines were dropped while the log callback was busy");
            (Level::Warn, line)
        } else {
            match d.queue.pop_front() {
                Some(item) => item,
                None => break,
            }
        };
        let Some(sink) = d.sink.clone() else {
            d.queue.clear();
            break;
        };
        d.calling = Some(d.generation);
        parking_lot::MutexGuard::unlocked(&mut d, || {
            // Never unwind out of a sink into llama.cpp or the caller.
            let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| sink(level, &line)));
            drop(sink);
        });
        d.calling = None;
        RETURNED.notify_all();
    }
    d.delivering = false;
    let _ = DELIVERING_HERE.try_with(|h| h.set(false));
}

macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::engine::log::log($crate::engine::log::Level::Warn, &format!($($arg)*)) };
}
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::engine::log::log($crate::engine::log::Level::Info, &format!($($arg)*)) };
}
pub(crate) use {log_info, log_warn};
