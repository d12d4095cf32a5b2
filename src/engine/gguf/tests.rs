//! Tests of the GGUF reader on small files written here (also the fuzzer's seed corpus).

use super::*;

/// Writes small GGUF files for tests (and the fuzzer's seed corpus).
#[derive(Default)]
pub struct Writer {
    kv: Vec<u8>,
    n_kv: u64,
    tensors: Vec<(String, Vec<u64>, u32, u64)>,
    data: Vec<u8>,
    pub version: u32,
}

fn s(out: &mut Vec<u8>, v: &str) {
    out.extend((v.len() as u64).to_le_bytes());
    out.extend(v.as_bytes());
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            version: 3,
            ..Default::default()
        }
    }
    pub fn u32(mut self, k: &str, v: u32) -> Self {
        s(&mut self.kv, k);
        self.kv.extend(T_U32.to_le_bytes());
        self.kv.extend(v.to_le_bytes());
        self.n_kv += 1;
        self
    }
    pub fn str(mut self, k: &str, v: &str) -> Self {
        s(&mut self.kv, k);
        self.kv.extend(T_STR.to_le_bytes());
        s(&mut self.kv, v);
        self.n_kv += 1;
        self
    }
    pub fn strs(mut self, k: &str, v: &[&str]) -> Self {
        s(&mut self.kv, k);
        self.kv.extend(T_ARR.to_le_bytes());
        self.kv.extend(T_STR.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            s(&mut self.kv, x);
        }
        self.n_kv += 1;
        self
    }
    pub fn u32s(mut self, k: &str, v: &[u32]) -> Self {
        s(&mut self.kv, k);
        self.kv.extend(T_ARR.to_le_bytes());
        self.kv.extend(T_U32.to_le_bytes());
        self.kv.extend((v.len() as u64).to_le_bytes());
        for x in v {
            self.kv.extend(x.to_le_bytes());
        }
        self.n_kv += 1;
        self
    }
    /// An F32 tensor (type 0) of the given shape, filled with zeros.
    pub fn tensor(mut self, name: &str, dims: &[u64]) -> Self {
        let bytes = dims.iter().product::<u64>() * 4;
        let offset = self.data.len() as u64;
        self.data
            .resize((offset + bytes).div_ceil(32) as usize * 32, 0);
        self.tensors.push((name.into(), dims.to_vec(), 0, offset));
        self
    }
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = b"GGUF".to_vec();
        out.extend(self.version.to_le_bytes());
        out.extend((self.tensors.len() as u64).to_le_bytes());
        out.extend(self.n_kv.to_le_bytes());
        out.extend(&self.kv);
        for (name, dims, t, off) in &self.tensors {
            s(&mut out, name);
            out.extend((dims.len() as u32).to_le_bytes());
            for d in dims {
                out.extend(d.to_le_bytes());
            }
            out.extend(t.to_le_bytes());
            out.extend(off.to_le_bytes());
        }
        out.resize(out.len().div_ceil(32) * 32, 0);
        out.extend(&self.data);
        out
    }
}

/// F32 (0) and F16 (1) only, as ggml defines them.
pub fn types(t: u32) -> Option<(u64, u64)> {
    match t {
        0 => Some((1, 4)),
        1 => Some((1, 2)),
        _ => None,
    }
}

/// A small model-shaped file: what the checks expect of a llama-style architecture.
pub fn model() -> Writer {
    Writer::new()
        .str("general.architecture", "llama")
        .u32("llama.block_count", 2)
        .u32("llama.context_length", 128)
        .u32("llama.embedding_length", 8)
        .u32("llama.feed_forward_length", 16)
        .u32("llama.attention.head_count", 2)
        .u32("llama.attention.head_count_kv", 1)
        .strs("tokenizer.ggml.tokens", &["<s>", "</s>", "a", "b"])
        .u32("tokenizer.ggml.bos_token_id", 0)
        .u32("tokenizer.ggml.eos_token_id", 1)
        .tensor("token_embd.weight", &[8, 4])
        .tensor("output_norm.weight", &[8])
}

fn check(bytes: &[u8]) -> Res<Gguf> {
    read(bytes, bytes.len() as u64, &types)
}

fn err(bytes: &[u8]) -> String {
    check(bytes).expect_err("should be refused")
}

/// Writes the fuzzer's seed corpus (scripts/fuzz.sh sets MINERVA_FUZZ_SEEDS to a folder).
#[test]
fn fuzz_seed_corpus() {
    let Some(dir) = std::env::var_os("MINERVA_FUZZ_SEEDS") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let seeds = [
        ("model", model()),
        ("gemma-like", {
            Writer::new()
                .str("general.architecture", "gemma3")
                .u32("gemma3.block_count", 2)
                .u32("gemma3.embedding_length", 8)
                .u32("gemma3.attention.head_count", 2)
                .u32("gemma3.attention.head_count_kv", 1)
                .u32("gemma3.attention.key_length", 4)
                .u32s("gemma3.feed_forward_length", &[16, 16])
                .strs("tokenizer.ggml.tokens", &["<pad>", "<eos>", "<bos>", "x"])
                .u32s("tokenizer.ggml.token_type", &[3, 3, 3, 1])
                .tensor("token_embd.weight", &[8, 4])
                .tensor("blk.0.attn_q.weight", &[8, 8])
        }),
        (
            "bare",
            Writer::new()
                .str("general.architecture", "x")
                .tensor("t", &[1]),
        ),
    ];
    for (name, w) in seeds {
        std::fs::write(dir.join(name), w.bytes()).unwrap();
    }
}

