//! A llama.cpp context: the KV cache, decoding, logits, the cells of each sequence.

use super::shim::{self, check};
use super::{Batch, Model};
use crate::engine::error::{Error, Result, Status};
use llama_cpp_sys_2 as sys;
use std::ptr::NonNull;

/// The largest micro-batch llama.cpp computes at once (its own default).
const MAX_UBATCH: u32 = 512;

/// Settings of a llama.cpp context.
pub struct ContextParams {
    pub n_ctx: u32,
    pub n_batch: u32,
    pub n_seq_max: u32,
    /// More sequences that only hold kept prompt prefixes (the engine's pinned prefixes): they
    /// never have outputs and get no sampler chain.
    pub kept_seqs: u32,
    pub threads: u32,
    /// An embedding context: every token's vector is an output (pooling NONE), and a batch is
    /// computed in one micro-batch.
    pub embeddings: bool,
    /// Sampling inside the graph, on the device of the output layer ([`Context::attach`]);
    /// every sequence starts with a greedy chain. Not for an embedding context.
    pub backend_sampling: bool,
}

/// A sampler chain attached to a sequence (owned here; llama.cpp holds its pointer).
struct Attached {
    chain: NonNull<sys::llama_sampler>,
    greedy: bool,
}

/// A new greedy chain (None when llama.cpp could not make one).
fn greedy_chain() -> Option<NonNull<sys::llama_sampler>> {
    // SAFETY: llama.cpp's constructors; the chain owns the greedy sampler added to it.
    unsafe {
        let mut p = sys::llama_sampler_chain_default_params();
        p.no_perf = true;
        let chain = NonNull::new(sys::llama_sampler_chain_init(p))?;
        sys::llama_sampler_chain_add(chain.as_ptr(), sys::llama_sampler_init_greedy());
        Some(chain)
    }
}

/// A llama.cpp context: the KV cache and the compute buffers. Used by the engine thread only.
pub struct Context {
    raw: NonNull<sys::llama_context>,
    n_vocab: usize,
    threads: u32,
    /// With backend sampling, the chain attached to each sequence (None: sampled on the host
    /// from llama.cpp's logits); empty without it. Freed after the context.
    attached: Vec<Option<Attached>>,
    /// A chain other than greedy picked nothing once: the device cannot run one of its samplers,
    /// and such chains stay on the host from then on.
    chains_refused: bool,
    /// The LoRA adapters it applies (owned by the model).
    pub(super) loras: super::Loras,
    // Keeps the model alive as long as the context (dropped after `raw` is freed).
    _model: std::sync::Arc<Model>,
}

// SAFETY: a context is used by one thread at a time (the engine thread owns it).
unsafe impl Send for Context {}

