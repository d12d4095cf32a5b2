//! minerva's benchmark: minerva through its C API, side by side with a baseline written directly
//! against llama.h (the same llama.cpp build, the same threads and batch sizes), interleaved run by
//! run so that machine noise cancels out; best of N for each.
//!
//!   scripts/bench.sh [--model PATH] [--threads N] [--reps N] [--llama-tools DIR]
//!
//! Prints: load time; prompt processing for a 512-token prompt; generation for 128 tokens (greedy,
//! ignore_eos); time to first token for 16- and 512-token prompts; aggregate generation with 1, 2,
//! 4 and 8 concurrent streams (128-token prompts, 128 tokens each); the cost of the token
//! callback; peak resident memory.

use llama_cpp_sys_2 as sys;
use minerva::ffi::chat::*;
use minerva::ffi::embed::*;
use minerva::ffi::engine::*;
use minerva::ffi::log::*;
use minerva::ffi::stream::*;
use minerva::ffi::*;
use std::ffi::{c_char, c_void, CString};
use std::time::Instant;

struct Args {
    model: String,
    threads: u32,
    reps: usize,
    /// Sections to run (all when empty): load, single, batched, callback, memory, chat.
    only: Vec<String>,
    /// A folder with llama.cpp's llama-bench and llama-batched-bench, run side by side.
    llama_tools: Option<String>,
}

/// Layers on the GPU for minerva and the baseline alike: $MINERVA_BENCH_GPU_LAYERS (default 0, the
/// CPU; -1 all). For a GPU build (scripts/gpu-check.sh).
fn gpu_layers() -> i32 {
    static N: std::sync::OnceLock<i32> = std::sync::OnceLock::new();
    *N.get_or_init(|| {
        std::env::var("MINERVA_BENCH_GPU_LAYERS")
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    })
}

impl Args {
    fn runs(&self, section: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|s| s == section)
    }
}

fn parse_args() -> Args {
    let mut model = std::env::var("MINERVA_MODEL").ok();
    let mut threads = 0u32;
    let mut reps = 3usize;
    let mut only = Vec::new();
    let mut llama_tools = None;
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => model = it.next(),
            "--threads" => threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--reps" => reps = it.next().and_then(|v| v.parse().ok()).unwrap_or(3),
            "--only" => only.extend(it.next().unwrap_or_default().split(',').map(String::from)),
            "--llama-tools" => llama_tools = it.next(),
            "--rss-child" => {
                let (who, model, threads) = (it.next(), it.next(), it.next());
                rss_child(&who.unwrap(), &model.unwrap(), &threads.unwrap());
                std::process::exit(0);
            }
            _ => {
                eprintln!(
                    "usage: bench [--model PATH] [--threads N] [--reps N] [--llama-tools DIR] \
                     [--only load,single,batched,callback,memory,chat,structured,tools,embed,rpc]"
                );
                std::process::exit(2);
            }
        }
    }
    let model = model.expect("pass --model PATH or set MINERVA_MODEL");
    if threads == 0 {
        threads = std::thread::available_parallelism()
            .map(|n| n.get() as u32)
            .unwrap_or(1);
    }
    Args {
        model,
        threads,
        reps,
        only,
        llama_tools,
    }
}

// ---------------------------------------------------------------------------------------------
// The baseline: llama.h directly.

struct Baseline {
    model: *mut sys::llama_model,
    ctx: *mut sys::llama_context,
    vocab: *const sys::llama_vocab,
    batch: sys::llama_batch,
    n_batch: usize,
    smpl: *mut sys::llama_sampler,
}

impl Baseline {
    /// Loads the model and creates a context as minerva does for the same settings.
    fn new(path: &str, threads: u32, n_ctx: u32, n_seq: u32, n_batch: u32) -> (Baseline, f64) {
        Self::with_swa(path, threads, n_ctx, n_seq, n_batch, true)
    }

    /// `swa_full`: keep every position in the sliding-window layers' cache (what prefix reuse
    /// needs), or only the window.
    fn with_swa(
        path: &str,
        threads: u32,
        n_ctx: u32,
        n_seq: u32,
        n_batch: u32,
        swa_full: bool,
    ) -> (Baseline, f64) {
        let t0 = Instant::now();
        let cpath = CString::new(path).unwrap();
        unsafe {
            sys::llama_backend_init();
            let mut mp = sys::llama_model_default_params();
            mp.n_gpu_layers = if gpu_layers() < 0 { 999 } else { gpu_layers() };
            let model = sys::llama_model_load_from_file(cpath.as_ptr(), mp);
            assert!(!model.is_null(), "baseline: cannot load the model");
            let mut cp = sys::llama_context_default_params();
            cp.n_ctx = n_ctx;
            cp.n_batch = n_batch;
            cp.n_ubatch = n_batch;
            cp.n_seq_max = n_seq;
            cp.n_threads = threads as i32;
            cp.n_threads_batch = threads as i32;
            cp.no_perf = true;
            cp.kv_unified = true;
            cp.swa_full = swa_full;
            let ctx = sys::llama_init_from_model(model, cp);
            assert!(!ctx.is_null(), "baseline: cannot create the context");
            let secs = t0.elapsed().as_secs_f64();
            let chain = sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params());
            sys::llama_sampler_chain_add(chain, sys::llama_sampler_init_greedy());
            (
                Baseline {
                    model,
                    ctx,
                    vocab: sys::llama_model_get_vocab(model),
                    batch: sys::llama_batch_init(n_batch as i32, 0, 1),
                    n_batch: n_batch as usize,
                    smpl: chain,
                },
                secs,
            )
        }
    }

    fn tokenize(&self, text: &str) -> Vec<i32> {
        let mut t = vec![0i32; text.len() + 8];
        let n = unsafe {
            sys::llama_tokenize(
                self.vocab,
                text.as_ptr() as *const c_char,
                text.len() as i32,
                t.as_mut_ptr(),
                t.len() as i32,
                true,
                true,
            )
        };
        assert!(n >= 0);
        t.truncate(n as usize);
        t
    }

    fn clear(&mut self) {
        unsafe { sys::llama_memory_clear(sys::llama_get_memory(self.ctx), true) }
    }

    fn add(&mut self, token: i32, pos: usize, seq: i32, logits: bool) -> i32 {
        let b = &mut self.batch;
        let i = b.n_tokens as usize;
        unsafe {
            *b.token.add(i) = token;
            *b.pos.add(i) = pos as i32;
            *b.n_seq_id.add(i) = 1;
            *(*b.seq_id.add(i)) = seq;
            *b.logits.add(i) = logits as i8;
        }
        b.n_tokens += 1;
        i as i32
    }

    fn decode(&mut self) {
        let rc = unsafe { sys::llama_decode(self.ctx, self.batch) };
        assert_eq!(rc, 0, "baseline: llama_decode failed");
        self.batch.n_tokens = 0;
    }

    fn sample(&mut self, row: i32) -> i32 {
        unsafe { sys::llama_sampler_sample(self.smpl, self.ctx, row) }
    }

    fn sample_with(&mut self, chain: *mut sys::llama_sampler, row: i32) -> i32 {
        unsafe { sys::llama_sampler_sample(chain, self.ctx, row) }
    }

    /// Prompt in chunks of n_batch, then greedy generation of `gen` tokens. Returns
    /// (seconds to the first token, seconds from the first to the last token).
    fn generate(&mut self, text: &str, gen: usize) -> (f64, f64) {
        self.clear();
        let t0 = Instant::now();
        let tokens = self.tokenize(text);
        let mut row = 0;
        for (i, &t) in tokens.iter().enumerate() {
            let last = i + 1 == tokens.len();
            let r = self.add(t, i, 0, last);
            if last {
                row = r;
            }
            if self.batch.n_tokens as usize == self.n_batch || last {
                self.decode();
            }
        }
        let mut tok = self.sample(row);
        let first = t0.elapsed().as_secs_f64();
        let t1 = Instant::now();
        for pos in tokens.len()..tokens.len() + gen - 1 {
            let r = self.add(tok, pos, 0, true);
            self.decode();
            tok = self.sample(r);
        }
        (first, t1.elapsed().as_secs_f64())
    }

    /// One batch holding `prompts.len()` sequences: their prompts in chunks of n_batch, then
    /// `gen` steps of one token each, greedy. Returns the wall time.
    fn batched(&mut self, prompts: &[Vec<i32>], gen: usize) -> f64 {
        self.batched_with(prompts, gen, false)
    }

    /// `batched`, each sequence with the default sampling chain of minerva's streams
    /// (`sampling_chain`, one after another as a plain llama.h program samples) when `sampled`.
    fn batched_with(&mut self, prompts: &[Vec<i32>], gen: usize, sampled: bool) -> f64 {
        self.clear();
        let chains: Vec<*mut sys::llama_sampler> = (0..prompts.len())
            .map(|s| {
                if sampled {
                    sampling_chain(s as u32)
                } else {
                    self.smpl
                }
            })
            .collect();
        let t = self.batched_chains(prompts, gen, &chains);
        if sampled {
            for c in chains {
                unsafe { sys::llama_sampler_free(c) };
            }
        }
        t
    }

    fn batched_chains(
        &mut self,
        prompts: &[Vec<i32>],
        gen: usize,
        chains: &[*mut sys::llama_sampler],
    ) -> f64 {
        let t0 = Instant::now();
        let n = prompts.len();
        let mut toks = vec![0i32; n];
        // Sequences whose last prompt token is in the current batch, with its row.
        let mut pending: Vec<(usize, i32)> = Vec::new();
        for (s, p) in prompts.iter().enumerate() {
            for (i, &t) in p.iter().enumerate() {
                let last = i + 1 == p.len();
                let r = self.add(t, i, s as i32, last);
                if last {
                    pending.push((s, r));
                }
                if self.batch.n_tokens as usize == self.n_batch {
                    self.decode();
                    for (s, r) in pending.drain(..) {
                        toks[s] = self.sample_with(chains[s], r);
                    }
                }
            }
        }
        if self.batch.n_tokens > 0 {
            self.decode();
            for (s, r) in pending.drain(..) {
                toks[s] = self.sample_with(chains[s], r);
            }
        }
        let mut pos: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
        let mut rows = vec![0i32; n];
        for _ in 1..gen {
            for s in 0..n {
                rows[s] = self.add(toks[s], pos[s], s as i32, true);
                pos[s] += 1;
            }
            self.decode();
            for s in 0..n {
                toks[s] = self.sample_with(chains[s], rows[s]);
            }
        }
        t0.elapsed().as_secs_f64()
    }
}

