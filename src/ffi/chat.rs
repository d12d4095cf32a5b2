//! Chat: `minerva_chat_message`, `minerva_chat_params`, `minerva_chat_format`,
//! `minerva_chat_stream_new`, `minerva_stream_tool_calls`.

use super::engine::minerva_engine;
use super::params::*;
use super::stream::{callbacks, minerva_stream};
use super::*;
use crate::engine::chat::{ChatOptions, Message, ToolChoice};
use crate::engine::Error;
use std::ffi::{c_char, c_void};
use std::mem::offset_of;

/// One turn of a conversation. Every string is UTF-8, NUL-terminated, and only read during the
/// call that is given the message.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_chat_message {
    /// "system", "user", "assistant" or "tool"; any other role is refused.
    pub role: *const c_char,
    /// The text of the turn. NULL only for an assistant turn that only called tools.
    pub content: *const c_char,
    /// Assistant turns: the calls it made, as `minerva_stream_tool_calls` gave them (a JSON array
    /// of `{"id", "name", "arguments"}`); otherwise NULL.
    pub tool_calls_json: *const c_char,
    /// Tool turns: the id of the call this turn answers; otherwise NULL.
    pub tool_call_id: *const c_char,
}

/// Whether and how the model may call tools (`minerva_chat_params.tool_choice`).
pub type minerva_tool_choice = u32;
/// The model may answer or call tools.
pub const MINERVA_TOOL_CHOICE_AUTO: minerva_tool_choice = 0;
/// The tools are not offered to the model.
pub const MINERVA_TOOL_CHOICE_NONE: minerva_tool_choice = 1;
/// The reply is tool calls (one to `max_tool_calls`, default four): the output is constrained so
/// that it always parses as calls of the given tools, with arguments valid against each tool's
/// `parameters` schema.
pub const MINERVA_TOOL_CHOICE_REQUIRED: minerva_tool_choice = 2;

/// How a conversation is rendered. Fill it with `minerva_chat_params_init(&c, sizeof c)`; it is
/// read during the call it is given to.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_chat_params {
    /// `sizeof(minerva_chat_params)` as the caller knows it; set by the init function.
    pub struct_size: u32,
    /// NULL (default): the model's own template (`tokenizer.chat_template`), or ChatML with one
    /// warning log line when the model has none. Otherwise a Jinja template text, or the name of
    /// a template built into llama.cpp ("chatml", "gemma", "llama3", "mistral-v7", "phi4", ...).
    pub chat_template: *const c_char,
    /// NULL (default) or an OpenAI-style JSON array of tools:
    /// `[{"type": "function", "function": {"name", "description", "parameters"}}]`, names of 1 to
    /// 64 of `[A-Za-z0-9_.-]`, `parameters` a JSON Schema object.
    pub tools_json: *const c_char,
    /// A `MINERVA_TOOL_CHOICE_*` value (default AUTO).
    pub tool_choice: minerva_tool_choice,
    /// End the rendering with the start of an assistant turn (default true).
    pub add_generation_prompt: bool,
    /// Added in 0.3. NULL (default) or a JSON object of extra template variables, e.g.
    /// `{"enable_thinking": false}`; anything else is `MINERVA_ERR_INVALID_ARGUMENT`.
    pub template_kwargs_json: *const c_char,
    /// Added in 0.3. A `MINERVA_REASONING_*` value (default AUTO).
    pub reasoning: minerva_reasoning,
    /// Added in 0.3. The last message is an assistant turn the model continues (rendered without
    /// its end of turn); a last message of another role is `MINERVA_ERR_INVALID_ARGUMENT`.
    pub continue_final_message: bool,
    /// Added in 0.3. A REQUIRED reply holds 1 to `max_tool_calls` calls; 0 (default): 4.
    pub max_tool_calls: u32,
}

/// What becomes of the reasoning a model writes (`minerva_chat_params.reasoning`).
pub type minerva_reasoning = u32;
/// The reasoning the template's format marks (`<think>...</think>`, `<seed:think>`, gpt-oss's
/// analysis channel, a generation prompt that opens `<think>`, ...) is kept apart from the text:
/// never delivered as text, readable with `minerva_stream_reasoning`.
pub const MINERVA_REASONING_AUTO: minerva_reasoning = 0;
/// The reasoning is left in the text as the model wrote it.
pub const MINERVA_REASONING_NONE: minerva_reasoning = 1;

