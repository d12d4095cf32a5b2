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

mod metadata;
mod reader;
#[cfg(test)]
pub(crate) mod tests;

use metadata::check_metadata;
use reader::*;

/// A reader result: the error is a message naming the problem.
type Res<T> = std::result::Result<T, String>;

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