/// The chain of a stream with minerva's default sampling (temperature 0.8, top-k 40, top-p
/// 0.95, min-p 0.05), as minerva builds it.
fn sampling_chain(seed: u32) -> *mut sys::llama_sampler {
    unsafe {
        let mut p = sys::llama_sampler_chain_default_params();
        p.no_perf = true;
        let c = sys::llama_sampler_chain_init(p);
        sys::llama_sampler_chain_add(c, sys::llama_sampler_init_top_k(40));
        sys::llama_sampler_chain_add(c, sys::llama_sampler_init_top_p(0.95, 1));
        sys::llama_sampler_chain_add(c, sys::llama_sampler_init_min_p(0.05, 1));
        sys::llama_sampler_chain_add(c, sys::llama_sampler_init_temp(0.8));
        sys::llama_sampler_chain_add(c, sys::llama_sampler_init_dist(seed));
        c
    }
}

impl Drop for Baseline {
    fn drop(&mut self) {
        unsafe {
            sys::llama_sampler_free(self.smpl);
            sys::llama_batch_free(self.batch);
            sys::llama_free(self.ctx);
            sys::llama_model_free(self.model);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// minerva, through its C API.

struct Minerva {
    engine: *mut minerva_engine,
}

unsafe extern "C" fn noop_token(_: *mut c_void, _: *const c_char, _: usize) -> minerva_control {
    MINERVA_CONTINUE
}

impl Minerva {
    fn new(path: &str, threads: u32, context_tokens: u32, max_streams: u32) -> (Minerva, f64) {
        Self::on(
            path,
            threads,
            context_tokens,
            max_streams,
            gpu_layers(),
            None,
        )
    }

    /// An engine with `gpu_layers` on the devices of the RPC servers `rpc` (none: local).
    fn on(
        path: &str,
        threads: u32,
        context_tokens: u32,
        max_streams: u32,
        gpu_layers: i32,
        rpc: Option<&CString>,
    ) -> (Minerva, f64) {
        let cpath = CString::new(path).unwrap();
        let t0 = Instant::now();
        let mut engine = std::ptr::null_mut();
        unsafe {
            let mut p: minerva_engine_params = std::mem::zeroed();
            minerva_engine_params_init(&mut p, std::mem::size_of_val(&p) as u32);
            p.threads = threads;
            p.context_tokens = context_tokens;
            p.max_streams = max_streams;
            p.batch_tokens = 512;
            p.gpu_layers = gpu_layers;
            p.rpc_servers = rpc.map_or(std::ptr::null(), |r| r.as_ptr());
            let rc = minerva_engine_new(cpath.as_ptr(), &p, &mut engine);
            assert_eq!(
                rc,
                MINERVA_OK,
                "{}",
                std::ffi::CStr::from_ptr(minerva_last_error()).to_string_lossy()
            );
        }
        (Minerva { engine }, t0.elapsed().as_secs_f64())
    }

    fn params(gen: u32) -> minerva_generate_params {
        unsafe {
            let mut g: minerva_generate_params = std::mem::zeroed();
            minerva_generate_params_init(&mut g, std::mem::size_of_val(&g) as u32);
            g.max_tokens = gen;
            g.temperature = 0.0;
            g.ignore_eos = true;
            g.cache_prompt = false; // each run computes its whole prompt, as the baseline does
            g
        }
    }

    /// One stream; returns its stats.
    fn generate(&self, text: &str, gen: u32, callback: bool) -> minerva_stream_stats {
        let prompt = CString::new(text).unwrap();
        let g = Self::params(gen);
        let mut st = minerva_stream_stats::default();
        st.struct_size = std::mem::size_of_val(&st) as u32;
        let cb: minerva_token_callback = if callback { Some(noop_token) } else { None };
        let rc = unsafe {
            minerva_generate(
                self.engine,
                prompt.as_ptr(),
                &g,
                cb,
                std::ptr::null_mut(),
                &mut st,
            )
        };
        assert_eq!(rc, MINERVA_OK);
        st
    }

    /// Streams started together, greedy; returns the wall time until the last one ends.
    fn batched(&self, texts: &[String], gen: u32) -> f64 {
        self.batched_with(texts, gen, false)
    }

    /// `batched`, with the default sampling settings (temperature 0.8, top-k 40, top-p 0.95,
    /// min-p 0.05, a fixed seed per stream) when `sampled`.
    fn batched_with(&self, texts: &[String], gen: u32, sampled: bool) -> f64 {
        let mut g = Self::params(gen);
        if sampled {
            let mut d: minerva_generate_params = unsafe { std::mem::zeroed() };
            unsafe { minerva_generate_params_init(&mut d, std::mem::size_of_val(&d) as u32) };
            g.temperature = d.temperature;
            g.top_k = d.top_k;
            g.top_p = d.top_p;
            g.min_p = d.min_p;
            g.seed = 7;
        }
        let prompts: Vec<CString> = texts
            .iter()
            .map(|t| CString::new(t.as_str()).unwrap())
            .collect();
        let t0 = Instant::now();
        let streams: Vec<*mut minerva_stream> = prompts
            .iter()
            .map(|p| {
                let mut s = std::ptr::null_mut();
                let rc = unsafe {
                    minerva_stream_new(
                        self.engine,
                        p.as_ptr(),
                        &g,
                        Some(noop_token),
                        std::ptr::null_mut(),
                        &mut s,
                    )
                };
                assert_eq!(rc, MINERVA_OK);
                s
            })
            .collect();
        for &s in &streams {
            assert_eq!(unsafe { minerva_stream_wait(s, -1) }, MINERVA_OK);
        }
        let secs = t0.elapsed().as_secs_f64();
        for s in streams {
            unsafe { minerva_stream_free(s) };
        }
        secs
    }
}

unsafe extern "C" fn collect_token(
    ud: *mut c_void,
    text: *const c_char,
    len: usize,
) -> minerva_control {
    let out = unsafe { &mut *(ud as *mut String) };
    let bytes = unsafe { std::slice::from_raw_parts(text as *const u8, len) };
    out.push_str(std::str::from_utf8(bytes).unwrap_or(""));
    MINERVA_CONTINUE
}

/// One chat turn through `minerva_chat_stream_new`: the reply and the stream's stats.
fn chat_turn(
    m: &Minerva,
    turns: &[(String, String)],
    gen: u32,
    cache: bool,
) -> (String, minerva_stream_stats) {
    let texts: Vec<(CString, CString)> = turns
        .iter()
        .map(|(r, c)| {
            (
                CString::new(r.as_str()).unwrap(),
                CString::new(c.as_str()).unwrap(),
            )
        })
        .collect();
    let msgs: Vec<minerva_chat_message> = texts
        .iter()
        .map(|(r, c)| minerva_chat_message {
            role: r.as_ptr(),
            content: c.as_ptr(),
            tool_calls_json: std::ptr::null(),
            tool_call_id: std::ptr::null(),
        })
        .collect();
    let gemma = CString::new("gemma").unwrap();
    let mut chat: minerva_chat_params = unsafe { std::mem::zeroed() };
    unsafe { minerva_chat_params_init(&mut chat, std::mem::size_of_val(&chat) as u32) };
    chat.chat_template = gemma.as_ptr();
    let mut g = Minerva::params(gen);
    g.cache_prompt = cache;
    let mut reply = String::new();
    let mut s = std::ptr::null_mut();
    let mut st = minerva_stream_stats::default();
    st.struct_size = std::mem::size_of_val(&st) as u32;
    unsafe {
        let rc = minerva_chat_stream_new(
            m.engine,
            msgs.as_ptr(),
            msgs.len(),
            &chat,
            &g,
            Some(collect_token),
            &mut reply as *mut String as *mut c_void,
            &mut s,
        );
        assert_eq!(rc, MINERVA_OK);
        assert_eq!(minerva_stream_wait(s, -1), MINERVA_OK);
        minerva_stream_get_stats(s, &mut st);
        minerva_stream_free(s);
    }
    (reply, st)
}

/// The benchmark's own JSON schemas: what a game asks for.
fn bench_schemas() -> Vec<(&'static str, String)> {
    let names: Vec<String> = (0..3000).map(|i| format!("\"item-{i:04}\"")).collect();
    vec![
        (
            "monsters",
            r#"{"type": "array", "minItems": 4, "items": {"type": "object", "properties": {
                 "name": {"type": "string"}, "hp": {"type": "integer"}},
               "required": ["name", "hp"]}}"#
                .into(),
        ),
        (
            "character",
            r#"{"type": "object", "properties": {
                "name": {"type": "string", "maxLength": 20},
                "mood": {"enum": ["happy", "angry", "afraid"]},
                "code": {"type": "string", "pattern": "^\\d{3}-[A-Z]{2}$"},
                "stats": {"type": "object", "properties": {
                    "hp": {"type": "integer", "minimum": 0, "maximum": 100},
                    "speed": {"type": "number"}}, "required": ["hp", "speed"]}},
              "required": ["name", "mood", "code", "stats"]}"#
                .into(),
        ),
        (
            "inventory (enum of 3,000)",
            format!(
                r#"{{"type": "array", "items": {{"enum": [{}]}}}}"#,
                names.join(", ")
            ),
        ),
    ]
}

