//! A GGUF reader that checks a model file before llama.cpp sees it.
//!
//! llama.cpp's loader aborts the whole process on some malformed files (a GGML_ASSERT is an
//! abort). minerva reads the GGUF structure itself: magic, version, counts, string and array
//! lengths, tensor names, types, shapes, offsets and sizes against the file length, alignment;
//! then the metadata values that llama.cpp trusts (layer, head and embedding counts, vocabulary
//! size, context length, special token ids). A problem is reported with a message that names it.
//!
//! Pure Rust: the sizes of ggml's tensor types come from the caller ([`TypeInfo`]), so that the
//! reader can be unit-tested and fuzzed without llama.cpp.

use std::collections::{HashMap, HashSet};
use std::io::Read;

/// Limits that llama.cpp relies on.
pub(crate) const MAX_LAYERS: u64 = 512; // LLAMA_MAX_LAYERS
pub(crate) const MAX_DIMS: u32 = 4; // GGML_MAX_DIMS
pub(crate) const MAX_NAME: usize = 63; // GGML_MAX_NAME - 1
pub(crate) const DEFAULT_ALIGNMENT: u64 = 32;
/// Longest key or tensor name read, and longest string value kept.
const MAX_KEY: u64 = 1 << 16;
const MAX_VALUE: u64 = 1 << 24;

/// Block size and bytes per block of a ggml tensor type, or None for an unknown type.
pub type TypeInfo<'a> = &'a dyn Fn(u32) -> Option<(u64, u64)>;

/// A metadata value (arrays keep their element type, length and, for small ones, values).
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    Uint(u64),
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Array {
        elem_type: u32,
        len: u64,
        /// Integer elements (only for integer arrays of at most MAX_LAYERS entries).
        ints: Vec<i64>,
    },
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Uint(v) => write!(f, "{v}"),
            Value::Int(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::Str(v) => write!(f, "{v:?}"),
            Value::Array { len, .. } => write!(f, "an array of {len}"),
        }
    }
}

impl Value {
    fn as_u64(&self) -> Option<u64> {
        match *self {
            Value::Uint(v) => Some(v),
            Value::Int(v) if v >= 0 => Some(v as u64),
            _ => None,
        }
    }
}

/// One tensor's entry in the file's table.
#[derive(Clone, Debug)]
pub struct TensorInfo {
    pub name: String,
    pub dims: Vec<u64>,
    pub ggml_type: u32,
    pub offset: u64,
    pub bytes: u64,
}

/// What a checked file holds.
#[derive(Debug, Default)]
pub struct Gguf {
    pub version: u32,
    pub metadata: HashMap<String, Value>,
    pub tensors: Vec<TensorInfo>,
    pub data_offset: u64,
    pub architecture: String,
}

impl Gguf {
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.metadata.get(key).and_then(Value::as_u64)
    }

    /// `{arch}.{name}` as an integer.
    pub fn arch_u64(&self, name: &str) -> Option<u64> {
        self.get_u64(&format!("{}.{name}", self.architecture))
    }
}

const T_U8: u32 = 0;
const T_I8: u32 = 1;
const T_U16: u32 = 2;
const T_I16: u32 = 3;
const T_U32: u32 = 4;
const T_I32: u32 = 5;
const T_F32: u32 = 6;
const T_BOOL: u32 = 7;
const T_STR: u32 = 8;
const T_ARR: u32 = 9;
const T_U64: u32 = 10;
const T_I64: u32 = 11;
const T_F64: u32 = 12;

fn scalar_size(t: u32) -> Option<u64> {
    Some(match t {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 => 8,
        _ => return None,
    })
}

struct Reader<R: Read> {
    inner: R,
    pos: u64,
    len: u64,
}

type Res<T> = std::result::Result<T, String>;

