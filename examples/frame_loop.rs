//! The frame-loop benchmark: minerva as a game uses it, from a 60 fps main thread. It uses only
//! the C API of 0.1 plus `minerva_stream_release`, so that the same file measures an older build
//! too (see docs/PERFORMANCE.md, "In a game loop").
//!
//!   frame_loop [--model PATH] [--threads N] [--seconds N]
//!
//! Three parts:
//! 1. A story: 8 characters on one engine for N seconds (default 20) at 60 frames a second; each
//!    frame pulls every character's text with `minerva_stream_read(..., 0)`; lines start (short
//!    prompts, and prompts of 400 to 900 tokens), some are cancelled and freed mid-way, finished
//!    ones freed. Prints
//!    per-call latency (median, p99, max), frames whose minerva calls took over 16.7 ms, and the
//!    tokens generated per second.
//! 2. Time between tokens of 4 generating streams, with no prompt arriving, then with a ~450-token
//!    prompt arriving every 0.5 s (median, p99), and the prompt throughput meanwhile.
//! 3. A burst: 8 equal ~450-token prompts started in one frame: time to first token, mean and max.

use minerva::ffi::*;
use std::ffi::{c_char, c_void, CString};
use std::time::{Duration, Instant};

struct Args {
    model: String,
    threads: u32,
    seconds: f64,
}

fn args() -> Args {
    let mut model = std::env::var("MINERVA_MODEL").ok();
    let (mut threads, mut seconds) = (0u32, 20.0);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--model" => model = it.next(),
            "--threads" => threads = it.next().and_then(|v| v.parse().ok()).unwrap_or(0),
            "--seconds" => seconds = it.next().and_then(|v| v.parse().ok()).unwrap_or(20.0),
            _ => {
                eprintln!("usage: frame_loop [--model PATH] [--threads N] [--seconds N]");
                std::process::exit(2);
            }
        }
    }
    Args {
        model: model.expect("pass --model PATH or set MINERVA_MODEL"),
        threads,
        seconds,
    }
}

fn engine(a: &Args, streams: u32) -> *mut minerva_engine {
    let path = CString::new(a.model.as_str()).unwrap();
    let mut e = std::ptr::null_mut();
    unsafe {
        let mut p: minerva_engine_params = std::mem::zeroed();
        minerva_engine_params_init(&mut p, std::mem::size_of_val(&p) as u32);
        p.max_streams = streams;
        p.context_tokens = 1024;
        p.threads = a.threads;
        p.gpu_layers = 0;
        assert_eq!(minerva_engine_new(path.as_ptr(), &p, &mut e), MINERVA_OK);
    }
    e
}

fn params(max_tokens: u32, seed: u64) -> minerva_generate_params {
    unsafe {
        let mut g: minerva_generate_params = std::mem::zeroed();
        // The 0.1 layout: what every build knows.
        minerva_generate_params_init(&mut g, std::mem::size_of_val(&g) as u32);
        g.max_tokens = max_tokens;
        g.seed = seed;
        g.ignore_eos = true;
        g
    }
}

const LONG: &str = "The old keeper of the lighthouse remembered every storm that had crossed the \
    bay, every ship that had come home and every one that had not, and on winter nights he told \
    the children of the village about them, one after another, while the wind pushed at the \
    shutters and the lamp turned above them. ";

fn long_prompt(variant: usize) -> String {
    format!("Chapter {variant}. {}", LONG.repeat(7)) // about 400 tokens
}

/// Median, p99 and max of `v` (sorted here), in the unit given.
fn spread(v: &mut [f64]) -> (f64, f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let at = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.99), v[v.len() - 1])
}

