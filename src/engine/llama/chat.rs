//! What chat rendering needs from llama.cpp: the model's template and special-token texts, and
//! llama.cpp's built-in (non-Jinja) templates by name. The Jinja rendering itself is minijinja's,
//! in `engine/chat/`.

use super::model::Model;
use super::shim::{self, check};
use crate::engine::error::{Error, Result};
use llama_cpp_sys_2 as sys;
use std::ffi::{c_char, CStr, CString};

impl Model {
    /// The model's own chat template (`tokenizer.chat_template`), if its file has one.
    pub fn chat_template(&self) -> Option<String> {
        let mut t = std::ptr::null();
        // SAFETY: valid model; the default template is asked for.
        let rc = unsafe { shim::mshim_model_chat_template(self.raw.as_ptr(), &mut t) };
        if check(rc, "chat template").is_err() || t.is_null() {
            return None;
        }
        // SAFETY: llama.cpp returns a NUL-terminated string owned by the model.
        Some(unsafe { CStr::from_ptr(t) }.to_string_lossy().into_owned())
    }

    /// The text of a special token as the vocabulary writes it ("<bos>"), "" when there is none.
    fn token_text(&self, token: sys::llama_token) -> String {
        let mut t = std::ptr::null();
        // SAFETY: valid vocabulary; out-of-range ids become an error through the shim.
        let rc = unsafe { shim::mshim_vocab_token_text(self.vocab(), token, &mut t) };
        if check(rc, "token text").is_err() || t.is_null() {
            return String::new();
        }
        // SAFETY: NUL-terminated, owned by the vocabulary.
        unsafe { CStr::from_ptr(t) }.to_string_lossy().into_owned()
    }

    pub fn bos_text(&self) -> String {
        // SAFETY: valid vocabulary.
        self.token_text(unsafe { sys::llama_vocab_bos(self.vocab()) })
    }

    pub fn eos_text(&self) -> String {
        // SAFETY: valid vocabulary.
        self.token_text(unsafe { sys::llama_vocab_eos(self.vocab()) })
    }

    /// Whether tokenizing with special tokens adds a BOS.
    pub fn adds_bos(&self) -> bool {
        // SAFETY: valid vocabulary.
        unsafe { sys::llama_vocab_get_add_bos(self.vocab()) }
    }
}

/// Renders (role, content) pairs with llama.cpp's built-in template `name`; `Ok(None)` when
/// llama.cpp knows no template of that name.
pub fn builtin_template(
    name: &str,
    messages: &[(&str, &str)],
    add_assistant: bool,
) -> Result<Option<String>> {
    let cname = CString::new(name).map_err(|_| Error::invalid("chat_template contains NUL"))?;
    let owned: Vec<(CString, CString)> = messages
        .iter()
        .map(|(r, c)| {
            Ok((
                CString::new(*r).map_err(|_| Error::invalid("a role contains NUL"))?,
                CString::new(*c).map_err(|_| Error::invalid("a message contains NUL"))?,
            ))
        })
        .collect::<Result<_>>()?;
    let roles: Vec<*const c_char> = owned.iter().map(|(r, _)| r.as_ptr()).collect();
    let contents: Vec<*const c_char> = owned.iter().map(|(_, c)| c.as_ptr()).collect();
    let (mut known, mut out) = (false, std::ptr::null_mut());
    // SAFETY: the arrays hold `n` NUL-terminated strings that outlive the call.
    let rc = unsafe {
        shim::mshim_chat_builtin(
            cname.as_ptr(),
            roles.as_ptr(),
            contents.as_ptr(),
            roles.len(),
            add_assistant,
            &mut known,
            &mut out,
        )
    };
    check(rc, "chat template")?;
    if !known || out.is_null() {
        return Ok(None);
    }
    Ok(shim::take_answer(0, out).ok())
}

/// Tests only: llama.cpp's own Jinja rendering of `messages_json` with `template`, as its server
/// does (Err: the exception's text).
#[cfg(test)]
pub fn reference_render(
    template: &str,
    messages_json: &str,
    tools_json: Option<&str>,
    add_generation_prompt: bool,
    bos: &str,
    eos: &str,
) -> std::result::Result<String, String> {
    let c = |s: &str| CString::new(s).unwrap();
    let (t, m, b, e) = (c(template), c(messages_json), c(bos), c(eos));
    let tools = tools_json.map(c);
    let mut out = std::ptr::null_mut();
    // SAFETY: NUL-terminated inputs outliving the call; the output is malloc'ed by the shim.
    let rc = unsafe {
        shim::mshim_reference_render(
            t.as_ptr(),
            m.as_ptr(),
            tools.as_ref().map_or(std::ptr::null(), |t| t.as_ptr()),
            add_generation_prompt,
            b.as_ptr(),
            e.as_ptr(),
            &mut out,
        )
    };
    shim::take_answer(rc, out)
}
