//! Game state: `minerva_cache_prefill`, `minerva_cache_save`/`_load` and their files.

use super::engine::minerva_engine;
use super::*;
use crate::engine::Error;
use std::ffi::c_char;

/// Added in 0.3. Computes `prompt`'s KV into the engine's prompt cache now, without generating:
/// a later stream (or chat stream) whose prompt starts with it skips those tokens
/// (`cached_prompt_tokens` says how many), when it runs with `cache_prompt` and the engine's LoRA
/// scales (the prefix is computed with them; a stream with other scales computes its own).
/// `prompt` is tokenized as a stream's is (BOS where the vocabulary asks for it, special tokens
/// recognized), so end it where a prompt that continues it would split into the same tokens (at
/// a newline, say).
///
/// `pin`: the prefix is kept until the engine is freed, never evicted by other prompts, in a
/// sequence of its own beside the stream slots (it takes no stream slot); an engine pins up to
/// 16 prefixes (fewer when `max_streams` is above 240), and they may hold all of the KV cache's
/// `context_tokens * max_streams` cells but one stream's context (`pinned_tokens` and
/// `pinned_bytes` of `minerva_engine_info` say what they hold). A prefix pinned already is not
/// pinned twice. Unpinned, it is computed in a stream slot and stays there as that slot's cache,
/// evicted by later prompts as any other. Idle stream slots' caches give way to pinned prefixes
/// when the cache runs out of cells.
///
/// Queued in order with the streams started before it (a pinned prefill does not wait for a free
/// stream slot, but for those streams to have one), then computed on the engine thread in the
/// batches beside the other streams' work (they keep going); returns when the prefix is in the
/// cache. Blocks: refused inside a callback. Any thread.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine or prompt, invalid UTF-8, an empty prompt,
/// a model whose memory cannot share a prefix, a call from inside a callback),
/// `MINERVA_ERR_CONTEXT_FULL` (a prompt longer than `context_tokens`; pinning beyond the 16
/// prefixes or the cells they may hold, with the numbers), `MINERVA_ERR_CANCELLED` (the engine is
/// being freed), `MINERVA_ERR_BACKEND` (llama.cpp failed).
#[no_mangle]
pub unsafe extern "C" fn minerva_cache_prefill(
    engine: *mut minerva_engine,
    prompt: *const c_char,
    pin: bool,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let prompt = try_str!(prompt, "prompt");
        engine.inner.cache_prefill(prompt, pin)
    })
}

/// Added in 0.3. Every cached prefix of the engine that no stream is computing (the pinned
/// prefixes and the stream slots' caches: their tokens and their KV), as bytes a game can put in
/// its save file. Taken on the engine thread between steps; streams keep running. The bytes record
/// the format's version, minerva's version, the model, `context_tokens` and the KV cache's layout,
/// with a checksum; about the size of the prefixes' KV (`pinned_bytes` for the pinned ones).
///
/// Buffer rules as `minerva_tokenize`: `*out_len` always gets the bytes needed, and
/// `minerva_cache_save(e, NULL, 0, &n)` asks for it; the cache may change between two calls
/// (streams end and leave their prompts cached), so give room to spare, or use
/// `minerva_cache_save_file`. Blocks: refused inside a callback. Any thread.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine or out_len, `buf` NULL with `cap` > 0, a
/// call from inside a callback), `MINERVA_ERR_BUFFER_TOO_SMALL`, `MINERVA_ERR_CANCELLED`,
/// `MINERVA_ERR_OUT_OF_MEMORY`, `MINERVA_ERR_BACKEND`.
#[no_mangle]
pub unsafe extern "C" fn minerva_cache_save(
    engine: *mut minerva_engine,
    buf: *mut std::ffi::c_void,
    cap: usize,
    out_len: *mut usize,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let out_len = try_mut!(out_len, "out_len");
        if buf.is_null() && cap > 0 {
            return Err(Error::invalid(format!("buf is NULL but its cap is {cap}")));
        }
        let bytes = engine.inner.cache_save()?;
        // SAFETY: buf is NULL or the caller's buffer of cap bytes.
        unsafe { fill_buffer(&bytes, buf.cast::<u8>(), cap, out_len, None, "buf") }
    })
}

/// Added in 0.3. Loads what `minerva_cache_save` wrote (`len` bytes at `buf`), into an engine of
/// the same model, `context_tokens` and minerva version (`max_streams` may differ): pinned
/// prefixes into free pinned sequences (one held already is not loaded twice), the others into
/// stream slots no stream holds, as many as there are (they are a cache: later prompts evict
/// them). The first stream on each of them then starts without prompt processing and gives the
/// same greedy text as from the prefix computed in place. Runs on the engine thread between
/// steps; streams keep running. Blocks: refused inside a callback. Any thread.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` naming what differs or is wrong (bytes that are not a
/// saved cache, another format version, minerva version, model, `context_tokens` or KV layout; a
/// checksum that does not match; truncated bytes; a state llama.cpp refuses), NULL `buf` with
/// `len` > 0, NULL engine, a call from inside a callback; `MINERVA_ERR_CONTEXT_FULL` (more pinned
/// prefixes, or pinned cells, than the engine has room for); `MINERVA_ERR_CANCELLED`. Checked
/// before anything is loaded, except a state llama.cpp refuses: the prefixes before it stay.
#[no_mangle]
pub unsafe extern "C" fn minerva_cache_load(
    engine: *mut minerva_engine,
    buf: *const std::ffi::c_void,
    len: usize,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        // SAFETY: buf is NULL or the caller's buffer of len readable bytes.
        let bytes = unsafe { array_arg(buf.cast::<u8>(), len, "buf", "len") }?;
        engine.inner.cache_load(bytes).map(|_| ())
    })
}

/// Added in 0.3. `minerva_cache_save` into the file at `path` (UTF-8), written whole or not at
/// all (a temporary file beside it, flushed to the disk, renamed over it). Errors: those of
/// `minerva_cache_save`, and `MINERVA_ERR_IO` naming the file.
#[no_mangle]
pub unsafe extern "C" fn minerva_cache_save_file(
    engine: *mut minerva_engine,
    path: *const c_char,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let path = try_str!(path, "path");
        engine.inner.cache_save_file(path)
    })
}

/// Added in 0.3. `minerva_cache_load` from the file at `path` (UTF-8). Errors: those of
/// `minerva_cache_load`, and `MINERVA_ERR_IO` naming the file.
#[no_mangle]
pub unsafe extern "C" fn minerva_cache_load_file(
    engine: *mut minerva_engine,
    path: *const c_char,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let path = try_str!(path, "path");
        engine.inner.cache_load_file(path).map(|_| ())
    })
}
