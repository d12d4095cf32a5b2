//! A chat reply as it streams: its text, its reasoning and its tool calls kept apart.
//!
//! In the model's own format ([`Format`]) llama.cpp's parser reads the whole reply so far after
//! each piece; the text it finds beyond what was delivered goes out, the reasoning beyond what was
//! published goes to the stream's reasoning, and text that may still become markup is held (the
//! parser leaves a partial marker out of the content). Where the template has no call syntax of
//! its own, minerva's [`Capture`] reads the calls out of the text that comes through.

use super::capture::{self, Capture};
use super::format::Format;
use super::tools::{Tool, ToolCall};
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;

/// What a chat stream needs beyond a plain one. Set by [`prepare`], carried in the stream's
/// parameters.
#[derive(Clone, Default)]
pub struct ChatStream {
    /// Texts that end the assistant's turn (`<|im_end|>`, ...): they end the stream as an EOS
    /// would and are never delivered.
    pub end_markers: Vec<String>,
    /// The tools offered, when calls are to be read.
    pub tools: Option<Vec<Tool>>,
    pub required: bool,
    /// The model's own format, where its reasoning or calls are to be read.
    pub format: Option<Arc<Format>>,
    pub max_calls: usize,
}

impl ChatStream {
    /// The reader of this stream's reply, if it needs one beyond plain text.
    pub fn reply(&self) -> Option<Reply> {
        let native = self.format.as_ref().is_some_and(|f| f.native_calls);
        let capture = match (&self.tools, native) {
            (Some(t), false) => Some(Capture::new(t, self.required)),
            _ => None,
        };
        if self.format.is_none() && capture.is_none() {
            return None;
        }
        let names: Option<HashSet<String>> = self
            .tools
            .as_ref()
            .map(|t| t.iter().map(|t| t.name.clone()).collect());
        Some(Reply::new(
            self.format.clone(),
            capture,
            names,
            self.max_calls,
        ))
    }
}

impl std::fmt::Debug for ChatStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatStream")
            .field("end_markers", &self.end_markers)
            .field("tools", &self.tools)
            .field("required", &self.required)
            .field("format", &self.format.as_ref().map(|f| &f.name))
            .field("max_calls", &self.max_calls)
            .finish()
    }
}

impl PartialEq for ChatStream {
    fn eq(&self, other: &Self) -> bool {
        self.end_markers == other.end_markers
            && self.tools == other.tools
            && self.required == other.required
            && self.max_calls == other.max_calls
            && match (&self.format, &other.format) {
                (Some(a), Some(b)) => Arc::ptr_eq(a, b),
                (None, None) => true,
                _ => false,
            }
    }
}

/// What one piece of the reply gave.
#[derive(Default)]
pub struct Pushed {
    pub text: String,
    pub reasoning: String,
    /// The reply holds more calls than allowed: it ends here.
    pub stop: bool,
}

/// What the end of the reply gave.
pub struct Finished {
    pub text: String,
    pub reasoning: String,
    /// None: the stream offered no tools.
    pub calls: Option<Vec<ToolCall>>,
}

/// One reading of the reply so far.
#[derive(Default)]
struct Parsed {
    content: String,
    reasoning: String,
    calls: Vec<(String, String, String)>,
}

fn parsed(json_text: &str) -> Option<Parsed> {
    let v: Value = serde_json::from_str(json_text).ok()?;
    let s = |v: &Value| v.as_str().unwrap_or("").to_owned();
    Some(Parsed {
        content: s(&v["content"]),
        reasoning: s(&v["reasoning"]),
        calls: v["calls"]
            .as_array()
            .map(|l| {
                l.iter()
                    .map(|c| (s(&c["name"]), s(&c["arguments"]), s(&c["id"])))
                    .collect()
            })
            .unwrap_or_default(),
    })
}

/// llama.cpp's reading of a reply in the model's format.
struct Reader {
    format: Arc<Format>,
    raw: String,
    /// Bytes of the content delivered, and of the reasoning published.
    delivered: usize,
    published: usize,
}