/// Real-world schemas, where scripts/schema-coverage.sh has fetched them (check-jsonschema's
/// vendored set), each accepted with llguidance's `lenient` option (the keywords it cannot
/// enforce left unchecked) so that its rate can be measured.
fn real_world_schemas() -> Vec<(String, String)> {
    let dir = std::env::var("MINERVA_SCHEMAS").unwrap_or_default();
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut out: Vec<(String, String)> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let stem = name.strip_suffix(".json")?.to_owned();
            let text = std::fs::read_to_string(e.path()).ok()?;
            let mut v: serde_json::Value = serde_json::from_str(&text).ok()?;
            v.as_object_mut()?.insert(
                "x-guidance".into(),
                serde_json::json!({"lenient": true, "coerce_one_of": true}),
            );
            Some((stem, v.to_string()))
        })
        .collect();
    out.sort();
    out
}

/// Structured output's cost (issue 19's targets): a JSON-schema stream's generation rate against
/// a plain stream's on the same engine, greedy, interleaved, best of the runs (the constrained
/// stream may end sooner, when its JSON is complete), on the benchmark's schemas (target >= 0.9x)
/// and on real-world ones (median >= 0.6x, none below 0.3x); then a plain stream beside a
/// constrained one against the plain stream alone (target >= 0.8x); the masks' times from the
/// engine's profile.
fn structured_section(args: &Args) {
    let (m, _) = Minerva::new(&args.model, args.threads, 1024, 2);
    let rate = |prompt: &str, schema: Option<&CString>, gen: u32| {
        let prompt = CString::new(prompt).unwrap();
        let mut g = Minerva::params(gen);
        if let Some(s) = schema {
            g.json_schema = s.as_ptr();
            g.ignore_eos = false;
        }
        let mut st = minerva_stream_stats::default();
        st.struct_size = std::mem::size_of_val(&st) as u32;
        let rc = unsafe {
            minerva_generate(
                m.engine,
                prompt.as_ptr(),
                &g,
                None,
                std::ptr::null_mut(),
                &mut st,
            )
        };
        (rc == MINERVA_OK).then_some((st.tokens_per_second, st.generated_tokens))
    };
    let prompt = "Game data, as JSON:";
    // The token table is built at the first schema: not part of any rate.
    let first = CString::new(bench_schemas()[0].1.as_str()).unwrap();
    let t0 = Instant::now();
    let _ = rate(prompt, Some(&first), 1);
    let built = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    let _ = rate(prompt, Some(&first), 1);
    let again = t0.elapsed().as_secs_f64();
    println!(
        "\nstructured output (greedy; plain stream alone on the same engine = 1.00x): the first \
         schema's 1-token stream {built:.2} s with the engine's token table built, the next \
         {again:.2} s"
    );
    let measure = |name: &str, schema: &str, gen: u32| -> Option<f64> {
        let schema = CString::new(schema).unwrap();
        let (mut plain, mut json, mut n) = (vec![], vec![], 0);
        for rep in 0..args.reps {
            let mut one = || -> Option<()> {
                let (r, k) = rate(prompt, Some(&schema), gen)?;
                json.push(r);
                n = k;
                Some(())
            };
            if rep % 2 == 0 {
                plain.push(rate(prompt, None, gen)?.0);
                one()?;
            } else {
                one()?;
                plain.push(rate(prompt, None, gen)?.0);
            }
        }
        let (p, j) = (best(&plain, true), best(&json, true));
        println!(
            "  {name:<28} {j:>7.1} t/s ({n:>3} tokens) vs {p:>6.1}: {:.2}x",
            j / p
        );
        Some(j / p)
    };
    let mut own = Vec::new();
    for (name, schema) in bench_schemas() {
        match measure(name, &schema, 128) {
            Some(r) => own.push(r),
            None => println!("  {name:<28} refused"),
        }
    }
    if let Some(lowest) = own.iter().copied().reduce(f64::min) {
        println!("  the benchmark's schemas: lowest {lowest:.2}x (target >= 0.9)");
    }
    let real = real_world_schemas();
    if real.is_empty() {
        println!("  real-world schemas: none (run scripts/schema-coverage.sh once to fetch them)");
    } else {
        let mut ratios = Vec::new();
        for (name, schema) in &real {
            match measure(name, schema, 64) {
                Some(r) => ratios.push(r),
                None => println!("  {name:<28} refused"),
            }
        }
        ratios.sort_by(f64::total_cmp);
        if !ratios.is_empty() {
            println!(
                "  {} real-world schemas: median {:.2}x (target >= 0.6), lowest {:.2}x (target >= 0.3)",
                ratios.len(),
                ratios[ratios.len() / 2],
                ratios[0]
            );
        }
    }
    // A plain stream beside a constrained one that runs as long: the real-world schema of the
    // slowest masks here (compose-spec), else the monsters.
    let (heavy_name, heavy) = real
        .iter()
        .find(|(n, _)| n == "compose-spec")
        .map(|(n, s)| (n.as_str(), s.clone()))
        .unwrap_or(("monsters", bench_schemas()[0].1.clone()));
    let neighbour = {
        let heavy = CString::new(heavy).unwrap();
        let plain_prompt = CString::new("Once upon a time").unwrap();
        let json_prompt = CString::new(prompt).unwrap();
        // None: alone; Some(false): beside a plain stream on the other's prompt; Some(true):
        // beside the constrained stream.
        let plain_rate = |beside: Option<bool>| -> f64 {
            let mut gj = Minerva::params(128);
            if beside == Some(true) {
                gj.json_schema = heavy.as_ptr();
            }
            let gp = Minerva::params(128);
            let start = |p: &CString, g: &minerva_generate_params| {
                let mut s = std::ptr::null_mut();
                let rc = unsafe {
                    minerva_stream_new(m.engine, p.as_ptr(), g, None, std::ptr::null_mut(), &mut s)
                };
                assert_eq!(rc, MINERVA_OK);
                s
            };
            let j = beside.map(|_| start(&json_prompt, &gj));
            let p = start(&plain_prompt, &gp);
            let mut st = minerva_stream_stats::default();
            st.struct_size = std::mem::size_of_val(&st) as u32;
            unsafe {
                minerva_stream_wait(p, -1);
                minerva_stream_get_stats(p, &mut st);
                minerva_stream_free(p);
                if let Some(j) = j {
                    minerva_stream_free(j);
                }
            }
            st.tokens_per_second
        };
        let (mut alone, mut plain, mut constrained) = (vec![], vec![], vec![]);
        for _ in 0..args.reps {
            alone.push(plain_rate(None));
            plain.push(plain_rate(Some(false)));
            constrained.push(plain_rate(Some(true)));
        }
        (
            best(&alone, true),
            best(&plain, true),
            best(&constrained, true),
        )
    };
    println!(
        "  a plain stream (128 tokens) alone {:.1} t/s; beside a plain stream {:.1}; beside a \
         {heavy_name} stream {:.1}: {:.2}x its rate beside a plain one (target >= 0.8)",
        neighbour.0,
        neighbour.1,
        neighbour.2,
        neighbour.2 / neighbour.1
    );
    println!("  {}", profile_of(m));
}

