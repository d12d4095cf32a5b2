//! Tokenizing in one pass, with the same tokens as llama.cpp.
//!
//! llama.cpp's tokenizer first splits a text at the special tokens written in it
//! (`tokenizer_st_partition`): for each special token, longest text first, it searches every raw
//! fragment left and walks a linked list from its head at every match. That costs the number of
//! special tokens in the text squared, plus the vocabulary's special tokens times the fragments:
//! 1.5 MB of `<start_of_turn>` took 18 s before llama.cpp could say that it does not fit.
//!
//! [`Specials`] does the same split in one pass: every occurrence of every special text is found
//! at once (Aho-Corasick), then taken in llama.cpp's order (longest text first, left to right)
//! unless an earlier one or the white space it strips overlaps it. The raw fragments are then
//! tokenized one by one by llama.cpp itself, with no special-token pass (none is left in them), so
//! the tokens are llama.cpp's; and tokenizing stops as soon as a limit is passed. Where the order
//! of llama.cpp's split is not fixed by text lengths alone (two special texts of one length that
//! can overlap, or a stripping token beside a special text that begins or ends with white space),
//! and for tokenizers other than SentencePiece and byte-level BPE, the split is not built and
//! llama.cpp tokenizes the whole text (its own cost).

use super::shim::{self, check};
use super::Token;
use crate::engine::error::{Error, Result, Status};
use aho_corasick::{AhoCorasick, MatchKind};
use llama_cpp_sys_2 as sys;
use std::collections::{BTreeMap, HashSet};
use std::ffi::CStr;

/// A special token of the vocabulary, as the split needs it.
struct Special {
    id: Token,
    len: usize,
    lstrip: bool,
    rstrip: bool,
}

/// The vocabulary's special tokens, ready to split texts as llama.cpp does.
pub(super) struct Specials {
    ac: AhoCorasick,
    /// By Aho-Corasick pattern id.
    tokens: Vec<Special>,
    /// By pattern id: its place in llama.cpp's order (longest text first).
    rank: Vec<u32>,
}

/// A piece of a split text: raw text (a byte range) or a special token.
#[derive(Debug, PartialEq, Eq)]
enum Piece {
    Raw(usize, usize),
    Special(Token),
}

/// isspace() in the C locale, as llama.cpp strips.
pub(super) fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

impl Specials {
    /// The split for `vocab`, or None where it would not give llama.cpp's tokens (see the module
    /// documentation).
    pub fn build(vocab: *const sys::llama_vocab) -> Option<Specials> {
        // SAFETY: valid vocabulary; every id below n_tokens is valid; the texts live as long as
        // the vocabulary and are copied here.
        let (texts, tokens) = unsafe {
            let ty = sys::llama_vocab_type(vocab);
            if ty != sys::LLAMA_VOCAB_TYPE_SPM && ty != sys::LLAMA_VOCAB_TYPE_BPE {
                return None;
            }
            let special = sys::LLAMA_TOKEN_ATTR_CONTROL
                | sys::LLAMA_TOKEN_ATTR_USER_DEFINED
                | sys::LLAMA_TOKEN_ATTR_UNKNOWN;
            let mut texts: Vec<Vec<u8>> = Vec::new();
            let mut tokens = Vec::new();
            for id in 0..sys::llama_vocab_n_tokens(vocab) {
                let attr = sys::llama_vocab_get_attr(vocab, id);
                if attr & special == 0 {
                    continue;
                }
                let p = sys::llama_vocab_get_text(vocab, id);
                if p.is_null() {
                    return None;
                }
                let text = CStr::from_ptr(p).to_bytes().to_vec();
                if text.is_empty() {
                    return None; // llama.cpp's search for "" matches everywhere
                }
                // The text as a C string stops at a NUL byte: then it is not the whole text.
                // llama.cpp renders control and user-defined tokens as their text.
                if attr & sys::LLAMA_TOKEN_ATTR_UNKNOWN == 0 && piece_len(vocab, id)? != text.len()
                {
                    return None;
                }
                tokens.push(Special {
                    id,
                    len: text.len(),
                    lstrip: attr & sys::LLAMA_TOKEN_ATTR_LSTRIP != 0,
                    rstrip: attr & sys::LLAMA_TOKEN_ATTR_RSTRIP != 0,
                });
                texts.push(text);
            }
            (texts, tokens)
        };
        if !order_is_fixed(&texts, &tokens) {
            return None;
        }
        let mut by_length: Vec<usize> = (0..texts.len()).collect();
        by_length.sort_by_key(|&i| std::cmp::Reverse(texts[i].len()));
        let mut rank = vec![0u32; texts.len()];
        for (r, &i) in by_length.iter().enumerate() {
            rank[i] = r as u32;
        }
        let ac = AhoCorasick::builder()
            .match_kind(MatchKind::Standard)
            .build(&texts)
            .ok()?;
        Some(Specials { ac, tokens, rank })
    }

