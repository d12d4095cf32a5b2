//! The words behind status codes, for C: `minerva_status_str`, `minerva_last_error`.

use super::export::{ffi_export, last_error};
use super::status::*;
use std::ffi::c_char;

/// A static string naming `status` ("ok", "invalid argument", ...); "unknown" for values this
/// library does not know. Never NULL; never free it.
#[no_mangle]
pub extern "C" fn minerva_status_str(status: minerva_status) -> *const c_char {
    ffi_export!(status_text(status).as_ptr())
}

/// The message of the last failed minerva call on this thread, naming the function and the
/// problem; "" if none failed yet. Owned by minerva: valid until the next minerva call on this
/// thread. Never NULL. (A Go binding reads it inside the same C helper that made the call.)
#[no_mangle]
pub extern "C" fn minerva_last_error() -> *const c_char {
    ffi_export!(last_error())
}
