//! What minerva reads from a GGUF file before llama.cpp loads it: the file checked by minerva's
//! own reader (`engine/gguf/`), with ggml's type sizes, and the facts the engine needs.

use crate::engine::error::{Error, Result, Status};
use llama_cpp_sys_2 as sys;

/// The facts minerva reads from a GGUF file's header before llama.cpp loads it.
#[derive(Debug, Default)]
pub struct GgufSummary {
    pub block_count: Option<u32>,
    pub embedding_length: Option<u32>,
    pub head_count: Option<u32>,
    pub head_count_kv: Option<u32>,
    pub key_length: Option<u32>,
    pub value_length: Option<u32>,
    /// `{arch}.pooling_type`: llama.cpp's pooling (1 mean, 2 cls, 3 last), for embedding models.
    pub pooling_type: Option<u32>,
    /// `{arch}.attention.causal` (absent: causal).
    pub causal: bool,
    /// Bytes of the repeating layers' tensors (`blk.N.*`), all layers together.
    pub layer_bytes: u64,
    /// Bytes of the output layer's matrix (`output.weight`, or `token_embd.weight` when the
    /// model ties them: llama.cpp then copies it to the output layer's device).
    pub output_bytes: u64,
    /// Rows of that matrix: the vocabulary.
    pub n_vocab: Option<u64>,
}

impl GgufSummary {
    /// Bytes of KV cache (f16 keys and values, every layer) per token, when the header says enough.
    pub fn kv_bytes_per_token(&self) -> Option<u64> {
        let layers = self.block_count? as u64;
        let heads = self.head_count.filter(|&h| h > 0)? as u64;
        let kv_heads = self.head_count_kv.unwrap_or(heads as u32) as u64;
        let head_dim = self.embedding_length? as u64 / heads;
        let k = self.key_length.map(u64::from).unwrap_or(head_dim);
        let v = self.value_length.map(u64::from).unwrap_or(head_dim);
        // Overflow means "more than any memory".
        Some(
            layers
                .checked_mul(kv_heads)
                .and_then(|x| x.checked_mul(k + v))
                .and_then(|x| x.checked_mul(2))
                .unwrap_or(u64::MAX),
        )
    }
}

/// Block size and bytes per block of ggml type `t`, None for a type ggml does not know (or no
/// longer supports).
fn ggml_type_info(t: u32) -> Option<(u64, u64)> {
    if t >= sys::GGML_TYPE_COUNT {
        return None;
    }
    // SAFETY: t is below GGML_TYPE_COUNT, so both look-ups index ggml's type table in bounds.
    let (block, size) = unsafe { (sys::ggml_blck_size(t as _), sys::ggml_type_size(t as _)) };
    (block > 0 && size > 0).then_some((block as u64, size as u64))
}

/// Checks a GGUF file with minerva's own reader (see `gguf.rs`) before llama.cpp sees it.
pub fn inspect_gguf(path: &std::path::Path, file_len: u64) -> Result<GgufSummary> {
    let file = std::fs::File::open(path)
        .map_err(|e| Error::new(Status::Io, format!("cannot read the file: {e}")))?;
    let g = crate::engine::gguf::read(std::io::BufReader::new(file), file_len, &ggml_type_info)
        .map_err(|e| Error::new(Status::Model, e))?;
    let u32_of = |name: &str| g.arch_u64(name).and_then(|v| u32::try_from(v).ok());
    let tensor = |name: &str| g.tensors.iter().find(|t| t.name == name);
    let output = tensor("output.weight").or_else(|| tensor("token_embd.weight"));
    Ok(GgufSummary {
        layer_bytes: g
            .tensors
            .iter()
            .filter(|t| t.name.starts_with("blk."))
            .map(|t| t.bytes)
            .sum(),
        output_bytes: output.map_or(0, |t| t.bytes),
        n_vocab: output.and_then(|t| t.dims.get(1).copied()),
        block_count: u32_of("block_count"),
        embedding_length: u32_of("embedding_length"),
        head_count: u32_of("attention.head_count"),
        head_count_kv: u32_of("attention.head_count_kv"),
        key_length: u32_of("attention.key_length"),
        value_length: u32_of("attention.value_length"),
        pooling_type: u32_of("pooling_type"),
        causal: !matches!(
            g.metadata
                .get(&format!("{}.attention.causal", g.architecture)),
            Some(crate::engine::gguf::Value::Bool(false))
        ),
    })
}
