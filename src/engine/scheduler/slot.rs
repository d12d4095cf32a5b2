//! A stream that holds a sequence slot: its place in the KV cache and the batch, its sampler, its
//! text output and its timing. What happens to one sampled token is here; what happens to the
//! whole batch is in `mod.rs`.

use super::request::Request;
use crate::engine::callback::callback_scope;
use crate::engine::chat::{capture, Reply};
use crate::engine::error::{Error, Status};
use crate::engine::llama::{Model, Sampler, Token};
use crate::engine::stream::{Control, FinishReason, StreamShared, TokenFn};
use crate::engine::text::{StopMatcher, StopResult, Utf8Assembler};
use std::time::Instant;

/// How a stream ends: its final status, the reason, and the error for the stream's message.
pub(super) type End = (Status, FinishReason, Option<Error>);

pub(super) struct Active {
    pub req: Request,
    pub seq: i32,
    /// Tokens of this stream in the KV cache (its next position).
    pub n_past: usize,
    /// Prompt tokens reused from the cache.
    pub cached: usize,
    /// Tokens put in the current batch.
    pub in_batch: usize,
    /// The engine step in which the stream got its slot (streams admitted in one step started
    /// together).
    pub admitted: u64,
    /// Output row in the current batch, if this stream samples after the decode.
    pub out_row: Option<i32>,
    /// The last sampled token, to be decoded next.
    pub next: Option<Token>,
    /// None: plain greedy (an argmax over the logits); or, while `deferred`, at the constraint
    /// thread.
    pub sampler: Option<Sampler>,
    /// Its token is picked inside llama.cpp's graph, by the chain attached to its sequence.
    pub on_backend: bool,
    /// The stream's sampling is at the constraint thread (`constrain.rs`): it sits out of the
    /// batches until its token comes back.
    pub deferred: bool,
    /// The engine step in which the stream was last in a batch (for the LoRA sets' turns).
    pub last_served: u64,
    text: TextOut,
    pub timing: Timing,
}

/// Turns tokens into whole UTF-8 characters, holds back text that may begin a stop string, and
/// hands the rest to the stream.
struct TextOut {
    utf8: Utf8Assembler,
    stop: StopMatcher,
    /// Stop strings before this index are the caller's (finish STOP); the rest end the chat turn
    /// (finish EOS).
    user_stops: usize,
    /// Chat streams with tools or reasoning: separates calls and reasoning from text.
    reply: Option<Reply>,
    /// The token callback answered STOP (or panicked): it is not called again.
    callback_stopped: bool,
    /// The current token's bytes and text (kept to reuse their allocations).
    piece: Vec<u8>,
    text: String,
}

/// When the stream's prompt and tokens were computed.
#[derive(Default)]
pub(super) struct Timing {
    pub generated: u32,
    pub prompt_started: Option<Instant>,
    first_token: Option<Instant>,
    last_token: Option<Instant>,
}

impl Timing {
    /// Generation speed after the first token.
    fn tokens_per_second(&self) -> f64 {
        match (self.first_token, self.last_token) {
            (Some(f), Some(l)) if self.generated > 1 && l > f => {
                (self.generated - 1) as f64 / (l - f).as_secs_f64()
            }
            _ => 0.0,
        }
    }
}

impl Active {
    /// A stream placed in sequence `seq`, whose first `reuse` prompt tokens are in the cache.
    pub fn new(mut req: Request, seq: i32, reuse: usize, admitted: u64) -> Active {
        let sampler = req.sampler.take();
        let mut stops = req.params.stop.clone();
        let user_stops = stops.len();
        let mut reply = None;
        if let Some(chat) = &req.params.chat {
            stops.extend(chat.end_markers.iter().cloned());
            reply = chat.reply();
        }
        req.shared.update_stats(|s| {
            s.prompt_tokens = req.tokens.len() as u32;
            s.cached_prompt_tokens = reuse as u32;
        });
        Active {
            req,
            seq,
            n_past: reuse,
            cached: reuse,
            in_batch: 0,
            admitted,
            out_row: None,
            next: None,
            sampler,
            on_backend: false,
            deferred: false,
            last_served: 0,
            text: TextOut {
                utf8: Utf8Assembler::default(),
                stop: StopMatcher::new(stops),
                user_stops,
                reply,
                callback_stopped: false,
                piece: Vec::new(),
                text: String::new(),
            },
            timing: Timing::default(),
        }
    }

    /// The stream's LoRA scales (empty without adapters).
    pub fn lora_scales(&self) -> &[f32] {
        self.req.params.lora_scales.as_deref().unwrap_or(&[])
    }

