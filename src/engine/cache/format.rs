//! The bytes of a saved cache: a header that says what they fit (format version, minerva's
//! version, the model, the context settings), the cached prefixes (each its tokens and llama.cpp's
//! state of its sequence: positions and KV), and an FNV-1a checksum of all that. Every field is
//! checked on load before the engine is touched: anything that differs is refused, naming it.
//! Below both the engine's cache calls and the scheduler, which hold [`Entry`]s.

use crate::engine::error::{Error, Result};
use crate::engine::llama::Token;

/// Most prefixes an engine pins (each a sequence of llama.cpp's beside the stream slots). Each
/// costs llama.cpp an output row of the vocabulary's size in its output buffer, and compute
/// buffer, whether used or not: 24 MiB in all for the 16 with Gemma 3's 262,144 tokens
/// (docs/PERFORMANCE.md).
pub const MAX_PINNED: u32 = 16;
/// llama.cpp's most sequences in one context (LLAMA_MAX_SEQ).
pub const MAX_SEQS: u32 = 256;

/// The prefixes an engine of `max_streams` streams can pin.
pub fn pinnable(max_streams: u32) -> u32 {
    MAX_PINNED.min(MAX_SEQS.saturating_sub(max_streams))
}

/// One cached prefix: its tokens and llama.cpp's state of the sequence that holds them.
#[derive(Clone, Debug, PartialEq)]
pub struct Entry {
    pub pinned: bool,
    pub tokens: Vec<Token>,
    /// The LoRA scales its KV was computed with (one per adapter of the engine).
    pub lora_scales: Vec<f32>,
    pub state: Vec<u8>,
}

const MAGIC: &[u8; 8] = b"MNRVKVC\0";
const FORMAT: u32 = 1;
/// Most prefixes in one saved cache (more than any engine holds).
const MAX_ENTRIES: u32 = 4096;

/// What a saved cache must match to be loaded.
#[derive(Clone, Debug, PartialEq)]
pub struct Fit {
    pub version: String,
    pub model: String,
    pub context_tokens: u32,
    /// The KV cache's layout ("f16 keys and values, unified") and the LoRA adapters' files.
    pub kv: String,
    /// The engine's LoRA adapters.
    pub adapters: usize,
}

/// The checksum of a saved cache (FNV-1a, 64 bits).
pub fn fnv1a(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The bytes of a saved cache.
pub fn encode(fit: &Fit, entries: &[Entry]) -> Vec<u8> {
    let size: usize = entries
        .iter()
        .map(|e| 17 + (e.tokens.len() + e.lora_scales.len()) * 4 + e.state.len())
        .sum();
    let mut out = Vec::with_capacity(64 + fit.model.len() + size);
    out.extend_from_slice(MAGIC);
    out.extend_from_slice(&FORMAT.to_le_bytes());
    put_str(&mut out, &fit.version);
    put_str(&mut out, &fit.model);
    out.extend_from_slice(&fit.context_tokens.to_le_bytes());
    put_str(&mut out, &fit.kv);
    out.extend_from_slice(&(entries.len() as u32).to_le_bytes());
    for e in entries {
        out.push(e.pinned as u8);
        out.extend_from_slice(&(e.tokens.len() as u32).to_le_bytes());
        for t in &e.tokens {
            out.extend_from_slice(&t.to_le_bytes());
        }
        out.extend_from_slice(&(e.lora_scales.len() as u32).to_le_bytes());
        for s in &e.lora_scales {
            out.extend_from_slice(&s.to_le_bytes());
        }
        out.extend_from_slice(&(e.state.len() as u64).to_le_bytes());
        out.extend_from_slice(&e.state);
    }
    let sum = fnv1a(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A reader of the bytes that names what is missing.
struct Reader<'a> {
    bytes: &'a [u8],
    at: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &str) -> Result<&'a [u8]> {
        if self.bytes.len() - self.at < n {
            return Err(Error::invalid(format!(
                "the cache is truncated: {what} at byte {} needs {n} bytes, {} are left",
                self.at,
                self.bytes.len() - self.at
            )));
        }
        let s = &self.bytes[self.at..self.at + n];
        self.at += n;
        Ok(s)
    }
    fn u32(&mut self, what: &str) -> Result<u32> {
        Ok(u32::from_le_bytes(self.take(4, what)?.try_into().unwrap()))
    }
    fn u64(&mut self, what: &str) -> Result<u64> {
        Ok(u64::from_le_bytes(self.take(8, what)?.try_into().unwrap()))
    }
    fn string(&mut self, what: &str) -> Result<String> {
        let n = self.u32(what)? as usize;
        let s = self.take(n, what)?;
        String::from_utf8(s.to_vec())
            .map_err(|_| Error::invalid(format!("the cache's {what} is not UTF-8 (corrupt bytes)")))
    }
}

