//! `minerva_set_log_callback`.

use super::*;
use crate::engine::log::{self, Level};
use std::ffi::{c_char, c_void, CString};
use std::sync::Arc;

/// Severity of a log line. A `min_level` above `MINERVA_LOG_NONE` is treated as NONE.
pub type minerva_log_level = u32;
/// Detail for debugging.
pub const MINERVA_LOG_DEBUG: minerva_log_level = 0;
/// Progress and facts (llama.cpp's load messages are here).
pub const MINERVA_LOG_INFO: minerva_log_level = 1;
/// Something unexpected that minerva handled.
pub const MINERVA_LOG_WARN: minerva_log_level = 2;
/// A failure.
pub const MINERVA_LOG_ERROR: minerva_log_level = 3;
/// As `min_level`: no lines at all.
pub const MINERVA_LOG_NONE: minerva_log_level = 4;

/// Receives one whole log line (NUL-terminated UTF-8, no trailing newline; valid only during the
/// call), llama.cpp's and minerva's own, one call at a time, on any thread: lines that other
/// threads log while the callback runs are queued and delivered after it returns, by the thread
/// that was delivering. No minerva thread ever waits for the callback, so it may call minerva
/// functions, also one that waits for a thread that logs (such as `minerva_engine_free`); but on
/// an engine's own thread (where it runs when that thread logs), calls that would wait for an
/// engine thread are refused with `MINERVA_ERR_INVALID_ARGUMENT` as in token callbacks. While it
/// blocks, up to 4096 lines are kept; beyond that lines are dropped and a warning line counts
/// them.
pub type minerva_log_callback = Option<
    unsafe extern "C" fn(user_data: *mut c_void, level: minerva_log_level, message: *const c_char),
>;

/// Sends log lines at `min_level` and above to `cb`; NULL `cb` restores the default, stderr. By
/// default only warnings and errors reach stderr: llama.cpp's load chatter stays out of a host
/// program's console unless asked for. A `min_level` above `MINERVA_LOG_NONE` is treated as NONE.
/// Applies to the whole process.
///
/// When this returns, the previous callback is never called again, and (called from a program's
/// own thread) it is not running either, so its `user_data` may be released at once: lines still
/// queued for it are dropped, and a call of it in progress on another thread is waited for. From
/// inside the log callback itself, or from a token, finish or progress callback, it does not wait
/// (the running call could be waiting for this thread): release the old `user_data` only once
/// that call has returned. Do not call it while holding something that the log callback waits
/// for.
#[no_mangle]
pub unsafe extern "C" fn minerva_set_log_callback(
    cb: minerva_log_callback,
    user_data: *mut c_void,
    min_level: minerva_log_level,
) {
    ffi_export!({
        let ud = UserData(user_data);
        let sink = cb.map(|cb| {
            Arc::new(move |level: Level, line: &str| {
                let ud = ud;
                let c = CString::new(line.replace('\0', " ")).unwrap_or_default();
                // SAFETY: the caller's callback, called as the header documents.
                unsafe { cb(ud.0, level as minerva_log_level, c.as_ptr()) }
            }) as Arc<log::Sink>
        });
        // llama.cpp must be set up before its log lines can be routed.
        crate::engine::init_logging();
        log::set_sink(sink, Level::from_u32(min_level));
    });
}
