//! Status codes, enum-like values, version and error words.

use super::guard_void;
use std::ffi::c_char;

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

/// What a callback answers: `MINERVA_CONTINUE`, or `MINERVA_STOP` to end the stream (or the load).
/// Any value other than `MINERVA_CONTINUE` stops.
pub type minerva_control = u32;
/// Go on.
pub const MINERVA_CONTINUE: minerva_control = 0;
/// Stop: a token callback ends its stream with `MINERVA_FINISH_STOP` (status `MINERVA_OK`); a
/// progress callback aborts the load with `MINERVA_ERR_CANCELLED`.
pub const MINERVA_STOP: minerva_control = 1;

/// Why a stream ended (`minerva_stream_stats.finish_reason`, and the finish callback).
pub type minerva_finish_reason = u32;
/// The stream has not ended yet.
pub const MINERVA_FINISH_RUNNING: minerva_finish_reason = 0;
/// `max_tokens` were generated.
pub const MINERVA_FINISH_LENGTH: minerva_finish_reason = 1;
/// A stop string matched (it is not delivered), or a token callback returned `MINERVA_STOP`.
pub const MINERVA_FINISH_STOP: minerva_finish_reason = 2;
/// The model produced its end-of-generation token.
pub const MINERVA_FINISH_EOS: minerva_finish_reason = 3;
/// The stream was cancelled.
pub const MINERVA_FINISH_CANCELLED: minerva_finish_reason = 4;
/// The stream failed; its final status and `minerva_stream_error()` say why.
pub const MINERVA_FINISH_ERROR: minerva_finish_reason = 5;

/// The kind of device that holds most of the model.
pub type minerva_device_kind = u32;
/// The CPU.
pub const MINERVA_DEVICE_CPU: minerva_device_kind = 0;
/// An NVIDIA GPU through CUDA.
pub const MINERVA_DEVICE_CUDA: minerva_device_kind = 1;
/// An Apple GPU through Metal.
pub const MINERVA_DEVICE_METAL: minerva_device_kind = 2;
/// A GPU through Vulkan.
pub const MINERVA_DEVICE_VULKAN: minerva_device_kind = 3;
/// Another accelerator.
pub const MINERVA_DEVICE_OTHER: minerva_device_kind = 4;

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

/// The ABI version this header describes; `minerva_abi_version()` returns the library's. They
/// differ only when a program runs against a library other than the one it was built for.
pub const MINERVA_ABI_VERSION: u32 = 1;

/// The `seed` value that asks for a new random seed for each stream.
pub const MINERVA_SEED_RANDOM: u64 = u64::MAX;

/// A static string naming `status` ("ok", "invalid argument", ...); "unknown" for values this
/// library does not know. Never NULL; never free it.
#[no_mangle]
pub extern "C" fn minerva_status_str(status: minerva_status) -> *const c_char {
    let s: &'static std::ffi::CStr = match status {
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
        _ => c"unknown",
    };
    s.as_ptr()
}

/// The message of the last failed minerva call on this thread, naming the function and the
/// problem; "" if none failed yet. Owned by minerva: valid until the next minerva call on this
/// thread. Never NULL. (A Go binding reads it inside the same C helper that made the call.)
#[no_mangle]
pub extern "C" fn minerva_last_error() -> *const c_char {
    let mut p: *const c_char = c"".as_ptr();
    guard_void(|| {
        p = super::LAST_ERROR
            .try_with(|e| e.borrow().as_ptr())
            .unwrap_or(c"".as_ptr());
    });
    p
}

/// The library's ABI version; equals `MINERVA_ABI_VERSION` for the header it was built with.
#[no_mangle]
pub extern "C" fn minerva_abi_version() -> u32 {
    MINERVA_ABI_VERSION
}

/// The library's version, e.g. "0.1.0". A static string; never free it.
#[no_mangle]
pub extern "C" fn minerva_version() -> *const c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
