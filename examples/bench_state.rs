//! Game state figures (scripts/bench.sh --only state): the first token of a line after a
//! 2,000-token persona, computed cold, from a prefilled (pinned) prefix and from a cache loaded
//! from saved bytes; what saving and loading cost per 1,000 tokens of cache; and what mixing LoRA
//! adapter sets on one engine costs (a step decodes one set, the sets take turns).
//!
//!   cargo run --release --example bench_state -- [--threads N] [--reps N]

use minerva::engine::{Engine, EngineConfig, GenerateParams, SamplingParams, Status};
use std::time::Instant;

struct Args {
    model: String,
    threads: u32,
    reps: usize,
    loras: Option<String>,
}

fn parse_args() -> Args {
    let mut a = Args {
        model: std::env::var("MINERVA_MODEL").expect("set MINERVA_MODEL"),
        threads: 0,
        reps: 3,
        loras: std::env::var("MINERVA_LORA_DIR").ok(),
    };
    let mut it = std::env::args().skip(1);
    while let Some(x) = it.next() {
        match x.as_str() {
            "--threads" => a.threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--reps" => a.reps = it.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--model" => a.model = it.next().unwrap_or_default(),
            _ => {}
        }
    }
    a
}

fn engine(a: &Args, max_streams: u32, context_tokens: u32, loras: Vec<(String, f32)>) -> Engine {
    let cfg = EngineConfig {
        max_streams,
        context_tokens,
        threads: a.threads,
        loras,
        ..Default::default()
    };
    Engine::new(&a.model, &cfg, None).expect("engine")
}

fn greedy(max_tokens: u32) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampling: SamplingParams {
            seed: 1,
            ..SamplingParams::greedy()
        },
        ignore_eos: true,
        ..Default::default()
    }
}

/// A persona of about `tokens` tokens.
fn persona(e: &Engine, tokens: usize) -> String {
    let mut p = String::from("You are Brannoc, the blacksmith of a small mountain village.\n");
    let mut i = 0;
    while e.tokenize(&p, true, true).unwrap().len() < tokens {
        p.push_str(&format!(
            "Memory {i}: Brannoc remembers the winter the river froze, the traveller who paid in \
             silver, and the song the miners sang on the way down.\n"
        ));
        i += 1;
    }
    p
}

/// Time to first token (ms) and cached prompt tokens of a 1-token line after `prompt`.
fn first_token(e: &Engine, prompt: &str) -> (f64, u32) {
    let s = e.start(prompt, greedy(1), None, None).unwrap();
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    let st = s.stats();
    (st.time_to_first_token_ms, st.cached_prompt_tokens)
}

fn best(v: &[f64]) -> f64 {
    v.iter().cloned().fold(f64::INFINITY, f64::min)
}

fn state_section(a: &Args) {
    let probe = engine(a, 1, 4096, vec![]);
    let p = persona(&probe, 2000);
    let n = probe.tokenize(&p, true, true).unwrap().len();
    drop(probe);
    let line = format!("{p}Traveller: What do you sell?\nBrannoc:");
    let (mut cold, mut warm, mut loaded, mut save, mut load) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut bytes = 0;
    for _ in 0..a.reps {
        let e = engine(a, 2, 4096, vec![]);
        let (t, cached) = first_token(&e, &line);
        assert_eq!(cached, 0);
        cold.push(t);
        let e = engine(a, 2, 4096, vec![]);
        e.cache_prefill(&p, true).unwrap();
        let (t, cached) = first_token(&e, &line);
        assert!(cached as usize + 2 >= n, "{cached}");
        warm.push(t);
        let t0 = Instant::now();
        let saved = e.cache_save().unwrap();
        save.push(t0.elapsed().as_secs_f64() * 1000.0);
        bytes = saved.len();
        let f = engine(a, 2, 4096, vec![]);
        let t0 = Instant::now();
        f.cache_load(&saved).unwrap();
        load.push(t0.elapsed().as_secs_f64() * 1000.0);
        let (t, cached) = first_token(&f, &line);
        assert!(cached as usize + 2 >= n, "{cached}");
        loaded.push(t);
    }
    // The saved cache holds the pinned persona and the line's slot (persona + question + 1).
    let e = engine(a, 2, 4096, vec![]);
    e.cache_prefill(&p, true).unwrap();
    let pinned_only = e.cache_save().unwrap().len();
    println!(
        "game state: first token after a {n}-token persona: cold {:.0} ms, prefilled (pinned) {:.1} \
         ms, loaded from a saved cache {:.1} ms",
        best(&cold),
        best(&warm),
        best(&loaded)
    );
    println!(
        "game state: the pinned persona saves to {:.2} MiB ({:.2} MiB per 1,000 tokens); a save of \
         {:.2} MiB (the persona and one line's slot) took {:.1} ms, its load {:.1} ms ({:.1} and \
         {:.1} ms per 1,000 tokens of cache)",
        pinned_only as f64 / 1048576.0,
        pinned_only as f64 / 1048576.0 / n as f64 * 1000.0,
        bytes as f64 / 1048576.0,
        best(&save),
        best(&load),
        best(&save) / (bytes as f64 / pinned_only as f64 * n as f64) * 1000.0,
        best(&load) / (bytes as f64 / pinned_only as f64 * n as f64) * 1000.0,
    );
}

