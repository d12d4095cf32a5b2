//! LoRA adapters: checked against the model at engine creation, a scale per stream, streams of
//! different scales side by side on one engine, and the prompt cache kept apart per scales.

mod common;

use common::{greedy, lora_dir, model_path, one_at_a_time, read_all};
use minerva::engine::{Engine, EngineConfig, GenerateParams, Status};

fn adapter(name: &str) -> String {
    lora_dir().join(name).to_str().unwrap().to_owned()
}

fn engine_with(loras: &[(&str, f32)], max_streams: u32) -> Result<Engine, minerva::engine::Error> {
    let cfg = EngineConfig {
        max_streams,
        context_tokens: 512,
        loras: loras.iter().map(|(n, s)| (adapter(n), *s)).collect(),
        ..Default::default()
    };
    Engine::new(&model_path(), &cfg, None)
}

const PROMPT: &str = "The old lighthouse keeper said";

fn text(e: &Engine, scales: Option<Vec<f32>>) -> String {
    let p = GenerateParams {
        lora_scales: scales,
        ..greedy(24)
    };
    let s = e.start(PROMPT, p, None, None).unwrap();
    let t = read_all(&s);
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    t
}

#[test]
fn an_adapter_changes_the_text_and_scale_zero_turns_it_off() {
    let _one = one_at_a_time();
    let plain = text(&engine_with(&[], 1).unwrap(), None);
    let e = engine_with(&[("voice.gguf", 1.0), ("calm.gguf", 0.0)], 2).unwrap();
    assert_eq!(e.info().lora_count, 2);
    let voice = text(&e, None);
    assert_ne!(voice, plain, "the adapter changed nothing");
    assert_eq!(text(&e, Some(vec![0.0, 0.0])), plain);
    let calm = text(&e, Some(vec![0.0, 1.0]));
    assert_ne!(calm, plain);
    assert_ne!(calm, voice);
    let err = e
        .start(
            PROMPT,
            GenerateParams {
                lora_scales: Some(vec![1.0]),
                ..greedy(4)
            },
            None,
            None,
        )
        .err()
        .unwrap();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.message.contains("lora_scales"), "{}", err.message);
    let err = e
        .start(
            PROMPT,
            GenerateParams {
                lora_scales: Some(vec![f32::NAN, 1.0]),
                ..greedy(4)
            },
            None,
            None,
        )
        .err()
        .unwrap();
    assert_eq!(err.status, Status::InvalidArgument);
}

/// Streams of three sets of scales at once on one engine: each gets its own text, the text it
/// gets alone (a step decodes the streams of one set, so each of these is decoded by itself;
/// two streams of one set batched together may differ from either alone in the last bits of
/// the arithmetic, as any two streams in a batch may).
#[test]
fn streams_of_different_scales_run_together() {
    let _one = one_at_a_time();
    let e = engine_with(&[("voice.gguf", 1.0), ("calm.gguf", 0.0)], 4).unwrap();
    let sets = [vec![0.0, 0.0], vec![1.0, 0.0], vec![0.0, 1.0]];
    let alone: Vec<String> = sets.iter().map(|s| text(&e, Some(s.clone()))).collect();
    let streams: Vec<_> = sets
        .iter()
        .map(|s| {
            let p = GenerateParams {
                lora_scales: Some(s.clone()),
                ..greedy(24)
            };
            e.start(PROMPT, p, None, None).unwrap()
        })
        .collect();
    for (i, s) in streams.iter().enumerate() {
        assert_eq!(read_all(s), alone[i], "stream {i} (scales {:?})", sets[i]);
    }
    assert!(alone[0] != alone[1] && alone[1] != alone[2] && alone[0] != alone[2]);
}

/// A prompt's cached cells are reused only by streams of the same scales.
#[test]
fn the_prompt_cache_keeps_scales_apart() {
    let _one = one_at_a_time();
    let e = engine_with(&[("voice.gguf", 1.0)], 2).unwrap();
    let run = |scales: Vec<f32>| {
        let p = GenerateParams {
            lora_scales: Some(scales),
            cache_prompt: true,
            ..greedy(4)
        };
        let s = e.start(PROMPT, p, None, None).unwrap();
        read_all(&s);
        s.stats().cached_prompt_tokens
    };
    assert_eq!(run(vec![1.0]), 0);
    assert!(run(vec![1.0]) > 0);
    assert_eq!(run(vec![0.5]), 0);
    // A cache saved with adapters loads only into an engine with the same adapters.
    e.cache_prefill("A prefix worth keeping.", true).unwrap();
    let bytes = e.cache_save().unwrap();
    let same = engine_with(&[("voice.gguf", 0.3)], 2).unwrap();
    assert!(same.cache_load(&bytes).unwrap() >= 1);
    let none = engine_with(&[], 2).unwrap();
    let err = none.cache_load(&bytes).err().unwrap();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(err.message.contains("LoRA"), "{}", err.message);
}

#[test]
fn an_adapter_that_does_not_fit_is_refused_naming_the_file() {
    let _one = one_at_a_time();
    let err = engine_with(&[("wrong-shape.gguf", 1.0)], 1).err().unwrap();
    assert_eq!(err.status, Status::Model);
    assert!(
        err.message.contains("wrong-shape.gguf") && err.message.contains("shape"),
        "{}",
        err.message
    );
    let err = engine_with(&[("missing.gguf", 1.0)], 1).err().unwrap();
    assert_eq!(err.status, Status::Io);
    assert!(err.message.contains("missing.gguf"), "{}", err.message);
    // Not a GGUF at all.
    let junk = std::env::temp_dir().join(format!("minerva-junk-{}.gguf", std::process::id()));
    std::fs::write(&junk, b"GGUF but not really, just some bytes").unwrap();
    let cfg = EngineConfig {
        loras: vec![(junk.to_str().unwrap().to_owned(), 1.0)],
        ..Default::default()
    };
    let err = Engine::new(&model_path(), &cfg, None).err().unwrap();
    assert_eq!(err.status, Status::Model, "{}", err.message);
    std::fs::remove_file(&junk).unwrap();
    // The model itself is no adapter.
    let cfg = EngineConfig {
        loras: vec![(model_path(), 1.0)],
        ..Default::default()
    };
    let err = Engine::new(&model_path(), &cfg, None).err().unwrap();
    assert_eq!(err.status, Status::Model, "{}", err.message);
    let cfg = EngineConfig {
        loras: vec![(adapter("voice.gguf"), f32::INFINITY)],
        ..Default::default()
    };
    let err = Engine::new(&model_path(), &cfg, None).err().unwrap();
    assert_eq!(err.status, Status::InvalidArgument);
}
