//! Chat: messages rendered with the model's own template (or one given, or ChatML), the end of a
//! turn, and tool calls. Rendering is in [`template`], tools in [`tools`]; this file chooses the
//! template and turns messages into the template's variables.

pub mod capture;
pub mod format;
pub mod reply;
pub mod template;
pub mod tools;

use super::error::{Error, Result};
use super::llama::{self, Model};
pub use capture::Capture;
use format::Formats;
pub use reply::{ChatStream, Reply};
use serde_json::{json, Value};
use template::Template;
pub use tools::{Tool, ToolCall, ToolChoice};

/// One turn of a conversation.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Message {
    /// "system", "user", "assistant" or "tool".
    pub role: String,
    /// None only for an assistant turn that only called tools.
    pub content: Option<String>,
    /// Assistant turns: the calls it made, as [`capture::calls_json`] gave them.
    pub tool_calls: Option<String>,
    /// Tool turns: the id of the call answered.
    pub tool_call_id: Option<String>,
}

impl Message {
    pub fn new(role: &str, content: &str) -> Message {
        Message {
            role: role.into(),
            content: Some(content.into()),
            ..Default::default()
        }
    }
}

/// How to render a conversation.
#[derive(Clone, Debug, PartialEq)]
pub struct ChatOptions {
    /// None: the model's own template (ChatML when it has none). Otherwise a Jinja template text
    /// or the name of a template llama.cpp knows.
    pub template: Option<String>,
    /// An OpenAI-style tools array.
    pub tools: Option<String>,
    pub tool_choice: ToolChoice,
    pub add_generation_prompt: bool,
    /// Extra template variables: a JSON object text (`{"enable_thinking": false}`).
    pub template_kwargs: Option<String>,
    /// Keep the reasoning the template's format marks apart from the text (`MINERVA_REASONING_AUTO`).
    pub reasoning: bool,
    /// The last message is an assistant turn the model continues.
    pub continue_final_message: bool,
    /// A `Required` reply holds 1 to this many calls.
    pub max_tool_calls: usize,
}

impl Default for ChatOptions {
    fn default() -> Self {
        ChatOptions {
            template: None,
            tools: None,
            tool_choice: ToolChoice::Auto,
            add_generation_prompt: true,
            template_kwargs: None,
            reasoning: true,
            continue_final_message: false,
            max_tool_calls: tools::MAX_REQUIRED_CALLS,
        }
    }
}

/// A rendered conversation, ready to start a stream on.
pub struct Prepared {
    pub prompt: String,
    pub stream: ChatStream,
    /// `Required`: what the reply must match.
    pub constraint: Option<Constraint>,
}

/// What a `Required` reply must match.
pub enum Constraint {
    /// Calls in the model's own syntax (llama.cpp's grammar of them).
    Grammar(String),
    /// Calls in minerva's JSON format.
    JsonSchema(String),
}

/// The template to render with.
enum Source {
    /// A Jinja template, its text, and whether it is the ChatML fallback.
    Jinja(Box<Template>, String, bool),
    /// One of llama.cpp's built-in templates, by name.
    Builtin(String),
}

/// Whether `text` is a template name rather than a template text.
fn is_name(text: &str) -> bool {
    !text.is_empty()
        && text.len() <= 64
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
}

const ROLES: [&str; 4] = ["system", "user", "assistant", "tool"];

