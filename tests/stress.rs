//! Concurrency and lifetime stress through the C API: threads that create, read, cancel and free
//! streams at random on one engine; engines freed with streams running; resident memory over
//! many engine lifetimes. Bounded in time and count.

mod common;

use minerva::ffi::engine::*;
use minerva::ffi::stream::*;
use minerva::ffi::*;
use std::ffi::{c_char, c_void, CString};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

static TOKENS: AtomicU64 = AtomicU64::new(0);
static FINISHES: AtomicU64 = AtomicU64::new(0);

unsafe extern "C" fn count_token(
    _: *mut c_void,
    text: *const c_char,
    len: usize,
) -> minerva_control {
    let b = unsafe { std::slice::from_raw_parts(text as *const u8, len) };
    assert!(len > 0 && std::str::from_utf8(b).is_ok());
    TOKENS.fetch_add(1, Ordering::Relaxed);
    MINERVA_CONTINUE
}

unsafe extern "C" fn count_finish(_: *mut c_void, _: minerva_status, _: minerva_finish_reason) {
    FINISHES.fetch_add(1, Ordering::Relaxed);
}

#[test]
fn eight_threads_create_read_cancel_and_free_at_random() {
    let _one = common::one_at_a_time();
    let engine = common::CEngine::new(4, 128, 64);
    let ops = AtomicU64::new(0);
    let created = AtomicU64::new(0);
    let deadline = Instant::now() + Duration::from_secs(8);
    std::thread::scope(|s| {
        for t in 0..8u64 {
            let (engine, ops, created) = (&engine, &ops, &created);
            s.spawn(move || {
                let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ (t + 1));
                let mut live: Vec<*mut minerva_stream> = Vec::new();
                let prompts = [c"Hello", c"The river", c"Once upon a time", c"One, two,"];
                while Instant::now() < deadline {
                    ops.fetch_add(1, Ordering::Relaxed);
                    match rng.below(10) {
                        0..=2 if live.len() < 4 => unsafe {
                            let mut g: minerva_generate_params = std::mem::zeroed();
                            minerva_generate_params_init(&mut g, std::mem::size_of_val(&g) as u32);
                            g.max_tokens = rng.below(24) as u32;
                            g.temperature = (rng.below(3) as f32) * 0.5;
                            g.ignore_eos = rng.below(2) == 0;
                            g.cache_prompt = rng.below(2) == 0;
                            g.on_finish = Some(count_finish);
                            let cb = if rng.below(2) == 0 {
                                Some(count_token as _)
                            } else {
                                None
                            };
                            let mut st = std::ptr::null_mut();
                            let p = prompts[rng.below(4) as usize];
                            let rc = minerva_stream_new(
                                engine.0,
                                p.as_ptr(),
                                &g,
                                cb,
                                std::ptr::null_mut(),
                                &mut st,
                            );
                            assert_eq!(rc, MINERVA_OK);
                            created.fetch_add(1, Ordering::Relaxed);
                            live.push(st);
                        },
                        3..=4 if !live.is_empty() => unsafe {
                            let s = live[rng.below(live.len() as u64) as usize];
                            let mut buf = [0u8; 32];
                            let (mut n, mut fin) = (0usize, false);
                            let rc = minerva_stream_read(
                                s,
                                buf.as_mut_ptr() as _,
                                buf.len(),
                                &mut n,
                                &mut fin,
                                rng.below(5) as i32,
                            );
                            assert_eq!(rc, MINERVA_OK);
                            assert!(std::str::from_utf8(&buf[..n]).is_ok());
                        },
                        5 if !live.is_empty() => unsafe {
                            minerva_stream_cancel(live[rng.below(live.len() as u64) as usize]);
                        },
                        6 if !live.is_empty() => unsafe {
                            let s = live[rng.below(live.len() as u64) as usize];
                            let rc = minerva_stream_wait(s, rng.below(10) as i32);
                            assert!(
                                matches!(
                                    rc,
                                    MINERVA_OK
                                        | MINERVA_ERR_TIMEOUT
                                        | MINERVA_ERR_CANCELLED
                                        | MINERVA_ERR_CONTEXT_FULL
                                ),
                                "wait: {rc}"
                            );
                            let mut st = minerva_stream_stats::default();
                            assert_eq!(minerva_stream_get_stats(s, &mut st), MINERVA_OK);
                        },
                        7..=8 if !live.is_empty() => unsafe {
                            let i = rng.below(live.len() as u64) as usize;
                            minerva_stream_free(live.swap_remove(i));
                        },
                        _ => std::thread::yield_now(),
                    }
                }
                for s in live {
                    unsafe { minerva_stream_free(s) };
                }
            });
        }
    });
    let created = created.load(Ordering::Relaxed);
    // Every stream ended with exactly one finish callback (free waits for it).
    assert_eq!(FINISHES.load(Ordering::Relaxed), created);
    println!(
        "stress: 8 threads, {} operations, {created} streams, {} token callbacks",
        ops.load(Ordering::Relaxed),
        TOKENS.load(Ordering::Relaxed)
    );
    engine.free();
    FINISHES.store(0, Ordering::Relaxed);
}

