//! Declarations of the C++ exception boundary (`shim.cpp`): every llama.cpp call that can throw goes
//! through one of these. Each answers 0, or non-zero when llama.cpp threw; [`check`] turns that
//! into an [`Error`] carrying the exception's message.

use super::super::error::{Error, Status};
use llama_cpp_sys_2 as sys;
use std::ffi::{c_char, c_int};

#[repr(C)]
pub struct Sampling {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: i32,
    pub seed: u32,
    pub n_vocab: i32,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    pub logit_bias: *const sys::llama_logit_bias,
    pub n_logit_bias: i32,
    pub vocab: *const sys::llama_vocab,
    pub grammar: *const c_char,
}

/// What `mshim_sampler_new` answers when llama.cpp refused the grammar (its words were logged).
pub const BAD_GRAMMAR: c_int = 2;

extern "C" {
    fn mshim_take_error(buf: *mut c_char, cap: usize) -> usize;
    pub fn mshim_backend_init(backend_dir: *const c_char, load_dynamic: bool) -> c_int;
    pub fn mshim_cpu_variant(buf: *mut c_char, cap: usize) -> c_int;
    pub fn mshim_rpc_add_server(
        endpoint: *const c_char,
        out: *mut sys::ggml_backend_reg_t,
    ) -> c_int;
    pub fn mshim_rpc_serve(endpoint: *const c_char, mem_bytes: usize, threads: usize) -> c_int;
    pub fn mshim_dev_memory(
        dev: sys::ggml_backend_dev_t,
        free: *mut usize,
        total: *mut usize,
    ) -> c_int;
    pub fn mshim_model_load(
        path: *const c_char,
        params: sys::llama_model_params,
        out: *mut *mut sys::llama_model,
    ) -> c_int;
    pub fn mshim_model_chat_template(
        model: *const sys::llama_model,
        out: *mut *const c_char,
    ) -> c_int;
    pub fn mshim_model_desc(
        model: *const sys::llama_model,
        buf: *mut c_char,
        cap: usize,
        out: *mut i32,
    ) -> c_int;
    pub fn mshim_init_from_model(
        model: *mut sys::llama_model,
        params: sys::llama_context_params,
        out: *mut *mut sys::llama_context,
    ) -> c_int;
    #[allow(clippy::too_many_arguments)]
    pub fn mshim_tokenize(
        vocab: *const sys::llama_vocab,
        text: *const c_char,
        len: i32,
        tokens: *mut sys::llama_token,
        cap: i32,
        add_special: bool,
        parse_special: bool,
        out: *mut i32,
    ) -> c_int;
    pub fn mshim_token_to_piece(
        vocab: *const sys::llama_vocab,
        token: sys::llama_token,
        buf: *mut c_char,
        cap: i32,
        special: bool,
        out: *mut i32,
    ) -> c_int;
    pub fn mshim_detokenize(
        vocab: *const sys::llama_vocab,
        tokens: *const sys::llama_token,
        n: i32,
        buf: *mut c_char,
        cap: i32,
        render_special: bool,
        out: *mut i32,
    ) -> c_int;
    pub fn mshim_vocab_max_piece(vocab: *const sys::llama_vocab, out: *mut i32) -> c_int;
    pub fn mshim_vocab_strips_space(vocab: *const sys::llama_vocab, out: *mut bool) -> c_int;
    pub fn mshim_decode(
        ctx: *mut sys::llama_context,
        batch: sys::llama_batch,
        out: *mut i32,
    ) -> c_int;
    pub fn mshim_get_logits_ith(ctx: *mut sys::llama_context, i: i32, out: *mut *mut f32) -> c_int;
    pub fn mshim_set_sampler(
        ctx: *mut sys::llama_context,
        seq: i32,
        chain: *mut sys::llama_sampler,
        ok: *mut bool,
    ) -> c_int;
    pub fn mshim_memory_seq_rm(
        ctx: *mut sys::llama_context,
        seq: sys::llama_seq_id,
        p0: sys::llama_pos,
        out: *mut bool,
    ) -> c_int;
    pub fn mshim_memory_seq_cp(
        ctx: *mut sys::llama_context,
        src: sys::llama_seq_id,
        dst: sys::llama_seq_id,
        p0: sys::llama_pos,
        p1: sys::llama_pos,
    ) -> c_int;
    pub fn mshim_memory_seq_pos_range(
        ctx: *mut sys::llama_context,
        seq: sys::llama_seq_id,
        min: *mut sys::llama_pos,
        max: *mut sys::llama_pos,
    ) -> c_int;
    pub fn mshim_batch_init(cap: i32, out: *mut sys::llama_batch) -> c_int;
    pub fn mshim_sampler_new(
        p: *const Sampling,
        out: *mut *mut sys::llama_sampler,
        grammar_out: *mut *mut sys::llama_sampler,
    ) -> c_int;
    pub fn mshim_string_free(s: *mut c_char);
    pub fn mshim_sampler_sample(
        chain: *mut sys::llama_sampler,
        grammar: *mut sys::llama_sampler,
        logits: *const f32,
        n_vocab: i32,
        top: *const sys::llama_token,
        n_top: i32,
        temperature: f32,
        out: *mut sys::llama_token,
        deferred: *mut bool,
    ) -> c_int;
    pub fn mshim_sampler_sample_full(
        chain: *mut sys::llama_sampler,
        grammar: *mut sys::llama_sampler,
        logits: *const f32,
        n_vocab: i32,
        stop: unsafe extern "C" fn(*mut std::ffi::c_void) -> c_int,
        stop_data: *mut std::ffi::c_void,
        out: *mut sys::llama_token,
    ) -> c_int;
    pub fn mshim_sampler_accept(s: *mut sys::llama_sampler, token: sys::llama_token) -> c_int;
    pub fn mshim_get_embeddings_ith(
        ctx: *mut sys::llama_context,
        i: i32,
        out: *mut *mut f32,
    ) -> c_int;
    pub fn mshim_vocab_token_text(
        vocab: *const sys::llama_vocab,
        token: sys::llama_token,
        out: *mut *const c_char,
    ) -> c_int;
    pub fn mshim_chat_builtin(
        name: *const c_char,
        roles: *const *const c_char,
        contents: *const *const c_char,
        n: usize,
        add_assistant: bool,
        known: *mut bool,
        out: *mut *mut c_char,
    ) -> c_int;
    /// Tests only: llama.cpp's own Jinja rendering (chat_reference.cpp).
    #[cfg(test)]
    pub fn mshim_reference_render(
        tmpl: *const c_char,
        messages_json: *const c_char,
        tools_json: *const c_char,
        add_generation_prompt: bool,
        bos: *const c_char,
        eos: *const c_char,
        out: *mut *mut c_char,
    ) -> c_int;
}