/// Renders `messages` and works out what the stream needs. `warn_fallback` is called when the
/// model has no template and ChatML is used.
pub fn prepare(
    model: &Model,
    formats: Option<&Formats>,
    messages: &[Message],
    opts: &ChatOptions,
    warn_fallback: impl FnOnce(),
) -> Result<Prepared> {
    if messages.is_empty() {
        return Err(Error::invalid("messages is empty"));
    }
    for (i, m) in messages.iter().enumerate() {
        if !ROLES.contains(&m.role.as_str()) {
            return Err(Error::invalid(format!(
                "messages[{i}].role is '{}'; it must be system, user, assistant or tool",
                m.role
            )));
        }
        if m.content.is_none() && !(m.role == "assistant" && m.tool_calls.is_some()) {
            return Err(Error::invalid(format!(
                "messages[{i}].content is NULL (only an assistant turn with tool_calls_json may \
                 have no content)"
            )));
        }
    }
    let kwargs = match &opts.template_kwargs {
        None => None,
        Some(k) => match serde_json::from_str::<Value>(k) {
            Ok(Value::Object(o)) => Some(o),
            Ok(_) => {
                return Err(Error::invalid(
                    "template_kwargs_json must be a JSON object of template variables",
                ))
            }
            Err(e) => {
                return Err(Error::invalid(format!(
                    "template_kwargs_json is not valid JSON: {e}"
                )))
            }
        },
    };
    if opts.continue_final_message && messages.last().is_some_and(|m| m.role != "assistant") {
        return Err(Error::invalid(
            "continue_final_message is set but the last message is not the assistant's",
        ));
    }
    let jinja = |t: &str, fallback| -> Result<Source> {
        Ok(Source::Jinja(
            Box::new(Template::new(t)?),
            t.to_owned(),
            fallback,
        ))
    };
    let source = match &opts.template {
        Some(t) if t == "chatml" => jinja(template::CHATML, true)?,
        Some(t) if is_name(t) => Source::Builtin(t.clone()),
        Some(t) => jinja(t, false)?,
        None => match model.chat_template() {
            Some(t) => jinja(&t, false)?,
            None => {
                warn_fallback();
                jinja(template::CHATML, true)?
            }
        },
    };
    if opts.continue_final_message && matches!(source, Source::Builtin(_)) {
        return Err(Error::invalid(
            "continue_final_message needs a Jinja template (not a built-in template name)",
        ));
    }
    let tools = match (&opts.tools, opts.tool_choice) {
        (Some(t), ToolChoice::Auto | ToolChoice::Required) => Some(tools::parse_tools(t)?),
        (Some(t), ToolChoice::None) => {
            tools::parse_tools(t)?;
            None
        }
        (None, ToolChoice::Required) => {
            return Err(Error::invalid(
                "tool_choice is REQUIRED but no tools_json is given",
            ))
        }
        (None, _) => None,
    };
    let vars = Vars {
        bos: model.bos_text(),
        eos: model.eos_text(),
        kwargs,
    };
    let max_calls = if opts.max_tool_calls == 0 {
        tools::MAX_REQUIRED_CALLS
    } else {
        opts.max_tool_calls
    };
    // The model's own format, from llama.cpp's analysis of its template (not for ChatML, which
    // marks neither calls nor reasoning). REQUIRED constrains the reply to calls in the model's
    // syntax where llama.cpp knows it, and to calls in minerva's JSON format elsewhere.
    let required = opts.tool_choice == ToolChoice::Required;
    let format = match (&source, formats) {
        (Source::Jinja(t, text, false), Some(formats)) => {
            let key = format::Key {
                template: text.clone(),
                bos: vars.bos.clone(),
                eos: vars.eos.clone(),
                tools: tools.as_ref().map(|(_, raw)| raw.to_string()),
                parallel: max_calls > 1,
                reasoning: opts.reasoning,
                kwargs: opts.template_kwargs.clone(),
                continue_final: opts.continue_final_message,
                required,
            };
            formats.get(&key, t)?
        }
        _ => None,
    };
    let native_tools = matches!(&source, Source::Jinja(t, _, _) if t.reads_tools());
    let mut prompt = match render(&source, messages, opts, tools.as_ref(), native_tools, &vars) {
        Ok(p) => p,
        // A template that knows no tool turns (Gemma's raises on any role but user and
        // assistant) gets each tool result as a user turn.
        Err(e) if !native_tools && messages.iter().any(|m| m.role == "tool") => {
            let converted: Vec<Message> = messages.iter().map(tool_turn_as_user).collect();
            render(
                &source,
                &converted,
                opts,
                tools.as_ref(),
                native_tools,
                &vars,
            )
            .map_err(|_| e)?
        }
        Err(e) => return Err(e),
    };
    // The stream adds BOS itself where the vocabulary asks for one: a template that writes it
    // gets no second one.
    if model.adds_bos() && !vars.bos.is_empty() && prompt.starts_with(&vars.bos) {
        prompt.drain(..vars.bos.len());
    }
    let mut end_markers = end_markers(&source, &vars);
    if let Some(f) = &format {
        for s in &f.stops {
            if !s.is_empty() && !end_markers.contains(s) {
                end_markers.push(s.clone());
            }
        }
    }
    let constraint = match (&tools, required, &format) {
        (Some(_), true, Some(f)) if f.native_calls => {
            f.required_grammar.clone().map(Constraint::Grammar)
        }
        (Some((list, _)), true, _) => Some(Constraint::JsonSchema(
            tools::calls_schema(list, max_calls).to_string(),
        )),
        _ => None,
    };
    Ok(Prepared {
        prompt,
        stream: ChatStream {
            end_markers,
            tools: tools.map(|(list, _)| list),
            required,
            format,
            max_calls,
        },
        constraint,
    })
}