impl Default for minerva_chat_params {
    fn default() -> Self {
        minerva_chat_params {
            struct_size: std::mem::size_of::<Self>() as u32,
            chat_template: std::ptr::null(),
            tools_json: std::ptr::null(),
            tool_choice: MINERVA_TOOL_CHOICE_AUTO,
            add_generation_prompt: true,
            template_kwargs_json: std::ptr::null(),
            reasoning: MINERVA_REASONING_AUTO,
            continue_final_message: false,
            max_tool_calls: 0,
        }
    }
}

/// Fills `params` with the defaults. Call as `minerva_chat_params_init(&c, sizeof c)`. Only the
/// first `struct_size` bytes are written. NULL: no-op.
#[no_mangle]
pub unsafe extern "C" fn minerva_chat_params_init(
    params: *mut minerva_chat_params,
    struct_size: u32,
) {
    // SAFETY: the caller says `params` has struct_size writable bytes.
    ffi_export!(unsafe { init_params(params, struct_size, Default::default()) })
}

/// Reads the caller's messages and chat params.
unsafe fn convert(
    messages: *const minerva_chat_message,
    count: usize,
    chat: *const minerva_chat_params,
) -> Result<(Vec<Message>, ChatOptions), Error> {
    if messages.is_null() {
        return Err(Error::invalid("messages is NULL"));
    }
    if count == 0 {
        return Err(Error::invalid("count is 0: a conversation needs a message"));
    }
    // SAFETY: the caller's array holds count messages.
    let raw = unsafe { std::slice::from_raw_parts(messages, count) };
    let mut out = Vec::with_capacity(count);
    for (i, m) in raw.iter().enumerate() {
        let field = |p: *const c_char, f: &str| -> Result<Option<String>, Error> {
            // SAFETY: NULL or NUL-terminated, as the header requires.
            Ok(unsafe { opt_str(p, &format!("messages[{i}].{f}")) }?.map(str::to_owned))
        };
        let Some(role) = field(m.role, "role")? else {
            return Err(Error::invalid(format!("messages[{i}].role is NULL")));
        };
        out.push(Message {
            role,
            content: field(m.content, "content")?,
            tool_calls: field(m.tool_calls_json, "tool_calls_json")?,
            tool_call_id: field(m.tool_call_id, "tool_call_id")?,
        });
    }
    // SAFETY: chat is NULL or the caller's struct of its struct_size.
    let c = unsafe {
        read_params(
            chat,
            minerva_chat_params::default(),
            offset_of!(minerva_chat_params, template_kwargs_json),
            "chat",
            &[
                offset_of!(minerva_chat_params, add_generation_prompt),
                offset_of!(minerva_chat_params, continue_final_message),
            ],
        )
    }?;
    let tool_choice = match c.tool_choice {
        MINERVA_TOOL_CHOICE_AUTO => ToolChoice::Auto,
        MINERVA_TOOL_CHOICE_NONE => ToolChoice::None,
        MINERVA_TOOL_CHOICE_REQUIRED => ToolChoice::Required,
        other => {
            return Err(Error::invalid(format!(
                "chat.tool_choice is {other}; it must be MINERVA_TOOL_CHOICE_AUTO (0), _NONE (1) \
                 or _REQUIRED (2)"
            )))
        }
    };
    let opts = ChatOptions {
        // SAFETY: NULL or NUL-terminated, as the header requires.
        template: unsafe { opt_str(c.chat_template, "chat.chat_template") }?.map(str::to_owned),
        tools: unsafe { opt_str(c.tools_json, "chat.tools_json") }?.map(str::to_owned),
        tool_choice,
        add_generation_prompt: c.add_generation_prompt,
        // SAFETY: NULL or NUL-terminated, as the header requires.
        template_kwargs: unsafe { opt_str(c.template_kwargs_json, "chat.template_kwargs_json") }?
            .map(str::to_owned),
        reasoning: match c.reasoning {
            MINERVA_REASONING_AUTO => true,
            MINERVA_REASONING_NONE => false,
            other => {
                return Err(Error::invalid(format!(
                    "chat.reasoning is {other}; it must be MINERVA_REASONING_AUTO (0) or _NONE (1)"
                )))
            }
        },
        continue_final_message: c.continue_final_message,
        max_tool_calls: c.max_tool_calls as usize,
    };
    Ok((out, opts))
}

