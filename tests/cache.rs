//! Game state: prefixes prefilled and pinned, the cache saved and loaded across engines and
//! through files, with streams running meanwhile.

mod common;

use common::{engine, greedy, model_path, one_at_a_time, read_all};
use minerva::engine::{Engine, EngineConfig, GenerateParams, Status};

/// A character's persona: a few hundred tokens every one of its lines starts with.
fn persona(name: &str) -> String {
    let mut p = format!("You are {name}, the blacksmith of a small mountain village.\n");
    for i in 0..12 {
        p.push_str(&format!(
            "Memory {i}: {name} remembers the winter the river froze, the traveller who paid in \
             silver, and the song the miners sang on the way down.\n"
        ));
    }
    p
}

/// A greedy line after `prompt`, with the cache on; its text and prompt tokens taken from the
/// cache.
fn line(e: &Engine, prompt: &str) -> (String, u32) {
    let p = GenerateParams {
        cache_prompt: true,
        ..greedy(16)
    };
    let s = e.start(prompt, p, None, None).expect("start");
    let text = read_all(&s);
    assert_eq!(s.wait(None), Status::Ok, "{}", s.error());
    (text, s.stats().cached_prompt_tokens)
}

fn prefix_tokens(e: &Engine, text: &str) -> usize {
    e.tokenize(text, true, true).unwrap().len()
}

#[test]
fn prefilled_prefix_is_reused_and_gives_the_same_text() {
    let _one = one_at_a_time();
    let e = engine(2, 2048);
    let p = persona("Brannoc");
    let ask = format!("{p}Traveller: What do you sell?\nBrannoc:");
    let (cold, cached) = line(&engine(2, 2048), &ask);
    assert_eq!(cached, 0);
    e.cache_prefill(&p, false).unwrap();
    let (warm, cached) = line(&e, &ask);
    let n = prefix_tokens(&e, &p);
    assert!(cached as usize + 2 >= n, "{cached} of {n} cached");
    assert_eq!(warm, cold);
    // Prefilling again what is cached costs nothing and changes nothing.
    e.cache_prefill(&p, true).unwrap();
    e.cache_prefill(&p, true).unwrap();
    assert_eq!(e.pinned().0, n);
}

/// Pinned prefixes survive any number of other prompts, which evict every stream slot's cache.
#[test]
fn pinned_prefixes_survive_other_prompts() {
    let _one = one_at_a_time();
    let e = engine(2, 1024);
    let a = persona("Brannoc");
    let b = persona("Ilse");
    e.cache_prefill(&a, true).unwrap();
    e.cache_prefill(&b, true).unwrap();
    let (tokens, bytes) = e.pinned();
    assert_eq!(tokens, prefix_tokens(&e, &a) + prefix_tokens(&e, &b));
    assert!(bytes > 0);
    for i in 0..5 {
        line(
            &e,
            &format!("{i} is the number of an unrelated prompt about the sea."),
        );
    }
    for (name, p) in [("Brannoc", &a), ("Ilse", &b)] {
        let (_, cached) = line(&e, &format!("{p}Traveller: Hello!\n{name}:"));
        assert!(
            cached as usize + 2 >= prefix_tokens(&e, p),
            "{name}: {cached}"
        );
    }
}

/// Pinned prefixes leave one stream's whole context free; beyond that, CONTEXT_FULL.
#[test]
fn pinned_prefixes_are_bounded_by_the_cache() {
    let _one = one_at_a_time();
    let e = engine(1, 1024);
    let err = e.cache_prefill(&persona("Brannoc"), true).unwrap_err();
    assert_eq!(err.status, Status::ContextFull);
    assert!(err.message.contains("pinned"), "{}", err.message);
    // Unpinned, it is an ordinary cache entry.
    e.cache_prefill(&persona("Brannoc"), false).unwrap();
    let long = "word ".repeat(3000);
    let err = e.cache_prefill(&long, false).unwrap_err();
    assert_eq!(err.status, Status::ContextFull);
    let err = e.cache_prefill("", true).unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
}

