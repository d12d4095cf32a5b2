//! LoRA adapters: loaded against a model (checked by llama.cpp: architecture, tensor names and
//! shapes), applied to a context with a scale each.

use super::Model;
use crate::engine::error::{Error, Result, Status};
use llama_cpp_sys_2 as sys;
use std::ffi::CString;
use std::ptr::NonNull;

/// A loaded adapter. The model owns it and frees it with itself; a context that uses it holds
/// the model.
pub struct Lora {
    raw: NonNull<sys::llama_adapter_lora>,
}

// SAFETY: an adapter's tensors are read-only after loading; llama.cpp only reads them.
unsafe impl Send for Lora {}
unsafe impl Sync for Lora {}

impl Model {
    /// Loads the adapter at `path` for this model. Called before any context uses the model.
    pub fn load_lora(&self, path: &str) -> Result<Lora> {
        let c =
            CString::new(path).map_err(|_| Error::invalid("a LoRA path contains a NUL byte"))?;
        super::take_last_llama_error();
        // SAFETY: valid model and path; llama.cpp catches what it throws and returns NULL.
        let raw = unsafe { sys::llama_adapter_lora_init(self.raw.as_ptr(), c.as_ptr()) };
        NonNull::new(raw).map(|raw| Lora { raw }).ok_or_else(|| {
            let why = super::take_last_llama_error();
            Error::new(
                Status::Model,
                format!(
                    "LoRA adapter '{path}' does not fit the model: {}",
                    if why.trim().is_empty() {
                        "llama.cpp refused it"
                    } else {
                        why.trim()
                    }
                ),
            )
        })
    }
}

/// The adapters of a context, and the scales applied now.
#[derive(Default)]
pub struct Loras {
    pub adapters: Vec<Lora>,
    applied: Vec<f32>,
}

impl Loras {
    pub fn new(adapters: Vec<Lora>) -> Loras {
        let n = adapters.len();
        Loras {
            adapters,
            applied: vec![0.0; n],
        }
    }
}

impl super::Context {
    /// The adapters this context applies (once, before its first decode).
    pub fn set_loras(&mut self, loras: Loras) {
        self.loras = loras;
    }

    /// Applies `scales` (one per adapter; 0 leaves one out) to the next decodes. A change makes
    /// llama.cpp reserve its compute graphs again at the next decode.
    pub fn apply_loras(&mut self, scales: &[f32]) {
        if self.loras.adapters.is_empty() || self.loras.applied == scales {
            return;
        }
        let mut ptrs: Vec<*mut sys::llama_adapter_lora> =
            self.loras.adapters.iter().map(|l| l.raw.as_ptr()).collect();
        let mut s = scales.to_vec();
        s.resize(ptrs.len(), 0.0);
        // SAFETY: valid context; `ptrs` and `s` hold one entry per adapter, each adapter of the
        // context's model.
        unsafe {
            sys::llama_set_adapters_lora(
                self.raw_ptr(),
                ptrs.as_mut_ptr(),
                ptrs.len(),
                s.as_mut_ptr(),
            )
        };
        self.loras.applied = s;
    }
}
