//! A batch of tokens for one decode.

use super::shim::{self, check};
use super::Token;
use crate::engine::error::{Error, Result, Status};
use llama_cpp_sys_2 as sys;

/// A batch of tokens for one decode, each with its position, sequence and output flag.
pub struct Batch {
    pub(super) raw: sys::llama_batch,
    cap: usize,
}

// SAFETY: the batch owns its arrays; only the engine thread uses it.
unsafe impl Send for Batch {}

impl Batch {
    pub fn new(cap: usize) -> Result<Batch> {
        // SAFETY: a zeroed llama_batch is plain data (counts and NULL pointers).
        let mut raw: sys::llama_batch = unsafe { std::mem::zeroed() };
        // SAFETY: allocates arrays of `cap` entries, one sequence id each.
        check(
            unsafe { shim::mshim_batch_init(cap as i32, &mut raw) },
            "allocating the batch",
        )?;
        if raw.token.is_null() || raw.seq_id.is_null() {
            return Err(Error::new(
                Status::OutOfMemory,
                "could not allocate the batch",
            ));
        }
        Ok(Batch { raw, cap })
    }

    pub fn clear(&mut self) {
        self.raw.n_tokens = 0;
    }

    /// How many tokens the batch holds at most.
    pub fn capacity(&self) -> usize {
        self.cap
    }

    /// Tokens in the batch.
    pub fn len(&self) -> usize {
        self.raw.n_tokens as usize
    }

    pub fn is_empty(&self) -> bool {
        self.raw.n_tokens == 0
    }

    /// Adds a token; returns its row index in the batch.
    pub fn add(&mut self, token: Token, pos: i32, seq: i32, output: bool) -> i32 {
        let i = self.raw.n_tokens as usize;
        assert!(i < self.cap, "batch overflow");
        // SAFETY: i < cap, and every array was allocated with cap entries (seq_id with one id).
        unsafe {
            *self.raw.token.add(i) = token;
            *self.raw.pos.add(i) = pos;
            *self.raw.n_seq_id.add(i) = 1;
            *(*self.raw.seq_id.add(i)) = seq;
            *self.raw.logits.add(i) = output as i8;
        }
        self.raw.n_tokens += 1;
        i as i32
    }
}

impl Drop for Batch {
    fn drop(&mut self) {
        // SAFETY: allocated by llama_batch_init, freed once.
        unsafe { sys::llama_batch_free(self.raw) }
    }
}
