//! Streams: `minerva_generate_params`, `minerva_stream_*`, `minerva_generate`.

use super::engine::minerva_engine;
use super::params::*;
use super::*;
use crate::engine::{self as eng, Control, Error, FinishReason, Status, Stream};
use std::ffi::{c_char, c_void, CString};
use std::sync::OnceLock;
use std::time::Duration;

/// One generation, from prompt to finish. Opaque; running as soon as `minerva_stream_new`
/// returns; release with `minerva_stream_free`.
///
/// Thread safety: `minerva_stream_read`, `_wait`, `_cancel`, `_get_stats` and `_error` may be
/// called from any thread; `minerva_stream_free(s)` is the last call on `s`. The handle stays
/// valid after its engine is freed.
pub struct minerva_stream {
    pub(super) inner: Stream,
    /// The stream's error message as C text, made on the first ask after the stream ended.
    error: OnceLock<CString>,
}

impl minerva_stream {
    pub(super) fn new(inner: Stream) -> Self {
        minerva_stream {
            inner,
            error: OnceLock::new(),
        }
    }

    /// `minerva_stream_error`: "" until the stream has ended with an error, then its message
    /// (set once, before the finish callback runs), valid as long as the handle.
    fn error_c(&self) -> *const c_char {
        if let Some(c) = self.error.get() {
            return c.as_ptr();
        }
        let message = self.inner.error();
        if message.is_empty() {
            return c"".as_ptr();
        }
        self.error
            .get_or_init(|| CString::new(message.replace('\0', " ")).unwrap_or_default())
            .as_ptr()
    }
}

/// Figures of one stream; filled by `minerva_stream_get_stats`. Set `struct_size` to
/// `sizeof(minerva_stream_stats)` (or 0) before the call.
#[repr(C)]
#[derive(Clone, Copy, Default)]
pub struct minerva_stream_stats {
    /// Set by the caller: `sizeof(minerva_stream_stats)`, or 0 for the first published layout.
    pub struct_size: u32,
    /// Tokens of the prompt (with BOS where the model adds one).
    pub prompt_tokens: u32,
    /// Prompt tokens reused from the KV cache, not computed again.
    pub cached_prompt_tokens: u32,
    /// Tokens generated so far.
    pub generated_tokens: u32,
    /// From `minerva_stream_new` to the first generated token, in milliseconds.
    pub time_to_first_token_ms: f64,
    /// Prompt processing speed, over the computed (not cached) prompt tokens.
    pub prompt_tokens_per_second: f64,
    /// Generation speed, after the first token.
    pub tokens_per_second: f64,
    /// A `MINERVA_FINISH_*` value; `MINERVA_FINISH_RUNNING` while the stream runs.
    pub finish_reason: minerva_finish_reason,
}

/// Starts a generation on `engine` and returns at once; the engine thread does the work.
///
/// `prompt` is UTF-8, NUL-terminated, copied during the call. The engine thread tokenizes it (so
/// that starting a stream costs the caller a copy and a few checks, not a tokenization: a frame
/// loop may start many), with the model's BOS where its vocabulary asks for one, and special
/// tokens written in it are recognized (so chat formatted prompts work). `params` may be NULL
/// for the defaults.
///
/// With `on_token` set, text arrives through it on the engine thread (callback mode); with
/// `on_token` NULL, pull it with `minerva_stream_read` (pull mode). `user_data` is passed to
/// `on_token` and `params->on_finish` and never touched after the finish callback.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine, prompt or out; prompt or a stop string not
/// UTF-8; a parameter out of range, named in the message; a grammar or schema that does not
/// parse), `MINERVA_ERR_CONTEXT_FULL` (a prompt whose length alone proves it longer than
/// `context_tokens`: more bytes than `context_tokens` times the vocabulary's longest token),
/// `MINERVA_ERR_CANCELLED` (the engine is being freed: a finish callback run by
/// `minerva_engine_free` starts no new stream), `MINERVA_ERR_OUT_OF_MEMORY` or
/// `MINERVA_ERR_BACKEND` (llama.cpp failed building the stream's sampler). On failure no callback
/// is ever called and `*out` is not written. On success `*out` owns the stream: release it with
/// `minerva_stream_free`.
///
/// A prompt that turns out longer than `context_tokens` when the engine tokenizes it ends the
/// stream with `MINERVA_ERR_CONTEXT_FULL` (`MINERVA_FINISH_ERROR`, before any text; the finish
/// callback runs as for any end): for SentencePiece and byte-level BPE vocabularies, nearly every
/// LLM's, tokenizing stops as soon as it passes the context, so no prompt costs the engine more
/// than one pass over its bytes. An empty prompt on a vocabulary without BOS is refused here; one
/// that gives no tokens otherwise ends the stream with `MINERVA_ERR_INVALID_ARGUMENT`.
///
/// May be called from inside a callback.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_new(
    engine: *mut minerva_engine,
    prompt: *const c_char,
    params: *const minerva_generate_params,
    on_token: minerva_token_callback,
    user_data: *mut c_void,
    out: *mut *mut minerva_stream,
) -> minerva_status {
    ffi_export!({
        let out = try_mut!(out, "out");
        let stream = start(engine, prompt, params, on_token, user_data)?;
        *out = Box::into_raw(Box::new(minerva_stream::new(stream)));
        Ok(())
    })
}