fn print_spread(name: &str, v: &mut [f64]) {
    let n = v.len();
    let (med, p99, max) = spread(v);
    println!(
        "  {name:<34} {n:>6} calls  median {med:>8.3} ms  p99 {p99:>8.3} ms  max {max:>8.3} ms"
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

struct Line {
    stream: *mut minerva_stream,
    cancel_at: Option<usize>,
}

/// Part 1: the story.
fn story(a: &Args) {
    let e = engine(a, 8);
    let frame = Duration::from_micros(16_667);
    let frames = (a.seconds * 60.0) as usize;
    let (mut t_new, mut t_read, mut t_cancel_free, mut t_free_done, mut t_stats) =
        (vec![], vec![], vec![], vec![], vec![]);
    let mut lines: Vec<Option<Line>> = (0..8).map(|_| None).collect();
    let mut busy_frames = 0;
    let mut late_frames = 0;
    let mut lateness = vec![];
    let mut worst_frame = 0f64;
    let mut generated = 0u64;
    let mut buf = [0u8; 4096];
    let start = Instant::now();
    let mut next = start;
    let mut rng = 0x9E3779B97F4A7C15u64;
    let mut rand = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    for f in 0..frames {
        let frame_start = Instant::now();
        if f > 0 {
            // How late the main thread woke up for this frame.
            lateness.push(ms(frame_start.saturating_duration_since(next)));
        }
        if frame_start > next + frame {
            late_frames += 1;
        }
        let mut in_minerva = Duration::ZERO;
        for (c, slot) in lines.iter_mut().enumerate() {
            match slot {
                None => {
                    // A character starts a line now and then: short lines, and long ones.
                    if rand(30) == 0 {
                        let prompt = if rand(3) == 0 {
                            // Up to ~900 tokens: the longest lines a game would start.
                            format!("{} {}", long_prompt(f), LONG.repeat(rand(9)))
                        } else {
                            format!("Character {c} looks at the traveler and says:")
                        };
                        let p = CString::new(prompt).unwrap();
                        let g = params(48 + rand(64) as u32, f as u64);
                        let mut s = std::ptr::null_mut();
                        let t = Instant::now();
                        let rc = unsafe {
                            minerva_stream_new(
                                e,
                                p.as_ptr(),
                                &g,
                                None,
                                std::ptr::null_mut(),
                                &mut s,
                            )
                        };
                        let d = t.elapsed();
                        in_minerva += d;
                        t_new.push(ms(d));
                        assert_eq!(rc, MINERVA_OK);
                        let cancel_at = (rand(4) == 0).then(|| f + 10 + rand(60));
                        *slot = Some(Line {
                            stream: s,
                            cancel_at,
                        });
                    }
                }
                Some(line) => {
                    let mut n = 0usize;
                    let mut finished = false;
                    let t = Instant::now();
                    let rc = unsafe {
                        minerva_stream_read(
                            line.stream,
                            buf.as_mut_ptr() as *mut c_char,
                            buf.len(),
                            &mut n,
                            &mut finished,
                            0,
                        )
                    };
                    let d = t.elapsed();
                    in_minerva += d;
                    t_read.push(ms(d));
                    assert_eq!(rc, MINERVA_OK);
                    if finished {
                        let mut st: minerva_stream_stats = unsafe { std::mem::zeroed() };
                        st.struct_size = std::mem::size_of_val(&st) as u32;
                        let t = Instant::now();
                        unsafe { minerva_stream_get_stats(line.stream, &mut st) };
                        t_stats.push(ms(t.elapsed()));
                        generated += st.generated_tokens as u64;
                        let t = Instant::now();
                        unsafe { minerva_stream_free(line.stream) };
                        let d = t.elapsed();
                        in_minerva += d;
                        t_free_done.push(ms(d));
                        *slot = None;
                    } else if line.cancel_at == Some(f) {
                        // The player walks away: the dialogue closes in this frame.
                        let mut st: minerva_stream_stats = unsafe { std::mem::zeroed() };
                        st.struct_size = std::mem::size_of_val(&st) as u32;
                        let t = Instant::now();
                        unsafe {
                            minerva_stream_get_stats(line.stream, &mut st);
                            minerva_stream_cancel(line.stream);
                            minerva_stream_free(line.stream);
                        }
                        let d = t.elapsed();
                        in_minerva += d;
                        t_cancel_free.push(ms(d));
                        generated += st.generated_tokens as u64;
                        *slot = None;
                    }
                }
            }
        }
        if in_minerva > frame {
            busy_frames += 1;
        }
        worst_frame = worst_frame.max(ms(in_minerva));
        next = frame_start.max(next) + frame;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        }
    }
    let secs = start.elapsed().as_secs_f64();
    for line in lines.into_iter().flatten() {
        unsafe { minerva_stream_free(line.stream) };
    }
    unsafe { minerva_engine_free(e) };
    println!("story: 8 characters, {frames} frames at 60 fps ({secs:.1} s)");
    print_spread("minerva_stream_new", &mut t_new);
    print_spread("minerva_stream_read(..., 0)", &mut t_read);
    print_spread("get_stats + cancel + free (running)", &mut t_cancel_free);
    print_spread("minerva_stream_free (finished)", &mut t_free_done);
    print_spread("minerva_stream_get_stats", &mut t_stats);
    let (lm, lp, lx) = spread(&mut lateness);
    println!(
        "  frames whose minerva calls took over 16.7 ms: {busy_frames} of {frames} (longest \
         {worst_frame:.2} ms); frames started over a frame late: {late_frames}"
    );
    println!(
        "  the main thread's wake-up for a frame was late by: median {lm:.2} ms, p99 {lp:.2} ms, \
         max {lx:.2} ms"
    );
    println!(
        "  generated: {:.1} tokens/s in all",
        generated as f64 / secs
    );
}

/// Waits for the stream's end, and frees it: its stats.
fn wait_stats_free(s: *mut minerva_stream) -> minerva_stream_stats {
    let mut st: minerva_stream_stats = unsafe { std::mem::zeroed() };
    st.struct_size = std::mem::size_of_val(&st) as u32;
    unsafe {
        minerva_stream_wait(s, -1);
        minerva_stream_get_stats(s, &mut st);
        minerva_stream_free(s);
    }
    st
}

struct Tbt {
    last: Option<Instant>,
    gaps: Vec<f64>,
}

unsafe extern "C" fn on_token(ud: *mut c_void, _: *const c_char, _: usize) -> minerva_control {
    let t = unsafe { &mut *(ud as *mut Tbt) };
    let now = Instant::now();
    if let Some(l) = t.last {
        t.gaps.push(ms(now - l));
    }
    t.last = Some(now);
    MINERVA_CONTINUE
}

/// Part 2: time between tokens of 4 generating streams, alone and with prompts arriving.
fn between_tokens(a: &Args) {
    let e = engine(a, 6);
    let run = |arrivals: bool| -> (Vec<f64>, f64) {
        let mut tbt: Vec<Box<Tbt>> = (0..4)
            .map(|_| {
                Box::new(Tbt {
                    last: None,
                    gaps: vec![],
                })
            })
            .collect();
        let prompts: Vec<CString> = (0..4)
            .map(|i| CString::new(format!("Character {i} tells a long story:")).unwrap())
            .collect();
        let streams: Vec<*mut minerva_stream> = (0..4)
            .map(|i| {
                let g = params(160, i as u64);
                let mut s = std::ptr::null_mut();
                let ud = &mut *tbt[i] as *mut Tbt as *mut c_void;
                unsafe {
                    assert_eq!(
                        minerva_stream_new(e, prompts[i].as_ptr(), &g, Some(on_token), ud, &mut s),
                        MINERVA_OK
                    )
                };
                s
            })
            .collect();
        // Let them start generating, then measure while they do.
        std::thread::sleep(Duration::from_millis(600));
        for t in tbt.iter_mut() {
            t.gaps.clear();
        }
        let t0 = Instant::now();
        let mut prompt_tokens = 0u64;
        let mut prompt_secs = 0f64;
        let mut arrived = vec![];
        while t0.elapsed() < Duration::from_secs(6) {
            if arrivals {
                let p = CString::new(long_prompt(arrived.len())).unwrap();
                let g = params(1, 7);
                let mut s = std::ptr::null_mut();
                unsafe {
                    assert_eq!(
                        minerva_stream_new(e, p.as_ptr(), &g, None, std::ptr::null_mut(), &mut s),
                        MINERVA_OK
                    )
                };
                arrived.push(s);
            }
            std::thread::sleep(Duration::from_millis(500));
        }
        for s in arrived {
            let st = wait_stats_free(s);
            if st.prompt_tokens_per_second > 0.0 {
                prompt_tokens += st.prompt_tokens as u64;
                prompt_secs += st.prompt_tokens as f64 / st.prompt_tokens_per_second;
            }
        }
        for s in streams {
            unsafe {
                minerva_stream_cancel(s);
                minerva_stream_free(s);
            }
        }
        let gaps: Vec<f64> = tbt.iter().flat_map(|t| t.gaps.iter().copied()).collect();
        let rate = if prompt_secs > 0.0 {
            prompt_tokens as f64 / prompt_secs
        } else {
            0.0
        };
        (gaps, rate)
    };
    let (mut quiet, _) = run(false);
    let (mut busy, rate) = run(true);
    let (qm, qp, _) = spread(&mut quiet);
    let (bm, bp, bx) = spread(&mut busy);
    println!("time between tokens, 4 generating streams:");
    println!("  no prompt arriving:           median {qm:>7.1} ms  p99 {qp:>7.1} ms");
    println!(
        "  a 400-token prompt every 0.5 s: median {bm:>7.1} ms  p99 {bp:>7.1} ms  max {bx:>7.1} ms \
         ({:.1}x the quiet median at p99); those prompts computed at {rate:.0} tokens/s",
        bp / qm
    );
    unsafe { minerva_engine_free(e) };
}

/// Part 3: a burst of 8 equal long prompts started in one frame.
fn burst(a: &Args) {
    let e = engine(a, 8);
    let prompts: Vec<CString> = (0..8)
        .map(|_| CString::new(long_prompt(1)).unwrap())
        .collect();
    let mut g = params(4, 1);
    g.cache_prompt = false;
    let streams: Vec<*mut minerva_stream> = prompts
        .iter()
        .map(|p| {
            let mut s = std::ptr::null_mut();
            unsafe {
                assert_eq!(
                    minerva_stream_new(e, p.as_ptr(), &g, None, std::ptr::null_mut(), &mut s),
                    MINERVA_OK
                )
            };
            s
        })
        .collect();
    let mut ttft = vec![];
    let mut prompt_tokens = 0;
    for s in streams {
        let st = wait_stats_free(s);
        prompt_tokens = st.prompt_tokens;
        ttft.push(st.time_to_first_token_ms);
    }
    let mean = ttft.iter().sum::<f64>() / ttft.len() as f64;
    let max = ttft.iter().cloned().fold(0.0, f64::max);
    println!(
        "burst of 8 equal {prompt_tokens}-token prompts: time to first token mean {mean:.0} ms, \
         max {max:.0} ms (mean {:.2}x the max)",
        mean / max
    );
    unsafe { minerva_engine_free(e) };
}

fn main() {
    let a = args();
    unsafe { minerva_set_log_callback(None, std::ptr::null_mut(), MINERVA_LOG_ERROR) };
    println!("model: {}", a.model);
    story(&a);
    between_tokens(&a);
    burst(&a);
}
