//! minerva: local LLM inference (llama.cpp) behind a C ABI.
//!
//! [`engine`] is safe Rust over llama.cpp; [`ffi`] is the C surface, described for C programmers
//! in the generated header `include/minerva.h`.

/// cbindgen:ignore
pub mod engine;
pub mod ffi;