/// Renders `count` messages with the chat template, as the model would see them: the text a chat
/// stream on them starts from (without the BOS the stream adds where the vocabulary asks for one).
///
/// Templates are Jinja, rendered as Hugging Face's `transformers` and llama.cpp's server render
/// them (`messages`, `add_generation_prompt`, `tools`, `bos_token`, `eos_token`,
/// `raise_exception`, `strftime_now`; line ends read as Jinja2 reads them). Rendering is bounded:
/// a template that loops too long, builds too much text (over about 2 million steps or
/// 128 MiB) or walks values nested more than 256 deep is stopped with an error within
/// milliseconds. With tools (and `tool_choice` not NONE), a template that reads `tools`
/// describes them itself; any other gets their description and the reply format in its system
/// turn.
///
/// Writes up to `cap` bytes to `buf`, NUL-terminated when there is room, and always the length
/// needed (without the NUL) to `*out_len`: `MINERVA_ERR_BUFFER_TOO_SMALL` when it does not fit
/// (`buf` is then not written), so `minerva_chat_format(e, m, n, c, NULL, 0, &len)` asks for the
/// length. Any thread, a callback too.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL engine, messages or out_len; count 0; a NULL or
/// unknown role; a NULL content outside an assistant turn with tool calls; a string not UTF-8;
/// bad `tools_json` or `tool_calls_json`; an unknown template name; a template that fails to
/// render, with the template's own message, e.g. what its `raise_exception` said),
/// `MINERVA_ERR_BUFFER_TOO_SMALL`.
#[no_mangle]
pub unsafe extern "C" fn minerva_chat_format(
    engine: *mut minerva_engine,
    messages: *const minerva_chat_message,
    count: usize,
    chat: *const minerva_chat_params,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        let out_len = try_mut!(out_len, "out_len");
        // SAFETY: the caller's arrays and structs, as the header requires.
        let (messages, opts) = unsafe { convert(messages, count, chat) }?;
        let text = engine.inner.chat_format(&messages, &opts)?;
        // SAFETY: buf is NULL or the caller's buffer of cap bytes.
        unsafe {
            fill_buffer(
                text.as_bytes(),
                buf.cast::<u8>(),
                cap,
                out_len,
                Some(0),
                "buf",
            )
        }
    })
}

/// Renders the messages (as `minerva_chat_format`) and starts a stream on them: the same stream
/// as `minerva_stream_new` gives, with the same arguments and rules, and these on top:
///
/// - The rendered text is tokenized with special tokens recognized and BOS exactly once (a
///   template that writes `bos_token` itself gets no second one).
/// - The stream ends at the template's end-of-turn marker (`<end_of_turn>`, `<|im_end|>`,
///   `<|eot_id|>`, ...: the text the template writes after an assistant turn) as at
///   end-of-generation (`MINERVA_FINISH_EOS`), and the marker is never delivered.
/// - With tools, the text delivered is the reply's content only: tool-call markup is never
///   delivered (text that may begin a call is held back until it is known not to be one); the
///   calls come from `minerva_stream_tool_calls` once the stream has ended. With a Jinja
///   template, calls and reasoning are read in the model's own format as llama.cpp's chat code
///   finds it in the template (Kimi K2 Thinking, GLM 4.5/4.6 `<tool_call>`, MiniMax M2
///   `<minimax:tool_call>`, Seed-OSS `<seed:tool_call>`, DeepSeek V3.1 `<｜tool▁calls▁begin｜>`,
///   Mistral `[TOOL_CALLS]`, Command R7B `<|START_ACTION|>`, Nemotron `<TOOLCALL>`, LFM2
///   `<|tool_call_start|>`, Functionary `<function=`, DeepSeek R1 `<think>`, ...: docs/CHAT.md
///   lists what is read); otherwise in minerva's format
///   (`{"tool_calls": [{"name", "arguments"}]}` as the whole reply), as Hermes blocks
///   (`<tool_call>{"name", "arguments"}</tool_call>`) and as a whole-reply `{"name",
///   "arguments"}`; a call of a tool not offered stays text.
/// - Reasoning the format marks is kept out of the text under `MINERVA_REASONING_AUTO` and read
///   with `minerva_stream_reasoning`.
/// - With `MINERVA_TOOL_CHOICE_REQUIRED` the output is constrained to calls of the given tools
///   (their argument schemas), 1 to `max_tool_calls` of them: in the model's own syntax where
///   llama.cpp knows it (the reasoning the format allows first, then calls: a thinking model
///   needs tokens for its reasoning), otherwise in minerva's format (`params` may then carry no
///   grammar or json_schema).
/// - The prompt cache makes the next turn of a conversation cost only its new tokens.
///
/// Errors: those of `minerva_chat_format` and of `minerva_stream_new`. On failure no callback is
/// ever called and `*out` is not written.
#[no_mangle]
pub unsafe extern "C" fn minerva_chat_stream_new(
    engine: *mut minerva_engine,
    messages: *const minerva_chat_message,
    count: usize,
    chat: *const minerva_chat_params,
    params: *const minerva_generate_params,
    on_token: minerva_token_callback,
    user_data: *mut c_void,
    out: *mut *mut minerva_stream,
) -> minerva_status {
    ffi_export!({
        let out = try_mut!(out, "out");
        let engine = try_ref!(engine, "engine");
        // SAFETY: the caller's arrays and structs, as the header requires.
        let (messages, opts) = unsafe { convert(messages, count, chat) }?;
        let (g, on_finish) = unsafe { convert_params(params, engine.inner.info().lora_count) }?;
        let (token_fn, finish_fn) = callbacks(on_token, on_finish, user_data);
        let stream = engine
            .inner
            .chat_start(&messages, &opts, g, token_fn, finish_fn)?;
        *out = Box::into_raw(Box::new(minerva_stream::new(stream)));
        Ok(())
    })
}