    /// Splits `text` into raw fragments and special tokens exactly as llama.cpp's
    /// `tokenizer_st_partition` does with `parse_special`, in O(n log n).
    fn split(&self, text: &[u8]) -> Vec<Piece> {
        // Every occurrence of every special text, in llama.cpp's order.
        let mut found: Vec<(u32, usize, usize)> = self
            .ac
            .find_overlapping_iter(text)
            .map(|m| {
                (
                    self.rank[m.pattern().as_usize()],
                    m.start(),
                    m.pattern().as_usize(),
                )
            })
            .collect();
        found.sort_unstable();
        // Taken ranges: start -> (end, the special token, or None for stripped white space).
        let mut taken: BTreeMap<usize, (usize, Option<Token>)> = BTreeMap::new();
        for (_, s, pattern) in found {
            let t = &self.tokens[pattern];
            let e = s + t.len;
            let before = taken
                .range(..e)
                .next_back()
                .map(|(&st, &(end, _))| (st, end));
            if before.is_some_and(|(_, end)| end > s) {
                continue; // overlaps a token taken earlier (or its stripped space)
            }
            let gap_start = before.map_or(0, |(_, end)| end);
            let gap_end = taken.range(e..).next().map_or(text.len(), |(&st, _)| st);
            taken.insert(s, (e, Some(t.id)));
            if t.lstrip {
                let mut k = s;
                while k > gap_start && is_c_space(text[k - 1]) {
                    k -= 1;
                }
                if k < s {
                    taken.insert(k, (s, None));
                }
            }
            if t.rstrip {
                let mut k = e;
                while k < gap_end && is_c_space(text[k]) {
                    k += 1;
                }
                if k > e {
                    taken.insert(e, (k, None));
                }
            }
        }
        let mut pieces = Vec::with_capacity(taken.len() * 2 + 1);
        let mut at = 0;
        for (&s, &(e, token)) in &taken {
            if s > at {
                pieces.push(Piece::Raw(at, s));
            }
            if let Some(id) = token {
                pieces.push(Piece::Special(id));
            }
            at = e;
        }
        if at < text.len() {
            pieces.push(Piece::Raw(at, text.len()));
        }
        pieces
    }

    /// llama.cpp's tokens of `text` with special tokens recognized (and BOS/EOS where the
    /// vocabulary asks for them, with `add_special`). Stops once there are more than `limit`:
    /// then `Ok(Err(count so far))`.
    pub fn tokenize(
        &self,
        vocab: *const sys::llama_vocab,
        text: &[u8],
        add_special: bool,
        limit: usize,
    ) -> Result<std::result::Result<Vec<Token>, usize>> {
        // SAFETY: valid vocabulary.
        let (bos, eos) = unsafe {
            (
                add_special && sys::llama_vocab_get_add_bos(vocab),
                add_special && sys::llama_vocab_get_add_eos(vocab),
            )
        };
        let mut out = Vec::new();
        if bos {
            // SAFETY: valid vocabulary.
            out.push(unsafe { sys::llama_vocab_bos(vocab) });
        }
        for piece in self.split(text) {
            match piece {
                Piece::Special(id) => out.push(id),
                Piece::Raw(s, e) => raw_tokens(vocab, &text[s..e], false, false, &mut out)?,
            }
            if out.len() > limit {
                return Ok(Err(out.len()));
            }
        }
        if eos {
            // SAFETY: valid vocabulary.
            out.push(unsafe { sys::llama_vocab_eos(vocab) });
        }
        Ok(if out.len() > limit {
            Err(out.len())
        } else {
            Ok(out)
        })
    }
}

/// The length of `id`'s text as llama.cpp renders it with special tokens shown.
fn piece_len(vocab: *const sys::llama_vocab, id: Token) -> Option<usize> {
    let mut buf = [0u8; 256];
    let mut n = 0;
    // SAFETY: valid vocabulary and id; buf has the room given.
    let rc = unsafe {
        shim::mshim_token_to_piece(
            vocab,
            id,
            buf.as_mut_ptr().cast(),
            buf.len() as i32,
            true,
            &mut n,
        )
    };
    check(rc, "rendering a special token").ok()?;
    Some(n.unsigned_abs() as usize)
}

/// Whether llama.cpp's order of special tokens is fixed by text lengths: its sort by length is
/// not stable, so two special texts of one length must not be able to overlap (nor be equal),
/// and a token that strips white space must not meet a special text that begins or ends with it.
fn order_is_fixed(texts: &[Vec<u8>], tokens: &[Special]) -> bool {
    let strips = tokens.iter().any(|t| t.lstrip || t.rstrip);
    let spaced = |t: &[u8]| is_c_space(t[0]) || is_c_space(t[t.len() - 1]);
    if strips && texts.iter().any(|t| spaced(t)) {
        return false;
    }
    let mut by_len: BTreeMap<usize, Vec<&[u8]>> = BTreeMap::new();
    for t in texts {
        by_len.entry(t.len()).or_default().push(t);
    }
    for group in by_len.values() {
        let mut seen = HashSet::new();
        let mut prefixes = HashSet::new();
        for t in group {
            if !seen.insert(*t) {
                return false; // two tokens with one text
            }
            for k in 1..t.len() {
                prefixes.insert(&t[..k]);
            }
        }
        // A proper suffix of one that is a proper prefix of another (or of itself: a text that
        // overlaps itself is fine, llama.cpp takes its occurrences left to right as we do).
        for t in group {
            for k in 1..t.len() {
                let suffix = &t[k..];
                if prefixes.contains(suffix) && !group_only_self(group, t, suffix) {
                    return false;
                }
            }
        }
    }
    true
}

