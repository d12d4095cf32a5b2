//! Tool calls: the tools a chat offers, how the model is told of them, the constraint of
//! `ToolChoice::Required`, and calls of earlier turns given back. Reading calls out of a reply
//! in minerva's own format is [`super::capture`]'s.

use crate::engine::error::{Error, Result};
use serde_json::{json, Value};
use std::collections::HashSet;

/// Whether and how the model may call tools. Values are the C API's `minerva_tool_choice`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum ToolChoice {
    /// The model may answer or call tools.
    #[default]
    Auto = 0,
    /// Tools are not offered.
    None = 1,
    /// The reply is one or more tool calls.
    Required = 2,
}

/// One tool offered to the model.
#[derive(Clone, Debug, PartialEq)]
pub struct Tool {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments (an object schema).
    pub parameters: Value,
}

/// A parsed call.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: Value,
}

/// Parses and checks an OpenAI-style tools array.
pub fn parse_tools(json_text: &str) -> Result<(Vec<Tool>, Value)> {
    let raw: Value = serde_json::from_str(json_text)
        .map_err(|e| Error::invalid(format!("tools_json is not valid JSON: {e}")))?;
    let Some(items) = raw.as_array() else {
        return Err(Error::invalid("tools_json must be a JSON array of tools"));
    };
    let mut tools: Vec<Tool> = Vec::with_capacity(items.len());
    // The names seen so far: a set, so that checking for a second tool of a name stays linear in
    // the number of tools (a scan of the list took 61 s for 100,000 tools).
    let mut names: HashSet<&str> = HashSet::with_capacity(items.len());
    for (i, t) in items.iter().enumerate() {
        let f = match (t.get("type").and_then(Value::as_str), t.get("function")) {
            (Some("function") | None, Some(f)) if f.is_object() => f,
            _ => {
                return Err(Error::invalid(format!(
                    "tools_json[{i}] must be {{\"type\": \"function\", \"function\": {{\"name\", \
                     \"description\", \"parameters\"}}}}"
                )))
            }
        };
        let name = f.get("name").and_then(Value::as_str).unwrap_or("");
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || b == b'.');
        if !valid {
            return Err(Error::invalid(format!(
                "tools_json[{i}].function.name must be 1 to 64 of [A-Za-z0-9_.-], got {:?}",
                f.get("name").unwrap_or(&Value::Null)
            )));
        }
        if !names.insert(name) {
            return Err(Error::invalid(format!(
                "tools_json[{i}]: a second tool named '{name}'"
            )));
        }
        let parameters = match f.get("parameters") {
            None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
            Some(p) if p.is_object() => p.clone(),
            Some(_) => {
                return Err(Error::invalid(format!(
                    "tools_json[{i}].function.parameters must be a JSON Schema object"
                )))
            }
        };
        tools.push(Tool {
            name: name.to_owned(),
            description: f
                .get("description")
                .and_then(Value::as_str)
                .unwrap_or("")
                .to_owned(),
            parameters,
        });
    }
    if tools.is_empty() {
        return Err(Error::invalid("tools_json is an empty array"));
    }
    Ok((tools, raw))
}

/// Most calls in one reply under `Required` unless `max_tool_calls` says (a small base model would
/// otherwise go on adding calls until `max_tokens`).
pub const MAX_REQUIRED_CALLS: usize = 4;

/// The schema of a reply that is only calls, in minerva's format: what `Required` constrains the
/// output to (names as constants, each tool's parameters as its arguments' schema).
pub fn calls_schema(tools: &[Tool], max_calls: usize) -> Value {
    let one: Vec<Value> = tools
        .iter()
        .map(|t| {
            json!({
                "type": "object",
                "properties": {"name": {"const": t.name}, "arguments": t.parameters},
                "required": ["name", "arguments"],
                "additionalProperties": false
            })
        })
        .collect();
    let item = if one.len() == 1 {
        one.into_iter().next().unwrap()
    } else {
        json!({"anyOf": one})
    };
    json!({
        "type": "object",
        "properties": {"tool_calls": {
            "type": "array", "items": item, "minItems": 1, "maxItems": max_calls
        }},
        "required": ["tool_calls"],
        "additionalProperties": false
    })
}

