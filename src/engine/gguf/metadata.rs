//! The metadata checks: the values llama.cpp trusts without checking them.

use super::reader::T_STR;
use super::{Gguf, Res, Value, MAX_LAYERS};

/// The metadata values llama.cpp relies on without checking them.
pub(super) fn check_metadata(g: &mut Gguf) -> Res<()> {
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
