//! Sampling inside llama.cpp's graph (backend sampling), forced on the CPU with
//! MINERVA_BACKEND_SAMPLING=1 (on by itself only where a GPU computes the logits): greedy text as
//! on the host, seeded sampling the same every run, and the streams that stay on the host
//! (grammar, penalties) beside them in one batch.

mod common;

use common::{greedy, read_all};
use minerva::engine::{GenerateParams, SamplingParams, Status};

fn with_backend_sampling(on: bool) -> minerva::engine::Engine {
    // This test binary holds one test, so nothing else reads the variable meanwhile.
    std::env::set_var("MINERVA_BACKEND_SAMPLING", if on { "1" } else { "0" });
    let e = common::engine(4, 256);
    std::env::remove_var("MINERVA_BACKEND_SAMPLING");
    assert_eq!(e.info().backend_sampling, on);
    e
}

fn sampled(seed: u64, n: u32) -> GenerateParams {
    GenerateParams {
        max_tokens: n,
        ignore_eos: true,
        cache_prompt: false,
        sampling: SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            seed,
            ..Default::default()
        },
        ..Default::default()
    }
}

fn run(e: &minerva::engine::Engine, prompt: &str, p: GenerateParams) -> String {
    let s = e.start(prompt, p, None, None).expect("start");
    let text = read_all(&s);
    assert_eq!(s.wait(None), Status::Ok, "{:?}", s.error());
    text
}

#[test]
fn backend_sampling_gives_the_hosts_greedy_text_and_repeatable_seeds() {
    let _one = common::one_at_a_time();
    let prompt = "The old lighthouse keeper told the children";
    let host = with_backend_sampling(false);
    let host_greedy = run(&host, prompt, greedy(32));
    drop(host);

    let e = with_backend_sampling(true);
    assert_eq!(run(&e, prompt, greedy(32)), host_greedy);
    let a = run(&e, prompt, sampled(7, 32));
    let b = run(&e, prompt, sampled(7, 32));
    assert_eq!(a, b, "seed 7 twice");
    assert_ne!(run(&e, prompt, sampled(8, 32)), a, "another seed");

    // A penalty keeps a stream on the host: it samples from the greedy chain's logits, which
    // are the whole row, as from llama.cpp's own.
    let penalty = GenerateParams {
        sampling: SamplingParams {
            repeat_penalty: 1.3,
            ..greedy(24).sampling
        },
        ..greedy(24)
    };
    let host_penalty = run(&with_backend_sampling(false), prompt, penalty.clone());
    assert_eq!(run(&e, prompt, penalty.clone()), host_penalty);

    // Four streams in one batch: greedy and sampled in the graph, a grammar and a penalty on
    // the host.
    let grammar = GenerateParams {
        grammar: Some(r#"root ::= "yes" | "no""#.into()),
        ignore_eos: false,
        ..greedy(8)
    };
    let streams: Vec<_> = [greedy(24), sampled(7, 24), grammar, penalty]
        .into_iter()
        .map(|p| e.start(prompt, p, None, None).expect("start"))
        .collect();
    let texts: Vec<String> = streams.iter().map(read_all).collect();
    for s in &streams {
        assert_eq!(s.wait(None), Status::Ok, "{:?}", s.error());
    }
    assert!(!texts[0].is_empty() && !texts[1].is_empty(), "{texts:?}");
    assert!(texts[2] == "yes" || texts[2] == "no", "{texts:?}");
    assert!(!texts[3].is_empty(), "{texts:?}");
}