/// `minerva_stream_new` without the handle: checks and converts the arguments and starts the
/// stream on the engine.
unsafe fn start(
    engine: *mut minerva_engine,
    prompt: *const c_char,
    params: *const minerva_generate_params,
    on_token: minerva_token_callback,
    user_data: *mut c_void,
) -> Result<Stream, Error> {
    let engine = try_ref!(engine, "engine");
    let prompt = try_str!(prompt, "prompt");
    // SAFETY: params is NULL or the caller's struct.
    let (g, on_finish) = unsafe { convert_params(params, engine.inner.info().lora_count) }?;
    let (token_fn, finish_fn) = callbacks(on_token, on_finish, user_data);
    engine.inner.start(prompt, g, token_fn, finish_fn)
}

/// The caller's C callbacks as the engine's closures, with `user_data`.
pub(super) fn callbacks(
    on_token: minerva_token_callback,
    on_finish: minerva_finish_callback,
    user_data: *mut c_void,
) -> (Option<eng::TokenFn>, Option<eng::FinishFn>) {
    let ud = UserData(user_data);
    let token_fn = on_token.map(|cb| {
        let mut buf: Vec<u8> = Vec::with_capacity(64);
        Box::new(move |text: &str| {
            let ud = ud;
            buf.clear();
            buf.extend_from_slice(text.as_bytes());
            buf.push(0);
            // SAFETY: the caller's callback, called as the header documents.
            let r = unsafe { cb(ud.0, buf.as_ptr().cast(), text.len()) };
            if r == MINERVA_CONTINUE {
                Control::Continue
            } else {
                Control::Stop
            }
        }) as eng::TokenFn
    });
    let finish_fn = on_finish.map(|cb| {
        Box::new(move |status: Status, reason: FinishReason| {
            let ud = ud;
            // SAFETY: the caller's callback, called as the header documents.
            unsafe { cb(ud.0, status_of(status), reason as minerva_finish_reason) }
        }) as eng::FinishFn
    });
    (token_fn, finish_fn)
}

/// A stream's final status as the error of a call that waited for it: the stream's own message,
/// or the status's words.
fn final_error(stream: &Stream, status: Status) -> Result<(), Error> {
    if status == Status::Ok {
        return Ok(());
    }
    let msg = match stream.error() {
        "" => status_text(status_of(status))
            .to_string_lossy()
            .into_owned(),
        m => m.to_owned(),
    };
    Err(Error::new(status, msg))
}

fn timeout_of(ms: i32) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

/// A call that waits for an engine thread is refused inside a token, finish or progress callback,
/// and on any engine thread (a log callback may run there): it could wait for itself.
fn refuse_blocking_in_callback(what: &str) -> Result<(), Error> {
    if eng::in_callback() || eng::current_engine_thread().is_some() {
        return Err(Error::invalid(format!(
            "{what} would wait for the engine thread and cannot be called from inside a callback"
        )));
    }
    Ok(())
}

