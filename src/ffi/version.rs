//! The library's version and ABI version.

use super::export::ffi_export;
use std::ffi::c_char;

/// The ABI version this header describes; `minerva_abi_version()` returns the library's. They
/// differ only when a program runs against a library other than the one it was built for.
pub const MINERVA_ABI_VERSION: u32 = 1;

/// The library's ABI version; equals `MINERVA_ABI_VERSION` for the header it was built with.
#[no_mangle]
pub extern "C" fn minerva_abi_version() -> u32 {
    ffi_export!(MINERVA_ABI_VERSION)
}

/// The library's version, e.g. "0.1.0". A static string; never free it.
#[no_mangle]
pub extern "C" fn minerva_version() -> *const c_char {
    ffi_export!(concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast())
}