fn tool_turn_as_user(m: &Message) -> Message {
    if m.role != "tool" {
        return m.clone();
    }
    let content = m.content.as_deref().unwrap_or("");
    Message::new(
        "user",
        &match &m.tool_call_id {
            Some(id) => format!("Result of tool call {id}: {content}"),
            None => format!("Tool result: {content}"),
        },
    )
}

struct Vars {
    bos: String,
    eos: String,
    /// The template switches.
    kwargs: Option<serde_json::Map<String, Value>>,
}

fn render(
    source: &Source,
    messages: &[Message],
    opts: &ChatOptions,
    tools: Option<&(Vec<Tool>, Value)>,
    native_tools: bool,
    vars: &Vars,
) -> Result<String> {
    let mut msgs: Vec<Value> = Vec::with_capacity(messages.len() + 1);
    for (i, m) in messages.iter().enumerate() {
        let mut v = json!({"role": m.role, "content": m.content});
        if let Some(calls) = &m.tool_calls {
            let calls = tools::history_calls(calls, i)?;
            if native_tools {
                v["tool_calls"] = calls;
            } else if m.content.as_deref().unwrap_or("").is_empty() {
                v["content"] = Value::String(tools::calls_as_text(&calls));
            }
        }
        if let Some(id) = &m.tool_call_id {
            v["tool_call_id"] = Value::String(id.clone());
        }
        if v["content"].is_null() {
            v["content"] = Value::String(String::new());
        }
        msgs.push(v);
    }
    // A template that does not describe tools gets them in its system turn.
    if let (Some((list, _)), false) = (tools, native_tools) {
        let text = tools::describe(list, opts.tool_choice);
        match msgs.first_mut() {
            Some(first) if first["role"] == "system" => {
                let c = first["content"].as_str().unwrap_or("").to_owned();
                first["content"] = Value::String(format!("{c}\n\n{text}"));
            }
            _ => msgs.insert(0, json!({"role": "system", "content": text})),
        }
    }
    match source {
        Source::Jinja(t, _, _) => {
            let cont = opts.continue_final_message;
            let mut ctx = json!({
                "messages": msgs,
                "add_generation_prompt": opts.add_generation_prompt && !cont,
                "bos_token": vars.bos,
                "eos_token": vars.eos,
                // As llama.cpp's server (and its format analysis) passes it: a template's
                // thinking switch is on unless template_kwargs_json turns it off.
                "enable_thinking": true,
            });
            if let (Some((_, raw)), true) = (tools, native_tools) {
                ctx["tools"] = raw.clone();
            }
            for (k, v) in vars.kwargs.iter().flatten() {
                ctx[k] = v.clone();
            }
            let text = t.render(&ctx)?;
            if cont {
                template::open_final_message(text, msgs.last())
            } else {
                Ok(text)
            }
        }
        Source::Builtin(name) => {
            let pairs: Vec<(&str, &str)> = msgs
                .iter()
                .map(|m| {
                    (
                        m["role"].as_str().unwrap_or(""),
                        m["content"].as_str().unwrap_or(""),
                    )
                })
                .collect();
            llama::builtin_template(name, &pairs, opts.add_generation_prompt)?.ok_or_else(|| {
                Error::invalid(format!(
                    "chat_template '{name}' is neither a Jinja template nor the name of a \
                     template llama.cpp knows (chatml, gemma, llama3, mistral-v7, phi4, ...)"
                ))
            })
        }
    }
}

