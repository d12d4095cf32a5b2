//! Embeddings: one vector per text, computed on the engine thread between generation steps, in a
//! llama.cpp context of their own (created on the first call), so that streams keep generating
//! and an embedding call costs them one batch of at most [`EMBED_BATCH`] tokens per step.
//!
//! Each text is decoded by itself (one text per decode, its cells removed after it), so its vector
//! does not depend on the other texts of the call, to the bit: packing texts into one decode made
//! ggml take other kernels for the batch's size, and a text's vector moved by up to 0.019 in a
//! value (cosine 0.9985) with its company. The context gives per-token embeddings (pooling NONE)
//! and minerva pools them itself, so one context serves every pooling.

use super::error::{Error, Result, Status};
use super::llama::{Batch, Context, ContextParams, Model, Token};
use parking_lot::{Condvar, Mutex};
use std::sync::Arc;

/// How the token vectors of a text become one. Values are the C API's `minerva_pooling`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[repr(u32)]
pub enum Pooling {
    /// The model's own (from its GGUF file) if it declares one, else `Mean`.
    #[default]
    Default = 0,
    Mean = 1,
    Last = 2,
    Cls = 3,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EmbedParams {
    pub pooling: Pooling,
    /// L2-normalize each vector.
    pub normalize: bool,
}

impl Default for EmbedParams {
    fn default() -> Self {
        EmbedParams {
            pooling: Pooling::Default,
            normalize: true,
        }
    }
}

/// Tokens one embedding decode holds at most (texts are packed up to this; a longer text of a
/// causal model is decoded over several). llama.cpp keeps a row of logits per token in embedding
/// mode (262,144 floats a token for Gemma 3: 128 MiB for a batch, and as much again in the compute
/// buffer), so this bounds those buffers too.
pub const EMBED_BATCH: usize = 128;
/// Texts in one embedding decode at most: one, so that a text's vector is the same whatever the
/// other texts of the call (see the module's doc).
const EMBED_SEQS: usize = 1;

/// An embedding call on its way through the engine thread.
pub(crate) struct EmbedJob {
    pub texts: Vec<Vec<Token>>,
    pub pooling: Pooling,
    pub normalize: bool,
    state: Mutex<JobState>,
    done: Condvar,
}

#[derive(Default)]
struct JobState {
    out: Vec<f32>,
    /// The next text to compute, and how many of its tokens are done (a long text spans decodes).
    next: usize,
    next_pos: usize,
    /// The sums (MEAN), or the chosen token's vector (CLS, LAST), of the text being computed.
    acc: Vec<f32>,
    result: Option<Result<()>>,
}

impl EmbedJob {
    pub fn new(texts: Vec<Vec<Token>>, pooling: Pooling, normalize: bool) -> Arc<EmbedJob> {
        Arc::new(EmbedJob {
            texts,
            pooling,
            normalize,
            state: Mutex::new(JobState::default()),
            done: Condvar::new(),
        })
    }

    /// Caller: waits for the vectors.
    pub fn wait(&self) -> Result<Vec<f32>> {
        let mut st = self.state.lock();
        while st.result.is_none() {
            self.done.wait(&mut st);
        }
        st.result.clone().expect("set")?;
        Ok(std::mem::take(&mut st.out))
    }

    /// Engine thread: ends the job.
    pub fn finish(&self, result: Result<()>) {
        let mut st = self.state.lock();
        if st.result.is_none() {
            st.result = Some(result);
        }
        drop(st);
        self.done.notify_all();
    }
}

/// The engine thread's side: the embedding context and the jobs in progress.
pub(crate) struct Embedder {
    model: Arc<Model>,
    ctx: Option<Context>,
    batch: Option<Batch>,
    threads: u32,
    context_tokens: usize,
    /// The model's own pooling, for `Pooling::Default`.
    own: Pooling,
    causal: bool,
    pub jobs: std::collections::VecDeque<Arc<EmbedJob>>,
}

impl Embedder {
    /// `pooling_type` and `causal` as the model's file says (see `GgufSummary`).
    pub fn new(
        model: Arc<Model>,
        threads: u32,
        context_tokens: usize,
        pooling_type: Option<u32>,
        causal: bool,
    ) -> Embedder {
        let own = match pooling_type {
            Some(2) => Pooling::Cls,
            Some(3) => Pooling::Last,
            _ => Pooling::Mean,
        };
        Embedder {
            model,
            ctx: None,
            batch: None,
            threads,
            context_tokens,
            own,
            causal,
            jobs: Default::default(),
        }
    }