/// A conversation of 10 turns growing to about 2,000 tokens, through `minerva_chat_stream_new`
/// (llama.cpp's built-in Gemma template): each turn is the conversation so far, the reply and a
/// new message. Time to first token with the prompt cache (one engine) and
/// without (another engine, `cache_prompt = false`), each turn's prompt seen once by each.
fn chat_section(args: &Args) {
    let (cached, _) = Minerva::new(&args.model, args.threads, 4096, 2);
    let (plain, _) = Minerva::new(&args.model, args.threads, 4096, 2);
    let topics = [
        "the river",
        "the stone houses",
        "the green fields",
        "the people",
        "the blue sky",
        "the old bridge",
        "the market",
        "the winter",
        "the harvest",
        "the festival",
    ];
    println!("\nmulti-turn chat, 48-token replies, time to first token:");
    println!(
        "{:>4} {:>14} {:>14} {:>14} {:>14}",
        "turn", "prompt tokens", "cached tokens", "with cache", "without"
    );
    let mut turns: Vec<(String, String)> = Vec::new();
    for (turn, topic) in topics.iter().enumerate() {
        let message = format!(
            "Tell me about {topic}. {}",
            "Describe what you see, what you hear and what the people around you are doing, \
             in the plain words of a traveler who has walked a long way. "
                .repeat(5)
        );
        turns.push(("user".into(), message));
        let (_, without) = chat_turn(&plain, &turns, 1, false);
        let (reply, with) = chat_turn(&cached, &turns, 48, true);
        println!(
            "{:>4} {:>14} {:>14} {:>11.1} ms {:>11.1} ms",
            turn + 1,
            with.prompt_tokens,
            with.cached_prompt_tokens,
            with.time_to_first_token_ms,
            without.time_to_first_token_ms
        );
        turns.push(("assistant".into(), reply));
    }
}

const TOOLS: &str = r#"[
  {"type": "function", "function": {"name": "move_to", "description": "Walk to a place.",
    "parameters": {"type": "object", "properties": {
      "place": {"type": "string", "enum": ["inn", "forge", "well", "gate"]}},
      "required": ["place"]}}},
  {"type": "function", "function": {"name": "say", "description": "Say a line.",
    "parameters": {"type": "object", "properties": {"line": {"type": "string", "maxLength": 60}},
      "required": ["line"]}}}]"#;

/// 8 chat streams with tools (REQUIRED: each reply is calls, constrained by a grammar and
/// captured) at once, against 8 plain streams on the very same rendered prompts (tools described,
/// nothing constrained): generated tokens per second in all, prompts included.
fn tools_section(args: &Args) {
    let (m, _) = Minerva::new(&args.model, args.threads, 512, 8);
    let asks = [
        "Go to the inn.",
        "Say hello to the player.",
        "Walk to the forge.",
        "Greet the guard.",
        "Go to the well.",
        "Tell me a joke.",
        "Head for the gate.",
        "Say goodbye.",
    ];
    let tools = CString::new(TOOLS).unwrap();
    let user = CString::new("user").unwrap();
    let gemma = CString::new("gemma").unwrap();
    let texts: Vec<CString> = asks.iter().map(|a| CString::new(*a).unwrap()).collect();
    let message = |t: &CString| minerva_chat_message {
        role: user.as_ptr(),
        content: t.as_ptr(),
        tool_calls_json: std::ptr::null(),
        tool_call_id: std::ptr::null(),
    };
    let mut chat: minerva_chat_params = unsafe { std::mem::zeroed() };
    unsafe { minerva_chat_params_init(&mut chat, std::mem::size_of_val(&chat) as u32) };
    chat.chat_template = gemma.as_ptr();
    chat.tools_json = tools.as_ptr();
    chat.tool_choice = MINERVA_TOOL_CHOICE_REQUIRED;
    // The plain streams' prompts: the same conversations, rendered.
    let rendered: Vec<CString> = texts
        .iter()
        .map(|t| {
            let msg = message(t);
            let mut buf = vec![0u8; 8192];
            let mut n = 0;
            let rc = unsafe {
                minerva_chat_format(
                    m.engine,
                    &msg,
                    1,
                    &chat,
                    buf.as_mut_ptr().cast(),
                    buf.len(),
                    &mut n,
                )
            };
            assert_eq!(rc, MINERVA_OK);
            buf.truncate(n);
            CString::new(buf).unwrap()
        })
        .collect();
    let run = |tools_on: bool| -> (f64, u32) {
        let mut g = Minerva::params(64);
        // Tool streams end when their JSON is complete; plain ones run to 64 tokens.
        g.ignore_eos = !tools_on;
        g.cache_prompt = false;
        let t0 = Instant::now();
        let streams: Vec<*mut minerva_stream> = (0..asks.len())
            .map(|i| {
                let mut s = std::ptr::null_mut();
                let rc = unsafe {
                    if tools_on {
                        let msg = message(&texts[i]);
                        minerva_chat_stream_new(
                            m.engine,
                            &msg,
                            1,
                            &chat,
                            &g,
                            None,
                            std::ptr::null_mut(),
                            &mut s,
                        )
                    } else {
                        minerva_stream_new(
                            m.engine,
                            rendered[i].as_ptr(),
                            &g,
                            None,
                            std::ptr::null_mut(),
                            &mut s,
                        )
                    }
                };
                assert_eq!(rc, MINERVA_OK);
                s
            })
            .collect();
        let mut generated = 0;
        for &s in &streams {
            assert_eq!(unsafe { minerva_stream_wait(s, -1) }, MINERVA_OK);
            let mut st = minerva_stream_stats::default();
            st.struct_size = std::mem::size_of_val(&st) as u32;
            unsafe { minerva_stream_get_stats(s, &mut st) };
            generated += st.generated_tokens;
        }
        let secs = t0.elapsed().as_secs_f64();
        for s in streams {
            unsafe { minerva_stream_free(s) };
        }
        (generated as f64 / secs, generated)
    };
    let (mut with, mut without, mut n_with) = (vec![], vec![], 0);
    for rep in 0..args.reps {
        if rep % 2 == 0 {
            without.push(run(false).0);
            let (r, n) = run(true);
            with.push(r);
            n_with = n;
        } else {
            let (r, n) = run(true);
            with.push(r);
            n_with = n;
            without.push(run(false).0);
        }
    }
    let (w, p) = (best(&with, true), best(&without, true));
    println!(
        "\ntool calls: 8 chat streams with REQUIRED tool calls {w:.1} t/s in all ({n_with} tokens), \
         8 plain streams on the same prompts {p:.1} t/s: {:.2}x",
        w / p
    );
}