/// The prefixes of a saved cache that fits `fit`; anything else is refused, naming it.
pub fn decode(bytes: &[u8], fit: &Fit) -> Result<Vec<Entry>> {
    if bytes.len() < MAGIC.len() || &bytes[..MAGIC.len()] != MAGIC {
        return Err(Error::invalid(
            "these bytes are not a saved minerva cache (no MNRVKVC header)",
        ));
    }
    if bytes.len() < MAGIC.len() + 4 + 8 {
        return Err(Error::invalid(format!(
            "the cache is truncated: {} bytes",
            bytes.len()
        )));
    }
    let mut r = Reader {
        bytes: &bytes[..bytes.len() - 8],
        at: MAGIC.len(),
    };
    let format = r.u32("the format version")?;
    if format != FORMAT {
        return Err(Error::invalid(format!(
            "the cache is of format {format}; this minerva reads format {FORMAT}"
        )));
    }
    let sum = u64::from_le_bytes(bytes[bytes.len() - 8..].try_into().unwrap());
    if fnv1a(&bytes[..bytes.len() - 8]) != sum {
        return Err(Error::invalid(
            "the cache's checksum does not match: the bytes are corrupt or truncated",
        ));
    }
    let version = r.string("minerva's version")?;
    if version != fit.version {
        return Err(Error::invalid(format!(
            "the cache was saved by minerva {version}; this is minerva {}",
            fit.version
        )));
    }
    let model = r.string("the model")?;
    if model != fit.model {
        return Err(Error::invalid(format!(
            "the cache is of another model ({model}); this engine's is {}",
            fit.model
        )));
    }
    let context = r.u32("context_tokens")?;
    if context != fit.context_tokens {
        return Err(Error::invalid(format!(
            "the cache was saved with context_tokens {context}; this engine's is {}",
            fit.context_tokens
        )));
    }
    let kv = r.string("the KV layout")?;
    if kv != fit.kv {
        return Err(Error::invalid(format!(
            "the cache's KV layout is {kv}; this engine's is {}",
            fit.kv
        )));
    }
    let count = r.u32("the number of prefixes")?;
    if count > MAX_ENTRIES {
        return Err(Error::invalid(format!(
            "the cache says it holds {count} prefixes; at most {MAX_ENTRIES} are read"
        )));
    }
    let mut entries = Vec::new();
    for i in 0..count {
        let flags = r.take(1, "a prefix's flags")?[0];
        if flags > 1 {
            return Err(Error::invalid(format!(
                "prefix {i} has unknown flags {flags:#x}"
            )));
        }
        let n = r.u32("a prefix's length")?;
        if n == 0 || n > fit.context_tokens {
            return Err(Error::invalid(format!(
                "prefix {i} is {n} tokens; a prefix holds 1 to context_tokens ({})",
                fit.context_tokens
            )));
        }
        let raw = r.take(n as usize * 4, "a prefix's tokens")?;
        let tokens: Vec<Token> = raw
            .chunks_exact(4)
            .map(|c| Token::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let n = r.u32("a prefix's LoRA scales")?;
        if n as usize != fit.adapters {
            return Err(Error::invalid(format!(
                "prefix {i} has {n} LoRA scales; this engine has {} adapters",
                fit.adapters
            )));
        }
        let raw = r.take(n as usize * 4, "a prefix's LoRA scales")?;
        let lora_scales: Vec<f32> = raw
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        let len = r.u64("a prefix's state length")?;
        let left = (r.bytes.len() - r.at) as u64;
        if len == 0 || len > left {
            return Err(Error::invalid(format!(
                "prefix {i}'s state is {len} bytes; {left} are left"
            )));
        }
        let state = r.take(len as usize, "a prefix's state")?.to_vec();
        check_state(&state, tokens.len())
            .map_err(|why| Error::invalid(format!("prefix {i}'s KV state {why}")))?;
        entries.push(Entry {
            pinned: flags == 1,
            tokens,
            lora_scales,
            state,
        });
    }
    if r.at != r.bytes.len() {
        return Err(Error::invalid(format!(
            "the cache has {} bytes after its last prefix",
            r.bytes.len() - r.at
        )));
    }
    Ok(entries)
}

/// The magic number llama.cpp writes first in a sequence's state.
const LLAMA_SEQ_STATE_MAGIC: u32 = 0xaf14_3cd8;

/// Checks llama.cpp's state of one sequence of `n` tokens before llama.cpp reads it: llama.cpp
/// checks sizes and layer counts but takes each cell's position as written, and a cell at a
/// negative position or beyond the prefix would stay in its cache for good. The layout (of the
/// linked llama.cpp, `llama_kv_cache::state_write`): the magic and the sequence id, then for each
/// KV cache of the model (two with sliding-window layers): one stream, its cell count, each cell
/// (position, one sequence id, for some models 12 bytes more), then the keys and values. Each cell
/// must be at its own position in 0..n, the highest at n - 1. A layout that does not read to the
/// end exactly is refused too.
pub fn check_state(state: &[u8], n: usize) -> std::result::Result<(), String> {
    let mut why = String::new();
    for ext in [0usize, 12] {
        match check_state_with(state, n, ext) {
            Ok(()) => return Ok(()),
            Err(e) if ext == 0 => why = e,
            Err(_) => {}
        }
    }
    Err(why)
}

fn check_state_with(state: &[u8], n: usize, ext: usize) -> std::result::Result<(), String> {
    let mut r = Reader {
        bytes: state,
        at: 0,
    };
    let e = |e: Error| e.message;
    if r.u32("the magic").map_err(e)? != LLAMA_SEQ_STATE_MAGIC {
        return Err("is not llama.cpp's sequence state".into());
    }
    r.u32("the sequence id").map_err(e)?;
    let mut caches = 0;
    while r.at < r.bytes.len() {
        caches += 1;
        if caches > 2 {
            return Err("holds more than two KV caches".into());
        }
        if r.u32("the stream count").map_err(e)? != 1 {
            return Err("is not of one unified stream".into());
        }
        let cells = r.u32("the cell count").map_err(e)? as usize;
        if cells > n {
            return Err(format!("has {cells} cells for a prefix of {n} tokens"));
        }
        if cells == 0 {
            continue;
        }
        // Cells come in the cache's order, not the positions'.
        let mut seen = vec![false; n];
        let mut last: i64 = -1;
        for _ in 0..cells {
            let pos = r.u32("a cell's position").map_err(e)? as i32 as i64;
            if pos < 0 || pos >= n as i64 || seen[pos as usize] {
                return Err(format!(
                    "has a cell at position {pos} (twice, or outside the prefix of {n} tokens)"
                ));
            }
            seen[pos as usize] = true;
            last = last.max(pos);
            if r.u32("a cell's sequence count").map_err(e)? != 1 {
                return Err("has a cell of more than one sequence".into());
            }
            r.take(ext + 4, "a cell's sequence").map_err(e)?;
        }
        if last != n as i64 - 1 {
            return Err(format!(
                "ends at position {last}, not at the prefix's end {}",
                n - 1
            ));
        }
        let v_trans = r.u32("the V layout").map_err(e)?;
        let layers = r.u32("the layer count").map_err(e)? as usize;
        if v_trans > 1 || layers > 4096 {
            return Err("has a layout llama.cpp does not write".into());
        }
        r.take(8, "the rotations").map_err(e)?;
        let skip = |r: &mut Reader, row: u64, what: &str| {
            let bytes = row
                .checked_mul(cells as u64)
                .filter(|&b| b <= usize::MAX as u64);
            match bytes {
                Some(b) => r.take(b as usize, what).map(|_| ()).map_err(e),
                None => Err(format!("has {what} larger than the bytes")),
            }
        };
        for _ in 0..layers {
            r.take(4, "a key type").map_err(e)?;
            let row = r.u64("a key row size").map_err(e)?;
            skip(&mut r, row, "keys")?;
        }
        for _ in 0..layers {
            r.take(4, "a value type").map_err(e)?;
            let row = if v_trans == 0 {
                r.u64("a value row size").map_err(e)?
            } else {
                let el = r.u32("a value size").map_err(e)? as u64;
                el.saturating_mul(r.u32("a value width").map_err(e)? as u64)
            };
            skip(&mut r, row, "values")?;
        }
    }
    if caches == 0 {
        return Err("holds no KV cache".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::error::Status;

    fn fit() -> Fit {
        Fit {
            version: "0.3.0".into(),
            model: "m".into(),
            context_tokens: 64,
            kv: "f16".into(),
            adapters: 1,
        }
    }

    /// A sequence state as llama.cpp writes it: one KV cache, one layer, cells at `positions`.
    fn state(positions: &[i32]) -> Vec<u8> {
        let mut b = Vec::new();
        let u32s = |b: &mut Vec<u8>, v: &[u32]| v.iter().for_each(|x| b.extend(x.to_le_bytes()));
        u32s(
            &mut b,
            &[LLAMA_SEQ_STATE_MAGIC, 0, 1, positions.len() as u32],
        );
        for &p in positions {
            u32s(&mut b, &[p as u32, 1, 0]);
        }
        u32s(&mut b, &[0, 1, 0, 0, 1]);
        b.extend(2u64.to_le_bytes());
        b.extend(vec![7u8; 2 * positions.len()]);
        u32s(&mut b, &[1]);
        b.extend(2u64.to_le_bytes());
        b.extend(vec![7u8; 2 * positions.len()]);
        b
    }

    fn entries() -> Vec<Entry> {
        vec![
            Entry {
                pinned: true,
                tokens: vec![2, 3, 4],
                lora_scales: vec![1.0],
                state: state(&[0, 1, 2]),
            },
            Entry {
                pinned: false,
                tokens: vec![2],
                lora_scales: vec![0.5],
                state: state(&[0]),
            },
        ]
    }

    #[test]
    fn states_with_cells_out_of_place_are_refused() {
        assert!(check_state(&state(&[0, 1, 2]), 3).is_ok());
        // The window of a sliding-window cache: a suffix.
        assert!(check_state(&state(&[1, 2]), 3).is_ok());
        // Cells in the cache's order.
        assert!(check_state(&state(&[2, 0, 1]), 3).is_ok());
        for bad in [
            &[-1, 1, 2][..],
            &[0, 2, 2],
            &[0, 1, 1],
            &[0, 1, 3],
            &[0, 1],
            &[0, 1, 2, 3],
        ] {
            assert!(check_state(&state(bad), 3).is_err(), "{bad:?}");
        }
        let good = state(&[0, 1, 2]);
        assert!(check_state(&good[..good.len() - 1], 3).is_err());
        let mut longer = good.clone();
        longer.push(0);
        assert!(check_state(&longer, 3).is_err());
        // A negative position behind a right checksum: refused, named.
        let mut bad = entries();
        bad[0].state = state(&[-5, 1, 2]);
        let err = decode(&encode(&fit(), &bad), &fit()).unwrap_err();
        assert!(
            err.message.contains("prefix 0's KV state"),
            "{}",
            err.message
        );
    }

    #[test]
    fn round_trip() {
        let bytes = encode(&fit(), &entries());
        assert_eq!(decode(&bytes, &fit()).unwrap(), entries());
        assert!(decode(&encode(&fit(), &[]), &fit()).unwrap().is_empty());
    }

    #[test]
    fn what_differs_is_named() {
        let bytes = encode(&fit(), &entries());
        let cases = [
            (
                Fit {
                    version: "0.4.0".into(),
                    ..fit()
                },
                "minerva 0.3.0",
            ),
            (
                Fit {
                    model: "other".into(),
                    ..fit()
                },
                "another model",
            ),
            (
                Fit {
                    context_tokens: 128,
                    ..fit()
                },
                "context_tokens 64",
            ),
            (
                Fit {
                    kv: "q8".into(),
                    ..fit()
                },
                "KV layout",
            ),
        ];
        for (f, want) in cases {
            let e = decode(&bytes, &f).unwrap_err();
            assert_eq!(e.status, Status::InvalidArgument);
            assert!(e.message.contains(want), "{}", e.message);
        }
    }

    /// Random mutations with the checksum set right again (what gets past the checksum: the
    /// fields behind it), seeded: an error or the prefixes, never a panic, and lengths never
    /// trusted beyond the bytes. The same property as the fuzz target `cache`.
    #[test]
    fn mutated_bytes_with_a_right_checksum_never_panic() {
        let good = encode(&fit(), &entries());
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = good[..good.len() - 8].to_vec();
            for _ in 0..1 + next() % 4 {
                let i = (next() as usize) % b.len();
                match next() % 4 {
                    0 => b[i] = next() as u8,
                    1 => b[i] ^= 0x80,
                    2 => b.truncate(i),
                    _ => b.insert(i, next() as u8),
                }
                if b.is_empty() {
                    break;
                }
            }
            let sum = fnv1a(&b);
            b.extend_from_slice(&sum.to_le_bytes());
            if let Ok(e) = decode(&b, &fit()) {
                assert!(e
                    .iter()
                    .all(|e| e.tokens.len() <= 64 && e.state.len() <= b.len()));
            }
        }
    }

    /// Writes seeds for the fuzz target `cache` where MINERVA_FUZZ_SEEDS says (scripts/fuzz.sh).
    #[test]
    fn cache_fuzz_seed_corpus() {
        let Some(dir) = std::env::var_os("MINERVA_FUZZ_SEEDS") else {
            return;
        };
        std::fs::create_dir_all(&dir).unwrap();
        let dir = std::path::Path::new(&dir);
        std::fs::write(dir.join("two"), encode(&fit(), &entries())).unwrap();
        std::fs::write(dir.join("none"), encode(&fit(), &[])).unwrap();
    }

    /// Every truncation and every single-bit flip is refused, never a panic.
    #[test]
    fn corrupt_bytes_are_refused() {
        let bytes = encode(&fit(), &entries());
        for n in 0..bytes.len() {
            assert!(decode(&bytes[..n], &fit()).is_err(), "truncated to {n}");
        }
        for i in 0..bytes.len() {
            for bit in 0..8 {
                let mut b = bytes.clone();
                b[i] ^= 1 << bit;
                assert!(decode(&b, &fit()).is_err(), "byte {i} bit {bit}");
            }
        }
        // A header that claims more than the bytes hold, with a valid checksum.
        let mut b = encode(&fit(), &entries());
        b.truncate(b.len() - 8);
        // The first entry's length follows its flags, after the header.
        let at = encode(&fit(), &[]).len() - 8 + 1;
        b[at..at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let sum = fnv1a(&b);
        b.extend_from_slice(&sum.to_le_bytes());
        let e = decode(&b, &fit()).unwrap_err();
        assert!(e.message.contains("prefix"), "{}", e.message);
    }
}
