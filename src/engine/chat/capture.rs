//! Calls read out of a reply's text as it streams, for templates whose calls llama.cpp's chat
//! code does not read, and the calls as the C API gives them.
//!
//! Formats read from a reply: minerva's own, `{"tool_calls": [{"name": ..., "arguments": {...}}]}`
//! as the whole reply (what the tool description asks for, and what `Required` enforces);
//! Hermes/Qwen blocks, `<tool_call>{"name": ..., "arguments": {...}}</tool_call>`, anywhere in it;
//! and a whole reply `{"name": ..., "arguments"|"parameters": {...}}` (Llama 3.1's JSON calls).
//! A call of a tool that was not offered is not a call: its text is delivered as text.

use super::tools::{Tool, ToolCall};
use serde_json::{json, Map, Value};
use std::collections::HashSet;

const HERMES_OPEN: &str = "<tool_call>";
const HERMES_CLOSE: &str = "</tool_call>";

/// Separates a reply's calls from its text as the text streams out: text that may be (the start
/// of) a call is held until the call is complete or proves not to be one.
#[derive(Clone, Debug)]
pub struct Capture {
    names: HashSet<String>,
    required: bool,
    state: State,
    /// Text held back.
    held: String,
    /// Calls found so far.
    calls: Vec<ToolCall>,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Only white space so far.
    Start,
    /// The reply began with `{`: all of it is held, parsed at the end.
    WholeJson,
    /// Plain text; a `<tool_call>` block may still come.
    Text,
    /// Inside a `<tool_call>` block.
    InBlock,
}

impl Capture {
    pub fn new(tools: &[Tool], required: bool) -> Capture {
        Capture {
            names: tools.iter().map(|t| t.name.clone()).collect(),
            required,
            state: State::Start,
            held: String::new(),
            calls: Vec::new(),
        }
    }

    /// Takes the next text of the reply; returns what can be delivered now.
    pub fn push(&mut self, text: &str) -> String {
        if self.required {
            self.held.push_str(text);
            return String::new();
        }
        self.held.push_str(text);
        let mut out = String::new();
        loop {
            match self.state {
                State::Start => {
                    let t = self.held.trim_start();
                    if t.is_empty() {
                        return out;
                    }
                    self.state = if t.starts_with('{') {
                        State::WholeJson
                    } else {
                        State::Text
                    };
                }
                State::WholeJson => return out,
                State::Text => match self.held.find(HERMES_OPEN) {
                    Some(p) => {
                        out.push_str(&self.held[..p]);
                        self.held.drain(..p);
                        self.state = State::InBlock;
                    }
                    None => {
                        let keep = partial_suffix(&self.held, HERMES_OPEN);
                        let cut = self.held.len() - keep;
                        out.push_str(&self.held[..cut]);
                        self.held.drain(..cut);
                        return out;
                    }
                },
                State::InBlock => match self.held.find(HERMES_CLOSE) {
                    Some(p) => {
                        let end = p + HERMES_CLOSE.len();
                        let block = self.held[HERMES_OPEN.len()..p].to_owned();
                        match self.call_of(&block) {
                            Some(call) => self.calls.push(call),
                            None => out.push_str(&self.held[..end]),
                        }
                        self.held.drain(..end);
                        self.state = State::Text;
                    }
                    None => return out,
                },
            }
        }
    }

    /// The reply has ended: the text still to deliver, and the calls.
    pub fn finish(&mut self) -> (String, Vec<ToolCall>) {
        let held = std::mem::take(&mut self.held);
        let mut text = String::new();
        match self.state {
            _ if self.required => {
                // A reply cut short (max_tokens) keeps the calls it completed.
                if let Some(calls) = self
                    .whole_json(&held)
                    .or_else(|| self.completed_calls(&held))
                {
                    self.calls.extend(calls);
                }
            }
            State::WholeJson => match self.whole_json(&held) {
                Some(calls) => self.calls.extend(calls),
                None => text = held,
            },
            _ => text = held,
        }
        (text, std::mem::take(&mut self.calls))
    }

