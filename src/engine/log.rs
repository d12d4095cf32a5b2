//! Logging: llama.cpp's lines and minerva's own go through one sink.
//!
//! By default only warnings and errors reach stderr. A sink set with [`set_sink`] receives whole
//! lines (llama.cpp writes lines in pieces; they are joined here), one call at a time, from
//! whichever thread logged them.

use parking_lot::{ReentrantMutex, RwLock};
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
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

struct Config {
    sink: Option<Arc<Sink>>,
    min: Level,
}

static CONFIG: RwLock<Config> = RwLock::new(Config {
    sink: None,
    min: Level::Warn,
});
/// Serializes calls into the sink ("one at a time"); reentrant so that a sink that itself causes
/// a log line does not deadlock.
static EMIT: ReentrantMutex<()> = ReentrantMutex::new(());

/// Sets where log lines go. `None` restores the default (stderr). Lines below `min` are dropped.
pub fn set_sink(sink: Option<Arc<Sink>>, min: Level) {
    let mut c = CONFIG.write();
    c.sink = sink;
    c.min = min;
}

/// Emits one whole line.
pub fn log(level: Level, line: &str) {
    let sink = {
        let c = CONFIG.read();
        if level == Level::None || level < c.min {
            return;
        }
        c.sink.clone()
    };
    let _one_at_a_time = EMIT.lock();
    match sink {
        Some(sink) => sink(level, line),
        None => eprintln!("minerva: {line}"),
    }
}

macro_rules! log_warn {
    ($($arg:tt)*) => { $crate::engine::log::log($crate::engine::log::Level::Warn, &format!($($arg)*)) };
}
macro_rules! log_info {
    ($($arg:tt)*) => { $crate::engine::log::log($crate::engine::log::Level::Info, &format!($($arg)*)) };
}
pub(crate) use {log_info, log_warn};

thread_local! {
    /// llama.cpp's pieces of the current line on this thread, with the line's level.
    static PARTIAL: RefCell<(Level, String)> = const { RefCell::new((Level::Info, String::new())) };
    /// The last error line llama.cpp logged on this thread: it names the reason a load failed.
    static LAST_LLAMA_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Takes the last error line that llama.cpp logged on this thread ("" if none).
pub(crate) fn take_last_llama_error() -> String {
    LAST_LLAMA_ERROR.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

/// Installed as llama.cpp's and ggml's log callback.
pub(crate) unsafe extern "C" fn llama_log_trampoline(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _user_data: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // Never unwind into C: a panic here is dropped.
    let _ = std::panic::catch_unwind(|| {
        let level_now = match level {
            llama_cpp_sys_2::GGML_LOG_LEVEL_DEBUG => Some(Level::Debug),
            llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => Some(Level::Info),
            llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => Some(Level::Warn),
            llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => Some(Level::Error),
            _ => None, // CONT or NONE: continues the previous line
        };
        let mut lines = Vec::new();
        let _ = PARTIAL.try_with(|p| {
            let mut p = p.borrow_mut();
            if let Some(l) = level_now {
                if !p.1.is_empty() {
                    // A new line began without the old one ending: emit the old one.
                    lines.push((p.0, std::mem::take(&mut p.1)));
                }
                p.0 = l;
            }
            p.1.push_str(&text);
            while let Some(nl) = p.1.find('\n') {
                let rest = p.1.split_off(nl + 1);
                let mut line = std::mem::replace(&mut p.1, rest);
                line.truncate(nl);
                lines.push((p.0, line));
            }
        });
        for (l, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            if l == Level::Error {
                let _ = LAST_LLAMA_ERROR.try_with(|e| *e.borrow_mut() = line.clone());
            }
            log(l, &line);
        }
    });
}
