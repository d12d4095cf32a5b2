//! Streams: `minerva_generate_params`, `minerva_stream_*`, `minerva_generate`.

use super::engine::minerva_engine;
use super::*;
use crate::engine::{
    self as eng, Control, Error, FinishReason, GenerateParams, SamplingParams, Status, Stream,
};
use std::ffi::{c_char, c_void};
use std::mem::offset_of;
use std::time::Duration;

/// One generation, from prompt to finish. Opaque; running as soon as `minerva_stream_new`
/// returns; release with `minerva_stream_free`.
///
/// Thread safety: `minerva_stream_read`, `_wait`, `_cancel`, `_get_stats` and `_error` may be
/// called from any thread; `minerva_stream_free(s)` is the last call on `s`. The handle stays
/// valid after its engine is freed.
pub struct minerva_stream {
    inner: Stream,
}

/// Receives generated text, on the engine thread. `text` is valid UTF-8, never a split character,
/// never empty, NUL-terminated, `len` bytes without the NUL; it is valid only during the call.
/// Return `MINERVA_CONTINUE` to go on, or `MINERVA_STOP` (any other value) to end the stream with
/// `MINERVA_FINISH_STOP`. A slow callback holds back every stream of its engine.
pub type minerva_token_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        text: *const c_char,
        len: usize,
    ) -> minerva_control,
>;

/// Called exactly once per created stream, on the engine thread, after its last token callback,
/// with the final status and the reason it ended. From then on `user_data` is never touched
/// again, so this is the place to release it.
pub type minerva_finish_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        status: minerva_status,
        reason: minerva_finish_reason,
    ),
>;

/// Settings of one generation. Fill it with `minerva_generate_params_init(&p, sizeof p)`, then
/// change what you need. It is read (and the stop strings copied) during `minerva_stream_new`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_generate_params {
    /// `sizeof(minerva_generate_params)` as the caller knows it; set by the init function.
    pub struct_size: u32,
    /// Tokens to generate at most (default 256); 0: until end-of-generation or a full context.
    pub max_tokens: u32,
    /// Sampling temperature (default 0.8); 0: greedy (the most likely token every time).
    /// Must be finite and >= 0.
    pub temperature: f32,
    /// Keep the k most likely tokens (default 40); 0: off. Must be >= 0.
    pub top_k: i32,
    /// Nucleus sampling (default 0.95); 1: off. Must be in (0, 1].
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely (default 0.05); 0: off.
    /// Must be in [0, 1].
    pub min_p: f32,
    /// Penalty on repeated tokens (default 1); 1: off. Must be finite and > 0.
    pub repeat_penalty: f32,
    /// How many recent tokens `repeat_penalty` looks at (default 64; 0 to 1048576, larger is
    /// `MINERVA_ERR_INVALID_ARGUMENT`). The window never reaches past the stream's context, so
    /// values above `context_tokens` act as `context_tokens`. 0: the penalty is off.
    pub repeat_last_n: u32,
    /// Sampling seed (default `MINERVA_SEED_RANDOM`: a new seed for each stream). All 64 bits
    /// count: the seed is hashed to llama.cpp's 32-bit seed, so two distinct seeds give unrelated
    /// text (they meet on the same 32-bit seed with a chance of about one in four billion).
    /// With a fixed seed, the same prompt, params and engine settings give the same text when
    /// the stream is decoded alone and its prompt is computed afresh. Decoded in a batch with
    /// other streams, or starting from prompt cells cached by an earlier stream
    /// (`cache_prompt`), the arithmetic differs and the text may too: set `cache_prompt` false
    /// for text that depends on the seed alone.
    pub seed: u64,
    /// Stop strings (default NULL): non-empty UTF-8. Generation ends when one appears, and the
    /// matched text is never delivered. Copied during the call.
    pub stop: *const *const c_char,
    /// Number of entries in `stop`.
    pub stop_count: usize,
    /// Keep going past end-of-generation (default false; for benchmarks).
    pub ignore_eos: bool,
    /// Reuse KV cache cells holding the same prompt prefix (default true).
    pub cache_prompt: bool,
    /// Optional finish callback (default NULL); gets the `user_data` given to
    /// `minerva_stream_new`.
    pub on_finish: minerva_finish_callback,
}

