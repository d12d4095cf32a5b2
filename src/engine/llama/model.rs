//! A loaded model and its vocabulary: loading (with progress), tokenizing, token text, facts.
//! Also the GGUF check that runs before llama.cpp sees a file.

use super::shim::{self, check};
use super::tokenize::{is_c_space, raw_tokens, Specials};
use super::{init_backend, Device};
use crate::engine::error::{Error, Result, Status};
use llama_cpp_sys_2 as sys;
use std::ffi::{c_void, CStr};
use std::ptr::NonNull;

pub type Token = sys::llama_token;

/// How to load a model.
pub struct ModelLoad<'a> {
    /// The devices to put `gpu_layers` on, split by their free memory (none: the CPU only).
    pub devices: &'a [Device],
    pub gpu_layers: i32,
    /// The output layer's matrix stays on the CPU, whatever `gpu_layers` says.
    pub output_on_cpu: bool,
    pub use_mmap: bool,
    /// Called with load progress 0..1; returning false aborts the load.
    pub progress: Option<&'a mut dyn FnMut(f32) -> bool>,
}

/// A loaded model. Shared between the engine thread and callers (tokenizing).
pub struct Model {
    pub(super) raw: NonNull<sys::llama_model>,
    vocab: NonNull<sys::llama_vocab>,
    /// At most how many bytes of text one token stands for, when the vocabulary makes that a
    /// sound bound (see [`Model::min_tokens`]).
    bytes_per_token: Option<usize>,
    /// White space may give no token at all (some token strips the space beside it).
    strips_space: bool,
    /// The special tokens, for splitting prompts in one pass (None: llama.cpp splits them).
    specials: Option<Specials>,
    /// What must outlive the weights (see [`Model::keep_until_freed`]).
    keep_alive: Option<Box<dyn std::any::Any + Send + Sync>>,
}

// SAFETY: llama.cpp's model and vocabulary are immutable after loading; llama-server and
// llama.cpp's own tools tokenize from several threads against one model.
unsafe impl Send for Model {}
unsafe impl Sync for Model {}

/// Why a load failed: aborted by the progress callback, or failed inside llama.cpp.
pub enum LoadError {
    Aborted,
    Failed(String),
}

struct ProgressCtx<'a> {
    f: &'a mut dyn FnMut(f32) -> bool,
    aborted: bool,
}

unsafe extern "C" fn progress_trampoline(progress: f32, user_data: *mut c_void) -> bool {
    // SAFETY: user_data is the &mut ProgressCtx that Model::load keeps alive across the load.
    let ctx = unsafe { &mut *(user_data as *mut ProgressCtx) };
    let go_on = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (ctx.f)(progress)))
        .unwrap_or(false);
    if !go_on {
        ctx.aborted = true;
    }
    go_on
}