/// True when the only text of `group` that begins with `prefix` is `t` itself.
fn group_only_self(group: &[&[u8]], t: &[u8], prefix: &[u8]) -> bool {
    group
        .iter()
        .filter(|o| o.starts_with(prefix))
        .all(|o| *o == t)
}

/// Appends llama.cpp's tokens of `text` (through the exception boundary) to `out`.
pub(super) fn raw_tokens(
    vocab: *const sys::llama_vocab,
    text: &[u8],
    add_special: bool,
    parse_special: bool,
    out: &mut Vec<Token>,
) -> Result<()> {
    let len: i32 = text
        .len()
        .try_into()
        .map_err(|_| Error::invalid("the text is longer than 2 GiB"))?;
    let start = out.len();
    let mut room = text.len() / 2 + 8;
    for _ in 0..2 {
        out.resize(start + room, 0);
        let mut n = 0;
        // SAFETY: text is valid for len bytes; out has `room` tokens of space after start.
        let rc = unsafe {
            shim::mshim_tokenize(
                vocab,
                text.as_ptr().cast(),
                len,
                out[start..].as_mut_ptr(),
                room as i32,
                add_special,
                parse_special,
                &mut n,
            )
        };
        if let Err(e) = check(rc, "tokenizing") {
            out.truncate(start);
            return Err(e);
        }
        if n >= 0 {
            out.truncate(start + n as usize);
            return Ok(());
        }
        if n == i32::MIN {
            break;
        }
        room = (-n) as usize;
    }
    out.truncate(start);
    Err(Error::new(
        Status::Backend,
        "the text could not be tokenized",
    ))
}

#[cfg(test)]
mod tests {
    use super::super::{Model, ModelLoad};

    fn model() -> Option<Model> {
        let path = std::env::var("MINERVA_MODEL").ok()?;
        let path = std::ffi::CString::new(path).unwrap();
        let load = ModelLoad {
            devices: &[],
            gpu_layers: 0,
            output_on_cpu: false,
            use_mmap: true,
            progress: None,
        };
        Some(Model::load(&path, load).unwrap_or_else(|_| panic!("load {path:?}")))
    }

    /// The one-pass split gives exactly llama.cpp's tokens, on texts made to stress it: special
    /// texts of the vocabulary next to each other, cut in halves, inside words, around white
    /// space and multi-byte characters.
    #[test]
    fn one_pass_tokens_are_llamas_tokens() {
        let Some(model) = model() else {
            eprintln!("MINERVA_MODEL is not set: skipped");
            return;
        };
        if !model.splits_in_one_pass() {
            eprintln!("this vocabulary is split by llama.cpp itself: nothing to compare");
            return;
        }
        let specials: Vec<String> = [
            "<start_of_turn>",
            "<end_of_turn>",
            "<bos>",
            "<eos>",
            "<pad>",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain((0..40).map(|i| format!("<unused{}>", i * 37)))
        .collect();
        let plain = [
            "user",
            "model",
            "\n",
            " ",
            "  ",
            "\t",
            "word",
            " word",
            "é",
            "😀",
            "<",
            ">",
            "<start",
            "_of_turn>",
            "unused",
            "1",
            "x",
            "\n\n",
            "▁",
            "<<",
            ">>",
            "日本語",
        ];
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        let mut cases = vec![
            String::new(),
            "<start_of_turn>user\nSay yes<end_of_turn>\n<start_of_turn>model\n".to_string(),
            "<start_of_turn>".repeat(200),
        ];
        for _ in 0..3000 {
            let mut s = String::new();
            for _ in 0..(next() % 24) {
                let r = next();
                if r % 3 == 0 {
                    s.push_str(&specials[(r / 3) as usize % specials.len()]);
                } else {
                    s.push_str(plain[(r / 3) as usize % plain.len()]);
                }
            }
            cases.push(s);
        }
        for text in &cases {
            let whole = model.tokenize_whole(text).unwrap();
            let fast = model.tokenize_prompt(text, usize::MAX).unwrap().unwrap();
            assert_eq!(fast, whole, "tokens of {text:?}");
        }
        // The limit stops early, and a text of special tokens costs one pass.
        let flood = "<start_of_turn>".repeat(100_000);
        let t = std::time::Instant::now();
        assert!(model.tokenize_prompt(&flood, 2048).unwrap().is_err());
        let full = model.tokenize_prompt(&flood, usize::MAX).unwrap().unwrap();
        assert_eq!(full.len(), 100_001);
        eprintln!(
            "{} texts tokenized alike; 1.5 MB of special tokens split and counted in {:?}",
            cases.len(),
            t.elapsed()
        );
    }
}
