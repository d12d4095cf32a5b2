//! The settings of an engine and of one generation, with their defaults and limits.

use super::error::{Error, Result};
use super::llama::SamplingParams;

/// Settings of an engine. See the C header for each field's meaning and default.
#[derive(Clone, Debug, PartialEq)]
pub struct EngineConfig {
    pub gpu_layers: i32,
    pub context_tokens: u32,
    pub max_streams: u32,
    pub threads: u32,
    pub batch_tokens: u32,
    pub use_mmap: bool,
    /// RPC servers ("host:port") whose devices take layers (see engine::rpc).
    pub rpc_servers: Vec<String>,
    /// LoRA adapters loaded with the model: (path, default scale).
    pub loras: Vec<(String, f32)>,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            gpu_layers: -1,
            context_tokens: 2048,
            max_streams: 4,
            threads: 0,
            batch_tokens: 512,
            use_mmap: true,
            rpc_servers: Vec::new(),
            loras: Vec::new(),
        }
    }
}

/// Limits on engine settings.
pub const MAX_STREAMS: u32 = 256;
pub const MIN_CONTEXT_TOKENS: u32 = 8;
pub const MAX_CONTEXT_TOKENS: u32 = 1 << 20;
pub const MAX_BATCH_TOKENS: u32 = 1 << 16;
pub const MAX_THREADS: u32 = 1024;
/// Limit on `repeat_last_n` (the penalty window never reaches past a stream's context anyway).
pub const MAX_REPEAT_LAST_N: u32 = MAX_CONTEXT_TOKENS;

/// Settings of one generation.
#[derive(Clone, Debug, PartialEq)]
pub struct GenerateParams {
    pub max_tokens: u32,
    pub sampling: SamplingParams,
    pub stop: Vec<String>,
    pub ignore_eos: bool,
    pub cache_prompt: bool,
    /// A GBNF grammar the output must match (rule `root`).
    pub grammar: Option<String>,
    /// A JSON Schema the output must be valid JSON against.
    pub json_schema: Option<String>,
    /// Set by [`Engine::chat_start`](super::Engine::chat_start): the end of the assistant's turn
    /// and the tool calls to capture.
    pub chat: Option<super::chat::ChatStream>,
    /// The scale of each of the engine's LoRA adapters for this stream (None: the engine's).
    pub lora_scales: Option<Vec<f32>>,
}

/// The seed value that asks for a new random seed for each stream.
pub const SEED_RANDOM: u64 = u64::MAX;

impl Default for GenerateParams {
    fn default() -> Self {
        GenerateParams {
            max_tokens: 256,
            sampling: SamplingParams::default(),
            stop: Vec::new(),
            ignore_eos: false,
            cache_prompt: true,
            grammar: None,
            json_schema: None,
            chat: None,
            lora_scales: None,
        }
    }
}