impl Default for minerva_generate_params {
    fn default() -> Self {
        let d = GenerateParams::default();
        minerva_generate_params {
            struct_size: std::mem::size_of::<Self>() as u32,
            max_tokens: d.max_tokens,
            temperature: d.sampling.temperature,
            top_k: d.sampling.top_k,
            top_p: d.sampling.top_p,
            min_p: d.sampling.min_p,
            repeat_penalty: d.sampling.repeat_penalty,
            repeat_last_n: d.sampling.repeat_last_n,
            seed: MINERVA_SEED_RANDOM,
            stop: std::ptr::null(),
            stop_count: 0,
            ignore_eos: d.ignore_eos,
            cache_prompt: d.cache_prompt,
            on_finish: None,
        }
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

/// Fills `params` with the defaults. Call as `minerva_generate_params_init(&p, sizeof p)`. Only the
/// first `struct_size` bytes are written. NULL: no-op.
#[no_mangle]
pub unsafe extern "C" fn minerva_generate_params_init(
    params: *mut minerva_generate_params,
    struct_size: u32,
) {
    // SAFETY: the caller says `params` has struct_size writable bytes.
    guard_void(|| unsafe { init_params(params, struct_size, Default::default()) });
}

fn generate_params_bools() -> [usize; 2] {
    [
        offset_of!(minerva_generate_params, ignore_eos),
        offset_of!(minerva_generate_params, cache_prompt),
    ]
}

/// Reads the caller's params (NULL: defaults) into the engine's form, copying the stop strings.
unsafe fn convert_params(
    params: *const minerva_generate_params,
) -> Result<(GenerateParams, minerva_finish_callback), Error> {
    // SAFETY: params is NULL or a caller struct of struct_size bytes.
    let p = unsafe {
        read_params(
            params,
            minerva_generate_params::default(),
            "params",
            &generate_params_bools(),
        )
    }?;
    let mut stops = Vec::with_capacity(p.stop_count.min(64));
    if p.stop_count > 0 {
        if p.stop.is_null() {
            return Err(Error::invalid(format!(
                "params.stop is NULL but params.stop_count is {}",
                p.stop_count
            )));
        }
        for i in 0..p.stop_count {
            // SAFETY: the caller's array has stop_count entries.
            let s = unsafe { *p.stop.add(i) };
            if s.is_null() {
                return Err(Error::invalid(format!("params.stop[{i}] is NULL")));
            }
            // SAFETY: each entry is a NUL-terminated string.
            let s = unsafe { std::ffi::CStr::from_ptr(s) }
                .to_str()
                .map_err(|e| {
                    Error::invalid(format!(
                        "params.stop[{i}] is not valid UTF-8 (bad byte at offset {})",
                        e.valid_up_to()
                    ))
                })?;
            stops.push(s.to_owned());
        }
    }
    let g = GenerateParams {
        max_tokens: p.max_tokens,
        sampling: SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n,
            seed: p.seed,
        },
        stop: stops,
        ignore_eos: p.ignore_eos,
        cache_prompt: p.cache_prompt,
    };
    g.check()
        .map_err(|e| Error::invalid(format!("params.{}", e.message)))?;
    Ok((g, p.on_finish))
}

fn status_of_finish(r: FinishReason) -> minerva_finish_reason {
    r as minerva_finish_reason
}

/// Starts a generation on `engine` and returns at once; the engine thread does the work.
///
/// `prompt` is UTF-8, NUL-terminated, copied during the call. It is tokenized with the model's BOS
/// where its vocabulary asks for one, and special tokens written in it are recognized (so chat
/// formatted prompts work). `params` may be NULL for the defaults.
///
/// With `on_token` set, text arrives through it on the engine thread (callback mode); with
/// `on_token` NULL, pull it with `minerva_stream_read` (pull mode). `user_data` is passed to
/// `on_token` and `params->on_finish` and never touched after the finish callback.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine, prompt or out; prompt or a stop string not
/// UTF-8; a parameter out of range, named in the message), `MINERVA_ERR_CONTEXT_FULL` (the
/// prompt has more tokens than `context_tokens`; a prompt whose bytes alone prove that is
/// refused at once, before it is tokenized, so that no prompt costs more than one pass over its
/// bytes to refuse), `MINERVA_ERR_CANCELLED` (the engine is being freed: a finish callback run
/// by `minerva_engine_free` starts no new stream), `MINERVA_ERR_OUT_OF_MEMORY` or
/// `MINERVA_ERR_BACKEND` (llama.cpp failed building the stream's tokens or sampler). On failure no
/// callback is ever called and `*out` is not written. On success `*out` owns the stream: release
/// it with `minerva_stream_free`.
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
    guard("minerva_stream_new", || {
        let engine = try_ref!(engine, "engine");
        let prompt = try_str!(prompt, "prompt");
        let out = try_mut!(out, "out");
        // SAFETY: params is NULL or the caller's struct.
        let (g, on_finish) = unsafe { convert_params(params) }?;
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
                unsafe { cb(ud.0, status_of(status), status_of_finish(reason)) }
            }) as eng::FinishFn
        });
        let stream = engine.inner.start(prompt, g, token_fn, finish_fn)?;
        *out = Box::into_raw(Box::new(minerva_stream { inner: stream }));
        Ok(())
    })
}

fn timeout_of(ms: i32) -> Option<Duration> {
    (ms >= 0).then(|| Duration::from_millis(ms as u64))
}

