//! Embeddings: `minerva_embed_params`, `minerva_embed`.

use super::engine::minerva_engine;
use super::*;
use crate::engine::embed::{EmbedParams, Pooling};
use crate::engine::Error;
use std::ffi::c_char;
use std::mem::offset_of;

/// How the vectors of a text's tokens become one (`minerva_embed_params.pooling`).
pub type minerva_pooling = u32;
/// The model's own pooling if its file declares one, else MEAN.
pub const MINERVA_POOLING_DEFAULT: minerva_pooling = 0;
/// The mean of the token vectors.
pub const MINERVA_POOLING_MEAN: minerva_pooling = 1;
/// The last token's vector (for causal models trained that way).
pub const MINERVA_POOLING_LAST: minerva_pooling = 2;
/// The first token's vector (BERT-style models).
pub const MINERVA_POOLING_CLS: minerva_pooling = 3;

/// Settings of `minerva_embed`. Fill it with `minerva_embed_params_init(&p, sizeof p)`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_embed_params {
    /// `sizeof(minerva_embed_params)` as the caller knows it; set by the init function.
    pub struct_size: u32,
    /// A `MINERVA_POOLING_*` value (default DEFAULT).
    pub pooling: minerva_pooling,
    /// L2-normalize each vector (default true), so that a dot product is the cosine similarity.
    pub normalize: bool,
}

impl Default for minerva_embed_params {
    fn default() -> Self {
        let d = EmbedParams::default();
        minerva_embed_params {
            struct_size: std::mem::size_of::<Self>() as u32,
            pooling: d.pooling as u32,
            normalize: d.normalize,
        }
    }
}

/// Fills `params` with the defaults. Call as `minerva_embed_params_init(&p, sizeof p)`. Only the
/// first `struct_size` bytes are written. NULL: no-op.
#[no_mangle]
pub unsafe extern "C" fn minerva_embed_params_init(
    params: *mut minerva_embed_params,
    struct_size: u32,
) {
    // SAFETY: the caller says `params` has struct_size writable bytes.
    ffi_export!(unsafe { init_params(params, struct_size, Default::default()) })
}

/// One vector per text, row after row: `count * minerva_engine_info.embedding_dims` floats into
/// `out`. `texts` are `count` UTF-8, NUL-terminated strings, each tokenized as a prompt (BOS where
/// the vocabulary asks for it, special tokens recognized).
///
/// Works on any engine, from any thread, while its streams generate: the vectors are computed on
/// the engine thread in a llama.cpp context of their own (made on the first call; see
/// docs/PERFORMANCE.md for its memory), one decode of at most 128 tokens of one text between two
/// generation steps, so running streams slow down but never stop. Each text is decoded by itself:
/// its vector is the same, to the bit, alone or beside any other texts, in any order. Blocks
/// until the vectors are done: refused inside a callback.
///
/// Buffer rules as `minerva_tokenize`: `*out_len` always gets the number of floats needed, and
/// `minerva_embed(e, t, n, NULL, NULL, 0, &len)` asks for it (without computing anything);
/// `MINERVA_ERR_BUFFER_TOO_SMALL` when `cap` floats do not hold them (`out` is then not written).
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine or out_len; `texts` NULL with count > 0; a
/// NULL or non-UTF-8 text, or one that gives no tokens, named by its index; `out` NULL with
/// `cap` > 0; an unknown pooling; a call from inside a callback), `MINERVA_ERR_CONTEXT_FULL` (a
/// text longer than `context_tokens`, named by its index), `MINERVA_ERR_BUFFER_TOO_SMALL`,
/// `MINERVA_ERR_CANCELLED` (the engine is being freed), `MINERVA_ERR_OUT_OF_MEMORY` or
/// `MINERVA_ERR_BACKEND` (llama.cpp failed).
#[no_mangle]
pub unsafe extern "C" fn minerva_embed(
    engine: *mut minerva_engine,
    texts: *const *const c_char,
    count: usize,
    params: *const minerva_embed_params,
    out: *mut f32,
    cap: usize,
    out_len: *mut usize,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let out_len = try_mut!(out_len, "out_len");
        if texts.is_null() && count > 0 {
            return Err(Error::invalid(format!(
                "texts is NULL but count is {count}"
            )));
        }
        if out.is_null() && cap > 0 {
            return Err(Error::invalid(format!("out is NULL but its cap is {cap}")));
        }
        // SAFETY: params is NULL or the caller's struct of its struct_size.
        let p = unsafe {
            read_params(
                params,
                minerva_embed_params::default(),
                std::mem::size_of::<minerva_embed_params>(),
                "params",
                &[offset_of!(minerva_embed_params, normalize)],
            )
        }?;
        let pooling = match p.pooling {
            MINERVA_POOLING_DEFAULT => Pooling::Default,
            MINERVA_POOLING_MEAN => Pooling::Mean,
            MINERVA_POOLING_LAST => Pooling::Last,
            MINERVA_POOLING_CLS => Pooling::Cls,
            other => {
                return Err(Error::invalid(format!(
                    "params.pooling is {other}; it must be a MINERVA_POOLING_* value (0 to 3)"
                )))
            }
        };
        let mut list = Vec::with_capacity(count);
        for i in 0..count {
            // SAFETY: the caller's array holds count pointers.
            let t = unsafe { *texts.add(i) };
            if t.is_null() {
                return Err(Error::invalid(format!("texts[{i}] is NULL")));
            }
            // SAFETY: a NUL-terminated string, as the header requires.
            list.push(unsafe { opt_str(t, &format!("texts[{i}]")) }?.unwrap_or(""));
        }
        let need = count * engine.inner.info().embedding_dims as usize;
        if need > cap {
            *out_len = need;
            return Err(Error::new(
                crate::engine::Status::BufferTooSmall,
                format!("out holds {cap} floats; {need} needed"),
            ));
        }
        let vectors = engine.inner.embed(
            &list,
            EmbedParams {
                pooling,
                normalize: p.normalize,
            },
        )?;
        // SAFETY: out has cap >= need floats (checked above).
        unsafe { fill_buffer(&vectors, out, cap, out_len, None, "out") }
    })
}
