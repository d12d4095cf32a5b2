//! Constrained decoding on llguidance, on the real model: every piece of text a stream delivers
//! keeps the output inside its constraint (checked piece by piece with parsers of the tests' own:
//! serde_json for JSON, hand-written matchers for the Lark grammars), the whole output is valid
//! (an independent JSON Schema validator, the `jsonschema` crate), and a complete constraint ends
//! the stream with EOS, `ignore_eos` or not; greedy, and sampled over the whole vocabulary.
//! Bad schemas and grammars are errors at the start, naming the problem.

mod common;

use minerva::engine::{
    Control, Engine, FinishReason, GenerateParams, SamplingParams, Status, TokenFn,
};
use serde_json::Value;
use std::sync::{Arc, Mutex};

/// Schemas that today's users write, and those llama.cpp's conversion got wrong (issue 19).
fn schemas() -> Vec<(&'static str, String)> {
    let big_enum: Vec<String> = (0..3000).map(|i| format!("\"item-{i:04}\"")).collect();
    vec![
        (
            "nested object, enum, bounded integer, unbounded number",
            r#"{"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 20},
                "mood": {"enum": ["happy", "angry", "afraid"]},
                "stats": {"type": "object", "properties": {
                    "hp": {"type": "integer", "minimum": 0, "maximum": 100},
                    "speed": {"type": "number"}},
                  "required": ["hp", "speed"], "additionalProperties": false}},
              "required": ["name", "mood", "stats"], "additionalProperties": false}"#
                .into(),
        ),
        (
            "array of objects",
            r#"{"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object",
                "properties": {"item": {"type": "string", "maxLength": 12},
                               "count": {"type": "integer", "minimum": 1, "maximum": 9}},
                "required": ["item", "count"], "additionalProperties": false}}"#
                .into(),
        ),
        (
            "pattern with \\d and \\w (llama.cpp accepted any string)",
            r#"{"type": "object", "properties": {
                "code": {"type": "string", "pattern": "^\\d{3}-[A-Z]{2}\\w$"},
                "tag": {"type": "string", "pattern": "^#\\w{2,8}$"}},
              "required": ["code", "tag"], "additionalProperties": false}"#
                .into(),
        ),
        (
            "a property named additionalProperties (llama.cpp refused it)",
            r#"{"type": "object", "properties": {
                "additionalProperties": {"type": "boolean"},
                "type": {"type": "string", "enum": ["a", "b"]}},
              "required": ["additionalProperties", "type"], "additionalProperties": false}"#
                .into(),
        ),
        (
            "items that refer to the root (llama.cpp refused it)",
            r##"{"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 8},
                "children": {"type": "array", "maxItems": 2, "items": {"$ref": "#"}}},
              "required": ["name"], "additionalProperties": false}"##
                .into(),
        ),
        (
            "anyOf, const, null, boolean",
            r#"{"type": "object", "properties": {
                "kind": {"const": "event"},
                "value": {"anyOf": [{"type": "integer", "minimum": 0, "maximum": 9},
                                    {"type": "string", "maxLength": 5}, {"type": "null"}]},
                "done": {"type": "boolean"}},
              "required": ["kind", "value", "done"], "additionalProperties": false}"#
                .into(),
        ),
        (
            "formats and multipleOf",
            r#"{"type": "object", "properties": {
                "day": {"type": "string", "format": "date"},
                "id": {"type": "string", "format": "uuid"},
                "step": {"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 100}},
              "required": ["day", "id", "step"], "additionalProperties": false}"#
                .into(),
        ),
        (
            "optional properties, $defs",
            r##"{"$defs": {"point": {"type": "object", "properties": {
                  "x": {"type": "integer", "minimum": -9, "maximum": 9},
                  "y": {"type": "integer", "minimum": -9, "maximum": 9}},
                "required": ["x", "y"], "additionalProperties": false}},
              "type": "object", "properties": {
                "from": {"$ref": "#/$defs/point"}, "to": {"$ref": "#/$defs/point"},
                "label": {"type": "string", "maxLength": 10}},
              "required": ["from"], "additionalProperties": false}"##
                .into(),
        ),
        (
            "an enum of 3,000 values (crawled in 0.2)",
            format!("{{\"enum\": [{}]}}", big_enum.join(", ")),
        ),
        (
            "multipleOf met through allOf, anyOf and oneOf (a number at the root)",
            r#"{"type": "number", "allOf": [{"multipleOf": 2}], "anyOf": [{"multipleOf": 3}],
                "oneOf": [{"multipleOf": 5}]}"#
                .into(),
        ),
        (
            "a string of bounded length at the root",
            r#"{"type": "string", "minLength": 3, "maxLength": 40}"#.into(),
        ),
    ]
}