/// The texts that end an assistant turn: what the template writes right after an assistant's
/// content, up to the first white space (`<|im_end|>`, `<end_of_turn>`, `<|eot_id|>`, `</s>`).
/// Tokens the vocabulary marks as end-of-generation end a stream anyway.
fn end_markers(source: &Source, vars: &Vars) -> Vec<String> {
    const PROBE: &str = "\u{E000}minerva-probe\u{E000}";
    let opts = ChatOptions {
        add_generation_prompt: false,
        ..Default::default()
    };
    let convs = [
        vec![Message::new("user", "Hi"), Message::new("assistant", PROBE)],
        vec![
            Message::new("system", "S"),
            Message::new("user", "Hi"),
            Message::new("assistant", PROBE),
        ],
    ];
    let mut out = Vec::new();
    let vars = &Vars {
        bos: vars.bos.clone(),
        eos: vars.eos.clone(),
        kwargs: None,
    };
    for conv in convs {
        let Ok(text) = render(source, &conv, &opts, None, false, vars) else {
            continue;
        };
        let Some(p) = text.find(PROBE) else { continue };
        let after = text[p + PROBE.len()..].trim_start();
        let marker: String = after.chars().take_while(|c| !c.is_whitespace()).collect();
        let plausible = !marker.is_empty()
            && marker.len() <= 32
            && !marker.chars().all(char::is_alphanumeric)
            && !marker.contains(PROBE);
        if plausible && !out.contains(&marker) {
            out.push(marker);
        }
        break;
    }
    if !vars.eos.is_empty() && !out.contains(&vars.eos) {
        out.push(vars.eos.clone());
    }
    out
}

#[cfg(test)]
mod tests;

impl super::Engine {
    fn prepare_chat(&self, messages: &[Message], opts: &ChatOptions) -> Result<Prepared> {
        prepare(
            &self.model,
            Some(&self.chat_formats),
            messages,
            opts,
            || {
                if !self
                    .chatml_warned
                    .swap(true, std::sync::atomic::Ordering::Relaxed)
                {
                    super::log::log_warn!(
                        "engine {}: the model has no chat template; using ChatML",
                        self.id
                    );
                }
            },
        )
    }

    /// The conversation as the model sees it (the rendered template).
    pub fn chat_format(&self, messages: &[Message], opts: &ChatOptions) -> Result<String> {
        self.prepare_chat(messages, opts).map(|p| p.prompt)
    }

    /// Renders the conversation and starts a stream on it (see [`Engine::start`]). With
    /// `ToolChoice::Required` the reply is constrained to calls of the tools, so the params may
    /// not carry a grammar or schema of their own then.
    pub fn chat_start(
        &self,
        messages: &[Message],
        opts: &ChatOptions,
        params: super::GenerateParams,
        on_token: Option<super::TokenFn>,
        on_finish: Option<super::FinishFn>,
    ) -> Result<super::Stream> {
        let prepared = self.prepare_chat(messages, opts)?;
        let mut params = params;
        if let Some(constraint) = prepared.constraint {
            if params.grammar.is_some() || params.json_schema.is_some() {
                return Err(Error::invalid(
                    "tool_choice REQUIRED constrains the reply itself: give no grammar or \
                     json_schema with it",
                ));
            }
            match constraint {
                Constraint::Grammar(g) => params.grammar = Some(g),
                Constraint::JsonSchema(s) => params.json_schema = Some(s),
            }
        }
        params.chat = Some(prepared.stream);
        self.start(&prepared.prompt, params, on_token, on_finish)
    }
}
