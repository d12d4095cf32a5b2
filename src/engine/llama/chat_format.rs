//! llama.cpp's chat-format code (`chat_format.cpp` over common/chat.h): what a template's model
//! writes for tool calls and reasoning, and the parser that reads it back. Inputs and answers
//! cross as JSON texts; every exception comes back as an error.

use super::shim;
use std::ffi::{c_char, c_int, CString};

extern "C" {
    fn mshim_chat_analyze(
        tmpl: *const c_char,
        bos: *const c_char,
        eos: *const c_char,
        inputs_json: *const c_char,
        out: *mut *mut c_char,
    ) -> c_int;
    fn mshim_chat_parser_new(
        parser: *const c_char,
        format: c_int,
        generation_prompt: *const c_char,
        reasoning: bool,
        handle: *mut *mut RawParser,
        err: *mut *mut c_char,
    ) -> c_int;
    fn mshim_chat_parse(
        h: *const RawParser,
        input: *const c_char,
        len: usize,
        partial: bool,
        out: *mut *mut c_char,
    ) -> c_int;
    fn mshim_chat_parser_free(h: *mut RawParser);
}

#[repr(C)]
struct RawParser {
    _private: [u8; 0],
}

fn cstring(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| "a text holds a NUL byte".to_string())
}

/// What llama.cpp makes of `template` for `inputs_json` (see chat_format.cpp): a JSON object,
/// or the exception's message. Runs llama.cpp's Jinja engine, which has no bound: callers give
/// it only templates and inputs minijinja has rendered within its fuel.
pub fn analyze(template: &str, bos: &str, eos: &str, inputs_json: &str) -> Result<String, String> {
    let (t, b, e, i) = (
        cstring(template)?,
        cstring(bos)?,
        cstring(eos)?,
        cstring(inputs_json)?,
    );
    let mut out = std::ptr::null_mut();
    // SAFETY: NUL-terminated inputs that outlive the call; the answer is malloc'ed by the shim.
    let rc =
        unsafe { mshim_chat_analyze(t.as_ptr(), b.as_ptr(), e.as_ptr(), i.as_ptr(), &mut out) };
    shim::take_answer(rc, out)
}

/// llama.cpp's reader of a model's output in one format.
pub struct OutputParser {
    raw: *mut RawParser,
}

// SAFETY: the parser is only read by mshim_chat_parse (a const call that keeps no state between
// calls), and freed once, by its owner.
unsafe impl Send for OutputParser {}
unsafe impl Sync for OutputParser {}

impl OutputParser {
    /// The parser `analyze` gave (its "parser" text), its format number and generation prompt.
    pub fn new(
        parser: &str,
        format: i32,
        generation_prompt: &str,
        reasoning: bool,
    ) -> Result<OutputParser, String> {
        let (p, g) = (cstring(parser)?, cstring(generation_prompt)?);
        let (mut raw, mut err) = (std::ptr::null_mut(), std::ptr::null_mut());
        // SAFETY: NUL-terminated inputs that outlive the call; raw and err are written by it.
        let rc = unsafe {
            mshim_chat_parser_new(
                p.as_ptr(),
                format,
                g.as_ptr(),
                reasoning,
                &mut raw,
                &mut err,
            )
        };
        if rc != 0 || raw.is_null() {
            return Err(shim::take_answer(1, err).err().unwrap_or_default());
        }
        Ok(OutputParser { raw })
    }

    /// Reads the output so far (`partial`: more may follow) as a JSON object {"content",
    /// "reasoning", "calls": [{"name", "arguments", "id"}]}, or the parser's complaint.
    pub fn parse(&self, output: &str, partial: bool) -> Result<String, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: raw is live (freed only on drop); output is valid for its length.
        let rc = unsafe {
            mshim_chat_parse(
                self.raw,
                output.as_ptr().cast(),
                output.len(),
                partial,
                &mut out,
            )
        };
        shim::take_answer(rc, out)
    }
}

impl Drop for OutputParser {
    fn drop(&mut self) {
        // SAFETY: raw came from mshim_chat_parser_new and is freed once, here.
        unsafe { mshim_chat_parser_free(self.raw) };
    }
}