/// Samples over the whole vocabulary (no top-k, top-p or min-p): every token the mask leaves is
/// a candidate.
fn sampled(seed: u64) -> SamplingParams {
    SamplingParams {
        temperature: 1.2,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        seed,
        ..SamplingParams::default()
    }
}

/// The sampling settings every constraint is tried with: greedy, the default chain, and the
/// whole vocabulary sampled.
fn settings() -> Vec<(&'static str, SamplingParams)> {
    vec![
        ("greedy", SamplingParams::greedy()),
        (
            "default chain",
            SamplingParams {
                seed: 7,
                ..SamplingParams::default()
            },
        ),
        ("whole vocabulary", sampled(11)),
    ]
}

/// Runs a stream, calling `check` with the text so far after every piece delivered; returns the
/// text, the finish reason and the number of tokens.
fn run_checked(
    engine: &Engine,
    prompt: &str,
    params: GenerateParams,
    check: impl Fn(&str) -> Result<(), String> + Send + 'static,
) -> (String, FinishReason, u32) {
    let text = Arc::new(Mutex::new(String::new()));
    let bad = Arc::new(Mutex::new(None::<String>));
    let on_token: TokenFn = {
        let (text, bad) = (text.clone(), bad.clone());
        Box::new(move |piece: &str| {
            let mut t = text.lock().unwrap();
            t.push_str(piece);
            if let Err(e) = check(&t) {
                bad.lock()
                    .unwrap()
                    .get_or_insert(format!("{e} after {t:?}"));
            }
            Control::Continue
        })
    };
    let s = engine
        .start(prompt, params, Some(on_token), None)
        .expect("start");
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    if let Some(e) = bad.lock().unwrap().take() {
        panic!("the text left its constraint: {e}");
    }
    let st = s.stats();
    let t = text.lock().unwrap().clone();
    (t, st.finish_reason, st.generated_tokens)
}

/// The text is JSON so far: complete, or cut where more could follow.
fn json_prefix(text: &str) -> Result<(), String> {
    match serde_json::from_str::<Value>(text) {
        Ok(_) => Ok(()),
        Err(e) if e.is_eof() => Ok(()),
        Err(e) => Err(format!("not a JSON prefix ({e})")),
    }
}

#[test]
fn json_schema_streams_stay_inside_their_schema_and_end_there() {
    let _one = common::one_at_a_time();
    let engine = common::engine(1, 1024);
    let mut runs = 0;
    for (what, schema) in schemas() {
        let value: Value = serde_json::from_str(&schema).unwrap();
        let validator = jsonschema::validator_for(&value).expect("the test's schema is valid");
        for (how, sampling) in settings() {
            for ignore_eos in [false, true] {
                let params = GenerateParams {
                    max_tokens: 400,
                    json_schema: Some(schema.clone()),
                    sampling: sampling.clone(),
                    ignore_eos,
                    ..Default::default()
                };
                let (text, reason, n) =
                    run_checked(&engine, "Game data, as JSON:\n", params, json_prefix);
                let ctx = format!("{what} ({how}, ignore_eos {ignore_eos}): {n} tokens {text:?}");
                if reason == FinishReason::Length && what.contains("refer to the root") {
                    // The schema has no end: a model may nest until max_tokens (the text was a
                    // JSON prefix at every piece).
                    runs += 1;
                    continue;
                }
                assert_eq!(reason, FinishReason::Eos, "{ctx}");
                let v: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{ctx}: {e}"));
                if let Err(e) = validator.validate(&v) {
                    panic!("{ctx}: breaks its schema: {e}");
                }
                runs += 1;
            }
        }
        eprintln!("{what}: ok");
    }
    assert_eq!(runs, schemas().len() * 6);
}