/// Once the stream has ended (from its finish callback on): the tool calls of its reply, as a JSON
/// array of
/// `{"id": "call_k3x9q0a2b", "name": "...", "arguments": {...}}` (the model's own id where its
/// format writes one, otherwise "call_" and 9 letters and digits, unique in the process), "[]" when
/// there are none (and for streams without tools). A `MINERVA_TOOL_CHOICE_REQUIRED` reply that
/// `max_tokens` cut short (finish reason LENGTH) gives the calls it had completed; give it room
/// for four calls (small models write up to four, a few hundred tokens). Pass it back as
/// `tool_calls_json` of the assistant turn in the next call. Buffer rules as
/// `minerva_chat_format`. Any thread.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL stream or out_len; the stream has not ended:
/// wait for it, or read it until `finished`), `MINERVA_ERR_BUFFER_TOO_SMALL`.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_tool_calls(
    stream: *const minerva_stream,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> minerva_status {
    ffi_export!({
        let stream = try_ref!(stream, "stream");
        let out_len = try_mut!(out_len, "out_len");
        let Some(calls) = stream.inner.tool_calls() else {
            return Err(Error::invalid(
                "the stream has not ended: its tool calls are known once it has",
            ));
        };
        // SAFETY: buf is NULL or the caller's buffer of cap bytes.
        unsafe {
            fill_buffer(
                calls.as_bytes(),
                buf.cast::<u8>(),
                cap,
                out_len,
                Some(0),
                "buf",
            )
        }
    })
}

/// Added in 0.3. The reasoning of a chat stream's reply so far: what the template's format marks
/// as reasoning (`<think>...</think>`, `<seed:think>`, gpt-oss's analysis channel, ...) under
/// `MINERVA_REASONING_AUTO`, kept out of the text. Readable while the stream runs and after it
/// ended; "" when there is none (a plain stream, `MINERVA_REASONING_NONE`, or a template that
/// marks no reasoning). Buffer rules as `minerva_chat_format`. Any thread, a callback too.
///
/// # Safety
/// `stream` is NULL or a live stream; `buf` is NULL or `cap` writable bytes; `out_len` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn minerva_stream_reasoning(
    stream: *const minerva_stream,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
) -> minerva_status {
    ffi_export!({
        let stream = try_ref!(stream, "stream");
        let out_len = try_mut!(out_len, "out_len");
        let text = stream.inner.reasoning();
        // SAFETY: buf is NULL or the caller's buffer of cap bytes.
        unsafe {
            fill_buffer(
                text.as_bytes(),
                buf.cast::<u8>(),
                cap,
                out_len,
                Some(0),
                "buf",
            )
        }
    })
}
