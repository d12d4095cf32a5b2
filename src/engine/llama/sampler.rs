//! Sampling: a stream's settings and its llama.cpp sampler chain (the vector kernels it uses,
//! and the argmax of plain greedy, are in `select.rs`).

use super::select::{top_k, PREFILTER_MAX};
use super::shim::{self, check};
use super::{Model, Token};
use crate::engine::error::{Error, Result, Status};
use llama_cpp_sys_2 as sys;
use std::ffi::CString;
use std::ptr::NonNull;

/// Sampling settings of one stream (see the C header for each field's meaning).
#[derive(Clone, Debug, PartialEq)]
pub struct SamplingParams {
    pub temperature: f32,
    pub top_k: i32,
    pub top_p: f32,
    pub min_p: f32,
    pub repeat_penalty: f32,
    pub repeat_last_n: u32,
    /// `SEED_RANDOM` (u64::MAX): a new seed for each stream.
    pub seed: u64,
    pub presence_penalty: f32,
    pub frequency_penalty: f32,
    /// Added to the logits of these tokens.
    pub logit_bias: Vec<(Token, f32)>,
    /// A GBNF grammar (rule `root`) the output must match.
    pub grammar: Option<String>,
}

impl Default for SamplingParams {
    fn default() -> Self {
        SamplingParams {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            seed: u64::MAX,
            presence_penalty: 0.0,
            frequency_penalty: 0.0,
            logit_bias: Vec::new(),
            grammar: None,
        }
    }
}

impl SamplingParams {
    /// The most likely token every time.
    pub fn greedy() -> Self {
        SamplingParams {
            temperature: 0.0,
            ..Default::default()
        }
    }

    /// llama.cpp's 32-bit seed, which reserves 0xFFFFFFFF for "random". A fixed seed is hashed
    /// with all of its 64 bits (SplitMix64's finalizer, a bijection) and folded to 32, so that
    /// seeds differing anywhere, high bits included, give unrelated streams; two distinct seeds
    /// meet on the same 32-bit seed with a chance of about one in four billion. u64::MAX draws a
    /// new seed for each stream.
    fn llama_seed(&self) -> u32 {
        if self.seed == u64::MAX {
            use std::hash::{BuildHasher, Hasher};
            static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed));
            return (h.finish() as u32).min(u32::MAX - 1);
        }
        let h = mix64(self.seed);
        let folded = (h ^ (h >> 32)) as u32;
        if folded == u32::MAX {
            0x5EED
        } else {
            folded
        }
    }

    /// The k of a chain that begins with its top-k (sampling, no logit bias or penalties before
    /// it, k below the vocabulary and at most [`PREFILTER_MAX`]); 0 otherwise.
    fn prefilter(&self, n_vocab: usize) -> usize {
        let k = self.top_k.max(0) as usize;
        if self.temperature > 0.0 && self.is_plain() && k > 0 && k <= PREFILTER_MAX && k < n_vocab {
            k
        } else {
            0
        }
    }

    /// No logit bias and no penalties: nothing changes the logits before the chain's samplers.
    fn is_plain(&self) -> bool {
        self.logit_bias.is_empty()
            && self.repeat_penalty == 1.0
            && self.presence_penalty == 0.0
            && self.frequency_penalty == 0.0
    }

    /// Greedy without penalties: an argmax over the logits does the same as the sampler chain,
    /// without sorting 262,144 candidates.
    pub fn is_plain_greedy(&self) -> bool {
        self.temperature <= 0.0 && self.is_plain() && self.grammar.is_none()
    }
}

/// SplitMix64's output function: every input bit changes about half of the output bits.
fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// What [`Sampler::sample`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Sampled {
    Token(Token),
    /// The grammar must filter every candidate: [`Sampler::sample_full`].
    Deferred,
}

/// A llama.cpp sampler chain.
pub struct Sampler {
    raw: NonNull<sys::llama_sampler>,
    /// The grammar, apart from the chain: it checks the chain's pick (see `shim.cpp`).
    grammar: Option<NonNull<sys::llama_sampler>>,
    /// The sampling temperature (the grammar's screening of candidates depends on it).
    temperature: f32,
    /// When the chain begins with a top-k (no bias or penalties before it), its k: the chain
    /// then picks among the k best tokens, found in one vector pass ([`top_k`]), instead of an
    /// array of the whole vocabulary that it sorts. 0: the whole vocabulary.
    prefilter: usize,
    /// The k best tokens of the current pick (kept to reuse the allocation).
    top: Vec<Token>,
    /// Every sampler of the chain can run inside llama.cpp's graph (no grammar, bias or
    /// penalties): see [`Sampler::backend_chain`].
    backend_ok: bool,
}