/// Pull mode: copies up to `cap` bytes of whole UTF-8 characters into `buf` (not NUL-terminated),
/// waiting up to `timeout_ms` for text (0: do not wait; -1: no limit).
///
/// With valid arguments it returns `MINERVA_OK` and always writes `*out_len` (0 on timeout) and
/// `*finished`, which turns true once the stream has ended, for any reason, and all its text has
/// been read; then `minerva_stream_wait` gives the final status. Text waiting to be read is
/// buffered without limit. In callback mode it returns no text and reports `finished`.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` for a NULL argument, `cap < 4`, or a non-zero timeout
/// from inside a callback.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_read(
    stream: *mut minerva_stream,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    finished: *mut bool,
    timeout_ms: i32,
) -> minerva_status {
    ffi_export!({
        let stream = try_ref!(stream, "stream");
        if buf.is_null() {
            return Err(Error::invalid("buf is NULL"));
        }
        let out_len = try_mut!(out_len, "out_len");
        let finished = try_mut!(finished, "finished");
        if cap < 4 {
            return Err(Error::invalid(format!(
                "cap is {cap}; it must be at least 4 (one UTF-8 character)"
            )));
        }
        if timeout_ms != 0 {
            refuse_blocking_in_callback("minerva_stream_read with a timeout")?;
        }
        // SAFETY: the caller's buffer has cap writable bytes.
        let dst = unsafe { std::slice::from_raw_parts_mut(buf as *mut u8, cap) };
        let r = stream.inner.read(dst, timeout_of(timeout_ms));
        *out_len = r.len;
        *finished = r.finished;
        Ok(())
    })
}

/// Waits until the stream has ended and its last callback has returned, then returns its final
/// status: `MINERVA_OK` when it ended by length, stop or end-of-generation;
/// `MINERVA_ERR_CANCELLED`; or the error it failed with (see `minerva_stream_error`).
/// `MINERVA_ERR_TIMEOUT` if it has not ended within `timeout_ms` (0: poll; -1: no limit).
/// From inside a callback only `timeout_ms` 0 is allowed.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_wait(
    stream: *mut minerva_stream,
    timeout_ms: i32,
) -> minerva_status {
    ffi_export!({
        let stream = try_ref!(stream, "stream");
        if timeout_ms != 0 {
            refuse_blocking_in_callback("minerva_stream_wait with a timeout")?;
        }
        let status = stream.inner.wait(timeout_of(timeout_ms));
        if status == Status::Timeout {
            return Err(Error::new(
                status,
                format!("the stream has not ended within {timeout_ms} ms"),
            ));
        }
        final_error(&stream.inner, status)
    })
}

/// Asks the stream to end. Returns at once, from any thread (a callback too); the stream ends
/// within one engine step with `MINERVA_FINISH_CANCELLED` (if it had not ended already). NULL:
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_cancel(stream: *mut minerva_stream) {
    ffi_export!({
        // SAFETY: NULL or a live stream handle.
        if let Some(s) = unsafe { stream.as_ref() } {
            s.inner.cancel();
        }
    });
}

/// Fills `*out` with the stream's figures so far. Set `out->struct_size` first. Any thread, a
/// callback too. Errors: `MINERVA_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_get_stats(
    stream: *const minerva_stream,
    out: *mut minerva_stream_stats,
) -> minerva_status {
    ffi_export!({
        let stream = try_ref!(stream, "stream");
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        // SAFETY: out points to the caller's struct of its struct_size.
        unsafe {
            write_out(
                out,
                &stats_of(&stream.inner),
                size_of::<minerva_stream_stats>(),
            )
        };
        Ok(())
    })
}

/// The C form of a stream's figures.
fn stats_of(stream: &Stream) -> minerva_stream_stats {
    let s = stream.stats();
    minerva_stream_stats {
        struct_size: 0,
        prompt_tokens: s.prompt_tokens,
        cached_prompt_tokens: s.cached_prompt_tokens,
        generated_tokens: s.generated_tokens,
        time_to_first_token_ms: s.time_to_first_token_ms,
        prompt_tokens_per_second: s.prompt_tokens_per_second,
        tokens_per_second: s.tokens_per_second,
        finish_reason: s.finish_reason as minerva_finish_reason,
    }
}