impl Context {
    pub fn new(model: std::sync::Arc<Model>, p: &ContextParams) -> Result<Context> {
        // SAFETY: plain value returned by llama.cpp.
        let mut cp = unsafe { sys::llama_context_default_params() };
        cp.n_ctx = p.n_ctx;
        cp.n_batch = p.n_batch;
        // llama.cpp splits a batch into micro-batches of n_ubatch tokens and sizes its compute
        // buffers for one of them (attention scores grow with n_ubatch x the cache): a large
        // batch_tokens must not become a compute buffer of gigabytes.
        cp.n_ubatch = p.n_batch.min(MAX_UBATCH);
        cp.n_seq_max = p.n_seq_max + p.kept_seqs;
        // A batch never asks for more than one output row per stream. llama.cpp sizes its compute
        // buffer for the worst case, n_batch rows of logits (512 x 262,144 floats: over 500 MiB for
        // Gemma 3) unless told otherwise.
        // llama.cpp sizes its output buffers for one row per sequence at least, kept ones too.
        cp.n_outputs_max = p.n_seq_max + p.kept_seqs;
        if p.embeddings {
            cp.embeddings = true;
            cp.pooling_type = sys::LLAMA_POOLING_TYPE_NONE;
            cp.n_ubatch = p.n_batch;
            cp.n_outputs_max = p.n_batch;
        }
        cp.n_threads = p.threads as i32;
        cp.n_threads_batch = p.threads as i32;
        cp.no_perf = true;
        // One pool of cells for all streams: a stream's cells are free for any other as soon as
        // it ends, and streams may share cells holding the same prompt prefix.
        cp.kv_unified = true;
        // Backend sampling: a greedy chain on every sequence from the start, so that greedy
        // streams never change the graph (each change of a chain makes llama.cpp reserve its
        // compute graphs again). One output per sequence in a batch, never more.
        let mut attached: Vec<Option<Attached>> = Vec::new();
        let mut configs = Vec::new();
        if p.backend_sampling && !p.embeddings {
            for seq in 0..p.n_seq_max {
                let chain = greedy_chain().ok_or_else(|| {
                    Error::new(Status::OutOfMemory, "could not create a sampler chain")
                })?;
                configs.push(sys::llama_sampler_seq_config {
                    seq_id: seq as i32,
                    sampler: chain.as_ptr(),
                });
                attached.push(Some(Attached {
                    chain,
                    greedy: true,
                }));
            }
            cp.samplers = configs.as_mut_ptr();
            cp.n_samplers = configs.len();
            cp.n_outputs_max_per_seq = 1;
        }
        let free_chains = |attached: &mut Vec<Option<Attached>>| {
            for a in attached.drain(..).flatten() {
                // SAFETY: made above, not attached to any live context.
                unsafe { sys::llama_sampler_free(a.chain.as_ptr()) }
            }
        };
        super::take_last_llama_error();
        let mut raw = std::ptr::null_mut();
        // SAFETY: the model is valid and outlives the context (held in `_model`).
        let made = check(
            unsafe { shim::mshim_init_from_model(model.raw.as_ptr(), cp, &mut raw) },
            "creating the context",
        );
        let Some(raw) = NonNull::new(raw) else {
            free_chains(&mut attached);
            let why = match made {
                Err(e) => e.message,
                Ok(()) => super::take_last_llama_error(),
            };
            return Err(Error::new(
                Status::OutOfMemory,
                format!(
                    "could not create a context of {} tokens for {} streams{}{}",
                    p.n_ctx,
                    p.n_seq_max,
                    if why.is_empty() { "" } else { ": " },
                    why.trim()
                ),
            ));
        };
        Ok(Context {
            raw,
            n_vocab: model.n_vocab(),
            threads: p.threads,
            attached,
            chains_refused: false,
            loras: Default::default(),
            _model: model,
        })
    }

    pub(super) fn raw_ptr(&self) -> *mut sys::llama_context {
        self.raw.as_ptr()
    }

    /// The threads that decode.
    pub fn threads(&self) -> u32 {
        self.threads
    }

    /// Decodes a batch. Returns llama_decode's code (0 is success), or the exception it threw.
    pub fn decode(&mut self, batch: &Batch) -> Result<i32> {
        let mut rc = 0;
        // SAFETY: the batch's arrays hold n_tokens valid entries (Batch::add keeps that true).
        check(
            unsafe { shim::mshim_decode(self.raw.as_ptr(), batch.raw, &mut rc) },
            "llama_decode",
        )?;
        Ok(rc)
    }

    /// Whether sequences sample inside the graph (see [`Context::attach`]).
    pub fn samples_on_backend(&self) -> bool {
        !self.attached.is_empty()
    }

    /// Attaches `chain` (None: a greedy chain) to sequence `seq` for backend sampling, in
    /// place of its current one; the context owns it from here. False when llama.cpp refused it
    /// (or backend sampling is off): the sequence is then sampled on the host. A change costs a
    /// new reservation of llama.cpp's compute graphs at the next decode; a greedy chain that is
    /// already attached stays.
    pub fn attach(&mut self, seq: i32, chain: Option<NonNull<sys::llama_sampler>>) -> bool {
        let free = |c: NonNull<sys::llama_sampler>| {
            // SAFETY: a chain owned here and no longer attached.
            unsafe { sys::llama_sampler_free(c.as_ptr()) }
        };
        if self.chains_refused {
            if let Some(c) = chain {
                free(c);
                self.attach(seq, None);
                return false;
            }
        }
        let Some(entry) = self.attached.get_mut(seq as usize) else {
            chain.map(free);
            return false;
        };
        if chain.is_none() && entry.as_ref().is_some_and(|a| a.greedy) {
            return true;
        }
        let greedy = chain.is_none();
        let Some(new) = chain.or_else(greedy_chain) else {
            return false;
        };
        let mut ok = false;
        // SAFETY: valid context and chain; the shim catches what llama.cpp throws.
        let rc = unsafe { shim::mshim_set_sampler(self.raw.as_ptr(), seq, new.as_ptr(), &mut ok) };
        if check(rc, "attaching a sampler").is_ok() && ok {
            if let Some(old) = entry.replace(Attached { chain: new, greedy }) {
                free(old.chain);
            }
            return true;
        }
        // Refused: llama.cpp dropped what the sequence had; the host samples it from now on.
        free(new);
        if let Some(old) = entry.take() {
            free(old.chain);
        }
        false
    }