// SAFETY: owned by one stream and used by one thread at a time (created by the caller that starts
// the stream, then used by the engine thread only).
unsafe impl Send for Sampler {}

impl Sampler {
    /// The chain for `p`. `window` caps how many recent tokens the repeat penalty keeps (the
    /// stream's context: it never holds more).
    pub fn new(p: &SamplingParams, model: &Model, window: u32) -> Result<Sampler> {
        let n_vocab = model.n_vocab();
        let bias: Vec<sys::llama_logit_bias> = p
            .logit_bias
            .iter()
            .map(|&(token, bias)| sys::llama_logit_bias { token, bias })
            .collect();
        let grammar_text = p
            .grammar
            .as_deref()
            .map(|g| CString::new(g).map_err(|_| Error::invalid("the grammar contains a NUL byte")))
            .transpose()?;
        let spec = shim::Sampling {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n.min(window).min(i32::MAX as u32) as i32,
            seed: p.llama_seed(),
            n_vocab: n_vocab.min(i32::MAX as usize) as i32,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            logit_bias: bias.as_ptr(),
            n_logit_bias: bias.len().min(i32::MAX as usize) as i32,
            vocab: model.vocab(),
            grammar: grammar_text
                .as_ref()
                .map_or(std::ptr::null(), |g| g.as_ptr()),
        };
        let mut raw = std::ptr::null_mut();
        super::take_last_llama_error();
        // SAFETY: spec and what it points to (bias, grammar) live across the call; the shim
        // builds the chain or frees what it built.
        let mut grammar = std::ptr::null_mut();
        let rc = unsafe { shim::mshim_sampler_new(&spec, &mut raw, &mut grammar) };
        if rc == shim::BAD_GRAMMAR {
            let _ = check(rc, "");
            let why = super::take_last_llama_error();
            return Err(Error::invalid(format!(
                "the grammar does not parse{}{}",
                if why.is_empty() { "" } else { ": " },
                why.trim()
            )));
        }
        check(rc, "creating the sampler")?;
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::new(Status::OutOfMemory, "could not create the sampler"))?;
        Ok(Sampler {
            raw,
            grammar: NonNull::new(grammar),
            temperature: p.temperature,
            prefilter: p.prefilter(n_vocab),
            top: Vec::new(),
            backend_ok: p.temperature > 0.0 && p.is_plain() && p.grammar.is_none(),
        })
    }

    /// Samples from `logits` (a whole vocabulary's) and accepts the token, unless the grammar
    /// rejects the chain's pick and its best candidates: then nothing is accepted and the answer
    /// is [`Sampled::Deferred`], for [`Sampler::sample_full`].
    pub fn sample(&mut self, logits: &[f32]) -> Result<Sampled> {
        let (mut t, mut deferred) = (0, false);
        if self.prefilter > 0 {
            top_k(logits, self.prefilter, &mut self.top);
        }
        // SAFETY: valid sampler chain and grammar; logits holds logits.len() floats, and `top`
        // holds top.len() of their indices.
        check(
            unsafe {
                shim::mshim_sampler_sample(
                    self.raw.as_ptr(),
                    self.grammar.map_or(std::ptr::null_mut(), NonNull::as_ptr),
                    logits.as_ptr(),
                    logits.len().min(i32::MAX as usize) as i32,
                    self.top.as_ptr(),
                    if self.prefilter > 0 {
                        self.top.len() as i32
                    } else {
                        0
                    },
                    self.temperature,
                    &mut t,
                    &mut deferred,
                )
            },
            "sampling",
        )?;
        Ok(if deferred {
            Sampled::Deferred
        } else {
            Sampled::Token(t)
        })
    }

    /// The deferred sampling: the grammar filters every candidate of `logits`, the chain picks
    /// among the allowed ones, and the token is accepted. `stop` is asked between slices of the
    /// vocabulary; None when it answered true (nothing accepted then).
    pub fn sample_full(
        &mut self,
        logits: &[f32],
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<Token>> {
        unsafe extern "C" fn ask(data: *mut std::ffi::c_void) -> std::ffi::c_int {
            // SAFETY: data is the `&dyn Fn` below, alive for the call.
            let stop = unsafe { &*(data as *const &dyn Fn() -> bool) };
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(stop)).unwrap_or(true)
                as std::ffi::c_int
        }
        let mut t: Token = -1; // LLAMA_TOKEN_NULL
                               // SAFETY: as in `sample`; `stop` outlives the call.
        check(
            unsafe {
                shim::mshim_sampler_sample_full(
                    self.raw.as_ptr(),
                    self.grammar.map_or(std::ptr::null_mut(), NonNull::as_ptr),
                    logits.as_ptr(),
                    logits.len().min(i32::MAX as usize) as i32,
                    ask,
                    &stop as *const &dyn Fn() -> bool as *mut std::ffi::c_void,
                    &mut t,
                )
            },
            "sampling",
        )?;
        Ok((t != -1).then_some(t))
    }

    /// A copy of the chain (its seed and random state included) to run inside llama.cpp's
    /// graph, when all of it can (sampling with a top-k first and no grammar, logit bias or
    /// penalties); None otherwise.
    pub fn backend_chain(&self) -> Option<NonNull<sys::llama_sampler>> {
        if !self.backend_ok {
            return None;
        }
        // SAFETY: a valid chain; the copy is the caller's.
        NonNull::new(unsafe { sys::llama_sampler_clone(self.raw.as_ptr()) })
    }

    /// Feeds a token the stream already has (its prompt) to the penalties.
    pub fn accept(&mut self, token: Token) -> Result<()> {
        // SAFETY: valid sampler.
        check(
            unsafe { shim::mshim_sampler_accept(self.raw.as_ptr(), token) },
            "sampler accept",
        )
    }
}