/// Lark grammars (`%llguidance`), each with a matcher of the test's own for its prefixes and for
/// its whole texts.
#[test]
fn lark_grammars_hold_token_by_token() {
    let _one = common::one_at_a_time();
    let engine = common::engine(1, 512);
    type Check = fn(&str, bool) -> bool;
    let grammars: [(&str, Check); 3] = [
        (
            "%llguidance {}\nstart: \"The answer is \" NUMBER \".\"\nNUMBER: /[0-9]{1,4}/\n",
            |t, whole| {
                let lead = "The answer is ";
                if t.len() <= lead.len() {
                    return !whole && lead.starts_with(t);
                }
                let Some(rest) = t.strip_prefix(lead) else {
                    return false;
                };
                let digits = rest.trim_end_matches('.');
                let dot = rest.len() - digits.len();
                digits.len() <= 4
                    && digits.bytes().all(|b| b.is_ascii_digit())
                    && dot <= 1
                    && (dot == 0 || !digits.is_empty())
                    && (!whole || (dot == 1 && !digits.is_empty()))
            },
        ),
        (
            "%llguidance {}\nstart: (\"yes\" | \"no\") \", because \" WORDS \".\"\n\
             WORDS: /[a-z ]{1,30}/\n",
            |t, whole| {
                let (answer, rest) = if let Some(r) = t.strip_prefix("yes") {
                    ("yes", r)
                } else if let Some(r) = t.strip_prefix("no") {
                    ("no", r)
                } else {
                    return !whole && ("yes".starts_with(t) || "no".starts_with(t));
                };
                let _ = answer;
                let sep = ", because ";
                if rest.len() <= sep.len() {
                    return !whole && sep.starts_with(rest);
                }
                let Some(words) = rest.strip_prefix(sep) else {
                    return false;
                };
                let body = words.strip_suffix('.').unwrap_or(words);
                let closed = body.len() < words.len();
                body.len() <= 30
                    && body.bytes().all(|b| b.is_ascii_lowercase() || b == b' ')
                    && (!closed || !body.is_empty())
                    && (!whole || (closed && !body.is_empty()))
            },
        ),
        (
            "%llguidance {}\nstart: \"Result: \" %json {\"type\": \"object\", \
             \"properties\": {\"ok\": {\"type\": \"boolean\"}}, \"required\": [\"ok\"], \
             \"additionalProperties\": false}\n",
            |t, whole| {
                let lead = "Result: ";
                if t.len() <= lead.len() {
                    return !whole && lead.starts_with(t);
                }
                let Some(json) = t.strip_prefix(lead) else {
                    return false;
                };
                match serde_json::from_str::<Value>(json) {
                    Ok(v) => v.as_object().is_some_and(|o| {
                        o.len() == 1 && o.get("ok").is_some_and(Value::is_boolean)
                    }),
                    Err(e) => !whole && e.is_eof(),
                }
            },
        ),
    ];
    for (grammar, check) in grammars {
        for (how, sampling) in settings() {
            for ignore_eos in [false, true] {
                let params = GenerateParams {
                    max_tokens: 200,
                    grammar: Some(grammar.to_string()),
                    sampling: sampling.clone(),
                    ignore_eos,
                    ..Default::default()
                };
                let (text, reason, _) = run_checked(&engine, "Q: is it?\nA:", params, move |t| {
                    check(t, false).then_some(()).ok_or("not a prefix".into())
                });
                let ctx = format!("{grammar:?} ({how}, ignore_eos {ignore_eos}): {text:?}");
                assert_eq!(reason, FinishReason::Eos, "{ctx}");
                assert!(check(&text, true), "{ctx}: not a whole text of the grammar");
            }
        }
    }
}

/// A constrained stream decoded in the same batches as plain ones: each has its own text.
#[test]
fn constrained_and_plain_streams_share_batches() {
    let _one = common::one_at_a_time();
    let engine = common::engine(4, 512);
    let schema = r#"{"type": "object", "properties": {"hp": {"type": "integer", "minimum": 0,
        "maximum": 100}}, "required": ["hp"], "additionalProperties": false}"#;
    let constrained: Vec<_> = (0..2)
        .map(|i| {
            let p = GenerateParams {
                json_schema: Some(schema.into()),
                sampling: sampled(i),
                ..common::greedy(100)
            };
            engine.start("Stats:", p, None, None).unwrap()
        })
        .collect();
    let plain: Vec<_> = (0..2)
        .map(|_| {
            engine
                .start("Once upon a time", common::greedy(32), None, None)
                .unwrap()
        })
        .collect();
    for s in constrained.iter().chain(&plain) {
        assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    }
    let mut buf = [0u8; 1024];
    for s in &constrained {
        let r = s.read(&mut buf, None);
        let v: Value = serde_json::from_slice(&buf[..r.len]).unwrap();
        assert!((0..=100).contains(&v["hp"].as_i64().unwrap()));
        assert_eq!(s.stats().finish_reason, FinishReason::Eos);
    }
    let texts: Vec<String> = plain
        .iter()
        .map(|s| {
            let r = s.read(&mut buf, None);
            assert_eq!(s.stats().generated_tokens, 32);
            String::from_utf8_lossy(&buf[..r.len]).into_owned()
        })
        .collect();
    assert_eq!(texts[0], texts[1]);
}

fn refused(engine: &Engine, params: GenerateParams) -> String {
    let params_desc = (params.json_schema.clone(), params.grammar.clone());
    match engine.start("x", params, None, None) {
        Ok(_) => panic!("started: {:?} {:?}", params_desc.0, params_desc.1),
        Err(e) => {
            assert_eq!(e.status, Status::InvalidArgument, "{}", e.message);
            e.message
        }
    }
}

