//! The model's own output format: how its template's model writes tool calls and reasoning, found
//! by llama.cpp's chat code (its handlers for known templates and the autoparser that analyses
//! any other), and the parser that reads a reply in it.
//!
//! llama.cpp's Jinja engine has no bound, and templates come from model files. So llama.cpp never
//! sees the caller's conversation: minerva renders the prompt itself (minijinja, fuel-bounded),
//! and llama.cpp analyses the template on a small fixed conversation with the caller's tools and
//! switches, after minijinja has rendered the same template on conversations of the shapes the
//! analysis renders (turns with content, reasoning, tool calls and tool results, with and
//! without the generation prompt) within its fuel. An analysis is kept per engine for its
//! inputs: a game's twenty characters with the same tools analyse once.

use super::template::Template;
use crate::engine::error::{Error, Result};
use crate::engine::llama::chat_format::{self, OutputParser};
use serde_json::{json, Value};
use std::sync::Arc;

/// What a reply in the model's format needs read.
pub struct Format {
    /// llama.cpp's name for the format ("peg-native", ...).
    pub name: String,
    pub parser: OutputParser,
    /// The template marks reasoning (`<think>`, channels, ...) and it is to be kept apart.
    pub reasoning: bool,
    /// Tool calls are written in the model's own syntax and read by `parser`.
    pub native_calls: bool,
    /// More texts that end the turn.
    pub stops: Vec<String>,
}

/// The inputs an analysis depends on.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub template: String,
    pub bos: String,
    pub eos: String,
    /// The tools array as given (None: no tools offered).
    pub tools: Option<String>,
    pub parallel: bool,
    pub reasoning: bool,
    /// The template switches, as a JSON object text.
    pub kwargs: Option<String>,
    pub continue_final: bool,
}

/// Most analyses an engine keeps.
const KEPT: usize = 16;

/// An engine's analyses, newest last.
#[derive(Default)]
pub struct Formats {
    kept: parking_lot::Mutex<Vec<(Key, Option<Arc<Format>>)>>,
}

impl Formats {
    /// The format for `key` (None: nothing to read beyond plain text), analysed once.
    pub fn get(&self, key: &Key, template: &Template) -> Result<Option<Arc<Format>>> {
        if let Some((_, f)) = self.kept.lock().iter().find(|(k, _)| k == key) {
            return Ok(f.clone());
        }
        let format = analyze(key, template)?.map(Arc::new);
        let mut kept = self.kept.lock();
        if kept.len() >= KEPT {
            kept.remove(0);
        }
        kept.push((key.clone(), format.clone()));
        Ok(format)
    }
}