impl Model {
    pub fn load(path: &CStr, opts: ModelLoad) -> std::result::Result<Model, LoadError> {
        init_backend();
        // SAFETY: plain value returned by llama.cpp.
        let mut mp = unsafe { sys::llama_model_default_params() };
        // A NULL-terminated list: only the chosen devices (none leaves the CPU).
        let mut devs: Vec<sys::ggml_backend_dev_t> = opts.devices.iter().map(|d| d.raw).collect();
        devs.push(std::ptr::null_mut());
        mp.n_gpu_layers = if opts.devices.is_empty() {
            0
        } else {
            opts.gpu_layers
        };
        mp.devices = devs.as_mut_ptr();
        // The output matrix's names: its own, or the token embeddings a tied model copies there.
        let output_pattern = c"^(output|token_embd)\\.weight$";
        // SAFETY: ggml's CPU buffer type is static.
        let cpu = unsafe { sys::ggml_backend_cpu_buffer_type() };
        let overrides = [
            sys::llama_model_tensor_buft_override {
                pattern: output_pattern.as_ptr(),
                buft: cpu,
            },
            sys::llama_model_tensor_buft_override {
                pattern: std::ptr::null(),
                buft: std::ptr::null_mut(),
            },
        ];
        if opts.output_on_cpu && !opts.devices.is_empty() {
            mp.tensor_buft_overrides = overrides.as_ptr();
        }
        mp.load_mode = if opts.use_mmap {
            sys::LLAMA_LOAD_MODE_MMAP
        } else {
            sys::LLAMA_LOAD_MODE_NONE
        };
        let mut no_progress = |_: f32| true;
        let has_progress = opts.progress.is_some();
        let mut pctx = ProgressCtx {
            f: opts.progress.unwrap_or(&mut no_progress),
            aborted: false,
        };
        if has_progress {
            mp.progress_callback = Some(progress_trampoline);
            mp.progress_callback_user_data = &mut pctx as *mut ProgressCtx as *mut c_void;
        }
        super::take_last_llama_error();
        let mut raw = std::ptr::null_mut();
        // SAFETY: path is NUL-terminated; `devs` and `pctx` outlive the call.
        let loaded = check(
            unsafe { shim::mshim_model_load(path.as_ptr(), mp, &mut raw) },
            "loading the model",
        );
        let Some(raw) = NonNull::new(raw) else {
            if pctx.aborted {
                return Err(LoadError::Aborted);
            }
            return Err(LoadError::Failed(match loaded {
                Err(e) => e.message,
                Ok(()) => super::take_last_llama_error(),
            }));
        };
        // SAFETY: raw is a valid model; its vocabulary lives as long as it.
        let vocab = unsafe { sys::llama_model_get_vocab(raw.as_ptr()) } as *mut sys::llama_vocab;
        let Some(vocab) = NonNull::new(vocab) else {
            // SAFETY: raw was loaded above and is freed once.
            unsafe { sys::llama_model_free(raw.as_ptr()) };
            return Err(LoadError::Failed("the model has no vocabulary".into()));
        };
        let mut model = Model {
            raw,
            vocab,
            bytes_per_token: None,
            strips_space: true,
            specials: None,
            keep_alive: None,
        };
        let t = std::time::Instant::now();
        model.measure_vocab();
        let measured = t.elapsed();
        model.specials = Specials::build(model.vocab());
        crate::engine::log::log(
            crate::engine::log::Level::Debug,
            &format!(
                "vocabulary measured in {:.1} ms, special tokens indexed in {:.1} ms ({})",
                measured.as_secs_f64() * 1e3,
                (t.elapsed() - measured).as_secs_f64() * 1e3,
                if model.specials.is_some() {
                    "prompts split in one pass"
                } else {
                    "prompts split by llama.cpp"
                }
            ),
        );
        Ok(model)
    }

    /// Finds the bound behind [`Model::min_tokens`]: for the byte-level (BPE) and SentencePiece
    /// (SPM) tokenizers every byte of a text lies in exactly one token, and a token stands for
    /// the bytes of its piece (SPM: or one unknown character, at most 4 bytes).
    fn measure_vocab(&mut self) {
        // SAFETY: valid vocabulary.
        let ty = unsafe { sys::llama_vocab_type(self.vocab()) };
        if ty != sys::LLAMA_VOCAB_TYPE_BPE && ty != sys::LLAMA_VOCAB_TYPE_SPM {
            return;
        }
        let (mut longest, mut strips) = (0i32, true);
        // SAFETY: valid vocabulary; the out pointers are live locals.
        let ok = unsafe {
            check(
                shim::mshim_vocab_max_piece(self.vocab(), &mut longest),
                "vocab",
            )
            .and_then(|_| {
                check(
                    shim::mshim_vocab_strips_space(self.vocab(), &mut strips),
                    "vocab",
                )
            })
        };
        if ok.is_ok() && longest > 0 {
            self.bytes_per_token = Some((longest as usize).max(4));
            self.strips_space = strips;
        }
    }

    /// A lower bound on the number of tokens `text` gives, found in one pass over its bytes
    /// without tokenizing it (0 when the vocabulary gives no sound bound). Lets a prompt that
    /// cannot fit be refused before llama.cpp's tokenizer, whose special-token pass is quadratic
    /// in the number of special tokens written in the text, spends seconds on it.
    pub fn min_tokens(&self, text: &str) -> usize {
        let Some(per_token) = self.bytes_per_token else {
            return 0;
        };
        let counted = if self.strips_space {
            text.bytes().filter(|&b| !is_c_space(b)).count()
        } else {
            text.len()
        };
        counted.div_ceil(per_token)
    }

    pub(super) fn vocab(&self) -> *const sys::llama_vocab {
        self.vocab.as_ptr()
    }

