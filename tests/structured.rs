//! GBNF grammars (llama.cpp's grammar sampler) on the real model: a grammar stream decoded in one
//! batch with plain streams. JSON schemas and Lark grammars are `constraint.rs`'s.

mod common;

use common::greedy;
use minerva::engine::{GenerateParams, Status};

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
