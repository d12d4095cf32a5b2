//! Embeddings on the real model: deterministic, normalized, independent of the other texts of a
//! call, computed while streams generate, poolings, long texts, bad input.

mod common;

use common::{greedy, model_path, one_at_a_time};
use minerva::engine::embed::{EmbedParams, Pooling};
use minerva::engine::{Engine, EngineConfig, Status};
use std::time::Duration;

fn engine(max_streams: u32, context_tokens: u32) -> Engine {
    let cfg = EngineConfig {
        max_streams,
        context_tokens,
        ..Default::default()
    };
    Engine::new(&model_path(), &cfg, None).unwrap()
}

fn rows(v: &[f32], dims: usize) -> Vec<&[f32]> {
    v.chunks(dims).collect()
}

fn norm(v: &[f32]) -> f64 {
    v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt()
}

fn cosine(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| *x as f64 * *y as f64).sum();
    dot / (norm(a) * norm(b))
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

const TEXTS: [&str; 6] = [
    "The blacksmith forged a sword.",
    "A kitten sleeps in the sun.",
    "Quantum chromodynamics describes the strong force.",
    "Où est la gare ? 駅はどこですか？",
    "🗡️🛡️",
    "x",
];

#[test]
fn deterministic_normalized_and_independent_of_company() {
    let _one = one_at_a_time();
    let e = engine(2, 2048);
    let dims = e.info().embedding_dims as usize;
    assert!(dims > 0);
    if common::is_default_model() {
        assert_eq!(dims, 640);
    }
    let a = e.embed(&TEXTS, EmbedParams::default()).unwrap();
    assert_eq!(a.len(), TEXTS.len() * dims);
    let b = e.embed(&TEXTS, EmbedParams::default()).unwrap();
    assert_eq!(a, b, "the same call gives the same vectors");
    for (i, r) in rows(&a, dims).iter().enumerate() {
        assert!(r.iter().all(|x| x.is_finite()));
        assert!((norm(r) - 1.0).abs() < 1e-4, "text {i}: norm {}", norm(r));
    }
    // Each text alone, and in other company and order: the same vector, to the bit (each text
    // is decoded by itself; packed into shared batches, ggml's kernels for other batch sizes
    // moved values by up to 0.019).
    let mut worst = 0f32;
    let mut worst_cos = 1f64;
    for (i, text) in TEXTS.iter().enumerate() {
        let alone = e.embed(&[text], EmbedParams::default()).unwrap();
        let reversed: Vec<&str> = TEXTS.iter().rev().copied().collect();
        let other = e.embed(&reversed, EmbedParams::default()).unwrap();
        let j = TEXTS.len() - 1 - i;
        worst = worst
            .max(max_diff(&alone, rows(&a, dims)[i]))
            .max(max_diff(rows(&other, dims)[j], rows(&a, dims)[i]));
        worst_cos = worst_cos
            .min(cosine(&alone, rows(&a, dims)[i]))
            .min(cosine(rows(&other, dims)[j], rows(&a, dims)[i]));
    }
    eprintln!(
        "between companies: largest element difference {worst:e}, lowest cosine {worst_cos:.7}"
    );
    assert_eq!(
        worst, 0.0,
        "vectors depend on the other texts: cosine {worst_cos}"
    );
    // Versus the distance between different texts:
    eprintln!(
        "cosine of two different texts: {:.4}",
        cosine(rows(&a, dims)[0], rows(&a, dims)[1])
    );
    // Different texts differ.
    assert!(max_diff(rows(&a, dims)[0], rows(&a, dims)[1]) > 1e-3);
}

#[test]
fn poolings_and_normalization() {
    let _one = one_at_a_time();
    let e = engine(1, 512);
    let dims = e.info().embedding_dims as usize;
    let text = ["The innkeeper pours another ale."];
    let with = |pooling, normalize| e.embed(&text, EmbedParams { pooling, normalize }).unwrap();
    let mean = with(Pooling::Mean, true);
    let default = with(Pooling::Default, true);
    let last = with(Pooling::Last, true);
    let cls = with(Pooling::Cls, true);
    assert_eq!(
        mean, default,
        "Gemma 3 declares no pooling: DEFAULT is MEAN"
    );
    assert!(max_diff(&mean, &last) > 1e-3 && max_diff(&mean, &cls) > 1e-3);
    assert!(max_diff(&last, &cls) > 1e-3);
    let raw = with(Pooling::Mean, false);
    assert_eq!(raw.len(), dims);
    let n = norm(&raw);
    assert!(
        (n - 1.0).abs() > 1e-3,
        "normalize false keeps the length ({n})"
    );
    let scaled: Vec<f32> = raw.iter().map(|x| (*x as f64 / n) as f32).collect();
    assert!(max_diff(&scaled, &mean) < 1e-5);
}

