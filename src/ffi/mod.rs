//! The C surface: thin and mechanical, one file a domain. Every export has the same shape: an
//! `ffi_export!` body (the panic boundary, named after the export itself; see [`export`]) that
//! turns raw pointers into references with the macros of [`abi`] and answers a `minerva_status`;
//! the words of a failure go to `minerva_last_error`. The header is generated from these files in
//! this order: errors and versions first, then engines, streams and their parameters, logging.

#![allow(non_camel_case_types)]
// The safety contract of each export is its documentation in the C header.
#![allow(clippy::missing_safety_doc)]

pub(crate) mod abi;
pub(crate) mod export;

pub mod error;
pub mod status;
pub mod version;

pub mod engine;
pub mod params;
pub mod stream;
pub mod tokens;

pub mod cache;
pub mod chat;
pub mod embed;

pub mod log;

pub use cache::*;
pub use chat::*;
pub use embed::*;
pub use engine::*;
pub use error::*;
pub use log::*;
pub use params::*;
pub use status::*;
pub use stream::*;
pub use tokens::*;
pub use version::*;

pub(crate) use abi::*;
pub(crate) use export::ffi_export;