impl<R: Read> Reader<R> {
    fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    fn bytes(&mut self, n: u64, what: &str) -> Res<Vec<u8>> {
        if n > self.remaining() {
            return Err(format!(
                "the file is truncated: {what} needs {n} bytes at offset {}, {} are left",
                self.pos,
                self.remaining()
            ));
        }
        let mut v = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut v)
            .map_err(|e| format!("cannot read {what} at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(v)
    }

    fn skip(&mut self, n: u64, what: &str) -> Res<()> {
        if n > self.remaining() {
            return Err(format!(
                "the file is truncated: {what} needs {n} bytes at offset {}, {} are left",
                self.pos,
                self.remaining()
            ));
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| format!("cannot read {what} at offset {}: {e}", self.pos))?;
        if copied != n {
            return Err(format!("the file is truncated in {what}"));
        }
        self.pos += n;
        Ok(())
    }

    fn u32(&mut self, what: &str) -> Res<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    fn u64(&mut self, what: &str) -> Res<u64> {
        let b = self.bytes(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A string of at most `max` bytes (longer ones are refused before anything is allocated).
    fn string_max(&mut self, what: &str, max: u64) -> Res<String> {
        let n = self.u64(what)?;
        if n > max {
            return Err(format!("{what} is {n} bytes long (at most {max})"));
        }
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| format!("{what} is not valid UTF-8"))
    }

    fn string(&mut self, what: &str) -> Res<String> {
        self.string_max(what, MAX_KEY)
    }

    fn scalar(&mut self, t: u32, what: &str) -> Res<Value> {
        let size = scalar_size(t).ok_or_else(|| format!("{what} has unknown type {t}"))?;
        let b = self.bytes(size, what)?;
        let mut raw = [0u8; 8];
        raw[..b.len()].copy_from_slice(&b);
        let u = u64::from_le_bytes(raw);
        Ok(match t {
            T_U8 | T_U16 | T_U32 | T_U64 => Value::Uint(u),
            T_I8 => Value::Int(b[0] as i8 as i64),
            T_I16 => Value::Int(i16::from_le_bytes([b[0], b[1]]) as i64),
            T_I32 => Value::Int(i32::from_le_bytes(b[..4].try_into().expect("4")) as i64),
            T_I64 => Value::Int(u as i64),
            T_F32 => Value::Float(f32::from_le_bytes(b[..4].try_into().expect("4")) as f64),
            T_F64 => Value::Float(f64::from_bits(u)),
            T_BOOL => match b[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                v => return Err(format!("{what} is a bool with value {v}")),
            },
            _ => unreachable!(),
        })
    }

    fn value(&mut self, t: u32, what: &str) -> Res<Value> {
        match t {
            T_STR => {
                // Long values (a chat template, a license) are kept up to MAX_VALUE bytes; a
                // longer one is skipped, not allocated.
                let n = self.u64(what)?;
                if n > MAX_VALUE {
                    self.skip(n, what)?;
                    return Ok(Value::Str(String::new()));
                }
                let b = self.bytes(n, what)?;
                Ok(Value::Str(String::from_utf8_lossy(&b).into_owned()))
            }
            T_ARR => {
                let elem_type = self.u32(what)?;
                let len = self.u64(what)?;
                match elem_type {
                    T_STR => {
                        // Each string has at least its 8-byte length.
                        if len > self.remaining() / 8 {
                            return Err(format!(
                                "{what}: an array of {len} strings cannot fit in the {} bytes left",
                                self.remaining()
                            ));
                        }
                        for i in 0..len {
                            let n = self.u64(what)?;
                            self.skip(n, &format!("{what}[{i}]"))?;
                        }
                        Ok(Value::Array {
                            elem_type,
                            len,
                            ints: Vec::new(),
                        })
                    }
                    T_ARR => Err(format!(
                        "{what} is an array of arrays, which GGUF does not allow"
                    )),
                    t => {
                        let size = scalar_size(t)
                            .ok_or_else(|| format!("{what} is an array of unknown type {t}"))?;
                        let bytes = len
                            .checked_mul(size)
                            .filter(|&b| b <= self.remaining())
                            .ok_or_else(|| {
                                format!(
                                    "the file is truncated: {what} is an array of {len} elements"
                                )
                            })?;
                        let is_int = !matches!(t, T_F32 | T_F64 | T_BOOL);
                        if is_int && len <= MAX_LAYERS {
                            let mut ints = Vec::with_capacity(len as usize);
                            for _ in 0..len {
                                match self.scalar(t, what)? {
                                    Value::Uint(v) => ints.push(v.min(i64::MAX as u64) as i64),
                                    Value::Int(v) => ints.push(v),
                                    _ => unreachable!(),
                                }
                            }
                            Ok(Value::Array {
                                elem_type,
                                len,
                                ints,
                            })
                        } else {
                            self.skip(bytes, what)?;
                            Ok(Value::Array {
                                elem_type,
                                len,
                                ints: Vec::new(),
                            })
                        }
                    }
                }
            }
            t => self.scalar(t, what),
        }
    }
}

/// Reads and checks a GGUF stream of `len` bytes.
pub fn read(input: impl Read, len: u64, types: TypeInfo) -> Res<Gguf> {
    let mut r = Reader {
        inner: input,
        pos: 0,
        len,
    };
    let magic = r
        .bytes(4, "the magic")
        .map_err(|_| "the file is too short to be GGUF".to_string())?;
    if magic != b"GGUF" {
        return Err(format!(
            "not a GGUF file (it begins with {:02x?}, not \"GGUF\")",
            &magic[..]
        ));
    }
    let version = r.u32("the version")?;
    if !(2..=3).contains(&version) {
        return Err(format!(
            "GGUF version {version} is not supported (2 and 3 are)"
        ));
    }
    let n_tensors = r.u64("the tensor count")?;
    let n_kv = r.u64("the metadata count")?;
    // A metadata entry takes at least 8 + 4 + 1 bytes, a tensor entry at least 8 + 4 + 8 + 4 + 8.
    if n_kv > r.remaining() / 13 {
        return Err(format!(
            "the metadata count {n_kv} cannot fit in a {len}-byte file"
        ));
    }
    if n_tensors > r.remaining() / 32 {
        return Err(format!(
            "the tensor count {n_tensors} cannot fit in a {len}-byte file"
        ));
    }
    let mut g = Gguf {
        version,
        ..Default::default()
    };
    for i in 0..n_kv {
        let key = r.string(&format!("metadata key {i}"))?;
        if key.is_empty() {
            return Err(format!("metadata key {i} is empty"));
        }
        let t = r.u32(&format!("the type of '{key}'"))?;
        let v = r.value(t, &format!("metadata '{key}'"))?;
        if g.metadata.insert(key.clone(), v).is_some() {
            return Err(format!("metadata key '{key}' appears twice"));
        }
    }
    // The values llama.cpp trusts are checked first: a file with a bad one is refused for that
    // reason even when it is also truncated.
    check_metadata(&mut g)?;
    let alignment = match g.metadata.get("general.alignment") {
        None => DEFAULT_ALIGNMENT,
        Some(Value::Uint(a)) if *a > 0 && a.is_power_of_two() => *a,
        Some(v) => return Err(format!("general.alignment {v} is not a power of two")),
    };
    let mut names = HashSet::new();
    for i in 0..n_tensors {
        let name = r.string(&format!("the name of tensor {i}"))?;
        if name.is_empty() || name.len() > MAX_NAME {
            return Err(format!(
                "tensor {i} has a name of {} bytes (1 to {MAX_NAME})",
                name.len()
            ));
        }
        if !names.insert(name.clone()) {
            return Err(format!("tensor '{name}' appears twice"));
        }
        let n_dims = r.u32(&format!("the dimensions of '{name}'"))?;
        if !(1..=MAX_DIMS).contains(&n_dims) {
            return Err(format!(
                "tensor '{name}' has {n_dims} dimensions (1 to {MAX_DIMS})"
            ));
        }
        let mut dims = Vec::with_capacity(n_dims as usize);
        for _ in 0..n_dims {
            let d = r.u64(&format!("a dimension of '{name}'"))?;
            if d == 0 || d > i64::MAX as u64 {
                return Err(format!("tensor '{name}' has a dimension of {d}"));
            }
            dims.push(d);
        }
        let ggml_type = r.u32(&format!("the type of '{name}'"))?;
        let (block, type_size) = types(ggml_type)
            .filter(|&(b, s)| b > 0 && s > 0)
            .ok_or_else(|| format!("tensor '{name}' has unknown type {ggml_type}"))?;
        if dims[0] % block != 0 {
            return Err(format!(
                "tensor '{name}': its first dimension {} is not a multiple of its type's block size {block}",
                dims[0]
            ));
        }
        let bytes = dims[1..]
            .iter()
            .try_fold((dims[0] / block).checked_mul(type_size), |acc, &d| {
                Some(acc.and_then(|a| a.checked_mul(d)))
            })
            .flatten()
            .filter(|&b| b <= len)
            .ok_or_else(|| format!("tensor '{name}' is larger than the file"))?;
        let offset = r.u64(&format!("the offset of '{name}'"))?;
        if offset % alignment != 0 {
            return Err(format!(
                "tensor '{name}' is at offset {offset}, not a multiple of the alignment {alignment}"
            ));
        }
        g.tensors.push(TensorInfo {
            name,
            dims,
            ggml_type,
            offset,
            bytes,
        });
    }
    g.data_offset = r.pos.div_ceil(alignment) * alignment;
    for t in &g.tensors {
        let end = g
            .data_offset
            .checked_add(t.offset)
            .and_then(|s| s.checked_add(t.bytes));
        if end.is_none_or(|e| e > len) {
            return Err(format!(
                "the file is truncated: tensor '{}' ({} bytes at data offset {}) ends past the end \
                 of the file ({len} bytes)",
                t.name, t.bytes, t.offset
            ));
        }
    }
    if g.tensors.is_empty() {
        return Err("the file holds no tensors".into());
    }
    Ok(g)
}

/// The metadata values llama.cpp relies on without checking them.
fn check_metadata(g: &mut Gguf) -> Res<()> {
    g.architecture = match g.metadata.get("general.architecture") {
        Some(Value::Str(s)) if !s.is_empty() => s.clone(),
        Some(_) => return Err("general.architecture is not a non-empty string".into()),
        None => return Err("general.architecture is missing".into()),
    };
    let arch = g.architecture.clone();
    let key = |name: &str| format!("{arch}.{name}");
    let positive = |g: &Gguf, name: &str, max: u64| -> Res<Option<u64>> {
        match g.metadata.get(&key(name)) {
            None => Ok(None),
            Some(v) => match v.as_u64() {
                Some(n) if (1..=max).contains(&n) => Ok(Some(n)),
                _ => Err(format!("{} is {v}; it must be in 1..={max}", key(name))),
            },
        }
    };
    let n_layer = positive(g, "block_count", MAX_LAYERS)?;
    positive(g, "attention.key_length", 1 << 16)?;
    positive(g, "attention.value_length", 1 << 16)?;
    positive(g, "context_length", u32::MAX as u64)?;
    let n_embd = positive(g, "embedding_length", 1 << 20)?;
    positive(g, "feed_forward_length", 1 << 24).or_else(|e| {
        // Per-layer arrays are checked below; a scalar must be positive.
        if matches!(
            g.metadata.get(&key("feed_forward_length")),
            Some(Value::Array { .. })
        ) {
            Ok(None)
        } else {
            Err(e)
        }
    })?;
    for name in [
        "attention.head_count",
        "attention.head_count_kv",
        "feed_forward_length",
    ] {
        match g.metadata.get(&key(name)) {
            Some(Value::Array { len, ints, .. }) => {
                let n = n_layer.unwrap_or(0);
                if *len != n {
                    return Err(format!(
                        "{} has {len} entries for {n} layers (block_count)",
                        key(name)
                    ));
                }
                if ints.len() as u64 != *len {
                    return Err(format!("{} is not an array of integers", key(name)));
                }
                if let Some(bad) = ints.iter().find(|&&v| !(0..=1 << 24).contains(&v)) {
                    return Err(format!("{} holds {bad}", key(name)));
                }
            }
            Some(v) if name.starts_with("attention") => match v.as_u64() {
                Some(h) if h <= 1 << 16 => {
                    if name == "attention.head_count" && h == 0 && n_embd.is_some() {
                        // n_embd / n_head: a zero here is a division by zero in llama.cpp,
                        // unless the architecture gives key/value lengths explicitly.
                        if !g.metadata.contains_key(&key("attention.key_length")) {
                            return Err(format!("{} is 0", key(name)));
                        }
                    }
                }
                _ => return Err(format!("{} is {v}", key(name))),
            },
            _ => {}
        }
    }
    if let (Some(h), Some(hkv)) = (
        g.arch_u64("attention.head_count"),
        g.arch_u64("attention.head_count_kv"),
    ) {
        if h == 0 && hkv > 0 {
            return Err(format!("{arch}.attention.head_count is 0"));
        }
        if hkv > 0 && (hkv > h || h % hkv != 0) {
            return Err(format!(
                "{arch}.attention.head_count_kv {hkv} does not divide head_count {h}"
            ));
        }
    }
    if let (Some(e), Some(h)) = (n_embd, g.arch_u64("attention.head_count")) {
        if h > 0 && g.arch_u64("attention.key_length").is_none() && e % h != 0 {
            return Err(format!(
                "{arch}.embedding_length {e} is not a multiple of attention.head_count {h}"
            ));
        }
    }
    // The vocabulary: its size bounds every token id the file names.
    let n_vocab = match g.metadata.get("tokenizer.ggml.tokens") {
        Some(Value::Array {
            elem_type: T_STR,
            len,
            ..
        }) if *len > 0 && *len <= i32::MAX as u64 => Some(*len),
        Some(v) => {
            return Err(format!(
                "tokenizer.ggml.tokens is not a list of strings ({v})"
            ))
        }
        None => None,
    };
    if let Some(n) = n_vocab {
        for name in ["tokenizer.ggml.scores", "tokenizer.ggml.token_type"] {
            if let Some(Value::Array { len, .. }) = g.metadata.get(name) {
                if *len != n {
                    return Err(format!("{name} has {len} entries for {n} tokens"));
                }
            }
        }
        let ids: Vec<(String, u64)> = g
            .metadata
            .iter()
            .filter(|(k, _)| k.starts_with("tokenizer.ggml.") && k.ends_with("_token_id"))
            .filter_map(|(k, v)| match v {
                Value::Uint(id) => Some((k.clone(), *id)),
                Value::Int(id) if *id >= 0 => Some((k.clone(), *id as u64)),
                _ => None,
            })
            .collect();
        for (k, id) in ids {
            // llama.cpp treats 0xFFFFFFFF (-1) as "none".
            if id >= n && id != u32::MAX as u64 {
                return Err(format!("{k} is {id}, outside the vocabulary of {n} tokens"));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
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
}