/// 64 short texts: minerva_embed against a llama-embedding style loop written on llama.h (the
/// same batch of 256 tokens, mean pooling by llama.cpp, L2 normalization), texts per second.
/// What the network hop costs: the whole model on a minerva-rpc-server on 127.0.0.1 (the same
/// CPU, `threads` threads) against the same engine computing locally.
fn rpc_section(args: &Args) {
    let server_bin = std::env::current_exe()
        .ok()
        .and_then(|e| Some(e.parent()?.parent()?.join("minerva-rpc-server")))
        .filter(|p| p.exists());
    let Some(server_bin) = server_bin else {
        println!("rpc: no minerva-rpc-server beside the examples (cargo build --release --bins)");
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut server = std::process::Command::new(server_bin)
        .args(["--port", &port.to_string(), "--mem", "4096"])
        .args(["--threads", &args.threads.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start minerva-rpc-server");
    let endpoint = format!("127.0.0.1:{port}");
    let t0 = Instant::now();
    while std::net::TcpStream::connect(&endpoint).is_err() && t0.elapsed().as_secs() < 30 {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let (local, _) = Minerva::new(&args.model, args.threads, 1024, 1);
    let rpc = CString::new(endpoint).unwrap();
    let (remote, _) = Minerva::on(&args.model, args.threads, 1024, 1, -1, Some(&rpc));
    let mut info: minerva_engine_info = unsafe { std::mem::zeroed() };
    info.struct_size = std::mem::size_of_val(&info) as u32;
    unsafe { minerva_engine_get_info(remote.engine, &mut info) };
    let devices = unsafe { std::ffi::CStr::from_ptr(info.devices.as_ptr()) };
    let p512 = "The lighthouse keeper counted the ships. ".repeat(64);
    let (mut pp_r, mut pp_l, mut tg_r, mut tg_l) = (vec![], vec![], vec![], vec![]);
    for _ in 0..args.reps {
        let s = remote.generate(&p512, 1, true);
        pp_r.push(s.prompt_tokens as f64 / (s.time_to_first_token_ms / 1e3));
        let s = local.generate(&p512, 1, true);
        pp_l.push(s.prompt_tokens as f64 / (s.time_to_first_token_ms / 1e3));
        tg_r.push(
            remote
                .generate("Once upon a time", 128, true)
                .tokens_per_second,
        );
        tg_l.push(
            local
                .generate("Once upon a time", 128, true)
                .tokens_per_second,
        );
    }
    drop(remote);
    drop(local);
    let _ = server.kill();
    let _ = server.wait();
    println!(
        "\nRPC on loopback ({}) against local, the same CPU and threads:",
        devices.to_string_lossy()
    );
    print_rows_as(
        &[
            row(
                "prompt processing (512 tokens)",
                &pp_r,
                &pp_l,
                "t/s",
                true,
                None,
            ),
            row("generation (128 tokens)", &tg_r, &tg_l, "t/s", true, None),
        ],
        "via RPC",
        "local",
    );
    let (r, l) = (best(&tg_r, true), best(&tg_l, true));
    println!(
        "network hop: {:.2} ms per generated token ({:.2} ms through RPC, {:.2} ms local)",
        1e3 / r - 1e3 / l,
        1e3 / r,
        1e3 / l
    );
}

fn embed_section(args: &Args) {
    let texts: Vec<String> = (0..64)
        .map(|i| {
            format!(
                "{} number {i} walks past the{} on a{} morning.",
                ["The guard", "A merchant", "The old bard", "A child"][i % 4],
                WORDS[i % WORDS.len()],
                WORDS[(i * 7) % WORDS.len()]
            )
        })
        .collect();
    let (m, _) = Minerva::new(&args.model, args.threads, 512, 1);
    let ctexts: Vec<CString> = texts
        .iter()
        .map(|t| CString::new(t.as_str()).unwrap())
        .collect();
    let ptrs: Vec<*const c_char> = ctexts.iter().map(|c| c.as_ptr()).collect();
    let mut info: minerva_engine_info = unsafe { std::mem::zeroed() };
    info.struct_size = std::mem::size_of_val(&info) as u32;
    unsafe { minerva_engine_get_info(m.engine, &mut info) };
    let dims = info.embedding_dims as usize;
    let mut out = vec![0f32; 64 * dims];
    let mut run_m = || {
        let t0 = Instant::now();
        let mut n = 0;
        let rc = unsafe {
            minerva_embed(
                m.engine,
                ptrs.as_ptr(),
                ptrs.len(),
                std::ptr::null(),
                out.as_mut_ptr(),
                out.len(),
                &mut n,
            )
        };
        assert_eq!(rc, MINERVA_OK);
        64.0 / t0.elapsed().as_secs_f64()
    };
    run_m(); // the embedding context is made on the first call
    let mut base = EmbedBaseline::new(&args.model, args.threads);
    base.run(&texts, dims);
    let (mut rm, mut rb) = (vec![], vec![]);
    for rep in 0..args.reps.max(3) {
        if rep % 2 == 0 {
            rm.push(run_m());
            rb.push(base.run(&texts, dims));
        } else {
            rb.push(base.run(&texts, dims));
            rm.push(run_m());
        }
    }
    let (a, b) = (best(&rm, true), best(&rb, true));
    println!(
        "\nembeddings: 64 short texts, {a:.1} texts/s; llama.h loop {b:.1} texts/s: {:.3}x \
         (target >= 0.95)",
        a / b
    );
}

/// examples/embedding in llama.cpp, reduced: sequences packed into batches of 256 tokens, every
/// token an output, pooled (mean) by llama.cpp, normalized.
struct EmbedBaseline {
    model: *mut sys::llama_model,
    ctx: *mut sys::llama_context,
    batch: sys::llama_batch,
}

impl EmbedBaseline {
    fn new(path: &str, threads: u32) -> EmbedBaseline {
        let cpath = CString::new(path).unwrap();
        unsafe {
            let mut mp = sys::llama_model_default_params();
            mp.n_gpu_layers = if gpu_layers() < 0 { 999 } else { gpu_layers() };
            let model = sys::llama_model_load_from_file(cpath.as_ptr(), mp);
            let mut cp = sys::llama_context_default_params();
            cp.n_ctx = 512;
            cp.n_batch = 256;
            cp.n_ubatch = 256;
            cp.n_seq_max = 64;
            cp.n_threads = threads as i32;
            cp.n_threads_batch = threads as i32;
            cp.embeddings = true;
            cp.pooling_type = sys::LLAMA_POOLING_TYPE_MEAN;
            cp.kv_unified = true;
            cp.no_perf = true;
            let ctx = sys::llama_init_from_model(model, cp);
            assert!(!ctx.is_null());
            EmbedBaseline {
                model,
                ctx,
                batch: sys::llama_batch_init(256, 0, 1),
            }
        }
    }

    fn run(&mut self, texts: &[String], dims: usize) -> f64 {
        let t0 = Instant::now();
        let vocab = unsafe { sys::llama_model_get_vocab(self.model) };
        let mut out = vec![0f32; texts.len() * dims];
        let mut seqs: Vec<usize> = Vec::new();
        let flush = |b: &mut sys::llama_batch, seqs: &mut Vec<usize>, out: &mut [f32]| unsafe {
            sys::llama_memory_clear(sys::llama_get_memory(self.ctx), true);
            assert_eq!(sys::llama_decode(self.ctx, *b), 0);
            for (k, &i) in seqs.iter().enumerate() {
                let e = sys::llama_get_embeddings_seq(self.ctx, k as i32);
                let v = std::slice::from_raw_parts(e, dims);
                let n = v.iter().map(|x| (*x as f64).powi(2)).sum::<f64>().sqrt();
                for (o, x) in out[i * dims..(i + 1) * dims].iter_mut().zip(v) {
                    *o = (*x as f64 / n) as f32;
                }
            }
            b.n_tokens = 0;
            seqs.clear();
        };
        for (i, t) in texts.iter().enumerate() {
            let mut toks = vec![0i32; t.len() + 8];
            let n = unsafe {
                sys::llama_tokenize(
                    vocab,
                    t.as_ptr() as *const c_char,
                    t.len() as i32,
                    toks.as_mut_ptr(),
                    toks.len() as i32,
                    true,
                    true,
                )
            };
            toks.truncate(n as usize);
            if self.batch.n_tokens as usize + toks.len() > 256 || seqs.len() == 64 {
                flush(&mut self.batch, &mut seqs, &mut out);
            }
            let seq = seqs.len() as i32;
            for (p, &tok) in toks.iter().enumerate() {
                let b = &mut self.batch;
                let j = b.n_tokens as usize;
                unsafe {
                    *b.token.add(j) = tok;
                    *b.pos.add(j) = p as i32;
                    *b.n_seq_id.add(j) = 1;
                    *(*b.seq_id.add(j)) = seq;
                    *b.logits.add(j) = 1;
                }
                b.n_tokens += 1;
            }
            seqs.push(i);
        }
        if !seqs.is_empty() {
            flush(&mut self.batch, &mut seqs, &mut out);
        }
        std::hint::black_box(&out);
        texts.len() as f64 / t0.elapsed().as_secs_f64()
    }
}

impl Drop for EmbedBaseline {
    fn drop(&mut self) {
        unsafe {
            sys::llama_batch_free(self.batch);
            sys::llama_free(self.ctx);
            sys::llama_model_free(self.model);
        }
    }
}

impl Drop for Minerva {
    fn drop(&mut self) {
        unsafe { minerva_engine_free(self.engine) }
    }
}

// ---------------------------------------------------------------------------------------------

const WORDS: &[&str] = &[
    " the", " river", " runs", " past", " old", " stone", " houses", " and", " green", " fields",
    " where", " people", " work", " every", " day", " under", " a", " wide", " blue", " sky",
];

/// A text that tokenizes (with BOS) to exactly `n` tokens; `variant` varies the words.
fn text_with_tokens(base: &Baseline, n: usize, variant: usize) -> String {
    let mut text = String::from("Story");
    let mut i = variant * 7;
    loop {
        let len = base.tokenize(&text).len();
        if len == n {
            return text;
        }
        assert!(len < n, "overshot {n} tokens");
        let w = WORDS[i % WORDS.len()];
        i += 1;
        let candidate = format!("{text}{w}");
        if base.tokenize(&candidate).len() <= n {
            text = candidate;
        }
    }
}

fn best(v: &[f64], higher_is_better: bool) -> f64 {
    let it = v.iter().copied();
    if higher_is_better {
        it.fold(f64::MIN, f64::max)
    } else {
        it.fold(f64::MAX, f64::min)
    }
}

struct Row {
    name: String,
    minerva: f64,
    baseline: f64,
    unit: &'static str,
    higher_is_better: bool,
    target: String,
    ok: Option<bool>,
}

fn row(
    name: &str,
    m: &[f64],
    b: &[f64],
    unit: &'static str,
    hib: bool,
    target: Option<f64>,
) -> Row {
    let (mv, bv) = (best(m, hib), best(b, hib));
    let ratio = mv / bv;
    let (target, ok) = match target {
        Some(t) if hib => (format!(">= {t:.2}"), Some(ratio >= t)),
        Some(t) => (format!("<= {t:.2}"), Some(ratio <= t)),
        None => (String::new(), None),
    };
    Row {
        name: name.into(),
        minerva: mv,
        baseline: bv,
        unit,
        higher_is_better: hib,
        target,
        ok,
    }
}

fn print_rows(rows: &[Row]) {
    print_rows_as(rows, "minerva", "llama.h");
}

fn print_rows_as(rows: &[Row], first: &str, second: &str) {
    if rows.is_empty() {
        return;
    }
    println!(
        "{:<34} {:>12} {:>12} {:>7}  target",
        "measure", first, second, "ratio"
    );
    for r in rows {
        println!(
            "{:<34} {:>9.2} {:<2} {:>9.2} {:<2} {:>7.3}  {:<8} {}",
            r.name,
            r.minerva,
            r.unit,
            r.baseline,
            r.unit,
            r.minerva / r.baseline,
            r.target,
            match r.ok {
                Some(true) => "ok",
                Some(false) => "MISSED",
                None => "",
            }
        );
        let _ = r.higher_is_better;
    }
}

fn vm_hwm_kib() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

static KV_MIB: std::sync::Mutex<f64> = std::sync::Mutex::new(0.0);

/// The engine thread's profile line ("engine thread: ..."), said when an engine ends.
static PROFILE: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);

/// Keeps the engine's profile line; warnings and errors go to stderr.
unsafe extern "C" fn profile_log(_: *mut c_void, level: minerva_log_level, msg: *const c_char) {
    let line = unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy();
    if line.starts_with("engine thread:") {
        *PROFILE.lock().unwrap() = Some(line.trim_end().to_string());
    } else if level >= MINERVA_LOG_WARN {
        eprintln!("{}", line.trim_end());
    }
}

/// Frees the engine and returns its profile line.
fn profile_of(m: Minerva) -> String {
    drop(m);
    PROFILE.lock().unwrap().take().unwrap_or_default()
}

unsafe extern "C" fn kv_log(_: *mut c_void, _: minerva_log_level, msg: *const c_char) {
    let line = unsafe { std::ffi::CStr::from_ptr(msg) }.to_string_lossy();
    // "llama_kv_cache: size =   24.00 MiB (...)": one line per cache (two for sliding-window models).
    if let Some(rest) = line.strip_prefix("llama_kv_cache: size =") {
        if let Some(v) = rest
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
        {
            *KV_MIB.lock().unwrap() += v;
        }
    }
}

/// In a process of its own: minerva's engine with the default settings (2048 tokens x 4 streams,
/// batches of 512), or the baseline with the same context, one 512-token prompt and 128 tokens;
/// prints peak RSS, model file size and KV cache size.
fn rss_child(who: &str, model: &str, threads: &str) {
    unsafe { minerva_set_log_callback(Some(kv_log), std::ptr::null_mut(), MINERVA_LOG_INFO) };
    let threads: u32 = threads.parse().unwrap();
    let text = "The river runs past old stone houses and green fields. ".repeat(45);
    let cells = 2048 * 4;
    if who == "minerva" {
        let (m, _) = Minerva::new(model, threads, 2048, 4);
        m.generate(&text, 128, true);
    } else {
        // The baseline's log lines go through llama.cpp's default logger: route them here too.
        unsafe { sys::llama_log_set(Some(baseline_log), std::ptr::null_mut()) };
        let swa_full = who != "baseline-window";
        let (mut b, _) = Baseline::with_swa(model, threads, 2048 * 4, 4, 512, swa_full);
        b.generate(&text, 128);
    }
    let file = std::fs::metadata(model).unwrap().len() as f64 / 1048576.0;
    println!(
        "rss {} {:.2} {:.2} {}",
        vm_hwm_kib() / 1024,
        file,
        *KV_MIB.lock().unwrap(),
        cells
    );
}

unsafe extern "C" fn baseline_log(_: sys::ggml_log_level, text: *const c_char, _: *mut c_void) {
    unsafe { kv_log(std::ptr::null_mut(), 0, text) }
}

fn measure_rss(args: &Args, who: &str) -> Option<(f64, f64, f64, f64)> {
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new(exe)
        .args(["--rss-child", who, &args.model, &args.threads.to_string()])
        .output()
        .expect("run the memory child");
    let text = String::from_utf8_lossy(&out.stdout);
    let l = text.lines().find(|l| l.starts_with("rss "))?;
    let v: Vec<f64> = l
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    Some((v[0], v[1], v[2], v[3]))
}

/// The text path of one token in callback mode, outside the decode: piece lookup, UTF-8
/// assembly, stop-string check, the call into C. Measured on the prompt's real tokens.
fn callback_cost(base: &Baseline, tokens: &[i32]) -> (f64, f64) {
    use minerva::engine::text::{StopMatcher, StopResult, Utf8Assembler};
    let rounds = 200;
    let piece = |t: i32, out: &mut Vec<u8>| {
        let mut buf = [0u8; 64];
        let n = unsafe {
            sys::llama_token_to_piece(base.vocab, t, buf.as_mut_ptr() as *mut c_char, 64, 0, false)
        };
        out.extend_from_slice(&buf[..n.max(0) as usize]);
    };
    // The piece lookup alone: what any program printing tokens does.
    let t0 = Instant::now();
    let mut bytes = Vec::new();
    for _ in 0..rounds {
        for &t in tokens {
            bytes.clear();
            piece(t, &mut bytes);
            std::hint::black_box(&bytes);
        }
    }
    let lookup = t0.elapsed().as_secs_f64() / (rounds * tokens.len()) as f64;
    // minerva's whole path, as the engine thread runs it.
    let mut utf8 = Utf8Assembler::default();
    let mut stop = StopMatcher::new(vec!["</s>".into()]);
    let mut cbuf: Vec<u8> = Vec::new();
    let mut deliver = |text: &str| {
        cbuf.clear();
        cbuf.extend_from_slice(text.as_bytes());
        cbuf.push(0);
        unsafe {
            noop_token(
                std::ptr::null_mut(),
                cbuf.as_ptr() as *const c_char,
                text.len(),
            )
        }
    };
    let mut text = String::new();
    let t0 = Instant::now();
    for _ in 0..rounds {
        for &t in tokens {
            bytes.clear();
            piece(t, &mut bytes);
            text.clear();
            utf8.push(&bytes, &mut text);
            if let StopResult::Continue(out) = stop.push(&text) {
                if !out.is_empty() {
                    std::hint::black_box(deliver(&out));
                }
            }
        }
    }
    let whole = t0.elapsed().as_secs_f64() / (rounds * tokens.len()) as f64;
    (whole * 1e9, lookup * 1e9)
}

/// The numeric cells of a markdown table row of llama.cpp's tools ("| a | b |"), as text.
fn table_cells(line: &str) -> Vec<&str> {
    let t = line.trim();
    if !t.starts_with('|') {
        return Vec::new();
    }
    t.trim_matches('|').split('|').map(str::trim).collect()
}

/// Runs a tool, returning its standard output (None, said on stderr, when it fails).
fn run_tool(dir: &str, tool: &str, args: &[String]) -> Option<String> {
    let path = std::path::Path::new(dir).join(tool);
    match std::process::Command::new(&path)
        .args(args)
        .stderr(std::process::Stdio::null())
        .output()
    {
        Ok(o) if o.status.success() => Some(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => {
            eprintln!("{} failed ({})", path.display(), o.status);
            None
        }
        Err(e) => {
            eprintln!("cannot run {}: {e}", path.display());
            None
        }
    }
}

/// llama.cpp's llama-bench (tg128) and llama-batched-bench (128-token prompts, 128 generated, 1
/// and 8 sequences) on the same model, threads and GPU layers, run by run between minerva's own
/// runs of the same work (best of each): minerva's generation against tg128 and against
/// batched-bench's one-sequence S_TG, and eight streams' whole rate (prompts and generation)
/// against its S for eight sequences.
fn llama_tools_section(args: &Args, dir: &str, p16: &str, p128: &[String]) {
    let ngl = if gpu_layers() < 0 { 99 } else { gpu_layers() }.to_string();
    let threads = args.threads.to_string();
    let common = |extra: &[&str]| -> Vec<String> {
        ["-m", args.model.as_str(), "-t", &threads, "-ngl", &ngl]
            .iter()
            .chain(extra)
            .map(|s| s.to_string())
            .collect()
    };
    let llama_bench = || {
        let out = run_tool(
            dir,
            "llama-bench",
            &common(&["-p", "0", "-n", "128", "-r", "1"]),
        )?;
        out.lines().find_map(|l| {
            let c = table_cells(l);
            let at = c.iter().position(|&x| x == "tg128")?;
            c.get(at + 1)?
                .split_whitespace()
                .next()?
                .parse::<f64>()
                .ok()
        })
    };
    // (sequences, S_TG, S) of each row.
    let batched_bench = || -> Vec<(usize, f64, f64)> {
        let extra = [
            "-c", "4096", "-b", "512", "-ub", "512", "-npp", "128", "-ntg", "128", "-npl", "1,8",
        ];
        let Some(out) = run_tool(dir, "llama-batched-bench", &common(&extra)) else {
            return Vec::new();
        };
        out.lines()
            .filter_map(|l| {
                let c: Vec<f64> = table_cells(l)
                    .iter()
                    .map(|x| x.parse::<f64>())
                    .collect::<Result<_, _>>()
                    .ok()?;
                (c.len() == 10).then(|| (c[2] as usize, c[7], c[9]))
            })
            .collect()
    };
    let (mut gen_m, mut gen_t, mut s1_t, mut all_m, mut all_t) =
        (vec![], vec![], vec![], vec![], vec![]);
    for _ in 0..args.reps {
        // One engine at a time: an idle engine's decoding threads may still spin for a while.
        let (one, _) = Minerva::new(&args.model, args.threads, 1024, 1);
        one.generate(p16, 8, true); // warm-up
        gen_m.push(one.generate(p16, 128, true).tokens_per_second);
        drop(one);
        gen_t.extend(llama_bench());
        // Eight streams' tokens, prompts included, over the wall time.
        let (eight, _) = Minerva::new(&args.model, args.threads, 256, 8);
        eight.batched(&p128[..8], 8); // warm-up
        all_m.push((8 * 256) as f64 / eight.batched(&p128[..8], 128));
        drop(eight);
        for (n, s_tg, s) in batched_bench() {
            match n {
                1 => s1_t.push(s_tg),
                8 => all_t.push(s),
                _ => {}
            }
        }
    }
    let mut rows = Vec::new();
    for (name, m, t, target) in [
        ("generation vs llama-bench tg128", &gen_m, &gen_t, 0.97),
        ("1 stream vs batched-bench S_TG", &gen_m, &s1_t, 0.90),
        ("8 streams vs batched-bench S", &all_m, &all_t, 0.90),
    ] {
        if !t.is_empty() {
            rows.push(row(name, m, t, "t/s", true, Some(target)));
        }
    }
    println!();
    if rows.is_empty() {
        println!("llama.cpp's tools in {dir} gave no figures");
        return;
    }
    print_rows_as(&rows, "minerva", "llama.cpp");
}

fn main() {
    let args = parse_args();
    unsafe { minerva_set_log_callback(Some(profile_log), std::ptr::null_mut(), MINERVA_LOG_INFO) };
    println!(
        "model: {}\nthreads: {}, best of {} interleaved runs, GPU layers {}\n",
        args.model,
        args.threads,
        args.reps,
        gpu_layers()
    );

    let (base, _) = Baseline::new(&args.model, args.threads, 1024, 1, 512);
    let p16 = text_with_tokens(&base, 16, 0);
    let p512 = text_with_tokens(&base, 512, 0);
    let p128: Vec<String> = (0..8).map(|v| text_with_tokens(&base, 128, v)).collect();
    let callback = args
        .runs("callback")
        .then(|| callback_cost(&base, &base.tokenize(&p512)));
    drop(base);

    let mut rows = Vec::new();
    // Where minerva's engine thread spent its steps, per section.
    let mut profiles: Vec<(String, String)> = Vec::new();

    if args.runs("load") {
        // minerva_engine_new against llama_model_load_from_file + llama_init_from_model.
        let (mut lm, mut lb) = (Vec::new(), Vec::new());
        for _ in 0..args.reps {
            let (m, t) = Minerva::new(&args.model, args.threads, 1024, 1);
            lm.push(t * 1e3);
            drop(m);
            let (b, t) = Baseline::new(&args.model, args.threads, 1024, 1, 512);
            lb.push(t * 1e3);
            drop(b);
        }
        rows.push(row("load time", &lm, &lb, "ms", false, None));
    }

    if args.runs("single") {
        let (m, _) = Minerva::new(&args.model, args.threads, 1024, 1);
        let (mut b, _) = Baseline::new(&args.model, args.threads, 1024, 1, 512);
        let (mut pp_m, mut pp_b, mut tg_m, mut tg_b) = (vec![], vec![], vec![], vec![]);
        let (mut t16_m, mut t16_b, mut t512_m, mut t512_b) = (vec![], vec![], vec![], vec![]);
        for _ in 0..args.reps {
            let s = m.generate(&p512, 1, true);
            pp_m.push(512.0 / (s.time_to_first_token_ms / 1e3));
            t512_m.push(s.time_to_first_token_ms);
            let (first, _) = b.generate(&p512, 1);
            pp_b.push(512.0 / first);
            t512_b.push(first * 1e3);

            let s = m.generate(&p16, 128, true);
            tg_m.push(s.tokens_per_second);
            t16_m.push(s.time_to_first_token_ms);
            let (first, rest) = b.generate(&p16, 128);
            tg_b.push(127.0 / rest);
            t16_b.push(first * 1e3);
        }
        profiles.push((
            "1 stream, 512-token prompts and 128-token generations".into(),
            profile_of(m),
        ));
        rows.push(row(
            "prompt processing (512 tokens)",
            &pp_m,
            &pp_b,
            "t/s",
            true,
            Some(0.97),
        ));
        rows.push(row(
            "generation (128 tokens, greedy)",
            &tg_m,
            &tg_b,
            "t/s",
            true,
            Some(0.97),
        ));
        rows.push(row(
            "time to first token, 16 tokens",
            &t16_m,
            &t16_b,
            "ms",
            false,
            Some(1.02),
        ));
        rows.push(row(
            "time to first token, 512 tokens",
            &t512_m,
            &t512_b,
            "ms",
            false,
            Some(1.02),
        ));
    }

    let mut agg = Vec::new();
    if args.runs("batched") {
        for n in [1usize, 2, 4, 8] {
            let (m, _) = Minerva::new(&args.model, args.threads, 256, n as u32);
            let (mut b, _) =
                Baseline::new(&args.model, args.threads, 256 * n as u32, n as u32, 512);
            let prompts_b: Vec<Vec<i32>> = p128[..n].iter().map(|t| b.tokenize(t)).collect();
            let (mut am, mut ab) = (vec![], vec![]);
            for rep in 0..args.reps {
                // Alternate which one goes first: the second of a pair runs on warmer caches.
                if rep % 2 == 0 {
                    am.push((n * 128) as f64 / m.batched(&p128[..n], 128));
                    ab.push((n * 128) as f64 / b.batched(&prompts_b, 128));
                } else {
                    ab.push((n * 128) as f64 / b.batched(&prompts_b, 128));
                    am.push((n * 128) as f64 / m.batched(&p128[..n], 128));
                }
            }
            let target = if n == 8 { Some(0.95) } else { None };
            rows.push(row(
                &format!("{n} streams, generated t/s in all"),
                &am,
                &ab,
                "t/s",
                true,
                target,
            ));
            agg.push((n, best(&am, true)));
            if n == 1 || n == 8 {
                profiles.push((
                    format!("{n} streams x (128 prompt + 128 generated)"),
                    profile_of(m),
                ));
            }
        }
    }

    if args.runs("batched") {
        // Eight streams with the default sampling settings: a chain each (top-k sorts 262,144
        // candidates), where minerva picks side by side and the baseline one after another.
        let n = 8;
        let (m, _) = Minerva::new(&args.model, args.threads, 256, n as u32);
        let (mut b, _) = Baseline::new(&args.model, args.threads, 256 * n as u32, n as u32, 512);
        let prompts_b: Vec<Vec<i32>> = p128[..n].iter().map(|t| b.tokenize(t)).collect();
        let (mut am, mut ab) = (vec![], vec![]);
        for rep in 0..args.reps {
            if rep % 2 == 0 {
                am.push((n * 128) as f64 / m.batched_with(&p128[..n], 128, true));
                ab.push((n * 128) as f64 / b.batched_with(&prompts_b, 128, true));
            } else {
                ab.push((n * 128) as f64 / b.batched_with(&prompts_b, 128, true));
                am.push((n * 128) as f64 / m.batched_with(&p128[..n], 128, true));
            }
        }
        rows.push(row(
            "8 streams sampled (temp 0.8, top-k 40)",
            &am,
            &ab,
            "t/s",
            true,
            Some(0.95),
        ));
        profiles.push((
            "8 streams sampled, temperature 0.8 and top-k 40".into(),
            profile_of(m),
        ));
    }

    print_rows(&rows);
    for (what, line) in &profiles {
        println!("{what}: {line}");
    }
    if args.runs("chat") {
        chat_section(&args);
    }
    if args.runs("structured") {
        structured_section(&args);
    }
    if args.runs("tools") {
        tools_section(&args);
    }
    if args.runs("embed") {
        embed_section(&args);
    }
    if args.runs("rpc") {
        rpc_section(&args);
    }
    if let Some(&(1, single)) = agg.first() {
        for (n, v) in &agg[1..] {
            println!(
                "{n} streams: {:.2}x the single-stream rate{}",
                v / single,
                if *n == 8 { " (target >= 1.8)" } else { "" }
            );
        }
    }
    if let Some(dir) = &args.llama_tools {
        llama_tools_section(&args, dir, &p16, &p128);
    }
    if let Some((whole, lookup)) = callback {
        println!(
            "token callback: {whole:.0} ns per token for the whole text path (piece lookup \
             {lookup:.0} ns, UTF-8, stop strings, call into C {:.0} ns)",
            whole - lookup
        );
    }
    if args.runs("memory") {
        match (
            measure_rss(&args, "minerva"),
            measure_rss(&args, "baseline"),
        ) {
            (Some((rss, file, kv, cells)), Some((brss, _, bkv, _))) => {
                let limit = file + kv + 64.0;
                println!(
                    "peak resident memory: {rss:.0} MiB; llama.h baseline {brss:.0} MiB (model file \
                     {file:.0} MiB, KV cache {kv:.0} MiB / {bkv:.0} MiB for {cells:.0} cells); target \
                     file + KV + 64 MiB = {limit:.0} MiB: {}",
                    if rss <= limit { "ok" } else { "MISSED" }
                );
            }
            _ => println!("peak resident memory: a child process failed"),
        }
        if let Some((rss, _, kv, _)) = measure_rss(&args, "baseline-window") {
            println!(
                "sliding-window cache: with only the window kept (swa_full = false, no prefix \
                 reuse) the KV cache is {kv:.0} MiB and the peak {rss:.0} MiB"
            );
        }
    }
}