    /// A whole reply as calls: minerva's `{"tool_calls": [...]}`, or one `{"name", "arguments"}`.
    fn whole_json(&self, text: &str) -> Option<Vec<ToolCall>> {
        let v: Value = serde_json::from_str(text.trim()).ok()?;
        if let Some(list) = v.get("tool_calls").and_then(Value::as_array) {
            let calls: Option<Vec<ToolCall>> = list.iter().map(|c| self.call_from(c)).collect();
            return calls.filter(|c| !c.is_empty());
        }
        self.call_from(&v).map(|c| vec![c])
    }

    /// The calls that were complete in a `{"tool_calls": [...` reply that ended early: each
    /// element of the list whose closing brace came.
    fn completed_calls(&self, text: &str) -> Option<Vec<ToolCall>> {
        let list = text.find("\"tool_calls\"")?;
        let open = list + text[list..].find('[')?;
        let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
        let mut start = None;
        let mut calls = Vec::new();
        for (i, ch) in text[open + 1..].char_indices() {
            let at = open + 1 + i;
            if in_string {
                match (escaped, ch) {
                    (true, _) => escaped = false,
                    (false, '\\') => escaped = true,
                    (false, '"') => in_string = false,
                    _ => {}
                }
                continue;
            }
            match ch {
                '"' => in_string = true,
                '{' => {
                    if depth == 0 {
                        start = Some(at);
                    }
                    depth += 1;
                }
                '}' => {
                    depth = depth.checked_sub(1)?;
                    if depth == 0 {
                        let element = &text[start.take()?..=at];
                        calls.push(self.call_of(element)?);
                    }
                }
                ']' if depth == 0 => break,
                _ => {}
            }
        }
        (!calls.is_empty()).then_some(calls)
    }

    fn call_of(&self, json_text: &str) -> Option<ToolCall> {
        self.call_from(&serde_json::from_str(json_text.trim()).ok()?)
    }

    pub(super) fn call_from(&self, v: &Value) -> Option<ToolCall> {
        let v = v.get("function").unwrap_or(v);
        let name = v.get("name")?.as_str()?;
        if !self.names.contains(name) {
            return None;
        }
        let arguments = match v.get("arguments").or_else(|| v.get("parameters")) {
            Some(Value::String(s)) => serde_json::from_str(s).ok()?,
            Some(a @ Value::Object(_)) => a.clone(),
            None => Value::Object(Map::new()),
            Some(_) => return None,
        };
        Some(ToolCall {
            id: String::new(),
            name: name.to_owned(),
            arguments,
        })
    }
}

/// A new id for a call the model wrote without one: "call_" and 9 letters and digits. A counter
/// that starts at a random value in each process, spread over 36^9 values by a multiplication
/// that maps them one to one: unique in the process, and a conversation saved and resumed by
/// another process meets an id of its history by chance only (36^9 is 10^14). Templates show ids
/// as given, and Mistral's take only ids that end in 9 letters and digits.
pub fn new_call_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::OnceLock;
    static START: OnceLock<u64> = OnceLock::new();
    static NEXT: AtomicU64 = AtomicU64::new(0);
    const SPACE: u64 = 36u64.pow(9);
    // Prime to 36 (not even, not a multiple of 3): n -> n * MIX mod SPACE is one to one.
    const MIX: u64 = 0x2F6B_4D35;
    // std's RandomState is seeded from the operating system's randomness.
    let start = *START.get_or_init(|| {
        std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish()
    });
    let n = start.wrapping_add(NEXT.fetch_add(1, Ordering::Relaxed)) % SPACE;
    let mut v = ((n as u128 * MIX as u128) % SPACE as u128) as u64;
    let mut digits = [b'0'; 9];
    for d in digits.iter_mut().rev() {
        *d = b"0123456789abcdefghijklmnopqrstuvwxyz"[(v % 36) as usize];
        v /= 36;
    }
    format!("call_{}", std::str::from_utf8(&digits).expect("ASCII"))
}

/// Calls as the C API gives them: `[{"id", "name", "arguments"}]`.
pub fn calls_json(calls: &[ToolCall]) -> String {
    let list: Vec<Value> = calls
        .iter()
        .map(|c| json!({"id": c.id, "name": c.name, "arguments": c.arguments}))
        .collect();
    serde_json::to_string(&list).unwrap_or_else(|_| "[]".into())
}