    /// The chain attached to `seq` picked nothing (see `chains_refused`): the sequence gets a
    /// greedy chain back, whose logits the host samples from.
    pub fn chain_failed(&mut self, seq: i32) {
        if self
            .attached
            .get(seq as usize)
            .is_some_and(|a| a.as_ref().is_some_and(|a| !a.greedy))
        {
            self.chains_refused = true;
            self.attach(seq, None);
        }
    }

    /// The token the sequence's backend chain picked for output row `i` (None: it picked none).
    pub fn sampled_token(&mut self, i: i32) -> Option<super::Token> {
        if self.attached.is_empty() {
            return None;
        }
        // SAFETY: valid context; llama.cpp checks the row and catches its own errors.
        let t = unsafe { sys::llama_get_sampled_token_ith(self.raw.as_ptr(), i) };
        (t >= 0).then_some(t)
    }

    /// The whole-vocabulary logits of output row `i`, of sequence `seq` (null if llama.cpp has
    /// none). With a chain attached, llama.cpp hands them over as the chain's logits: a greedy
    /// chain's are the whole row (a chain that cut candidates on the device has none).
    fn row_logits(&mut self, i: i32, seq: i32) -> *mut f32 {
        if self.attached.get(seq as usize).is_some_and(Option::is_some) {
            // SAFETY: valid context; llama.cpp checks the row and catches its own errors.
            unsafe {
                let n = sys::llama_get_sampled_logits_count_ith(self.raw.as_ptr(), i);
                if n as usize != self.n_vocab {
                    return std::ptr::null_mut();
                }
                return sys::llama_get_sampled_logits_ith(self.raw.as_ptr(), i);
            }
        }
        let mut p = std::ptr::null_mut();
        // SAFETY: valid context; llama.cpp checks the row.
        let rc = unsafe { shim::mshim_get_logits_ith(self.raw.as_ptr(), i, &mut p) };
        if check(rc, "logits").is_err() {
            return std::ptr::null_mut();
        }
        p
    }

    /// The logits of output row `i` (sequence `seq`) of the last decode (empty if llama.cpp has
    /// none).
    pub fn logits(&mut self, i: i32, seq: i32) -> &[f32] {
        let p = self.row_logits(i, seq);
        if p.is_null() {
            return &[];
        }
        // SAFETY: llama.cpp returned n_vocab floats for an output row of the last decode; they
        // stay valid until the next decode, which needs &mut self.
        unsafe { std::slice::from_raw_parts(p, self.n_vocab) }
    }

    /// The logits of several output rows (row, sequence) of the last decode at once (each empty
    /// if llama.cpp has none), to be read side by side.
    pub fn logits_rows(&mut self, rows: &[(i32, i32)]) -> Vec<&[f32]> {
        let ptrs: Vec<*mut f32> = rows
            .iter()
            .map(|&(i, seq)| self.row_logits(i, seq))
            .collect();
        ptrs.into_iter()
            .map(|p| {
                if p.is_null() {
                    &[][..]
                } else {
                    // SAFETY: as in `logits`: n_vocab floats each, valid until the next decode,
                    // which needs &mut self; nothing writes them before then.
                    unsafe { std::slice::from_raw_parts(p, self.n_vocab) }
                }
            })
            .collect()
    }