fn schema_params(schema: &str) -> GenerateParams {
    GenerateParams {
        json_schema: Some(schema.into()),
        ..common::greedy(8)
    }
}

#[test]
fn what_is_not_enforced_is_refused_by_name() {
    let _one = common::one_at_a_time();
    let engine = common::engine(1, 256);
    let cases = [
        (r#"{"type": "array", "uniqueItems": true}"#, "uniqueItems"),
        (
            r#"{"type": "object", "propertyNames": {"maxLength": 3}}"#,
            "propertyNames",
        ),
        (r#"{"not": {"type": "string"}}"#, "not"),
        (
            r#"{"if": {"type": "string"}, "then": {"maxLength": 2}}"#,
            "if",
        ),
        (
            r#"{"oneOf": [{"type": "string", "maxLength": 5}, {"type": "string", "minLength": 3}]}"#,
            "oneOf",
        ),
        (
            r#"{"type": "string", "format": "no-such-format"}"#,
            "no-such-format",
        ),
        (
            r#"{"$ref": "https://example.com/schema.json"}"#,
            "https://example.com/schema.json",
        ),
        (r#"{"type": "object""#, "not valid JSON"),
        (r#"{"type": "no-such-type"}"#, "no-such-type"),
        (
            r#"{"type": "integer", "minimum": 5, "maximum": 1}"#,
            "json_schema",
        ),
    ];
    for (schema, named) in cases {
        let m = refused(&engine, schema_params(schema));
        assert!(m.contains(named), "{schema}: {m}");
        assert!(m.starts_with("json_schema"), "{schema}: {m}");
    }
    let m = refused(
        &engine,
        schema_params(r#"{"oneOf": [{"type": "string"}, {"type": "string", "maxLength": 2}]}"#),
    );
    assert!(m.contains("coerce_one_of"), "{m}");
    // The way out that the message names: accepted, the keyword left unchecked.
    let m = refused(
        &engine,
        schema_params(r#"{"type": "array", "uniqueItems": true}"#),
    );
    assert!(m.contains("lenient"), "{m}");
    let lenient = r#"{"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 9},
        "maxItems": 3, "uniqueItems": true, "x-guidance": {"lenient": true}}"#;
    let s = engine
        .start("x", schema_params(lenient), None, None)
        .unwrap();
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
}

#[test]
fn bad_lark_grammars_are_errors_not_crashes() {
    let _one = common::one_at_a_time();
    let engine = common::engine(1, 256);
    let grammar = |g: String| GenerateParams {
        grammar: Some(g),
        ..common::greedy(8)
    };
    for (g, named) in [
        ("%llguidance {}\nstart: foo\n", "foo"),
        ("%llguidance {}\nstart: \"a\" (\n", "grammar"),
        ("%llguidance {}\nstart: /[/\n", "grammar"),
        ("%llguidance {}\nrule: \"a\"\n", "start"),
        ("%llguidance {\"bad\": }\nstart: \"a\"\n", "grammar"),
    ] {
        let m = refused(&engine, grammar(g.into()));
        assert!(m.contains(named) && m.starts_with("grammar"), "{g:?}: {m}");
    }
    // A chain of 10,000 rules, each the next one (llama.cpp's grammar code recursed along it).
    let mut chain = String::from("%llguidance {}\nstart: r0\n");
    for i in 0..10_000 {
        chain.push_str(&format!("r{i}: r{}\n", i + 1));
    }
    chain.push_str("r10000: \"end\"\n");
    match engine.start("x", grammar(chain), None, None) {
        Ok(s) => assert_eq!(s.wait(None), Status::Ok, "{}", s.error()),
        Err(e) => assert_eq!(e.status, Status::InvalidArgument, "{}", e.message),
    }
    // Groups nested past the bound.
    let deep = format!(
        "%llguidance {{}}\nstart: {}\"a\"{}\n",
        "(".repeat(300),
        ")".repeat(300)
    );
    let m = refused(&engine, grammar(deep));
    assert!(m.contains("nests"), "{m}");
    // A schema of many levels nested inside the bound compiles, or is refused by name.
    let mut nested = String::from(r#"{"type": "string"}"#);
    for _ in 0..120 {
        nested = format!(r#"{{"type": "array", "items": {nested}, "maxItems": 1}}"#);
    }
    if let Err(e) = engine.start("x", schema_params(&nested), None, None) {
        assert_eq!(e.status, Status::InvalidArgument, "{}", e.message);
    }
}