/// A text longer than one embedding batch (128 tokens) is computed over several decodes, and
/// gives the same vector alone and among short texts.
#[test]
fn long_texts_and_the_context_limit() {
    let _one = one_at_a_time();
    let e = engine(1, 1024);
    let long = "The caravan crossed the desert under a pale sky. ".repeat(60);
    assert!(e.tokenize(&long, true, true).unwrap().len() > 600);
    let alone = e.embed(&[&long], EmbedParams::default()).unwrap();
    let among = e
        .embed(&["short one", &long, "short two"], EmbedParams::default())
        .unwrap();
    let dims = e.info().embedding_dims as usize;
    assert!((norm(&alone) - 1.0).abs() < 1e-4);
    assert!(max_diff(&alone, &among[dims..2 * dims]) < 1e-3);
    let too_long = "word ".repeat(1100);
    let err = e
        .embed(&["fine", &too_long], EmbedParams::default())
        .unwrap_err();
    assert_eq!(err.status, Status::ContextFull);
    assert!(err.message.contains("texts[1]"), "{err}");
    let err = e.embed(&["fine", ""], EmbedParams::default());
    // "" gives BOS alone on Gemma (a valid one-token text); on a vocabulary without BOS it is
    // refused, naming it.
    if let Err(err) = err {
        assert!(err.message.contains("texts[1]"), "{err}");
    }
    assert_eq!(
        e.embed(&[], EmbedParams::default()).unwrap(),
        Vec::<f32>::new()
    );
}

/// While 4 streams generate, an embedding call completes with the same vectors as on an idle
/// engine, and the streams go on to their end.
#[test]
fn computed_while_four_streams_generate() {
    let _one = one_at_a_time();
    let e = engine(4, 512);
    let idle = e.embed(&TEXTS, EmbedParams::default()).unwrap();
    let streams: Vec<_> = (0..4)
        .map(|i| {
            e.start(
                &format!("Story {i}: once upon a time"),
                greedy(96),
                None,
                None,
            )
            .unwrap()
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let busy = e.embed(&TEXTS, EmbedParams::default()).unwrap();
    let during = streams.iter().filter(|s| !s.is_done()).count();
    eprintln!("{during} of 4 streams were still running when the embeddings were done");
    assert!(max_diff(&idle, &busy) < 1e-3);
    let mut buf = [0u8; 512];
    for s in &streams {
        while !s.read(&mut buf, Some(Duration::from_secs(60))).finished {}
        assert_eq!(s.wait(None), Status::Ok);
        assert_eq!(s.stats().generated_tokens, 96);
    }
    assert!(
        during > 0,
        "the streams ended before the embeddings: nothing was shared"
    );
}

/// Forty texts of many lengths, as the hostile test drew them.
fn forty_texts() -> Vec<String> {
    let words = [
        "lighthouse",
        "keeper",
        "storm",
        "sword",
        "kitten",
        "market",
        "river",
        "dragon",
        "castle",
        "quantum",
        "bread",
        "winter",
        "ship",
        "lantern",
        "forest",
        "gold",
        "whisper",
        "engine",
    ];
    (0..40)
        .map(|i| {
            (0..(1 + i * 7 % 23))
                .map(|k| words[(i * 5 + k * 3) % words.len()])
                .collect::<Vec<_>>()
                .join(" ")
        })
        .collect()
}

#[test]
fn a_text_alone_and_in_a_batch_gives_the_same_vector() {
    let _one = one_at_a_time();
    let e = engine(2, 2048);
    let dims = e.info().embedding_dims as usize;
    let texts = forty_texts();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = std::time::Instant::now();
    let all = e.embed(&refs, EmbedParams::default()).unwrap();
    let together = t.elapsed();
    let t = std::time::Instant::now();
    let mut worst_cos = 1f64;
    let mut worst = 0f32;
    for (i, text) in refs.iter().enumerate() {
        let alone = e.embed(&[text], EmbedParams::default()).unwrap();
        worst_cos = worst_cos.min(cosine(&alone, rows(&all, dims)[i]));
        worst = worst.max(max_diff(&alone, rows(&all, dims)[i]));
    }
    eprintln!(
        "40 texts: {:.0} ms in one call, {:.0} ms one by one; alone against together: lowest \
         cosine {worst_cos:.7}, largest difference {worst:e}",
        together.as_secs_f64() * 1e3,
        t.elapsed().as_secs_f64() * 1e3
    );
    // Each text is decoded by itself: the same arithmetic, to the bit.
    assert_eq!(worst, 0.0, "cosine {worst_cos}");
}