impl GenerateParams {
    /// Checks the values; the error names the field.
    pub fn check(&self) -> Result<()> {
        if let Some(i) = self
            .lora_scales
            .iter()
            .flatten()
            .position(|s| !s.is_finite())
        {
            return Err(Error::invalid(format!(
                "lora_scales[{i}] is not a finite number"
            )));
        }
        let s = &self.sampling;
        if !s.temperature.is_finite() || s.temperature < 0.0 {
            return Err(Error::invalid(format!(
                "temperature must be a finite number >= 0 (0 is greedy), got {}",
                s.temperature
            )));
        }
        if s.top_k < 0 {
            return Err(Error::invalid(format!(
                "top_k must be >= 0 (0 is off), got {}",
                s.top_k
            )));
        }
        if !(s.top_p > 0.0 && s.top_p <= 1.0) {
            return Err(Error::invalid(format!(
                "top_p must be in (0, 1] (1 is off), got {}",
                s.top_p
            )));
        }
        if !(0.0..=1.0).contains(&s.min_p) {
            return Err(Error::invalid(format!(
                "min_p must be in [0, 1] (0 is off), got {}",
                s.min_p
            )));
        }
        if !s.repeat_penalty.is_finite() || s.repeat_penalty <= 0.0 {
            return Err(Error::invalid(format!(
                "repeat_penalty must be a finite number > 0 (1 is off), got {}",
                s.repeat_penalty
            )));
        }
        if s.repeat_last_n > MAX_REPEAT_LAST_N {
            return Err(Error::invalid(format!(
                "repeat_last_n must be in 0..={MAX_REPEAT_LAST_N}, got {}",
                s.repeat_last_n
            )));
        }
        for (name, v) in [
            ("presence_penalty", s.presence_penalty),
            ("frequency_penalty", s.frequency_penalty),
        ] {
            if !v.is_finite() {
                return Err(Error::invalid(format!(
                    "{name} must be a finite number (0 is off), got {v}"
                )));
            }
        }
        if let Some(i) = s
            .logit_bias
            .iter()
            .position(|&(_, b)| b.is_nan() || b == f32::INFINITY)
        {
            return Err(Error::invalid(format!(
                "logit_bias[{i}].bias must be a number or -infinity (which bans the token), got {}",
                s.logit_bias[i].1
            )));
        }
        if self.grammar.as_deref().is_some_and(|g| g.trim().is_empty()) {
            return Err(Error::invalid("grammar is empty (it needs a rule `root`)"));
        }
        // llama.cpp's grammar parser and llguidance's compilers recurse once per nesting level:
        // a deep enough text would overflow the caller's stack.
        if let Some(g) = &self.grammar {
            if nesting(g, b'(', b')', true) > MAX_NESTING {
                return Err(Error::invalid(format!(
                    "grammar nests groups more than {MAX_NESTING} deep"
                )));
            }
        }
        if let Some(g) = &self.grammar {
            check_grammar_size(g)?;
        }
        if let Some(s) = &self.json_schema {
            if nesting(s, b'{', b'}', false).max(nesting(s, b'[', b']', false)) > MAX_NESTING {
                return Err(Error::invalid(format!(
                    "json_schema nests more than {MAX_NESTING} deep"
                )));
            }
            super::constraint::check_refs(s)?;
        }
        if self.grammar.is_some() && self.json_schema.is_some() {
            return Err(Error::invalid(
                "grammar and json_schema are both set; give one of them",
            ));
        }
        if let Some(i) = self.stop.iter().position(String::is_empty) {
            return Err(Error::invalid(format!("stop[{i}] is an empty string")));
        }
        Ok(())
    }
}

impl EngineConfig {
    /// Checks the values; the error names the field.
    pub fn check(&self) -> Result<()> {
        let c = self;
        if !(MIN_CONTEXT_TOKENS..=MAX_CONTEXT_TOKENS).contains(&c.context_tokens) {
            return Err(Error::invalid(format!(
                "context_tokens must be in {MIN_CONTEXT_TOKENS}..={MAX_CONTEXT_TOKENS}, got {}",
                c.context_tokens
            )));
        }
        if !(1..=MAX_STREAMS).contains(&c.max_streams) {
            return Err(Error::invalid(format!(
                "max_streams must be in 1..={MAX_STREAMS}, got {}",
                c.max_streams
            )));
        }
        if (c.context_tokens as u64) * (c.max_streams as u64) > u32::MAX as u64 / 2 {
            return Err(Error::invalid(format!(
                "context_tokens * max_streams is too large ({} * {})",
                c.context_tokens, c.max_streams
            )));
        }
        if !(1..=MAX_BATCH_TOKENS).contains(&c.batch_tokens) {
            return Err(Error::invalid(format!(
                "batch_tokens must be in 1..={MAX_BATCH_TOKENS}, got {}",
                c.batch_tokens
            )));
        }
        if c.threads > MAX_THREADS {
            return Err(Error::invalid(format!(
                "threads must be in 0..={MAX_THREADS} (0: one per physical core), got {}",
                c.threads
            )));
        }
        if c.loras.len() > MAX_LORAS {
            return Err(Error::invalid(format!(
                "lora_count is {}; an engine takes at most {MAX_LORAS} adapters",
                c.loras.len()
            )));
        }
        for (i, (path, scale)) in c.loras.iter().enumerate() {
            if path.is_empty() {
                return Err(Error::invalid(format!("loras[{i}].path is empty")));
            }
            if !scale.is_finite() {
                return Err(Error::invalid(format!(
                    "loras[{i}].scale is not a finite number"
                )));
            }
        }
        Ok(())
    }
}

