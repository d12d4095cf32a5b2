//! JSON-schema output on the real model, parsed with a real JSON parser (serde_json) and checked
//! against its schema; a grammar stream decoded in one batch with plain streams.

mod common;

use common::greedy;
use minerva::engine::{FinishReason, GenerateParams, SamplingParams, Status};
use serde_json::Value;

fn with_schema(schema: &str, seed: u64) -> GenerateParams {
    GenerateParams {
        max_tokens: 200,
        json_schema: Some(schema.to_string()),
        sampling: SamplingParams {
            temperature: 0.8,
            seed,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run(
    engine: &minerva::engine::Engine,
    prompt: &str,
    p: GenerateParams,
) -> (String, FinishReason) {
    let s = engine.start(prompt, p, None, None).expect("start");
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    let mut text = Vec::new();
    let mut buf = [0u8; 256];
    loop {
        let r = s.read(&mut buf, Some(std::time::Duration::from_secs(60)));
        text.extend_from_slice(&buf[..r.len]);
        if r.finished {
            break;
        }
    }
    (String::from_utf8(text).unwrap(), s.stats().finish_reason)
}

#[test]
fn json_schema_outputs_parse_and_match_their_schema() {
    let _one = common::one_at_a_time();
    let engine = common::engine(2, 512);
    let schemas = [
        // A nested object with an enum and bounded numbers.
        r#"{"type": "object", "properties": {
              "name": {"type": "string", "maxLength": 20},
              "mood": {"enum": ["happy", "angry", "afraid"]},
              "stats": {"type": "object", "properties": {
                  "hp": {"type": "integer", "minimum": 0, "maximum": 100},
                  "speed": {"type": "number"}},
                "required": ["hp", "speed"], "additionalProperties": false}},
            "required": ["name", "mood", "stats"], "additionalProperties": false}"#,
        // An array of small objects.
        r#"{"type": "array", "minItems": 1, "maxItems": 3, "items": {"type": "object",
              "properties": {"item": {"type": "string", "maxLength": 12},
                             "count": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["item", "count"], "additionalProperties": false}}"#,
        // A bare enum.
        r#"{"enum": ["north", "south", "east", "west"]}"#,
    ];
    let mut n = 0;
    for (i, schema) in schemas.iter().enumerate() {
        for seed in 1..=3 {
            let (text, reason) = run(
                &engine,
                "A character in a game, as JSON:",
                with_schema(schema, seed),
            );
            let v: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("schema {i}, seed {seed}: {e}: {text:?}"));
            assert_eq!(reason, FinishReason::Eos, "schema {i}: {text}");
            match i {
                0 => {
                    let o = v.as_object().unwrap();
                    assert_eq!(o.len(), 3, "{text}");
                    assert!(o["name"].as_str().unwrap().chars().count() <= 20);
                    assert!(["happy", "angry", "afraid"].contains(&o["mood"].as_str().unwrap()));
                    let hp = o["stats"]["hp"].as_i64().unwrap();
                    assert!((0..=100).contains(&hp), "{text}");
                    assert!(o["stats"]["speed"].is_number());
                }
                1 => {
                    let a = v.as_array().unwrap();
                    assert!((1..=3).contains(&a.len()), "{text}");
                    for e in a {
                        assert!((1..=9).contains(&e["count"].as_i64().unwrap()), "{text}");
                        assert!(e["item"].as_str().unwrap().chars().count() <= 12);
                    }
                }
                _ => assert!(["north", "south", "east", "west"].contains(&v.as_str().unwrap())),
            }
            n += 1;
            eprintln!("schema {i}, seed {seed}: {text}");
        }
    }
    assert_eq!(n, 9);
}

#[test]
fn a_grammar_stream_shares_batches_with_plain_streams() {
    let _one = common::one_at_a_time();
    let engine = common::engine(3, 256);
    let constrained = GenerateParams {
        grammar: Some(r#"root ::= "A" [a-z]* " " "B" [a-z]*"#.to_string()),
        ..greedy(24)
    };
    let g = engine.start("Two words:", constrained, None, None).unwrap();
    let a = engine
        .start("Once upon a time", greedy(24), None, None)
        .unwrap();
    let b = engine.start("The sea was", greedy(24), None, None).unwrap();
    for s in [&g, &a, &b] {
        assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    }
    let mut buf = [0u8; 512];
    let r = g.read(&mut buf, None);
    let text = std::str::from_utf8(&buf[..r.len]).unwrap();
    assert!(text.starts_with('A') && text.contains(" B"), "{text:?}");
    assert!(
        text.chars()
            .all(|c| c.is_ascii_lowercase() || "AB ".contains(c)),
        "{text:?}"
    );
    assert_eq!(a.stats().generated_tokens, 24);
    assert_eq!(b.stats().generated_tokens, 24);
}
