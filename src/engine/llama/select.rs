//! Vector kernels over a row of logits for picking tokens: the argmax of greedy sampling and
//! the k best tokens a top-k chain picks among. Each runs compiled for AVX-512 or AVX2 when the
//! CPU has it (chosen at run time), else for the build's baseline.

use super::Token;

/// `pub fn NAME(ARGS) -> RET = BODY;`: NAME calls BODY (an `#[inline(always)]` fn) compiled for
/// the best vector extension this CPU has.
macro_rules! fastest {
    ($(#[$m:meta])* pub fn $name:ident($($arg:ident: $ty:ty),*) -> $ret:ty = $body:ident;) => {
        $(#[$m])*
        pub fn $name($($arg: $ty),*) -> $ret {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) -> $ret {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU has AVX-512F, checked just above.
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU has AVX2, checked just above.
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// The largest top-k that samples among the k best tokens found by [`top_k`] (past it, llama.cpp's
/// bucket sort of the whole vocabulary is as quick).
pub const PREFILTER_MAX: usize = 256;

fastest! {
    /// The indices of the `k` largest logits into `out`, largest first (the lower index first among
    /// equal ones; NaN never). One pass: blocks of 64 that hold nothing above the k-th best so far are
    /// passed over with a vector compare (nearly all of them, after the first few thousand logits).
    #[allow(clippy::unused_unit)]
    pub fn top_k(logits: &[f32], k: usize, out: &mut Vec<Token>) -> () = top_k_blocks;
}

#[inline(always)]
fn top_k_blocks(logits: &[f32], k: usize, out: &mut Vec<Token>) {
    const L: usize = 64;
    out.clear();
    if k == 0 {
        return;
    }
    // Best first: higher value, then lower index (a total order: NaN never enters).
    let order = |a: &(f32, u32), b: &(f32, u32)| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1));
    // Candidates that beat the floor; cut back to the best k (linear time) whenever they reach
    // `cap`, which raises the floor. Logits that rise through the vocabulary cost a few cuts, not
    // an insertion each.
    let cap = (4 * k).max(1024);
    let mut cand: Vec<(f32, u32)> = Vec::with_capacity(cap + L);
    let mut floor = f32::NEG_INFINITY;
    let mut full = false;
    let take = |cand: &mut Vec<(f32, u32)>, floor: f32, full: bool, v: f32, i: usize| {
        // Once k are held, one equal to the floor comes after them (a higher index).
        if v > floor || (!full && !v.is_nan()) {
            cand.push((v, i as u32));
        }
    };
    let chunks = logits.chunks_exact(L);
    let rest = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        // A vector compare of the block against the floor, one reduction for all its lanes.
        let mut hit = !full;
        for &v in chunk {
            hit |= v > floor;
        }
        if hit {
            for (l, &v) in chunk.iter().enumerate() {
                take(&mut cand, floor, full, v, c * L + l);
            }
            if cand.len() >= cap {
                cand.select_nth_unstable_by(k - 1, order);
                cand.truncate(k);
                floor = cand.iter().map(|c| c.0).fold(f32::INFINITY, f32::min);
                full = true;
            }
        }
    }
    let base = logits.len() - rest.len();
    for (j, &v) in rest.iter().enumerate() {
        take(&mut cand, floor, full, v, base + j);
    }
    cand.sort_unstable_by(order);
    cand.truncate(k);
    out.extend(cand.iter().map(|&(_, i)| i as Token));
}

fastest! {
    /// Index of the largest logit (the first one on ties, as llama.cpp's greedy sampler does).
    pub fn argmax(logits: &[f32]) -> Token = argmax_lanes;
}

/// The first index of the largest value (NaN never wins; all NaN or -inf: 0), over 16 lanes
/// that the compiler turns into vector compares and selects: 262,144 logits in a few
/// microseconds where a scalar loop with a branch took about 0.2 ms.
#[inline(always)]
fn argmax_lanes(logits: &[f32]) -> Token {
    const L: usize = 16;
    let mut best = [f32::NEG_INFINITY; L];
    let mut at = [0u32; L];
    let chunks = logits.chunks_exact(L);
    let rest = chunks.remainder();
    for (c, chunk) in chunks.enumerate() {
        let c = c as u32;
        for l in 0..L {
            let v = chunk[l];
            let take = v > best[l];
            best[l] = if take { v } else { best[l] };
            at[l] = if take { c } else { at[l] };
        }
    }
    // Each lane holds its first best; the answer is the best of them, the lowest index on a tie.
    let mut best_v = f32::NEG_INFINITY;
    let mut best_i = 0usize;
    let mut found = false;
    for l in 0..L {
        let i = at[l] as usize * L + l;
        if best[l] > best_v || (found && best[l] == best_v && i < best_i) {
            best_v = best[l];
            best_i = i;
            found = true;
        }
    }
    let base = logits.len() - rest.len();
    for (j, &v) in rest.iter().enumerate() {
        if v > best_v {
            best_v = v;
            best_i = base + j;
        }
    }
    best_i as Token
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scalar_argmax(logits: &[f32]) -> Token {
        let (mut best, mut best_v) = (0usize, f32::NEG_INFINITY);
        for (i, &v) in logits.iter().enumerate() {
            if v > best_v {
                best_v = v;
                best = i;
            }
        }
        best as Token
    }

    /// A small linear congruential generator: the same draws every run.
    fn lcg(mut x: u64) -> impl FnMut() -> u32 {
        move || {
            x = x
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            (x >> 33) as u32
        }
    }

    #[test]
    fn top_k_is_a_sort_by_value_then_index() {
        let mut next = lcg(777);
        let mut out = Vec::new();
        for len in [0usize, 1, 5, 16, 17, 40, 100, 1000, 262_144] {
            for k in [1usize, 3, 40, 256] {
                for round in 0..4 {
                    // Coarse values (ties everywhere), rising values (every block beats the
                    // floor), NaN and infinities.
                    let mut v: Vec<f32> = (0..len)
                        .map(|i| match round {
                            1 => i as f32,
                            _ => (next() % 64) as f32 - 32.0,
                        })
                        .collect();
                    if round == 2 && len > 3 {
                        v[len / 2] = f32::NAN;
                        v[len / 3] = f32::INFINITY;
                        v[len - 1] = f32::NEG_INFINITY;
                    }
                    let mut want: Vec<usize> = (0..len).filter(|&i| !v[i].is_nan()).collect();
                    want.sort_by(|&a, &b| v[b].partial_cmp(&v[a]).unwrap().then(a.cmp(&b)));
                    want.truncate(k);
                    top_k(&v, k, &mut out);
                    let got: Vec<usize> = out.iter().map(|&t| t as usize).collect();
                    assert_eq!(got, want, "len {len}, k {k}, round {round}");
                }
            }
        }
    }

    #[test]
    fn argmax_is_the_first_best_as_a_scalar_loop_finds_it() {
        // Values on a coarse grid, so that ties are common.
        let mut next = lcg(12345);
        for len in [0usize, 1, 7, 15, 16, 17, 31, 33, 100, 1000, 262_144] {
            for round in 0..20 {
                let mut v: Vec<f32> = (0..len).map(|_| (next() % 50) as f32 - 25.0).collect();
                if round % 4 == 1 && len > 3 {
                    v[len / 2] = f32::NAN;
                    v[len - 1] = f32::INFINITY;
                }
                if round % 4 == 2 {
                    v.iter_mut().for_each(|x| *x = f32::NEG_INFINITY);
                }
                if round % 4 == 3 {
                    v.iter_mut().for_each(|x| *x = f32::NAN);
                }
                assert_eq!(argmax(&v), scalar_argmax(&v), "len {len}, round {round}");
                assert_eq!(
                    argmax_lanes(&v),
                    scalar_argmax(&v),
                    "len {len}, round {round}"
                );
            }
        }
    }
}
