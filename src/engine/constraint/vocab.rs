//! The model's vocabulary as llguidance sees it: every token's bytes in a trie, built once per
//! engine (about a second for 262,144 tokens), as llama.cpp's `common/llguidance.cpp` builds it.

use crate::engine::error::{Error, Result, Status};
use crate::engine::llama::Model;
use llguidance::ParserFactory;
use std::sync::Arc;
use toktrie::{TokEnv, TokRxInfo, TokTrie, TokenId, TokenizerEnv};

/// The token table and the parser factory of one model.
pub struct Vocabulary {
    pub(super) factory: ParserFactory,
    pub(super) n_vocab: usize,
}

/// llguidance's tokenizer interface over a llama.cpp model.
struct ModelEnv {
    model: Arc<Model>,
    trie: TokTrie,
}

impl TokenizerEnv for ModelEnv {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    /// The model's own tokenizer where the text is UTF-8 (special tokens not parsed: a grammar's
    /// text is text), the trie's greedy split otherwise.
    fn tokenize_bytes(&self, s: &[u8]) -> Vec<TokenId> {
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.model
                .tokenize(text, false, false)
                .map(|t| t.into_iter().map(|t| t as TokenId).collect())
                .unwrap_or_default()
        })
    }
}

impl Vocabulary {
    pub fn build(model: Arc<Model>) -> Result<Vocabulary> {
        let n_vocab = model.n_vocab();
        let mut words = Vec::with_capacity(n_vocab);
        for t in 0..n_vocab {
            let t = t as i32;
            let mut bytes = model.detokenize(&[t], false)?;
            if bytes.is_empty() {
                // A special token: llguidance knows it by a 0xFF byte before its text, and allows
                // it only where a grammar names it.
                let special = model.detokenize(&[t], true)?;
                if !special.is_empty() {
                    bytes.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    bytes.extend_from_slice(&special);
                }
            }
            words.push(bytes);
        }
        let info = TokRxInfo::new(n_vocab as u32, model.end_token() as TokenId);
        let trie = TokTrie::from(&info, &words);
        let env: TokEnv = Arc::new(ModelEnv { model, trie });
        let mut factory = ParserFactory::new_simple(&env).map_err(|e| {
            Error::new(
                Status::Internal,
                format!("cannot build the constraint engine's token table: {e}"),
            )
        })?;
        // Warnings come back through the matcher and go to minerva's log.
        factory.quiet();
        Ok(Vocabulary { factory, n_vocab })
    }
}