/// Takes a shim function's malloc'ed answer (text on 0, the exception's message otherwise; NULL:
/// out of memory) and frees it.
pub fn take_answer(rc: c_int, out: *mut c_char) -> Result<String, String> {
    if out.is_null() {
        return Err("out of memory".into());
    }
    // SAFETY: a malloc'ed NUL-terminated string from the shim, freed right after the copy.
    let text = unsafe { std::ffi::CStr::from_ptr(out) }
        .to_string_lossy()
        .into_owned();
    unsafe { mshim_string_free(out) };
    if rc == 0 {
        Ok(text)
    } else {
        Err(text)
    }
}

/// The message of the exception the last shim call on this thread caught.
fn take_error() -> String {
    let mut buf = [0u8; 512];
    // SAFETY: buf is writable for its length; the shim NUL-terminates within it.
    unsafe { mshim_take_error(buf.as_mut_ptr().cast(), buf.len()) };
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Ok for a shim's 0; otherwise the exception llama.cpp threw in `what`, as an error
/// (`Status::OutOfMemory` for an allocation failure, else `Status::Backend`).
pub fn check(rc: c_int, what: &str) -> Result<(), Error> {
    if rc == 0 {
        return Ok(());
    }
    let why = take_error();
    let status = if why.contains("bad_alloc") || why.contains("could not allocate") {
        Status::OutOfMemory
    } else {
        Status::Backend
    };
    Err(Error::new(status, format!("{what}: {why}")))
}