/// Most LoRA adapters an engine loads.
pub const MAX_LORAS: usize = 32;

/// How deep `grammar` or `json_schema` may nest (brackets, groups).
pub const MAX_NESTING: usize = 256;
/// Most rules a grammar may define. llama.cpp's grammar code recurses once per rule along a chain
/// of rules that each begin with the next (`r0 ::= r1`, `r1 ::= r2`, ...), when it checks for left
/// recursion and whenever it advances: 100,000 such rules overflowed an 8 MiB stack. minerva runs
/// that code on threads of its own with [`super::stack::DEEP_STACK`], which holds this many with
/// room to spare; real grammars, those made from large JSON schemas included, have hundreds.
pub const MAX_GRAMMAR_RULES: usize = 10_000;

/// Refuses a grammar with more than [`MAX_GRAMMAR_RULES`] rules (each `name ::=` outside string
/// literals, character classes and comments).
pub fn check_grammar_size(g: &str) -> Result<()> {
    let rules = gbnf_rule_count(g);
    if rules > MAX_GRAMMAR_RULES {
        return Err(Error::invalid(format!(
            "grammar defines {rules} rules, more than the {MAX_GRAMMAR_RULES} accepted"
        )));
    }
    Ok(())
}

/// The `::=` of a GBNF text outside literals ("..."), classes ([...]) and comments (# to the end
/// of the line).
fn gbnf_rule_count(text: &str) -> usize {
    let b = text.as_bytes();
    let (mut i, mut rules) = (0, 0);
    while i < b.len() {
        match b[i] {
            q @ (b'"' | b'[') => {
                let end = if q == b'"' { b'"' } else { b']' };
                i += 1;
                while i < b.len() && b[i] != end {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
            }
            b'#' => {
                while i < b.len() && b[i] != b'\n' {
                    i += 1;
                }
            }
            b':' if b[i..].starts_with(b"::=") => {
                rules += 1;
                i += 2;
            }
            _ => {}
        }
        i += 1;
    }
    rules
}

/// The deepest nesting of `open`/`close` in `text` outside string literals ("..." with
/// backslash escapes) and, for GBNF, outside character classes (`[...]`).
fn nesting(text: &str, open: u8, close: u8, gbnf: bool) -> usize {
    let (mut depth, mut deepest) = (0usize, 0usize);
    let mut bytes = text.bytes();
    while let Some(b) = bytes.next() {
        match b {
            b'"' | b'[' if b == b'"' || (gbnf && open != b'[') => {
                let end = if b == b'"' { b'"' } else { b']' };
                while let Some(c) = bytes.next() {
                    if c == b'\\' {
                        bytes.next();
                    } else if c == end {
                        break;
                    }
                }
            }
            _ if b == open => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            _ if b == close => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

#[cfg(test)]
mod tests {
    use super::{gbnf_rule_count, nesting};

    #[test]
    fn rules_are_counted_outside_literals_classes_and_comments() {
        assert_eq!(
            gbnf_rule_count("root ::= a\na ::= \"::=\" [:=] # b ::= c\n"),
            2
        );
        assert_eq!(gbnf_rule_count(r#"root ::= "\"::=" x"#), 1);
        let chain: String = (0..10_001)
            .map(|i| format!("r{i} ::= r{}\n", i + 1))
            .collect();
        assert_eq!(gbnf_rule_count(&chain), 10_001);
    }

    #[test]
    fn nesting_outside_literals_and_classes() {
        assert_eq!(nesting(r#"root ::= ("a" ("b"))"#, b'(', b')', true), 2);
        assert_eq!(nesting(r#"root ::= "((((" [(((] x"#, b'(', b')', true), 0);
        assert_eq!(nesting(r#"root ::= "\"((" ( x )"#, b'(', b')', true), 1);
        assert_eq!(nesting(r#"{"a": [[1], "[[["]}"#, b'[', b']', false), 2);
        assert_eq!(nesting(&"[".repeat(300), b'[', b']', false), 300);
    }
}