    /// The vector of output row `row` of the last decode (an embedding context), `n` floats.
    pub fn embeddings(&mut self, row: i32, n: usize) -> Result<&[f32]> {
        let mut p = std::ptr::null_mut();
        // SAFETY: valid context; the shim catches what llama.cpp throws for a bad row.
        let rc = unsafe { shim::mshim_get_embeddings_ith(self.raw.as_ptr(), row, &mut p) };
        check(rc, "embeddings")?;
        if p.is_null() {
            return Err(Error::new(
                Status::Backend,
                format!("llama.cpp has no embedding for row {row}"),
            ));
        }
        // SAFETY: llama.cpp returns n_embd floats for an output row, valid until the next decode.
        Ok(unsafe { std::slice::from_raw_parts(p, n) })
    }

    /// Removes the cells of `seq` at positions `p0..` (all of them for p0 = 0). False when the
    /// memory cannot remove part of a sequence (or failed).
    pub fn seq_rm(&mut self, seq: i32, p0: i32) -> bool {
        let mut done = false;
        // SAFETY: valid context; llama.cpp checks the range.
        let rc = unsafe { shim::mshim_memory_seq_rm(self.raw.as_ptr(), seq, p0, &mut done) };
        check(rc, "seq_rm").is_ok() && done
    }

    /// The lowest and highest positions `seq` holds (-1 when it holds none, or on failure).
    pub fn seq_pos_range(&mut self, seq: i32) -> (i32, i32) {
        let (mut min, mut max) = (-1, -1);
        // SAFETY: valid context; any sequence id below n_seq_max.
        let rc =
            unsafe { shim::mshim_memory_seq_pos_range(self.raw.as_ptr(), seq, &mut min, &mut max) };
        if check(rc, "seq_pos").is_err() {
            return (-1, -1);
        }
        (min, max)
    }

    /// The state of sequence `seq` (its cells' positions and KV), as llama.cpp writes it.
    pub fn seq_state(&mut self, seq: i32) -> Result<Vec<u8>> {
        // SAFETY: valid context; llama.cpp catches its own errors (0: failed).
        let size = unsafe { sys::llama_state_seq_get_size(self.raw.as_ptr(), seq) };
        if size == 0 {
            return Err(Error::new(
                Status::Backend,
                format!("llama.cpp could not size the state of sequence {seq}"),
            ));
        }
        let mut buf = Vec::new();
        buf.try_reserve_exact(size).map_err(|_| {
            Error::new(
                Status::OutOfMemory,
                format!("no memory for a cache state of {size} bytes"),
            )
        })?;
        buf.resize(size, 0);
        // SAFETY: `buf` holds `size` writable bytes.
        let n = unsafe {
            sys::llama_state_seq_get_data(self.raw.as_ptr(), buf.as_mut_ptr(), size, seq)
        };
        if n == 0 || n > size {
            return Err(Error::new(
                Status::Backend,
                format!("llama.cpp could not write the state of sequence {seq}"),
            ));
        }
        buf.truncate(n);
        Ok(buf)
    }

    /// Puts a state [`Context::seq_state`] wrote into sequence `seq` (which the caller cleared).
    /// False when llama.cpp refused it (no room in the cache, or not a state of this model and
    /// context); the sequence then holds nothing.
    pub fn set_seq_state(&mut self, seq: i32, state: &[u8]) -> bool {
        // SAFETY: `state` is readable for its length; llama.cpp checks what it reads and catches
        // its own errors (0: failed).
        let n = unsafe {
            sys::llama_state_seq_set_data(self.raw.as_ptr(), state.as_ptr(), state.len(), seq)
        };
        if n == 0 {
            self.seq_rm(seq, 0);
        }
        n != 0
    }

    /// Makes the cells of `src` at positions `0..n` belong to `dst` too (no copy: the cache is
    /// unified, so cells are shared). The caller checks what `dst` holds afterwards.
    pub fn seq_share_prefix(&mut self, src: i32, dst: i32, n: i32) {
        // SAFETY: valid context; both ids are below n_seq_max.
        let rc = unsafe { shim::mshim_memory_seq_cp(self.raw.as_ptr(), src, dst, 0, n) };
        let _ = check(rc, "seq_cp");
    }
}

impl Drop for Context {
    fn drop(&mut self) {
        // SAFETY: freed once; the model (in `_model`) is still alive here.
        unsafe { sys::llama_free(self.raw.as_ptr()) }
        for a in self.attached.drain(..).flatten() {
            // SAFETY: the context that used the chain is gone; each chain is freed once.
            unsafe { sys::llama_sampler_free(a.chain.as_ptr()) }
        }
    }
}