    /// Tokenizes `text` with llama.cpp's rules: BOS/EOS where the vocabulary asks for them with
    /// `add_special`, special tokens written in the text recognized with `parse_special`;
    /// `Ok(Err(n))` once it has more than `limit` tokens (n: those counted before stopping). With
    /// `parse_special`, one pass over the text where the vocabulary allows it (see
    /// `tokenize.rs`), llama.cpp's own tokenizer otherwise.
    pub fn tokenize_within(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
        limit: usize,
    ) -> Result<std::result::Result<Vec<Token>, usize>> {
        if let (Some(specials), true) = (&self.specials, parse_special) {
            return specials.tokenize(self.vocab(), text.as_bytes(), add_special, limit);
        }
        let mut tokens = Vec::new();
        raw_tokens(
            self.vocab(),
            text.as_bytes(),
            add_special,
            parse_special,
            &mut tokens,
        )?;
        Ok(if tokens.len() > limit {
            Err(tokens.len())
        } else {
            Ok(tokens)
        })
    }

    /// A prompt's tokens (BOS where the vocabulary asks, special tokens recognized), or
    /// `Ok(Err(n))` past `limit`: what a stream starts from.
    pub fn tokenize_prompt(
        &self,
        text: &str,
        limit: usize,
    ) -> Result<std::result::Result<Vec<Token>, usize>> {
        self.tokenize_within(text, true, true, limit)
    }

    /// [`Model::tokenize_within`] without a limit.
    pub fn tokenize(
        &self,
        text: &str,
        add_special: bool,
        parse_special: bool,
    ) -> Result<Vec<Token>> {
        Ok(self
            .tokenize_within(text, add_special, parse_special, usize::MAX)?
            .unwrap_or_else(|n| unreachable!("{n} tokens passed no limit")))
    }

    /// The text of `tokens` as llama.cpp joins it (special tokens shown with `render_special`,
    /// else left out). Ids must be below `n_vocab`.
    pub fn detokenize(&self, tokens: &[Token], render_special: bool) -> Result<Vec<u8>> {
        let n: i32 = tokens
            .len()
            .try_into()
            .map_err(|_| Error::invalid("too many tokens"))?;
        let mut out = vec![0u8; tokens.len() * 8 + 16];
        for _ in 0..2 {
            let mut len = 0;
            // SAFETY: tokens holds n ids (checked by the caller), out has the room given.
            let rc = unsafe {
                shim::mshim_detokenize(
                    self.vocab(),
                    tokens.as_ptr(),
                    n,
                    out.as_mut_ptr().cast(),
                    out.len().min(i32::MAX as usize) as i32,
                    render_special,
                    &mut len,
                )
            };
            check(rc, "detokenizing")?;
            if len >= 0 {
                out.truncate(len as usize);
                return Ok(out);
            }
            if len == i32::MIN {
                break;
            }
            out.resize((-len) as usize, 0);
        }
        Err(Error::new(
            Status::Backend,
            "the tokens could not be turned into text",
        ))
    }

    /// llama.cpp's own tokenizer on the whole text, as `llama_tokenize` gives it (for tests).
    #[cfg(test)]
    pub fn tokenize_whole(&self, text: &str) -> Result<Vec<Token>> {
        let mut tokens = Vec::new();
        raw_tokens(self.vocab(), text.as_bytes(), true, true, &mut tokens)?;
        Ok(tokens)
    }

    /// Whether prompts are split in one pass (see `tokenize.rs`).
    #[cfg(test)]
    pub fn splits_in_one_pass(&self) -> bool {
        self.specials.is_some()
    }

    /// Appends the bytes of `token` to `out` (special tokens render as nothing).
    pub fn token_piece(&self, token: Token, out: &mut Vec<u8>) -> Result<()> {
        let start = out.len();
        let mut cap = 64i32;
        for _ in 0..2 {
            out.resize(start + cap as usize, 0);
            let mut n = 0;
            // SAFETY: the buffer has `cap` bytes of room; llama.cpp writes at most that many.
            let rc = unsafe {
                shim::mshim_token_to_piece(
                    self.vocab(),
                    token,
                    out[start..].as_mut_ptr().cast(),
                    cap,
                    false,
                    &mut n,
                )
            };
            if let Err(e) = check(rc, "rendering a token") {
                out.truncate(start);
                return Err(e);
            }
            if n >= 0 {
                out.truncate(start + n as usize);
                return Ok(());
            }
            cap = -n;
        }
        out.truncate(start);
        Err(Error::new(
            Status::Backend,
            "a token's text could not be rendered",
        ))
    }

