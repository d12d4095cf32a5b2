//! Status codes and the words behind them (below the exports, which answer them; the C
//! functions that give the words are in `error.rs`).

use crate::engine::Status;

/// The result of a call. `MINERVA_OK` (0) is success; every other value is an error whose words
/// `minerva_last_error()` gives (or `minerva_stream_error()` for errors that end a stream). Values
/// are never reused or renumbered; new ones are added at the end.
pub type minerva_status = u32;
/// Success.
pub const MINERVA_OK: minerva_status = 0;
/// NULL where a value is needed, bad parameters, a prompt or stop string that is not UTF-8, or a
/// blocking call made from inside a callback.
pub const MINERVA_ERR_INVALID_ARGUMENT: minerva_status = 1;
/// The model file is missing or unreadable.
pub const MINERVA_ERR_IO: minerva_status = 2;
/// The model file is not GGUF, is truncated or corrupt, or its architecture is not supported.
pub const MINERVA_ERR_MODEL: minerva_status = 3;
/// Memory (host or device) ran out.
pub const MINERVA_ERR_OUT_OF_MEMORY: minerva_status = 4;
/// The prompt does not fit a stream's context, or the stream filled its context while generating.
pub const MINERVA_ERR_CONTEXT_FULL: minerva_status = 5;
/// The stream was cancelled (by `minerva_stream_cancel`, `minerva_stream_free` or
/// `minerva_engine_free`), or a load was stopped by its progress callback.
pub const MINERVA_ERR_CANCELLED: minerva_status = 6;
/// A wait ended before the stream did.
pub const MINERVA_ERR_TIMEOUT: minerva_status = 7;
/// llama.cpp or the device failed.
pub const MINERVA_ERR_BACKEND: minerva_status = 8;
/// A bug in minerva: a panic was caught. The handle stays safe to free.
pub const MINERVA_ERR_INTERNAL: minerva_status = 9;
/// The caller's buffer is too small; the function wrote the size it needs to `*out_len` (or
/// `*out_count`). Call it again with a buffer of that size.
pub const MINERVA_ERR_BUFFER_TOO_SMALL: minerva_status = 10;

/// The words of a status (see `minerva_status_str`).
pub(crate) fn status_text(status: minerva_status) -> &'static std::ffi::CStr {
    match status {
        MINERVA_OK => c"ok",
        MINERVA_ERR_INVALID_ARGUMENT => c"invalid argument",
        MINERVA_ERR_IO => c"i/o error",
        MINERVA_ERR_MODEL => c"invalid model",
        MINERVA_ERR_OUT_OF_MEMORY => c"out of memory",
        MINERVA_ERR_CONTEXT_FULL => c"context full",
        MINERVA_ERR_CANCELLED => c"cancelled",
        MINERVA_ERR_TIMEOUT => c"timeout",
        MINERVA_ERR_BACKEND => c"backend error",
        MINERVA_ERR_INTERNAL => c"internal error",
        MINERVA_ERR_BUFFER_TOO_SMALL => c"buffer too small",
        _ => c"unknown",
    }
}

pub(crate) fn status_of(s: Status) -> minerva_status {
    s as minerva_status
}