/// What a template without tool support gets in its system turn.
pub fn describe(tools: &[Tool], choice: ToolChoice) -> String {
    let mut s = String::from("You can call these tools (JSON Schema of each one's arguments):\n");
    for t in tools {
        s.push_str(&format!(
            "- {}: {} Arguments: {}\n",
            t.name,
            t.description,
            serde_json::to_string(&t.parameters).unwrap_or_default()
        ));
    }
    s.push_str(
        "To call tools, reply with only this JSON and nothing else: \
         {\"tool_calls\": [{\"name\": \"<tool name>\", \"arguments\": {<arguments>}}]}",
    );
    if choice == ToolChoice::Auto {
        s.push_str("\nOtherwise, answer in plain text.");
    }
    s
}

/// A call as a template's history expects it (OpenAI's shape), from minerva's
/// `{"id", "name", "arguments"}`.
pub fn history_calls(json_text: &str, index: usize) -> Result<Value> {
    let v: Value = serde_json::from_str(json_text).map_err(|e| {
        Error::invalid(format!(
            "messages[{index}].tool_calls_json is not valid JSON: {e}"
        ))
    })?;
    let Some(items) = v.as_array() else {
        return Err(Error::invalid(format!(
            "messages[{index}].tool_calls_json must be a JSON array of calls"
        )));
    };
    let mut out = Vec::with_capacity(items.len());
    for (k, c) in items.iter().enumerate() {
        let f = c.get("function").unwrap_or(c);
        let Some(name) = f.get("name").and_then(Value::as_str) else {
            return Err(Error::invalid(format!(
                "messages[{index}].tool_calls_json[{k}] has no \"name\""
            )));
        };
        let arguments = match f.get("arguments") {
            Some(Value::String(s)) => serde_json::from_str(s).unwrap_or(Value::String(s.clone())),
            Some(a) => a.clone(),
            None => json!({}),
        };
        let id = c
            .get("id")
            .and_then(Value::as_str)
            .map_or_else(|| format!("call_{k:09}"), str::to_owned);
        out.push(json!({
            "id": id,
            "type": "function",
            "function": {"name": name, "arguments": arguments}
        }));
    }
    Ok(Value::Array(out))
}

/// minerva's format of calls made earlier, as an assistant turn's text for templates that know no
/// tool calls.
pub fn calls_as_text(calls: &Value) -> String {
    let list: Vec<Value> = calls
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| json!({"name": c["function"]["name"], "arguments": c["function"]["arguments"]}))
                .collect()
        })
        .unwrap_or_default();
    serde_json::to_string(&json!({ "tool_calls": list })).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::super::capture::Capture;
    use super::*;

    /// Checking the tools is linear in their number: 100,000 took 61 s in `minerva_chat_format`
    /// when each name was looked for in the list of those before it.
    #[test]
    fn many_tools_are_checked_in_linear_time() {
        let list = |n: usize| {
            let tools: Vec<Value> = (0..n)
                .map(|i| json!({"type": "function", "function": {"name": format!("tool_{i}")}}))
                .collect();
            Value::Array(tools).to_string()
        };
        let text = list(100_000);
        let start = std::time::Instant::now();
        let (tools, _) = parse_tools(&text).unwrap();
        let took = start.elapsed();
        assert_eq!(tools.len(), 100_000);
        assert!(took < std::time::Duration::from_secs(2), "{took:?}");
        let capture = Capture::new(&tools, false);
        assert!(capture
            .call_from(&json!({"name": "tool_99999", "arguments": {}}))
            .is_some());
        // A second tool of a name is still found, wherever it is.
        let mut dup: Value = serde_json::from_str(&text).unwrap();
        dup.as_array_mut()
            .unwrap()
            .push(json!({"type": "function", "function": {"name": "tool_5"}}));
        let e = parse_tools(&dup.to_string()).unwrap_err();
        assert!(e.message.contains("a second tool named 'tool_5'"), "{e}");
    }

    #[test]
    fn bad_tools_are_refused() {
        for bad in [
            "[]",
            "{}",
            "[{\"type\":\"function\"}]",
            "[{\"type\":\"function\",\"function\":{\"name\":\"a b\"}}]",
            "[{\"type\":\"function\",\"function\":{\"name\":\"a\"}},{\"type\":\"function\",\"function\":{\"name\":\"a\"}}]",
            "[{\"type\":\"function\",\"function\":{\"name\":\"a\",\"parameters\":3}}]",
            "not json",
        ] {
            assert!(parse_tools(bad).is_err(), "{bad}");
        }
    }
}