/// A saved cache loaded into another engine: the first line starts from the cache and is the
/// same greedy text; through a file too; while streams run.
#[test]
fn saved_cache_loads_into_another_engine() {
    let _one = one_at_a_time();
    let cfg = EngineConfig {
        max_streams: 2,
        context_tokens: 1024,
        ..Default::default()
    };
    let a = Engine::new(&model_path(), &cfg, None).unwrap();
    let p = persona("Brannoc");
    let q = persona("Ilse");
    a.cache_prefill(&p, true).unwrap();
    a.cache_prefill(&q, false).unwrap();
    let ask = |p: &str, name: &str| format!("{p}Traveller: What do you sell?\n{name}:");
    // Saved while another stream runs; then the lines from the prefixes computed in place.
    let busy = a.start("A long story:", greedy(64), None, None).unwrap();
    let bytes = a.cache_save().unwrap();
    read_all(&busy);
    assert!(bytes.len() > 1000);
    let (in_place, _) = line(&a, &ask(&p, "Brannoc"));
    let (in_place_q, _) = line(&a, &ask(&q, "Ilse"));

    // Another engine, with a slot more (the running stream takes one, the cached lines two).
    let three = EngineConfig {
        max_streams: 3,
        ..cfg.clone()
    };
    let b = Engine::new(&model_path(), &three, None).unwrap();
    let running = b
        .start("Meanwhile, elsewhere:", greedy(64), None, None)
        .unwrap();
    let loaded = b.cache_load(&bytes).unwrap();
    assert!(loaded >= 2, "{loaded}");
    read_all(&running);
    let (text, cached) = line(&b, &ask(&p, "Brannoc"));
    assert!(cached as usize + 2 >= prefix_tokens(&b, &p), "{cached}");
    assert_eq!(text, in_place);
    let (text, cached) = line(&b, &ask(&q, "Ilse"));
    assert!(cached as usize + 2 >= prefix_tokens(&b, &q), "{cached}");
    assert_eq!(text, in_place_q);

    let dir = std::env::temp_dir().join(format!("minerva-cache-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("save.cache");
    let file = file.to_str().unwrap();
    b.cache_save_file(file).unwrap();
    let c = Engine::new(&model_path(), &three, None).unwrap();
    assert!(c.cache_load_file(file).unwrap() >= 1);
    // (b's cache holds whole lines by now: more of the prompt comes from it than in `a`, so the
    // text may differ in the last bits of its arithmetic; what is cached is checked.)
    let (_, cached) = line(&c, &ask(&p, "Brannoc"));
    assert!(cached as usize + 2 >= prefix_tokens(&c, &p));
    // Loading the same cache again does not pin twice.
    let before = c.pinned().0;
    c.cache_load_file(file).unwrap();
    assert_eq!(c.pinned().0, before);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// Another context, corrupt or truncated bytes, a missing file: refused, naming what.
#[test]
fn a_cache_that_does_not_fit_is_refused() {
    let _one = one_at_a_time();
    let a = engine(2, 1024);
    a.cache_prefill(&persona("Brannoc"), true).unwrap();
    let bytes = a.cache_save().unwrap();
    let other = engine(2, 2048);
    let err = other.cache_load(&bytes).unwrap_err();
    assert_eq!(err.status, Status::InvalidArgument);
    assert!(
        err.message.contains("context_tokens 1024"),
        "{}",
        err.message
    );
    for bad in [
        &bytes[..bytes.len() / 2],
        &bytes[..10],
        &b"not a cache at all"[..],
        &[][..],
    ] {
        let err = a.cache_load(bad).unwrap_err();
        assert_eq!(err.status, Status::InvalidArgument, "{}", err.message);
    }
    let mut flipped = bytes.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x40;
    let err = a.cache_load(&flipped).unwrap_err();
    assert!(err.message.contains("checksum"), "{}", err.message);
    let err = a.cache_load_file("/nonexistent/save.cache").unwrap_err();
    assert_eq!(err.status, Status::Io);
    // The engine still serves.
    let (text, _) = line(&a, "Hello");
    assert!(!text.is_empty());
}

/// A loaded cache that holds a whole line beside the pinned persona: a sequence loaded from saved
/// bytes keeps only the window of the model's sliding-window layers (512 positions), so the
/// line's own cells serve only a prompt that reuses them to their end; a prompt that stops one
/// token short takes the pinned persona instead of computing everything again.
#[test]
fn a_loaded_line_falls_back_to_the_pinned_persona() {
    let _one = one_at_a_time();
    let cfg = EngineConfig {
        max_streams: 2,
        context_tokens: 2048,
        ..Default::default()
    };
    let a = Engine::new(&model_path(), &cfg, None).unwrap();
    let mut p = persona("Brannoc");
    p.push_str(&persona("Brannoc's brother"));
    let n = prefix_tokens(&a, &p);
    assert!(n > 600, "{n}");
    a.cache_prefill(&p, true).unwrap();
    let ask = format!("{p}Traveller: What do you sell?\nBrannoc:");
    line(&a, &ask);
    let bytes = a.cache_save().unwrap();
    let b = Engine::new(&model_path(), &cfg, None).unwrap();
    assert_eq!(b.cache_load(&bytes).unwrap(), 2);
    let (_, cached) = line(&b, &ask);
    assert!(cached as usize + 2 >= n, "{cached} of {n}");
}