impl Drop for Sampler {
    fn drop(&mut self) {
        // SAFETY: the chain frees the samplers it owns; each is freed once.
        unsafe {
            sys::llama_sampler_free(self.raw.as_ptr());
            if let Some(g) = self.grammar {
                sys::llama_sampler_free(g.as_ptr());
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A chain like a stream's with default settings (top-k first), seeded.
    fn chain(seed: u32) -> *mut sys::llama_sampler {
        // SAFETY: llama.cpp's constructors; the chain owns what is added to it.
        unsafe {
            let c = sys::llama_sampler_chain_init(sys::llama_sampler_chain_default_params());
            sys::llama_sampler_chain_add(c, sys::llama_sampler_init_top_k(40));
            sys::llama_sampler_chain_add(c, sys::llama_sampler_init_top_p(0.95, 1));
            sys::llama_sampler_chain_add(c, sys::llama_sampler_init_min_p(0.05, 1));
            sys::llama_sampler_chain_add(c, sys::llama_sampler_init_temp(0.8));
            sys::llama_sampler_chain_add(c, sys::llama_sampler_init_dist(seed));
            c
        }
    }

    #[test]
    fn a_chain_picks_the_same_among_the_top_k_as_over_the_whole_vocabulary() {
        let (whole, top) = (chain(42), chain(42));
        let mut x: u64 = 99;
        let mut ids = Vec::new();
        for step in 0..300 {
            // Distinct values (no ties: the order of equal logits is llama.cpp's to choose),
            // shuffled.
            let mut logits: Vec<f32> = (0..50_000).map(|i| i as f32 * 4e-4 - 10.0).collect();
            for i in (1..logits.len()).rev() {
                x = x
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                logits.swap(i, (x >> 33) as usize % (i + 1));
            }
            top_k(&logits, 40, &mut ids);
            let (mut a, mut b, mut d) = (0, 0, false);
            // SAFETY: valid chains; logits and ids live across the calls.
            unsafe {
                let n = logits.len() as i32;
                let p = logits.as_ptr();
                let nul = std::ptr::null_mut();
                let rc = shim::mshim_sampler_sample(
                    whole,
                    nul,
                    p,
                    n,
                    ids.as_ptr(),
                    0,
                    0.8,
                    &mut a,
                    &mut d,
                );
                assert_eq!(rc, 0);
                let rc = shim::mshim_sampler_sample(
                    top,
                    nul,
                    p,
                    n,
                    ids.as_ptr(),
                    40,
                    0.8,
                    &mut b,
                    &mut d,
                );
                assert_eq!(rc, 0);
            }
            assert_eq!(a, b, "step {step}");
        }
        // SAFETY: each chain freed once.
        unsafe {
            sys::llama_sampler_free(whole);
            sys::llama_sampler_free(top);
        }
    }
}
