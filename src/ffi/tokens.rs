//! Tokens: `minerva_tokenize`, `minerva_detokenize`.

use super::engine::minerva_engine;
use super::*;
use std::ffi::c_char;

/// A token id of the engine's vocabulary (0 to `minerva_engine_info.vocab_size` - 1).
pub type minerva_token = i32;

/// The tokens of `text` (UTF-8, NUL-terminated) in the engine's vocabulary: with `add_special`,
/// BOS (and EOS) where the vocabulary asks for them; with `parse_special`, special tokens written
/// in the text ("<start_of_turn>") become their token instead of being spelled out. With both,
/// exactly the tokens a stream on `text` starts from (`minerva_stream_stats.prompt_tokens`).
///
/// Writes up to `cap` tokens to `tokens` and always the count needed to `*out_count`:
/// `MINERVA_ERR_BUFFER_TOO_SMALL` when they do not fit (`tokens` is then not written), so
/// `minerva_tokenize(e, text, true, true, NULL, 0, &n)` asks for the count. Any thread, a callback
/// too; one pass over the text for SentencePiece and byte-level BPE vocabularies.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine, text or out_count; `tokens` NULL with
/// `cap` > 0; text not UTF-8), `MINERVA_ERR_BUFFER_TOO_SMALL`, `MINERVA_ERR_OUT_OF_MEMORY`.
#[no_mangle]
pub unsafe extern "C" fn minerva_tokenize(
    engine: *mut minerva_engine,
    text: *const c_char,
    add_special: bool,
    parse_special: bool,
    tokens: *mut minerva_token,
    cap: usize,
    out_count: *mut usize,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let text = try_str!(text, "text");
        let out_count = try_mut!(out_count, "out_count");
        let ids = engine.inner.tokenize(text, add_special, parse_special)?;
        // SAFETY: tokens is NULL or the caller's array of cap ids.
        unsafe { fill_buffer(&ids, tokens, cap, out_count, None, "tokens") }
    })
}

/// The text of `count` tokens, as the model would write them: special tokens (BOS,
/// "<end_of_turn>") shown with `render_special`, left out otherwise. Bytes that are not valid
/// UTF-8 on their own (a character split across the tokens given) are passed through as they are.
///
/// Writes up to `cap` bytes to `buf`, NUL-terminated when there is room, and always the length
/// needed (without the NUL) to `*out_len`: `MINERVA_ERR_BUFFER_TOO_SMALL` when it does not fit
/// (`buf` is then not written), so `minerva_detokenize(e, t, n, false, NULL, 0, &len)` asks for the
/// length. Any thread, a callback too.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine or out_len; `tokens` NULL with `count` > 0;
/// `buf` NULL with `cap` > 0; a token id outside the vocabulary, named by its index),
/// `MINERVA_ERR_BUFFER_TOO_SMALL`.
#[no_mangle]
pub unsafe extern "C" fn minerva_detokenize(
    engine: *mut minerva_engine,
    tokens: *const minerva_token,
    count: usize,
    render_special: bool,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let out_len = try_mut!(out_len, "out_len");
        // SAFETY: tokens is NULL or the caller's array of count ids.
        let ids = unsafe { array_arg(tokens, count, "tokens", "count") }?;
        let text = engine.inner.detokenize(ids, render_special)?;
        // SAFETY: buf is NULL or the caller's buffer of cap bytes.
        unsafe { fill_buffer(&text, buf.cast::<u8>(), cap, out_len, Some(0), "buf") }
    })
}