impl Reader {
    /// llama.cpp's reading of the reply so far (`partial`: more may come). Where the template's
    /// generation prompt opened the reasoning and llama.cpp's analysis did not see it (DeepSeek
    /// V3.1), the reasoning is what comes before the end tag, and the rest is read by llama.cpp.
    fn read(&self, partial: bool) -> Option<Parsed> {
        let parse = |text: &str| {
            self.format
                .parser
                .parse(text, partial)
                .ok()
                .and_then(|j| parsed(&j))
        };
        let Some(end) = &self.format.opened_reasoning else {
            return parse(&self.raw);
        };
        match self.raw.find(end.as_str()) {
            Some(at) => {
                let mut p = parse(&self.raw[at + end.len()..])?;
                p.reasoning.insert_str(0, &self.raw[..at]);
                Some(p)
            }
            None => {
                // A reply that ended with no end tag and reads as calls (the reasoning skipped).
                if !partial {
                    if let Some(p) = parse(&self.raw).filter(|p| !p.calls.is_empty()) {
                        return Some(p);
                    }
                }
                // All reasoning so far, less what may be the start of the end tag.
                let mut keep = self.raw.len();
                if partial {
                    for start in (1..end.len()).rev() {
                        if self.raw.ends_with(&end[..start]) {
                            keep -= start;
                            break;
                        }
                    }
                }
                Some(Parsed {
                    reasoning: self.raw[..keep].to_owned(),
                    ..Parsed::default()
                })
            }
        }
    }

    /// The text and reasoning beyond what went out, for a reading of the reply.
    fn advance(&mut self, p: &Parsed, out: &mut Pushed) {
        if p.content.len() > self.delivered && p.content.is_char_boundary(self.delivered) {
            out.text.push_str(&p.content[self.delivered..]);
            self.delivered = p.content.len();
        }
        if p.reasoning.len() > self.published && p.reasoning.is_char_boundary(self.published) {
            out.reasoning.push_str(&p.reasoning[self.published..]);
            self.published = p.reasoning.len();
        }
    }
}

/// A chat stream's reply.
pub struct Reply {
    reader: Option<Reader>,
    capture: Option<Capture>,
    /// The names of the tools offered (calls of others are dropped), when tools are offered.
    names: Option<HashSet<String>>,
    max_calls: usize,
}

impl Reply {
    pub fn new(
        format: Option<Arc<Format>>,
        capture: Option<Capture>,
        names: Option<HashSet<String>>,
        max_calls: usize,
    ) -> Reply {
        Reply {
            reader: format.map(|format| Reader {
                format,
                raw: String::new(),
                delivered: 0,
                published: 0,
            }),
            capture,
            names,
            max_calls,
        }
    }

    /// Takes the next text of the reply.
    pub fn push(&mut self, text: &str) -> Pushed {
        let mut out = Pushed::default();
        match &mut self.reader {
            Some(r) => {
                r.raw.push_str(text);
                if let Some(p) = r.read(true) {
                    r.advance(&p, &mut out);
                    out.stop = r.format.native_calls && p.calls.len() > self.max_calls;
                }
            }
            None => out.text.push_str(text),
        }
        if let Some(c) = &mut self.capture {
            out.text = c.push(&out.text);
        }
        out
    }

    /// The reply has ended.
    pub fn finish(&mut self) -> Finished {
        let mut out = Pushed::default();
        let mut calls = Vec::new();
        if let Some(r) = &mut self.reader {
            // The whole reply; where it does not read as a whole (cut short, or off the format),
            // as much as reads, and the rest of the text as it was written.
            let whole = r.read(false);
            if whole.is_none() {
                // Debug: every reply that max_tokens cuts short is one.
                crate::engine::log::log(
                    crate::engine::log::Level::Debug,
                    &format!(
                        "chat: the reply does not follow the template's format ({}) to its end \
                         (cut short, or written off the format); read as far as it does, the \
                         rest given as text",
                        r.format.name
                    ),
                );
            }
            let p = whole.or_else(|| r.read(true));
            match p {
                Some(p) => {
                    r.advance(&p, &mut out);
                    if r.format.native_calls {
                        calls = native_calls(&p, self.names.as_ref());
                    }
                }
                None if r.delivered == 0 && r.published == 0 => {
                    out.text = std::mem::take(&mut r.raw)
                }
                None => {}
            }
        }
        let mut text = out.text;
        if let Some(c) = &mut self.capture {
            let mut t = c.push(&text);
            let (rest, captured) = c.finish();
            t.push_str(&rest);
            text = t;
            calls.extend(captured);
        }
        calls.truncate(self.max_calls);
        for c in calls.iter_mut().filter(|c| c.id.is_empty()) {
            c.id = capture::new_call_id();
        }
        Finished {
            text,
            reasoning: out.reasoning,
            calls: self.names.is_some().then_some(calls),
        }
    }
}

/// The calls llama.cpp read, of offered tools, whose arguments are whole JSON.
fn native_calls(p: &Parsed, names: Option<&HashSet<String>>) -> Vec<ToolCall> {
    p.calls
        .iter()
        .filter(|(name, _, _)| names.is_some_and(|n| n.contains(name)))
        .filter_map(|(name, args, id)| {
            let arguments = if args.trim().is_empty() {
                Value::Object(Default::default())
            } else {
                serde_json::from_str(args).ok()?
            };
            Some(ToolCall {
                id: id.clone(),
                name: name.clone(),
                arguments,
            })
        })
        .collect()
}