/// The longest suffix of `s` that is a proper prefix of `pat`.
fn partial_suffix(s: &str, pat: &str) -> usize {
    let (s, p) = (s.as_bytes(), pat.as_bytes());
    (1..p.len().min(s.len() + 1))
        .rev()
        .find(|&n| s[s.len() - n..] == p[..n])
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::super::tools::parse_tools;
    use super::*;

    fn tools() -> Vec<Tool> {
        parse_tools(
            r#"[{"type":"function","function":{"name":"move","description":"Walk.",
                "parameters":{"type":"object","properties":{"to":{"type":"string"}}}}}]"#,
        )
        .unwrap()
        .0
    }

    fn run(required: bool, chunks: &[&str]) -> (String, Vec<ToolCall>) {
        let mut c = Capture::new(&tools(), required);
        let mut out = String::new();
        for ch in chunks {
            out.push_str(&c.push(ch));
        }
        let (rest, calls) = c.finish();
        out.push_str(&rest);
        (out, calls)
    }

    #[test]
    fn plain_text_passes_and_no_calls() {
        let (t, c) = run(false, &["Hello ", "there <", "b>"]);
        assert_eq!(t, "Hello there <b>");
        assert!(c.is_empty());
    }

    #[test]
    fn minerva_format_is_captured_whole() {
        let (t, c) = run(
            false,
            &[
                " {\"tool_calls\": [{\"name\": \"mo",
                "ve\", \"arguments\": {\"to\": \"inn\"}}]}",
            ],
        );
        assert_eq!(t, "");
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].name, "move");
        assert_eq!(c[0].arguments["to"], "inn");
    }

    #[test]
    fn hermes_blocks_are_cut_out_of_the_text() {
        let (t, c) = run(
            false,
            &[
                "Sure.<tool",
                "_call>{\"name\": \"move\", \"arguments\": {\"to\": \"x\"}}</tool_call> Done",
            ],
        );
        assert_eq!(t, "Sure. Done");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn unknown_tools_and_bad_json_stay_text() {
        let (t, c) = run(false, &["{\"name\": \"fly\", \"arguments\": {}}"]);
        assert_eq!(t, "{\"name\": \"fly\", \"arguments\": {}}");
        assert!(c.is_empty());
        let (t, c) = run(false, &["{not json"]);
        assert_eq!(t, "{not json");
        assert!(c.is_empty());
    }

    #[test]
    fn required_delivers_no_text() {
        let (t, c) = run(
            true,
            &["{\"tool_calls\": [{\"name\": \"move\", \"arguments\": {}}]}"],
        );
        assert_eq!(t, "");
        assert_eq!(c.len(), 1);
    }

    #[test]
    fn required_cut_short_keeps_the_complete_calls() {
        let (t, c) = run(
            true,
            &[
                "{\"tool_calls\": [{\"name\": \"move\", \"arguments\": {\"to\": \"a}\\\"{\"}}, ",
                "{\"name\": \"move\", \"arguments\": {\"to\": \"b\"}}, {\"name\": \"mo",
            ],
        );
        assert_eq!(t, "");
        assert_eq!(c.len(), 2);
        assert_eq!(c[0].arguments["to"], "a}\"{");
        assert_eq!(c[1].arguments["to"], "b");
        // Nothing complete: no calls.
        let (_, c) = run(true, &["{\"tool_calls\": [{\"name\": \"move\", \"argu"]);
        assert!(c.is_empty());
    }

    #[test]
    fn call_ids_are_unique_and_fit_every_template() {
        let ids: Vec<String> = (0..10_000).map(|_| new_call_id()).collect();
        let unique: HashSet<&str> = ids.iter().map(String::as_str).collect();
        assert_eq!(unique.len(), ids.len());
        for id in &ids {
            let tail = id.strip_prefix("call_").expect(id);
            assert_eq!(tail.len(), 9, "{id}");
            assert!(tail.bytes().all(|b| b.is_ascii_alphanumeric()), "{id}");
        }
        // Mistral's template shows the last 9: unique too.
        let tails: HashSet<&str> = ids.iter().map(|i| &i[i.len() - 9..]).collect();
        assert_eq!(tails.len(), ids.len());
    }
}