fn kwargs_of(key: &Key) -> serde_json::Map<String, Value> {
    key.kwargs
        .as_deref()
        .and_then(|k| serde_json::from_str::<Value>(k).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

/// Conversations of the shapes llama.cpp's analysis renders (see common/chat-diff-analyzer.cpp):
/// minijinja renders each within its fuel before llama.cpp's engine sees the template.
fn probes() -> Vec<Value> {
    let call = |id: &str, name: &str| {
        json!({"id": id, "type": "function",
               "function": {"name": name, "arguments": {"first": "XXXX", "second": "YYYY"}}})
    };
    let user = json!({"role": "user", "content": "Hello, please help me."});
    let answer = json!({"role": "assistant", "content": "I can help you with that."});
    vec![
        json!([user]),
        json!([user, answer]),
        json!([{"role": "system", "content": "You are a helpful assistant."}, user, answer,
               {"role": "user", "content": "Thank you."}]),
        json!([user, {"role": "assistant", "content": "I can help you with that.",
                      "reasoning_content": "I need to think about this."}]),
        json!([user, {"role": "assistant", "content": "",
                      "tool_calls": [call("call00001", "foofoo"), call("call00002", "barbar")]},
               {"role": "tool", "tool_call_id": "call00001", "content": "Result one"},
               {"role": "tool", "tool_call_id": "call00002", "content": "Result two"},
               answer]),
    ]
}

fn probe_tools() -> Value {
    let params = json!({"type": "object", "properties": {
        "first": {"type": "string", "description": "First argument"},
        "second": {"type": "string", "description": "Second argument"}},
        "required": ["first", "second"]});
    json!([
        {"type": "function", "function": {"name": "foofoo", "description": "Test function foo", "parameters": params}},
        {"type": "function", "function": {"name": "barbar", "description": "Test function bar", "parameters": params}}
    ])
}

/// Renders every probe with minijinja: an error when the template runs out of fuel on one.
fn check_bounds(key: &Key, template: &Template) -> Result<()> {
    let tools = match &key.tools {
        Some(t) => serde_json::from_str(t).unwrap_or(Value::Null),
        None => probe_tools(),
    };
    let kwargs = kwargs_of(key);
    for messages in probes() {
        for add_generation_prompt in [false, true] {
            for tools in [Value::Null, tools.clone()] {
                let mut ctx = json!({
                    "messages": messages,
                    "add_generation_prompt": add_generation_prompt,
                    "bos_token": key.bos,
                    "eos_token": key.eos,
                    "enable_thinking": true,
                });
                if !tools.is_null() {
                    ctx["tools"] = tools;
                }
                for (k, v) in &kwargs {
                    ctx[k] = v.clone();
                }
                template.within_bounds(&ctx).map_err(|e| {
                    Error::invalid(format!(
                        "{} (on the conversations minerva checks before llama.cpp's format \
                         analysis, which has no bound, may run it)",
                        e.message
                    ))
                })?;
            }
        }
    }
    Ok(())
}

fn analyze(key: &Key, template: &Template) -> Result<Option<Format>> {
    check_bounds(key, template)?;
    let mut messages = vec![json!({"role": "user", "content": "Hello, please help me."})];
    if key.continue_final {
        messages.push(json!({"role": "assistant", "content": "I can"}));
    }
    let mut inputs = json!({
        "messages": messages,
        "tool_choice": "auto",
        "parallel": key.parallel,
        "reasoning": key.reasoning,
        "add_generation_prompt": !key.continue_final,
        "continue": key.continue_final,
        "kwargs": kwargs_of(key),
    });
    if let Some(t) = &key.tools {
        inputs["tools"] = serde_json::from_str(t).unwrap_or(Value::Null);
    }
    // Line ends as Jinja2 reads them, and a backslash before a line end joined (as Python does
    // inside a string literal; Mistral Small 3.1's template has one), which llama.cpp's lexer
    // refuses.
    let source = key
        .template
        .replace("\r\n", "\n")
        .replace('\r', "\n")
        .replace("\\\n", "");
    let answer = match chat_format::analyze(&source, &key.bos, &key.eos, &inputs.to_string()) {
        Ok(a) => a,
        Err(why) => {
            crate::engine::log::log_warn!(
                "chat: llama.cpp's chat code found no output format for this template ({why}); \
                 replies are read as plain text"
            );
            return Ok(None);
        }
    };
    let a: Value = serde_json::from_str(&answer).map_err(|e| {
        Error::new(
            crate::engine::error::Status::Internal,
            format!("chat format analysis answer: {e}"),
        )
    })?;
    let text = |k: &str| a[k].as_str().unwrap_or("").to_owned();
    let list = |k: &str| -> Vec<String> {
        a[k].as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|s| s.as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    };
    let grammar = text("grammar");
    let native_calls = key.tools.is_some() && !grammar.is_empty();
    let reasoning = key.reasoning && a["supports_thinking"].as_bool().unwrap_or(false);
    if !native_calls && !reasoning {
        return Ok(None);
    }
    let format = a["format"].as_i64().unwrap_or(0) as i32;
    let parser = OutputParser::new(
        &text("parser"),
        format,
        &text("generation_prompt"),
        key.reasoning,
    )
    .map_err(|e| {
        Error::new(
            crate::engine::error::Status::Internal,
            format!("chat format parser: {e}"),
        )
    })?;
    Ok(Some(Format {
        name: text("format_name"),
        parser,
        reasoning,
        native_calls,
        stops: list("additional_stops"),
    }))
}