    pub fn has_work(&self) -> bool {
        !self.jobs.is_empty()
    }

    /// Tokens per decode: a non-causal model must see a whole text in one micro-batch.
    fn batch_tokens(&self) -> usize {
        if self.causal {
            EMBED_BATCH.min(self.context_tokens.max(1))
        } else {
            self.context_tokens
        }
    }

    fn context(&mut self) -> Result<()> {
        if self.ctx.is_some() {
            return Ok(());
        }
        let n = self.batch_tokens() as u32;
        let ctx = Context::new(
            self.model.clone(),
            &ContextParams {
                n_ctx: (self.context_tokens as u32).max(n),
                n_batch: n,
                n_seq_max: EMBED_SEQS as u32,
                kept_seqs: 0,
                threads: self.threads,
                embeddings: true,
                backend_sampling: false,
            },
        )?;
        self.batch = Some(Batch::new(n as usize)?);
        self.ctx = Some(ctx);
        Ok(())
    }

    /// One decode of the first job's next texts. Jobs whose caller is gone are not special: the
    /// caller always waits (it cannot leave a blocking call).
    pub fn step(&mut self) {
        let Some(job) = self.jobs.front().cloned() else {
            return;
        };
        let r = self.context().and_then(|()| self.decode_some(&job));
        match r {
            Ok(true) => {
                self.jobs.pop_front();
                job.finish(Ok(()));
            }
            Ok(false) => {}
            Err(e) => {
                self.jobs.pop_front();
                job.finish(Err(e));
                self.clear_cells();
            }
        }
    }

    /// Drops every sequence's cells (after a failure part-way through a text).
    fn clear_cells(&mut self) {
        if let Some(ctx) = self.ctx.as_mut() {
            for seq in 0..EMBED_SEQS as i32 {
                ctx.seq_rm(seq, 0);
            }
        }
    }

    /// Ends the first job with an internal error (after a panic).
    pub fn fail_first(&mut self, why: &str) {
        if let Some(job) = self.jobs.pop_front() {
            job.finish(Err(Error::new(Status::Internal, why)));
        }
        self.clear_cells();
    }

    /// Ends every job (the engine is shutting down).
    pub fn cancel_all(&mut self) {
        for job in self.jobs.drain(..) {
            job.finish(Err(Error::new(
                Status::Cancelled,
                "the engine is being freed",
            )));
        }
    }