fn rss_mib() -> f64 {
    let s = std::fs::read_to_string("/proc/self/status").unwrap();
    let kib: f64 = s
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap();
    kib / 1024.0
}

const LIFETIMES: usize = 40;

#[test]
fn engines_freed_with_streams_running_and_memory_stays_flat() {
    let _one = common::one_at_a_time();
    let mut figures = Vec::new();
    for round in 0..LIFETIMES {
        let engine = common::CEngine::new(3, 128, 64);
        let e = engine.0;
        let mut streams = Vec::new();
        for i in 0..4 {
            let mut s = std::ptr::null_mut();
            let mut g: minerva_generate_params = unsafe { std::mem::zeroed() };
            unsafe { minerva_generate_params_init(&mut g, std::mem::size_of_val(&g) as u32) };
            g.max_tokens = 0;
            g.ignore_eos = true;
            let cb = if i % 2 == 0 {
                Some(count_token as _)
            } else {
                None
            };
            let p = CString::new(format!("Round {round}, stream {i}:")).unwrap();
            let rc =
                unsafe { minerva_stream_new(e, p.as_ptr(), &g, cb, std::ptr::null_mut(), &mut s) };
            assert_eq!(rc, MINERVA_OK);
            streams.push(s);
        }
        std::thread::sleep(Duration::from_millis(20 + 10 * (round as u64 % 5)));
        engine.free();
        for s in streams {
            // Handles outlive their engine: they report the cancellation, then are freed.
            assert_eq!(unsafe { minerva_stream_wait(s, 0) }, MINERVA_ERR_CANCELLED);
            unsafe { minerva_stream_free(s) };
        }
        figures.push(rss_mib());
    }
    println!(
        "resident memory after each of {LIFETIMES} engine lifetimes (MiB): {}",
        figures
            .iter()
            .map(|f| format!("{f:.0}"))
            .collect::<Vec<_>>()
            .join(" ")
    );
    // The first lifetimes grow the allocator's per-thread arenas (each engine has new threads) and
    // llama.cpp's one-time state; after that, no growth. The allocator returns memory to the
    // system lazily, so samples move up and down by a few MiB; a leak raises the floor steadily:
    // compare the lowest of lifetimes 10-19 with the lowest of the last ten. (Leaks of single
    // allocations are LeakSanitizer's and Valgrind's job, in the C tests.)
    let floor = |v: &[f64]| v.iter().copied().fold(f64::MAX, f64::min);
    let growth = floor(&figures[LIFETIMES - 10..]) - floor(&figures[10..20]);
    assert!(
        growth < 24.0,
        "resident memory grew {growth:.1} MiB from lifetime 10 to {LIFETIMES}: {figures:.0?}"
    );
}