/// The message of the error the stream ended with; "" while it runs or when it ended without one.
/// Owned by the stream: valid until `minerva_stream_free`. Never NULL (NULL stream: "").
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_error(stream: *const minerva_stream) -> *const c_char {
    ffi_export!({
        // SAFETY: NULL or a live stream handle; the message lives as long as the handle.
        match unsafe { stream.as_ref() } {
            Some(s) => s.error_c(),
            None => c"".as_ptr(),
        }
    })
}

/// Cancels the stream if it is running, waits until its callbacks can no longer run (its finish
/// callback has returned), and releases the handle. NULL: no-op.
///
/// It returns at once (no wait for the engine) for a stream with no callbacks (pull mode and no
/// `on_finish`): no user code can run for it; the engine drops its work within a step. And for a
/// stream still queued (waiting for a free slot, not yet taken by the engine thread): it never
/// runs, and its finish callback (`MINERVA_FINISH_CANCELLED`) runs on the calling thread before
/// this returns, once no other callback of the engine is running (callbacks of one engine never
/// run at the same time), so this waits at most for one callback call, never for the engine.
/// From inside a callback (of this stream or another) it does not wait either: the stream is
/// cancelled and the handle released at once, and the stream's finish callback still runs, on
/// the engine thread, after the current callback returns. A frame loop uses
/// `minerva_stream_release` for callback streams, or this on pull-mode streams.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_free(stream: *mut minerva_stream) {
    ffi_export!({
        if stream.is_null() {
            return;
        }
        // SAFETY: a non-NULL stream came from minerva_stream_new and is freed once.
        let s = unsafe { Box::from_raw(stream) };
        if s.inner.cancel_queued() {
            return; // ended here, its finish callback has returned
        }
        if s.inner.has_callbacks() && !eng::in_callback() && eng::current_engine_thread().is_none()
        {
            s.inner.wait(None);
        }
    });
}

/// Cancels the stream if it is running and gives the handle back at once: never waits, from any
/// thread (a frame loop's too). The stream's callbacks may still run on the engine thread until
/// its finish callback, which still runs last and exactly once: release `user_data` there, not
/// after this returns. NULL: no-op. Like `minerva_stream_free`, the last call on `stream`.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_release(stream: *mut minerva_stream) {
    ffi_export!({
        if stream.is_null() {
            return;
        }
        // SAFETY: a non-NULL stream came from minerva_stream_new and is released once.
        let s = unsafe { Box::from_raw(stream) };
        s.inner.cancel();
    });
}

/// Blocking convenience: `minerva_stream_new`, `minerva_stream_wait`, `minerva_stream_get_stats`
/// and `minerva_stream_free` in one call. Returns the stream's final status (or the error of
/// creating it). `out_stats` (nullable; set its `struct_size`) is filled whenever the stream was
/// created, whatever the final status. With `on_token` NULL the text is discarded. Refused with
/// `MINERVA_ERR_INVALID_ARGUMENT` from inside a callback.
#[no_mangle]
pub unsafe extern "C" fn minerva_generate(
    engine: *mut minerva_engine,
    prompt: *const c_char,
    params: *const minerva_generate_params,
    on_token: minerva_token_callback,
    user_data: *mut c_void,
    out_stats: *mut minerva_stream_stats,
) -> minerva_status {
    ffi_export!({
        refuse_blocking_in_callback("minerva_generate")?;
        let stream = start(engine, prompt, params, on_token, user_data)?;
        let status = stream.wait(None);
        if !out_stats.is_null() {
            // SAFETY: out_stats is the caller's struct of its struct_size.
            unsafe {
                write_out(
                    out_stats,
                    &stats_of(&stream),
                    size_of::<minerva_stream_stats>(),
                )
            };
        }
        final_error(&stream, status)
    })
}
