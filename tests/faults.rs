//! Faults caused on purpose (engine::faults): a failed decode, a full KV cache, a slow callback.
//! Each checks that only the streams concerned end, with the right status, and that the engine
//! goes on serving.

mod common;

use common::greedy;
use minerva::engine::{faults, Control, FinishReason, Status, Stream};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Waits until every stream has produced at least `n` tokens.
fn wait_tokens(streams: &[&Stream], n: u32) {
    let start = Instant::now();
    while streams.iter().any(|s| s.stats().generated_tokens < n) {
        assert!(start.elapsed() < Duration::from_secs(60), "streams stalled");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn a_failed_decode_ends_only_the_streams_in_it() {
    let _one = common::one_at_a_time();
    let e = common::engine(2, 256);
    let a = e.start("Once upon a time", greedy(0), None, None).unwrap();
    let b = e.start("The sea was calm", greedy(0), None, None).unwrap();
    wait_tokens(&[&a, &b], 3);
    faults::fail_next_decodes(-3, 1);
    assert_eq!(a.wait(Some(Duration::from_secs(30))), Status::Backend);
    assert_eq!(b.wait(Some(Duration::from_secs(30))), Status::Backend);
    assert!(a.error().contains("llama_decode failed"));
    assert_eq!(a.stats().finish_reason, FinishReason::Error);
    // The engine keeps serving.
    let c = e.start("Hello", greedy(8), None, None).unwrap();
    assert_eq!(c.wait(None), Status::Ok);
    assert_eq!(c.stats().generated_tokens, 8);
}

#[test]
fn a_full_kv_cache_ends_the_longest_stream_and_the_others_go_on() {
    let _one = common::one_at_a_time();
    let e = common::engine(3, 256);
    let long = e
        .start(
            "A much longer prompt than the others, about the river and the stone houses,",
            greedy(40),
            None,
            None,
        )
        .unwrap();
    let s1 = e.start("Hi", greedy(40), None, None).unwrap();
    let s2 = e.start("Yes", greedy(40), None, None).unwrap();
    wait_tokens(&[&long, &s1, &s2], 2);
    faults::fail_next_decodes(1, 1);
    assert_eq!(long.wait(None), Status::ContextFull);
    assert!(long.error().contains("KV cache is full"));
    assert_eq!(s1.wait(None), Status::Ok);
    assert_eq!(s2.wait(None), Status::Ok);
    assert_eq!(s1.stats().generated_tokens, 40);
    assert_eq!(s2.stats().generated_tokens, 40);
}

#[test]
fn a_slow_callback_holds_back_only_its_own_engine() {
    let _one = common::one_at_a_time();
    let slow = common::engine(1, 256);
    let fast = common::engine(1, 256);
    let calls = Arc::new(AtomicU32::new(0));
    let c = calls.clone();
    let sleepy = slow
        .start(
            "Slowly",
            greedy(0),
            Some(Box::new(move |_: &str| {
                c.fetch_add(1, Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(500));
                Control::Continue
            })),
            None,
        )
        .unwrap();
    while calls.load(Ordering::Relaxed) == 0 {
        std::thread::sleep(Duration::from_millis(2));
    }
    let before = calls.load(Ordering::Relaxed);
    let quick = fast.start("Quickly", greedy(16), None, None).unwrap();
    assert_eq!(quick.wait(None), Status::Ok);
    // The other engine finished 16 tokens while this one's callback slept through a few calls
    // (500 ms each): it was not held back by it.
    let during = calls.load(Ordering::Relaxed) - before;
    assert!(
        during < 8,
        "the slow callback ran {during} times while 16 tokens were generated"
    );
    sleepy.cancel();
    assert_eq!(sleepy.wait(None), Status::Cancelled);
}