/// Aggregate tokens/s of 4 streams of 64 tokens, each with its scales (None: no adapters).
fn mixed(e: &Engine, sets: &[Option<Vec<f32>>]) -> f64 {
    let t0 = Instant::now();
    let streams: Vec<_> = sets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            let p = GenerateParams {
                lora_scales: s.clone(),
                ..greedy(64)
            };
            e.start(&format!("Line {i} of the old song goes"), p, None, None)
                .unwrap()
        })
        .collect();
    let mut tokens = 0;
    for s in &streams {
        assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
        tokens += s.stats().generated_tokens;
    }
    tokens as f64 / t0.elapsed().as_secs_f64()
}

fn lora_section(a: &Args) {
    let Some(dir) = &a.loras else {
        println!("LoRA: skipped (MINERVA_LORA_DIR is not set; scripts/lora-adapters.sh)");
        return;
    };
    let loras = vec![
        (format!("{dir}/voice.gguf"), 1.0),
        (format!("{dir}/calm.gguf"), 0.0),
    ];
    let plain = engine(a, 4, 512, vec![]);
    let with = engine(a, 4, 512, loras);
    let s = |v: &[f32]| Some(v.to_vec());
    type Case<'a> = (&'a str, &'a Engine, Vec<Option<Vec<f32>>>);
    let cases: Vec<Case> = vec![
        ("no adapters", &plain, vec![None; 4]),
        ("one set (voice) for all 4", &with, vec![s(&[1.0, 0.0]); 4]),
        (
            "two sets, 2 streams each",
            &with,
            vec![
                s(&[1.0, 0.0]),
                s(&[0.0, 1.0]),
                s(&[1.0, 0.0]),
                s(&[0.0, 1.0]),
            ],
        ),
        (
            "four sets, 1 stream each",
            &with,
            vec![
                s(&[1.0, 0.0]),
                s(&[0.0, 1.0]),
                s(&[0.5, 0.5]),
                s(&[0.0, 0.0]),
            ],
        ),
    ];
    let mut rates = vec![Vec::new(); cases.len()];
    for _ in 0..a.reps {
        for (i, (_, e, sets)) in cases.iter().enumerate() {
            rates[i].push(mixed(e, sets));
        }
    }
    let base = rates[0].iter().cloned().fold(0.0, f64::max);
    for (i, (what, _, _)) in cases.iter().enumerate() {
        let r = rates[i].iter().cloned().fold(0.0, f64::max);
        println!(
            "LoRA: 4 streams x 64 tokens, {what}: {r:.1} tokens/s ({:.2}x no adapters)",
            r / base
        );
    }
}

fn main() {
    let a = parse_args();
    minerva::engine::log::set_sink(None, minerva::engine::log::Level::Warn);
    println!(
        "model: {}\nthreads: {}, best of {} runs\n",
        a.model, a.threads, a.reps
    );
    state_section(&a);
    lora_section(&a);
}
