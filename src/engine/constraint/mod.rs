//! Constrained decoding on llguidance (Guidance's engine): JSON schemas, llguidance's Lark
//! grammars, and through them the REQUIRED tool calls. A stream's [`Constraint`] says at each step
//! which tokens may come next (a bit mask over the vocabulary, tens of microseconds) and follows
//! the tokens picked; when the text is complete it allows only the end token.
//!
//! GBNF grammars stay on llama.cpp's grammar sampler (`llama/sampler.rs`), as in llama.cpp built
//! with llguidance: their meaning is character by character, which llguidance's lexer does not
//! promise to keep.

mod narrow;
mod schema;
mod streams;
mod vocab;

pub(crate) use schema::check_refs;
pub use vocab::Vocabulary;

use crate::engine::error::{Error, Result, Status};
use crate::engine::llama::Token;
use llguidance::api::TopLevelGrammar;
use llguidance::Matcher;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::time::{Duration, Instant};
use toktrie::SimpleVob;

/// What a `grammar` text starts with to be llguidance's Lark syntax rather than GBNF (as in
/// llama.cpp).
pub const LARK_PREFIX: &str = "%llguidance";

/// Whether `grammar` is in llguidance's Lark syntax.
pub fn is_lark(grammar: &str) -> bool {
    grammar.trim_start().starts_with(LARK_PREFIX)
}

/// The whitespace a JSON schema's output may hold between two of its lexemes, unless the schema
/// says otherwise in its `x-guidance` options: one space, or a line break (or two) and an indent
/// of up to 20 spaces or up to 5 tabs. This is llama.cpp's conversion, less indents that mix
/// spaces and tabs, which no JSON writer makes: a small model at a temperature wanders into them,
/// a token a character, and writes whitespace until `max_tokens`.
const JSON_WHITESPACE: &str = r"\x20|(\x0D?\x0A){1,2}(\x20{1,20}|\x09{1,5})?";

/// What constrains a stream.
#[derive(Clone, Copy, Debug)]
pub enum Spec<'a> {
    JsonSchema(&'a str),
    /// A grammar in llguidance's Lark syntax (starting with [`LARK_PREFIX`]).
    Lark(&'a str),
}

impl Spec<'_> {
    fn field(&self) -> &'static str {
        match self {
            Spec::JsonSchema(_) => "json_schema",
            Spec::Lark(_) => "grammar",
        }
    }
}

/// One stream's constraint: llguidance's matcher and the stream's masked row of logits.
pub struct Constraint {
    matcher: Matcher,
    /// The logits with every token the mask refuses at -inf (allocated at the first sampled
    /// pick; reset after each one).
    row: Vec<f32>,
    /// Where `row` holds logits now.
    written: Vec<u32>,
    n_vocab: usize,
    /// The mask for the next pick, computed ahead ([`Constraint::prepare`]).
    ready: Option<Result<SimpleVob>>,
    /// How long the last mask took.
    pub last_mask: Duration,
}

