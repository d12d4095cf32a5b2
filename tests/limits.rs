//! Hostile constraints on the real model: grammars and schemas shaped to overflow llama.cpp's
//! recursion, a logit_bias that bans every token, and a constraint so costly that it used to
//! stall every other stream of its engine.

mod common;

use common::{greedy, read_all};
use minerva::engine::{Engine, GenerateParams, SamplingParams, Status};
use std::time::{Duration, Instant};

/// Runs `f` on a thread with a 256 KiB stack, as a managed runtime's thread may have.
fn on_small_stack<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
    std::thread::Builder::new()
        .stack_size(256 << 10)
        .spawn(f)
        .unwrap()
        .join()
        .unwrap()
}

/// `r0 ::= r1`, ..., `rN ::= "a"`: each rule begins with the next.
fn rule_chain(n: usize) -> String {
    let mut g = String::from("root ::= r0\n");
    for i in 0..n {
        g.push_str(&format!("r{i} ::= r{}\n", i + 1));
    }
    g.push_str(&format!("r{n} ::= \"a\"\n"));
    g
}

/// `$ref` to `$ref` ... to a string enum.
fn ref_chain(n: usize) -> String {
    let defs: Vec<String> = (0..n)
        .map(|i| format!("\"a{i}\": {{\"$ref\": \"#/$defs/a{}\"}}", i + 1))
        .chain([format!("\"a{n}\": {{\"enum\": [\"yes\", \"no\"]}}")])
        .collect();
    format!(
        "{{\"$ref\": \"#/$defs/a0\", \"$defs\": {{{}}}}}",
        defs.join(", ")
    )
}

fn engine() -> std::sync::Arc<Engine> {
    std::sync::Arc::new(common::engine(2, 256))
}

#[test]
fn rule_chains_are_refused_past_the_limit_and_run_below_it_on_any_stack() {
    let _one = common::one_at_a_time();
    let e = engine();
    // 100,000 chained rules overflowed the caller's stack inside llama.cpp.
    let p = GenerateParams {
        grammar: Some(rule_chain(100_000)),
        ..greedy(4)
    };
    let err = e.start("x", p, None, None).err().unwrap();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(
        err.message.contains("100002 rules") && err.message.contains("10000"),
        "{}",
        err.message
    );
    // Just under the limit, from a small stack: built on minerva's own thread.
    let e2 = e.clone();
    let text = on_small_stack(move || {
        let p = GenerateParams {
            grammar: Some(rule_chain(9_990)),
            ..greedy(4)
        };
        let s = e2.start("x", p, None, None).unwrap();
        let text = read_all(&s);
        assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
        text
    });
    assert_eq!(text, "a");
}

#[test]
fn ref_chains_are_refused_past_the_limit_and_run_below_it_on_any_stack() {
    let _one = common::one_at_a_time();
    let e = engine();
    let p = GenerateParams {
        json_schema: Some(ref_chain(10_000)),
        ..greedy(4)
    };
    let err = e.start("x", p, None, None).err().unwrap();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.message.contains("$ref"), "{}", err.message);
    let e2 = e.clone();
    let text = on_small_stack(move || {
        let p = GenerateParams {
            json_schema: Some(ref_chain(900)),
            ..greedy(8)
        };
        let s = e2.start("Answer:", p, None, None).unwrap();
        let text = read_all(&s);
        assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
        text
    });
    assert!(text == "\"yes\"" || text == "\"no\"", "{text:?}");
}

#[test]
fn banning_every_token_is_an_error_and_banned_tokens_never_come_out() {
    let _one = common::one_at_a_time();
    let e = engine();
    let n = e.info().vocab_size as i32;
    let all: Vec<(i32, f32)> = (0..n).map(|t| (t, f32::NEG_INFINITY)).collect();
    for temperature in [0.0, 0.8] {
        let p = GenerateParams {
            sampling: SamplingParams {
                temperature,
                logit_bias: all.clone(),
                ..Default::default()
            },
            max_tokens: 8,
            ..Default::default()
        };
        let err = e.start("Hello", p, None, None).err().unwrap();
        assert_eq!(err.status, Status::InvalidArgument);
        assert!(err.message.contains("bans every token"), "{}", err.message);
    }
    // All but one token banned: only that one comes out.
    let allowed = e.tokenize("ok", false, false).unwrap()[0];
    let p = GenerateParams {
        sampling: SamplingParams {
            temperature: 0.8,
            logit_bias: all.iter().copied().filter(|&(t, _)| t != allowed).collect(),
            ..Default::default()
        },
        max_tokens: 4,
        ignore_eos: true,
        ..Default::default()
    };
    let s = e.start("Hello", p, None, None).unwrap();
    let text = read_all(&s);
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    assert_eq!(text, "ok".repeat(4));
}

/// A JSON schema enum of `n` values that the model would not write by itself.
fn big_enum(n: usize) -> String {
    let values: Vec<String> = (0..n).map(|i| format!("\"item-{i:05}-zq\"")).collect();
    format!("{{\"enum\": [{}]}}", values.join(", "))
}

#[test]
fn a_costly_constraint_stalls_neither_other_streams_nor_the_free() {
    let _one = common::one_at_a_time();
    let e = common::engine(2, 256);
    // Alone, for the figure.
    let t = Instant::now();
    let s = e.start("Once upon a time", greedy(32), None, None).unwrap();
    read_all(&s);
    let alone = t.elapsed();

    let constrained = GenerateParams {
        json_schema: Some(big_enum(3_000)),
        max_tokens: 64,
        sampling: SamplingParams {
            temperature: 0.8,
            seed: 7,
            ..Default::default()
        },
        ..Default::default()
    };
    let c = e.start("Pick one:", constrained, None, None).unwrap();
    let t = Instant::now();
    let s = e.start("Once upon a time", greedy(32), None, None).unwrap();
    read_all(&s);
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    assert_eq!(s.stats().generated_tokens, 32);
    let beside = t.elapsed();
    println!(
        "32 plain tokens: {:.2} s alone, {:.2} s beside a 3,000-value enum ({} of its tokens)",
        alone.as_secs_f64(),
        beside.as_secs_f64(),
        c.stats().generated_tokens
    );
    // Freeing the engine with the constrained stream mid-filter: it stops within a slice.
    let t = Instant::now();
    drop(e);
    let freed = t.elapsed();
    println!("engine freed in {:.3} s", freed.as_secs_f64());
    assert_ne!(c.wait(Some(Duration::ZERO)), Status::Timeout);
}