    /// Handles one sampled token: stats, end of generation, text, length and context limits.
    /// Returns how the stream ends, if it does; else the token is decoded next.
    pub fn accept(&mut self, token: Token, model: &Model, context_tokens: usize) -> Option<End> {
        self.record_token();
        // A complete grammar allows nothing but end-of-generation: the stream ends there even
        // with ignore_eos.
        let grammar = self.req.params.sampling.grammar.is_some() || self.req.constraint.is_some();
        if (!self.req.params.ignore_eos || grammar) && model.is_eog(token) {
            return Some((Status::Ok, FinishReason::Eos, None));
        }
        let t = &mut self.text;
        t.piece.clear();
        if let Err(e) = model.token_piece(token, &mut t.piece) {
            return Some((e.status, FinishReason::Error, Some(e)));
        }
        t.text.clear();
        t.utf8.push(&t.piece, &mut t.text);
        if !t.text.is_empty() {
            // Without stop strings or tools the text goes out as it is, without a copy.
            let (control, stopped, calls_done) = if t.stop.is_empty() && t.reply.is_none() {
                (
                    deliver(&self.req.shared, &mut self.req.on_token, &t.text),
                    false,
                    false,
                )
            } else {
                let mut calls_done = false;
                let (mut out, mut stopped) = match t.stop.push(&t.text) {
                    StopResult::Continue(out) => (out, false),
                    StopResult::Stopped(out) => (out, true),
                };
                if let Some(r) = &mut t.reply {
                    let pushed = r.push(&out);
                    self.req.shared.push_reasoning(&pushed.reasoning);
                    out = pushed.text;
                    calls_done = pushed.stop;
                    stopped |= pushed.stop;
                }
                (
                    deliver(&self.req.shared, &mut self.req.on_token, &out),
                    stopped,
                    calls_done,
                )
            };
            if stopped {
                // A chat's end-of-turn marker (or its last allowed call) ends the stream as
                // end-of-generation does.
                let eot = calls_done || t.stop.matched().is_some_and(|i| i >= t.user_stops);
                let reason = if eot {
                    FinishReason::Eos
                } else {
                    FinishReason::Stop
                };
                return Some((Status::Ok, reason, None));
            }
            if control == Control::Stop {
                t.callback_stopped = true;
                return Some((Status::Ok, FinishReason::Stop, None));
            }
        }
        // A complete constraint allows only the end token: the stream ends now, without a step
        // to pick it.
        if self.req.constraint.as_ref().is_some_and(|c| c.is_done()) {
            return Some((Status::Ok, FinishReason::Eos, None));
        }
        let generated = self.timing.generated;
        if self.req.params.max_tokens > 0 && generated >= self.req.params.max_tokens {
            return Some((Status::Ok, FinishReason::Length, None));
        }
        if self.n_past >= context_tokens {
            let err = Error::new(
                Status::ContextFull,
                format!(
                    "the stream filled its context ({context_tokens} tokens: {} of prompt, \
                     {generated} generated)",
                    self.req.tokens.len(),
                ),
            );
            return Some((Status::ContextFull, FinishReason::Error, Some(err)));
        }
        self.next = Some(token);
        None
    }

    /// Counts a generated token; the first one also fixes the time to first token and the prompt
    /// rate. One stats update per token.
    fn record_token(&mut self) {
        let now = Instant::now();
        let t = &mut self.timing;
        t.generated += 1;
        t.last_token = Some(now);
        let first = t.first_token.is_none().then(|| {
            t.first_token = Some(now);
            let prompt_secs = t.prompt_started.map_or(0.0, |s| (now - s).as_secs_f64());
            let computed = (self.req.tokens.len() - self.cached) as f64;
            (
                (now - self.req.shared.created).as_secs_f64() * 1000.0,
                if prompt_secs > 0.0 {
                    computed / prompt_secs
                } else {
                    0.0
                },
            )
        });
        let generated = t.generated;
        self.req.shared.update_stats(|s| {
            s.generated_tokens = generated;
            if let Some((ttft_ms, prompt_rate)) = first {
                s.time_to_first_token_ms = ttft_ms;
                s.prompt_tokens_per_second = prompt_rate;
            }
        });
    }

    /// Ends the stream: delivers held-back text where the end is a natural one (or an error:
    /// what was generated stands), records the result and calls its finish callback.
    pub fn finish(mut self, status: Status, reason: FinishReason, err: Option<Error>) {
        if matches!(
            reason,
            FinishReason::Length | FinishReason::Eos | FinishReason::Error
        ) {
            self.text.utf8.finish();
            let mut rest = self.text.stop.flush();
            if let Some(r) = &mut self.text.reply {
                let pushed = r.push(&rest);
                self.req.shared.push_reasoning(&pushed.reasoning);
                rest = pushed.text;
            }
            deliver(&self.req.shared, &mut self.req.on_token, &rest);
        }
        // The reply's calls and reasoning (and the text held while it might have been markup),
        // whatever the end.
        if let Some(r) = &mut self.text.reply {
            let done = r.finish();
            self.req.shared.push_reasoning(&done.reasoning);
            if reason != FinishReason::Cancelled && !self.text.callback_stopped {
                deliver(&self.req.shared, &mut self.req.on_token, &done.text);
            }
            if let Some(calls) = done.calls {
                self.req.shared.set_tool_calls(capture::calls_json(&calls));
            }
        }
        let tps = self.timing.tokens_per_second();
        self.req.shared.update_stats(|s| s.tokens_per_second = tps);
        self.req.finish(status, reason, err.as_ref());
    }
}

/// Hands text to the stream: its callback, or its pull buffer.
fn deliver(shared: &StreamShared, on_token: &mut Option<TokenFn>, text: &str) -> Control {
    if text.is_empty() {
        return Control::Continue;
    }
    match on_token {
        Some(f) if !shared.is_pull() => {
            let _one_at_a_time = shared.callback_lock.lock();
            callback_scope(|| {
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(text)))
                    .unwrap_or(Control::Stop)
            })
        }
        _ => {
            shared.push_text(text);
            Control::Continue
        }
    }
}