impl Constraint {
    /// Compiles `spec` for `vocab`'s model. An error names the field and the problem; anything
    /// llguidance would not enforce is refused, not loosened.
    pub fn new(vocab: &Vocabulary, spec: Spec) -> Result<Constraint> {
        let field = spec.field();
        let grammar = match spec {
            Spec::JsonSchema(text) => TopLevelGrammar::from_json_schema(json_with_defaults(text)?),
            Spec::Lark(text) => TopLevelGrammar::from_lark(text.to_owned()),
        };
        let parser = vocab
            .factory
            .create_parser(grammar)
            .map_err(|e| Error::invalid(format!("{field}: {}", refusal(&e.to_string()))))?;
        let mut matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::invalid(format!("{field}: {}", refusal(&e))));
        }
        for w in matcher.grammar_warnings() {
            crate::engine::log::log_warn!("{field}: {w}");
        }
        Ok(Constraint {
            matcher,
            row: Vec::new(),
            written: Vec::new(),
            n_vocab: vocab.n_vocab,
            ready: None,
            last_mask: Duration::ZERO,
        })
    }

    /// Computes the mask of the next pick now (while the logits are being computed).
    pub fn prepare(&mut self) {
        if self.ready.is_none() {
            self.ready = Some(self.compute());
        }
    }

    /// The tokens allowed next: computed ahead, or now.
    fn mask(&mut self) -> Result<SimpleVob> {
        match self.ready.take() {
            Some(m) => m,
            None => self.compute(),
        }
    }

    /// The tokens allowed next (only the end token once the text is complete).
    fn compute(&mut self) -> Result<SimpleVob> {
        let started = Instant::now();
        let mask = self.matcher.compute_mask_or_eos().map_err(|e| {
            Error::new(
                Status::Internal,
                format!("the constraint failed: {}", first_line(&e.to_string())),
            )
        });
        self.last_mask = started.elapsed();
        let mask = mask?;
        if mask.is_zero() {
            return Err(Error::new(
                Status::Internal,
                "the constraint allows no token here",
            ));
        }
        Ok(mask)
    }

    /// The allowed token of highest logit (greedy without a sampler chain): no row to build.
    pub fn argmax(&mut self, logits: &[f32]) -> Result<Token> {
        let mask = self.mask()?;
        let mut best: Option<(usize, f32)> = None;
        mask.iter_set_entries(|i| {
            let l = logits.get(i).copied().unwrap_or(f32::NEG_INFINITY);
            if best.is_none_or(|(_, b)| l > b) {
                best = Some((i, l));
            }
        });
        Ok(best.map_or(0, |(i, _)| i as Token))
    }

    /// `logits` with every token the constraint refuses at -inf, for a sampler chain.
    pub fn masked(&mut self, logits: &[f32]) -> Result<&[f32]> {
        let mask = self.mask()?;
        if self.row.len() != self.n_vocab {
            self.row = vec![f32::NEG_INFINITY; self.n_vocab];
        }
        for &i in &self.written {
            self.row[i as usize] = f32::NEG_INFINITY;
        }
        self.written.clear();
        let n = logits.len().min(self.n_vocab);
        let (row, written) = (&mut self.row, &mut self.written);
        mask.iter_set_entries(|i| {
            if i < n {
                row[i] = logits[i];
                written.push(i as u32);
            }
        });
        Ok(&self.row)
    }

    /// Follows the token picked; an error if the constraint does not allow it.
    pub fn consume(&mut self, token: Token) -> Result<()> {
        self.ready = None;
        self.matcher.consume_token(token as u32).map_err(|e| {
            Error::new(
                Status::Internal,
                format!(
                    "the constraint refused token {token}: {}",
                    first_line(&e.to_string())
                ),
            )
        })
    }

    /// Whether `tokens` are a whole output of the constraint: each allowed in turn, and the end
    /// allowed after them.
    pub fn accepts(&mut self, tokens: &[Token]) -> Result<bool> {
        for &t in tokens {
            if self.is_done() {
                return Ok(false);
            }
            let allowed = match self.compute() {
                Ok(mask) => mask.is_allowed(t as u32),
                Err(_) if !self.matcher.is_error() => false, // an empty mask
                Err(e) => return Err(e),
            };
            if !allowed {
                return Ok(false);
            }
            self.consume(t)?;
        }
        Ok(self.is_done() || self.matcher.is_accepting().unwrap_or(false))
    }

    /// The text is complete: only the end token may follow.
    pub fn is_done(&self) -> bool {
        self.matcher.is_stopped()
    }
}

/// The schema, with minerva's bounded whitespace where its root gives no whitespace option of
/// its own in `x-guidance`.
fn json_with_defaults(text: &str) -> Result<Value> {
    let mut de = serde_json::Deserializer::from_str(text);
    // The text was checked to nest at most MAX_NESTING (256) deep; serde_json's own limit is 128.
    de.disable_recursion_limit();
    let mut schema = Value::deserialize(&mut de)
        .and_then(|v| de.end().map(|_| v))
        .map_err(|e| Error::invalid(format!("json_schema is not valid JSON: {e}")))?;
    narrow::narrow(&mut schema);
    if let Value::Object(root) = &mut schema {
        let options = root
            .entry("x-guidance")
            .or_insert_with(|| Value::Object(Map::new()));
        if let Value::Object(o) = options {
            if !o.contains_key("whitespace_flexible") && !o.contains_key("whitespace_pattern") {
                o.insert("whitespace_pattern".into(), JSON_WHITESPACE.into());
            }
        }
    }
    Ok(schema)
}

/// llguidance's message, first line only (the rest dumps the grammar), and for a keyword it
/// does not enforce, how to accept the schema anyway.
fn refusal(message: &str) -> String {
    let line = first_line(message);
    if line.contains("coerce_one_of") {
        return format!(
            "{line} (minerva refuses what it would not enforce; to read oneOf as anyOf, add \
             \"x-guidance\": {{\"coerce_one_of\": true}} at the schema's root)"
        );
    }
    let unenforced = [
        "not supported",
        "Unimplemented",
        "unimplemented",
        "Unknown format",
    ];
    if unenforced.iter().any(|u| line.contains(u)) {
        format!(
            "{line} (minerva refuses what it would not enforce; to accept the schema with this \
             left unchecked, add \"x-guidance\": {{\"lenient\": true}} at its root)"
        )
    } else {
        line.to_owned()
    }
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or(s).trim()
}