    /// The token that ends a turn (end-of-turn where the model has one, else end-of-sequence):
    /// what a complete constraint allows.
    pub fn end_token(&self) -> Token {
        // SAFETY: valid vocabulary.
        let eot = unsafe { sys::llama_vocab_eot(self.vocab()) };
        if eot >= 0 {
            return eot;
        }
        // SAFETY: valid vocabulary.
        unsafe { sys::llama_vocab_eos(self.vocab()) }.max(0)
    }

    pub fn is_eog(&self, token: Token) -> bool {
        // SAFETY: any token id is accepted; the vocabulary is valid.
        unsafe { sys::llama_vocab_is_eog(self.vocab(), token) }
    }

    pub fn n_vocab(&self) -> usize {
        // SAFETY: valid vocabulary.
        unsafe { sys::llama_vocab_n_tokens(self.vocab()) }.max(0) as usize
    }

    /// The length of the model's output embedding vectors (what llama.cpp gives per token in
    /// embedding mode; `n_embd` for most models, not for all).
    pub fn n_embd_out(&self) -> usize {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_embd_out(self.raw.as_ptr()) }.max(0) as usize
    }

    pub fn n_layer(&self) -> i32 {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_layer(self.raw.as_ptr()) }
    }

    pub fn n_ctx_train(&self) -> u32 {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_ctx_train(self.raw.as_ptr()) }.max(0) as u32
    }

    /// Whether cells of one sequence can be shared with another at a prefix: not for recurrent or
    /// hybrid memories, whose sequence copy takes the whole state.
    pub fn can_share_prefix(&self) -> bool {
        // SAFETY: valid model.
        unsafe {
            !sys::llama_model_is_recurrent(self.raw.as_ptr())
                && !sys::llama_model_is_hybrid(self.raw.as_ptr())
        }
    }

    /// The sliding attention window (0 when the model has none).
    pub fn n_swa(&self) -> usize {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_swa(self.raw.as_ptr()) }.max(0) as usize
    }

    pub fn n_params(&self) -> u64 {
        // SAFETY: valid model.
        unsafe { sys::llama_model_n_params(self.raw.as_ptr()) }
    }

    pub fn description(&self) -> String {
        let mut buf = [0u8; 256];
        // SAFETY: buf is writable for its length; llama.cpp NUL-terminates.
        let mut n = 0;
        let rc = unsafe {
            shim::mshim_model_desc(
                self.raw.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut n,
            )
        };
        if check(rc, "model description").is_err() {
            return String::new();
        }
        let n = (n.max(0) as usize).min(buf.len() - 1);
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    pub fn has_chat_template(&self) -> bool {
        self.chat_template().is_some()
    }
}

impl Model {
    /// Keeps `x` until the model has been freed (fields drop after `drop`): what the weights
    /// depend on, such as the lease on the RPC servers that hold some of them.
    pub fn keep_until_freed(&mut self, x: Box<dyn std::any::Any + Send + Sync>) {
        self.keep_alive = Some(x);
    }
}

impl Drop for Model {
    fn drop(&mut self) {
        // SAFETY: every Context borrowing this model was dropped first (Context holds an Arc).
        unsafe { sys::llama_model_free(self.raw.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// llama.cpp throws std::out_of_range for a token id it does not know: through the shim that
    /// is an error with llama.cpp's words, not an abort of the process.
    #[test]
    fn a_cpp_exception_becomes_an_error() {
        let Ok(path) = std::env::var("MINERVA_MODEL") else {
            eprintln!("MINERVA_MODEL is not set: skipped");
            return;
        };
        let path = std::ffi::CString::new(path).unwrap();
        let model = Model::load(
            &path,
            ModelLoad {
                devices: &[],
                gpu_layers: 0,
                output_on_cpu: false,
                use_mmap: true,
                progress: None,
            },
        )
        .unwrap_or_else(|_| panic!("load {path:?}"));
        let mut piece = Vec::new();
        let err = model.token_piece(i32::MAX, &mut piece).unwrap_err();
        assert_eq!(err.status, Status::Backend, "{err}");
        assert!(err.message.starts_with("rendering a token: "), "{err}");
        assert!(piece.is_empty());
        // The model still works after the exception.
        model.token_piece(1, &mut piece).unwrap();
        assert!(model.min_tokens(&"x".repeat(1 << 20)) > 1000);
    }
}
