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
    /// The end tag of reasoning that the generation prompt opens where llama.cpp's analysis does
    /// not read reasoning (DeepSeek V3.1's prompt ends `<think>`): minerva reads it apart.
    pub opened_reasoning: Option<String>,
    /// Tool calls are written in the model's own syntax and read by `parser`.
    pub native_calls: bool,
    /// More texts that end the turn.
    pub stops: Vec<String>,
    /// For `ToolChoice::Required`: the GBNF grammar of a reply of calls in the model's syntax
    /// (reasoning first where the format has it), from the generation prompt on.
    pub required_grammar: Option<String>,
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
    /// `ToolChoice::Required`: the reply is calls, in the model's syntax.
    pub required: bool,
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

/// The template with every tool call's arguments that it joins to text with `+` written as
/// JSON text where they are an object.
///
/// Templates such as DeepSeek V3.1's and Functionary v3.1's write `'...' + tool['function']['arguments']`:
/// they take the arguments as the JSON text OpenAI's API carries (in Python's Jinja, a string
/// plus a mapping is an error). llama.cpp's analysis renders its probe calls with arguments as
/// objects, which its engine joins as a Python dict (`{'city': 'XXXX'}`), and then reads the
/// model's JSON arguments as off the format. Written this way, the probe renders as the model
/// was taught: `{"city": "XXXX"}`.
fn arguments_as_text(source: &str) -> String {
    const ENDINGS: [&str; 3] = ["['arguments']", "[\"arguments\"]", ".arguments"];
    let bytes = source.as_bytes();
    let mut out = String::with_capacity(source.len());
    let mut done = 0;
    let mut at = 0;
    while at < bytes.len() {
        let Some(ending) = ENDINGS
            .iter()
            .find(|e| bytes[at..].starts_with(e.as_bytes()))
        else {
            at += 1;
            continue;
        };
        let end = at + ending.len();
        // The expression: a name followed by subscripts and attributes.
        let mut start = at;
        while start > done {
            let c = bytes[start - 1];
            if c.is_ascii_alphanumeric() || matches!(c, b'_' | b'.' | b'[' | b']' | b'\'' | b'"') {
                start -= 1;
            } else {
                break;
            }
        }
        let expr = &source[start..end];
        let joined_before = source[..start].trim_end().ends_with('+');
        let after = source[end..].trim_start();
        let joined_after = after.starts_with('+') && !after.starts_with("+=");
        let whole_word = bytes
            .get(end)
            .is_none_or(|c| !(c.is_ascii_alphanumeric() || *c == b'_'));
        let is_name = whole_word
            && expr
                .as_bytes()
                .first()
                .is_some_and(|c| c.is_ascii_alphabetic() || *c == b'_');
        if is_name && (joined_before || joined_after) {
            out.push_str(&source[done..start]);
            out.push_str(&format!(
                "({expr} if {expr} is string else {expr} | tojson)"
            ));
            done = end;
        }
        at = end;
    }
    out.push_str(&source[done..]);
    out
}

/// llama.cpp's grammar of a reply of calls made one the sampler can start on: its root begins
/// with the generation prompt, which is in minerva's prompt already, and (`calls_only`) lets
/// free text come before the calls, which a reply to REQUIRED does not hold; and its optional
/// white space is taken out, and call numbers bounded. None where the
/// grammar is not of that shape.
fn required_grammar(grammar: &str, generation_prompt: &str, calls_only: bool) -> Option<String> {
    let mut out = String::with_capacity(grammar.len());
    let mut found = false;
    for line in grammar.lines() {
        // The optional white space between the parts, which llama.cpp's parser does not take
        // everywhere its grammar lets it come (GLM 4.5: before `</tool_call>`): none.
        if line.starts_with("space ::= ") {
            out.push_str("space ::= \"\"\n");
            continue;
        }
        let Some(body) = line.strip_prefix("root ::= ") else {
            // A call's number (Kimi K2's `functions.get_weather:0`) bounded, so that a model
            // cannot write digits to the end of its tokens.
            out.push_str(&line.replace("[0-9]+", "[0-9]{1,9}"));
            out.push('\n');
            continue;
        };
        let mut body = body.trim().to_owned();
        if !generation_prompt.is_empty() {
            let (literal, rest) = gbnf_literal(&body)?;
            // Where the generation prompt opens the reasoning too (`<think>`), the grammar's
            // optional reasoning goes on from inside it.
            let opened = generation_prompt.strip_prefix(literal.as_str())?.trim();
            let mut rest = rest.trim_start().to_owned();
            if !opened.is_empty() {
                if opened.contains(['"', '\\']) {
                    return None;
                }
                let group = format!("(\"{opened}\" ");
                if !rest.contains(&group) {
                    return None;
                }
                rest = rest.replacen(&group, "(", 1);
            }
            body = rest;
        }
        let mut words: Vec<&str> = body.split(' ').collect();
        let n = words.len();
        if calls_only
            && n >= 2
            && matches!(words[n - 1], "tool-call" | "tool-calls")
            && words[n - 2]
                .strip_prefix("until-")
                .map(|w| w.trim_end_matches('?'))
                .is_some_and(|w| !w.is_empty() && w.bytes().all(|b| b.is_ascii_digit()))
        {
            words.remove(n - 2);
        }
        out.push_str("root ::= ");
        out.push_str(&words.join(" "));
        out.push('\n');
        found = true;
    }
    found.then_some(out)
}