fn refuse_blocking_in_callback(what: &str) -> Result<(), Error> {
    if eng::in_callback() {
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
    guard("minerva_stream_read", || {
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
    let mut status = MINERVA_OK;
    let r = guard("minerva_stream_wait", || {
        let stream = try_ref!(stream, "stream");
        if timeout_ms != 0 {
            refuse_blocking_in_callback("minerva_stream_wait with a timeout")?;
        }
        status = status_of(stream.inner.wait(timeout_of(timeout_ms)));
        if status != MINERVA_OK {
            set_last_error(&format!(
                "minerva_stream_wait: {}",
                match stream.inner.error().to_str() {
                    Ok("") | Err(_) => minerva_status_str_rs(status),
                    Ok(s) => s,
                }
            ));
        }
        Ok(())
    });
    if r != MINERVA_OK {
        r
    } else {
        status
    }
}

fn minerva_status_str_rs(s: minerva_status) -> &'static str {
    // SAFETY: minerva_status_str returns a static NUL-terminated ASCII string.
    unsafe { std::ffi::CStr::from_ptr(minerva_status_str(s)) }
        .to_str()
        .unwrap_or("unknown")
}

/// Asks the stream to end. Returns at once, from any thread (a callback too); the stream ends
/// within one engine step with `MINERVA_FINISH_CANCELLED` (if it had not ended already). NULL:
/// no-op.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_cancel(stream: *mut minerva_stream) {
    guard_void(|| {
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
    guard("minerva_stream_get_stats", || {
        let stream = try_ref!(stream, "stream");
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let s = stream.inner.stats();
        let v = minerva_stream_stats {
            struct_size: 0,
            prompt_tokens: s.prompt_tokens,
            cached_prompt_tokens: s.cached_prompt_tokens,
            generated_tokens: s.generated_tokens,
            time_to_first_token_ms: s.time_to_first_token_ms,
            prompt_tokens_per_second: s.prompt_tokens_per_second,
            tokens_per_second: s.tokens_per_second,
            finish_reason: status_of_finish(s.finish_reason),
        };
        // SAFETY: out points to the caller's struct of its struct_size.
        unsafe { write_out(out, &v) };
        Ok(())
    })
}

/// The message of the error the stream ended with; "" while it runs or when it ended without one.
/// Owned by the stream: valid until `minerva_stream_free`. Never NULL (NULL stream: "").
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_error(stream: *const minerva_stream) -> *const c_char {
    let mut p = c"".as_ptr();
    guard_void(|| {
        // SAFETY: NULL or a live stream handle; the message lives as long as the handle.
        if let Some(s) = unsafe { stream.as_ref() } {
            p = s.inner.error().as_ptr();
        }
    });
    p
}

/// Cancels the stream if it is running, waits until its callbacks can no longer run (its finish
/// callback has returned), and releases the handle. NULL: no-op.
///
/// From inside a callback (of this stream or another) it does not wait: the stream is cancelled
/// and the handle released at once, and the stream's finish callback still runs, on the engine
/// thread, after the current callback returns.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_free(stream: *mut minerva_stream) {
    guard_void(|| {
        if stream.is_null() {
            return;
        }
        // SAFETY: a non-NULL stream came from minerva_stream_new and is freed once.
        let s = unsafe { Box::from_raw(stream) };
        s.inner.cancel();
        if !eng::in_callback() && eng::current_engine_thread().is_none() {
            s.inner.wait(None);
        }
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
    // Every call below catches its own panics; this catches any of the glue's.
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        if let Err(e) = refuse_blocking_in_callback("minerva_generate") {
            return guard("minerva_generate", || Err(e));
        }
        let mut stream: *mut minerva_stream = std::ptr::null_mut();
        // SAFETY: arguments forwarded as the caller gave them; stream_new checks them.
        let st =
            unsafe { minerva_stream_new(engine, prompt, params, on_token, user_data, &mut stream) };
        if st != MINERVA_OK {
            return st;
        }
        // SAFETY: stream is the live handle created above; it is freed once, last.
        unsafe {
            let st = minerva_stream_wait(stream, -1);
            if !out_stats.is_null() {
                minerva_stream_get_stats(stream, out_stats);
            }
            let msg = std::ffi::CStr::from_ptr(minerva_stream_error(stream))
                .to_string_lossy()
                .into_owned();
            minerva_stream_free(stream);
            if st != MINERVA_OK {
                set_last_error(&format!(
                    "minerva_generate: {}",
                    if msg.is_empty() {
                        minerva_status_str_rs(st).to_string()
                    } else {
                        msg
                    }
                ));
            }
            st
        }
    }))
    .unwrap_or_else(|_| {
        set_last_error("minerva_generate: internal error (a panic was caught)");
        MINERVA_ERR_INTERNAL
    })
}
