//! Fuzzes the reader of saved caches (`minerva_cache_load`'s bytes, src/engine/cache.rs): whatever
//! the bytes, it answers the prefixes or an error naming what is wrong, never a panic or an
//! allocation beyond the input's size. The checksum is set right on half of the inputs, so that
//! the fields behind it are reached.
#![no_main]

use libfuzzer_sys::fuzz_target;
use minerva::engine::cache::format::{decode, fnv1a, Fit};

fuzz_target!(|data: &[u8]| {
    let fit = Fit {
        version: "0.1.0".into(),
        model: "m".into(),
        context_tokens: 64,
        kv: "f16".into(),
        adapters: 1,
    };
    let _ = decode(data, &fit);
    if data.len() >= 8 {
        let mut fixed = data[..data.len() - 8].to_vec();
        let sum = fnv1a(&fixed);
        fixed.extend_from_slice(&sum.to_le_bytes());
        let _ = decode(&fixed, &fit);
    }
});