/// The GBNF string literal `text` starts with, unescaped, and what follows it.
fn gbnf_literal(text: &str) -> Option<(String, &str)> {
    let rest = text.strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.char_indices();
    while let Some((i, c)) = chars.next() {
        match c {
            '"' => return Some((out, &rest[i + 1..])),
            '\\' => {
                let (_, e) = chars.next()?;
                match e {
                    'n' => out.push('\n'),
                    'r' => out.push('\r'),
                    't' => out.push('\t'),
                    'x' | 'u' | 'U' => {
                        let len = match e {
                            'x' => 2,
                            'u' => 4,
                            _ => 8,
                        };
                        let mut v = 0u32;
                        for _ in 0..len {
                            v = v * 16 + chars.next()?.1.to_digit(16)?;
                        }
                        out.push(char::from_u32(v)?);
                    }
                    other => out.push(other),
                }
            }
            c => out.push(c),
        }
    }
    None
}

fn analyze(key: &Key, template: &Template) -> Result<Option<Format>> {
    check_bounds(key, template)?;
    let mut messages = vec![json!({"role": "user", "content": "Hello, please help me."})];
    if key.continue_final {
        messages.push(json!({"role": "assistant", "content": "I can"}));
    }
    let mut inputs = json!({
        "messages": messages,
        "tool_choice": if key.required { "required" } else { "auto" },
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
    let source = arguments_as_text(&source);
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
    let opened_reasoning = (key.reasoning
        && !a["supports_thinking"].as_bool().unwrap_or(false)
        && text("generation_prompt").trim_end().ends_with("<think>"))
    .then(|| "</think>".to_owned());
    let reasoning = key.reasoning
        && (a["supports_thinking"].as_bool().unwrap_or(false) || opened_reasoning.is_some());
    if !native_calls && !reasoning {
        return Ok(None);
    }
    let required_grammar = match key.required && native_calls {
        false => None,
        true => {
            let g = (!a["grammar_lazy"].as_bool().unwrap_or(true))
                .then(|| {
                    required_grammar(
                        &grammar,
                        &text("generation_prompt"),
                        opened_reasoning.is_none(),
                    )
                })
                .flatten();
            if g.is_none() {
                crate::engine::log::log_warn!(
                    "chat: llama.cpp's grammar of this template's calls could not be used; \
                     tool_choice REQUIRED writes calls in minerva's JSON format"
                );
                return Ok(None);
            }
            g
        }
    };
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
        opened_reasoning,
        native_calls,
        stops: list("additional_stops"),
        required_grammar,
    }))
}

#[cfg(test)]
mod tests {
    use super::{arguments_as_text, required_grammar};

    #[test]
    fn required_grammars_start_after_the_generation_prompt() {
        let g = "root ::= \"<|assistant|>\\n\" space (\"<think>\" until-7 \"</think>\")? until-87? tool-call\n\
                 space ::= | \" \" | \"\\n\"{1,2} [ \\t]{0,20}\n\
                 tool-call ::= \"<call>\" [0-9]+ \"</call>\"\n";
        assert_eq!(
            required_grammar(g, "<|assistant|>\n", true).unwrap(),
            "root ::= space (\"<think>\" until-7 \"</think>\")? tool-call\n\
             space ::= \"\"\n\
             tool-call ::= \"<call>\" [0-9]{1,9} \"</call>\"\n"
        );
        // Free text kept where the reasoning is read apart from the grammar.
        assert!(required_grammar(g, "<|assistant|>\n", false)
            .unwrap()
            .contains("until-87? tool-call"));
        // A generation prompt that opens the reasoning: the grammar goes on inside it.
        assert!(required_grammar(g, "<|assistant|>\n<think>\n", true)
            .unwrap()
            .starts_with("root ::= space (until-7 \"</think>\")? tool-call\n"));
        // Another generation prompt, or none in the grammar: not used.
        assert!(required_grammar(g, "<|user|>", true).is_none());
        assert!(required_grammar(g, "<|assistant|>\n<seed:think>", true).is_none());
        assert!(required_grammar("tool-call ::= \"x\"\n", "", true).is_none());
    }

    #[test]
    fn arguments_joined_as_text_are_written_as_json() {
        let src = "{{'<sep>' + tool['function']['arguments'] + '<end>'}}";
        assert_eq!(
            arguments_as_text(src),
            "{{'<sep>' + (tool['function']['arguments'] if tool['function']['arguments'] is string \
             else tool['function']['arguments'] | tojson) + '<end>'}}"
        );
        let src = "{{ '<f=' + c.function.name + '>' + c.function.arguments }}";
        assert!(arguments_as_text(src).contains("(c.function.arguments if c.function.arguments is string else c.function.arguments | tojson)"));
        // Not joined with `+`: left as written.
        for src in [
            "{{ fn.arguments | tojson }}",
            "{%- for k, v in tc.arguments.items() %}",
            "{{ x['arguments'] }}",
            "ｘ + ['arguments']",
            "{{ 'a' + x.arguments_text }}",
        ] {
            assert_eq!(arguments_as_text(src), src);
        }
    }
}