    /// Decodes the next texts of `job` (or the next piece of a long one). Ok(true): the job is
    /// complete.
    fn decode_some(&mut self, job: &EmbedJob) -> Result<bool> {
        // Short texts are packed up to EMBED_BATCH tokens; a non-causal model's longer text has a
        // batch of its own, of its length (it must be seen whole).
        let cap = match job.texts.get(job.state.lock().next) {
            Some(t) if !self.causal && t.len() > EMBED_BATCH => t.len(),
            _ => EMBED_BATCH.min(self.batch_tokens()),
        };
        let ctx = self.ctx.as_mut().expect("context made");
        let batch = self.batch.as_mut().expect("batch made");
        let n_embd = self.model.n_embd_out();
        let pooling = match job.pooling {
            Pooling::Default => self.own,
            p => p,
        };
        let mut st = job.state.lock();
        batch.clear();
        // (text index, first row, rows, start position) of each sequence in this batch.
        let mut placed: Vec<(usize, i32, usize, usize)> = Vec::new();
        let mut i = st.next;
        let mut pos = st.next_pos;
        while i < job.texts.len() && placed.len() < EMBED_SEQS {
            let text = &job.texts[i];
            let room = cap - batch.len();
            let take = (text.len() - pos).min(room);
            if take == 0 || (take < text.len() - pos && !placed.is_empty()) {
                break; // a text that does not fit whole waits for a batch of its own
            }
            let seq = placed.len() as i32;
            let first = batch.len() as i32;
            for (k, &t) in text[pos..pos + take].iter().enumerate() {
                batch.add(t, (pos + k) as i32, seq, true);
            }
            placed.push((i, first, take, pos));
            if pos + take < text.len() {
                pos += take; // a long text: the rest in the next decode
                break;
            }
            i += 1;
            pos = 0;
        }
        let rc = ctx.decode(batch)?;
        if rc != 0 {
            return Err(Error::new(
                Status::Backend,
                format!("llama_decode failed for embeddings (code {rc})"),
            ));
        }
        for &(text, first, rows, start) in &placed {
            let len = job.texts[text].len();
            if start == 0 {
                st.acc = vec![0.0; n_embd];
            }
            for r in 0..rows {
                let position = start + r;
                let use_row = match pooling {
                    Pooling::Mean | Pooling::Default => true,
                    Pooling::Cls => position == 0,
                    Pooling::Last => position + 1 == len,
                };
                if !use_row {
                    continue;
                }
                let v = ctx.embeddings(first + r as i32, n_embd)?;
                for (a, x) in st.acc.iter_mut().zip(v) {
                    *a += x;
                }
            }
            if start + rows == len {
                let mut v = std::mem::take(&mut st.acc);
                if matches!(pooling, Pooling::Mean | Pooling::Default) {
                    let n = len as f32;
                    v.iter_mut().for_each(|x| *x /= n);
                }
                if job.normalize {
                    let norm = v
                        .iter()
                        .map(|x| (*x as f64) * (*x as f64))
                        .sum::<f64>()
                        .sqrt();
                    if norm > 0.0 {
                        v.iter_mut().for_each(|x| *x = (*x as f64 / norm) as f32);
                    }
                }
                st.out.extend_from_slice(&v);
            }
        }
        for seq in 0..placed.len() as i32 {
            // A long text keeps its cells until its last piece.
            if !(pos > 0 && seq + 1 == placed.len() as i32) {
                ctx.seq_rm(seq, 0);
            }
        }
        st.next = i;
        st.next_pos = pos;
        Ok(i >= job.texts.len())
    }
}

impl super::Engine {
    /// One vector per text, row after row (`texts.len() * info().embedding_dims` floats),
    /// computed on the engine thread between generation steps. Blocks until done: refused inside
    /// a callback and on an engine thread.
    pub fn embed(&self, texts: &[&str], params: EmbedParams) -> Result<Vec<f32>> {
        if super::in_callback() || super::current_engine_thread().is_some() {
            return Err(Error::invalid(
                "embed waits for the engine thread and cannot be called from inside a callback",
            ));
        }
        if texts.is_empty() {
            return Ok(Vec::new());
        }
        let context = self.info.context_tokens as usize;
        let mut tokens = Vec::with_capacity(texts.len());
        for (i, text) in texts.iter().enumerate() {
            let too_long = |n: String| {
                Error::new(
                    Status::ContextFull,
                    format!(
                        "texts[{i}] is {n} tokens; a text holds at most {context} (context_tokens)"
                    ),
                )
            };
            if self.model.min_tokens(text) > context {
                return Err(too_long(format!(
                    "at least {}",
                    self.model.min_tokens(text)
                )));
            }
            let t = match self.model.tokenize_prompt(text, context)? {
                Ok(t) => t,
                Err(counted) => return Err(too_long(format!("more than {counted}"))),
            };
            if t.is_empty() {
                return Err(Error::invalid(format!(
                    "texts[{i}] is empty (it gives no tokens)"
                )));
            }
            tokens.push(t);
        }
        let job = EmbedJob::new(tokens, params.pooling, params.normalize);
        {
            let mut inc = self.mailbox.incoming.lock();
            if inc.shutdown {
                return Err(Error::new(Status::Cancelled, "the engine is shutting down"));
            }
            inc.embeds.push_back(job.clone());
        }
        self.mailbox.wake.notify_one();
        job.wait()
    }
}
