//! Fuzzes minerva's GGUF reader (src/engine/gguf/) on its own: whatever the bytes, it answers
//! Ok or an error message, never a panic, a hang or an allocation beyond the input's size.
#![no_main]

#[path = "../../src/engine/gguf/mod.rs"]
#[allow(dead_code)]
mod gguf;

use libfuzzer_sys::fuzz_target;

/// ggml's types as far as the reader needs them: block size and bytes per block.
fn types(t: u32) -> Option<(u64, u64)> {
    match t {
        0 => Some((1, 4)),      // F32
        1 => Some((1, 2)),      // F16
        2 => Some((32, 18)),    // Q4_0
        8 => Some((32, 34)),    // Q8_0
        12 => Some((256, 144)), // Q4_K
        14 => Some((256, 210)), // Q6_K
        _ => None,
    }
}

fuzz_target!(|data: &[u8]| {
    let _ = gguf::read(data, data.len() as u64, &types);
});