#[test]
fn a_good_file_passes() {
    let g = check(&model().bytes()).unwrap();
    assert_eq!(g.architecture, "llama");
    assert_eq!(g.tensors.len(), 2);
    assert_eq!(g.arch_u64("block_count"), Some(2));
}

#[test]
fn magic_version_and_truncation() {
    assert!(err(b"").contains("too short"));
    assert!(err(b"GGML\x03\0\0\0").contains("not a GGUF file"));
    let mut b = model().bytes();
    b[4] = 1;
    assert!(err(&b).contains("version 1"));
    let full = model().bytes();
    for cut in [8, 20, 40, 100, full.len() - 1] {
        let e = err(&full[..cut]);
        assert!(
            e.contains("truncated") || e.contains("cannot fit"),
            "cut {cut}: {e}"
        );
    }
}

#[test]
fn huge_counts_are_refused_before_allocating() {
    let mut b = model().bytes();
    b[8..16].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(err(&b).contains("tensor count"));
    let mut b = model().bytes();
    b[16..24].copy_from_slice(&(1u64 << 60).to_le_bytes());
    assert!(err(&b).contains("metadata count"));
}

#[test]
fn huge_strings_are_refused_before_allocating() {
    // A key that claims 2^40 bytes.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend(1u64.to_le_bytes());
    b.extend((1u64 << 40).to_le_bytes());
    b.resize(200, b'x');
    assert!(err(&b).contains("bytes long"), "{}", err(&b));
}

#[test]
fn block_count_out_of_range() {
    assert!(err(&model().u32("llama.block_count", 3).bytes()).contains("appears twice"));
    let base = || {
        Writer::new()
            .str("general.architecture", "llama")
            .strs("tokenizer.ggml.tokens", &["a"])
            .tensor("t", &[4])
    };
    assert!(err(&base().u32("llama.block_count", 0).bytes()).contains("block_count"));
    assert!(err(&base().u32("llama.block_count", 1000).bytes()).contains("block_count"));
    assert!(check(&base().u32("llama.block_count", 512).bytes()).is_ok());
}

#[test]
fn heads_and_embedding() {
    let base = || {
        Writer::new()
            .str("general.architecture", "llama")
            .u32("llama.block_count", 2)
            .u32("llama.embedding_length", 8)
            .tensor("t", &[4])
    };
    assert!(err(&base().u32("llama.attention.head_count", 0).bytes()).contains("head_count"));
    assert!(err(&base().u32("llama.attention.head_count", 3).bytes()).contains("multiple"));
    let e = err(&base()
        .u32("llama.attention.head_count", 4)
        .u32("llama.attention.head_count_kv", 3)
        .bytes());
    assert!(e.contains("head_count_kv"), "{e}");
    let e = err(&base()
        .u32s("llama.attention.head_count", &[2, 2, 2])
        .bytes());
    assert!(e.contains("3 entries for 2 layers"), "{e}");
    assert!(check(&base().u32s("llama.attention.head_count", &[2, 4]).bytes()).is_ok());
}

#[test]
fn token_ids_must_be_in_the_vocabulary() {
    let e = err(&model().u32("tokenizer.ggml.unknown_token_id", 4).bytes());
    assert!(e.contains("outside the vocabulary"), "{e}");
    let b = model()
        .u32s("tokenizer.ggml.token_type", &[1, 1, 1])
        .bytes();
    assert!(err(&b).contains("3 entries for 4 tokens"));
}

#[test]
fn tensor_table_checks() {
    let base = || Writer::new().str("general.architecture", "llama");
    assert!(err(&base().bytes()).contains("no tensors"));
    assert!(err(&base().tensor("a", &[4]).tensor("a", &[4]).bytes()).contains("twice"));
    assert!(err(&base().tensor("a", &[0]).bytes()).contains("dimension of 0"));
    assert!(err(&base().tensor(&"x".repeat(64), &[4]).bytes()).contains("name of 64"));
    assert!(err(&base().tensor("a", &[1 << 40, 1 << 40]).bytes()).contains("larger than"));
    // Unknown type: patch the type field of the only tensor (after its dims).
    let mut b = base().tensor("a", &[4]).bytes();
    let at = b
        .windows(9)
        .position(|w| w == b"\x01\0\0\0\0\0\0\0a")
        .unwrap();
    let type_at = at + 9 + 4 + 8;
    b[type_at..type_at + 4].copy_from_slice(&77u32.to_le_bytes());
    assert!(err(&b).contains("unknown type 77"));
}

#[test]
fn misaligned_and_out_of_file_offsets() {
    let mut b = Writer::new()
        .str("general.architecture", "llama")
        .tensor("a", &[4])
        .bytes();
    // The tensor entry: name "a", 1 dimension (u32), the dimension (u64), type (u32), offset.
    let entry = b.windows(2).rposition(|w| w == b"a\x01").unwrap() + 1;
    let off_at = entry + 4 + 8 + 4;
    b[off_at..off_at + 8].copy_from_slice(&7u64.to_le_bytes());
    assert!(err(&b).contains("alignment"));
    b[off_at..off_at + 8].copy_from_slice(&(1u64 << 20).to_le_bytes());
    assert!(err(&b).contains("truncated"));
}
