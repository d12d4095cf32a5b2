//! `minerva_generate_params`: the settings of one generation, with the callbacks it names.

use super::*;
use crate::engine::{Error, GenerateParams, SamplingParams};
use std::ffi::{c_char, c_void};
use std::mem::offset_of;

/// The `seed` value that asks for a new random seed for each stream.
pub const MINERVA_SEED_RANDOM: u64 = u64::MAX;

/// Why a stream ended (`minerva_stream_stats.finish_reason`, and the finish callback).
pub type minerva_finish_reason = u32;
/// The stream has not ended yet.
pub const MINERVA_FINISH_RUNNING: minerva_finish_reason = 0;
/// `max_tokens` were generated.
pub const MINERVA_FINISH_LENGTH: minerva_finish_reason = 1;
/// A stop string matched (it is not delivered), or a token callback returned `MINERVA_STOP`.
pub const MINERVA_FINISH_STOP: minerva_finish_reason = 2;
/// The model produced its end-of-generation token.
pub const MINERVA_FINISH_EOS: minerva_finish_reason = 3;
/// The stream was cancelled.
pub const MINERVA_FINISH_CANCELLED: minerva_finish_reason = 4;
/// The stream failed; its final status and `minerva_stream_error()` say why.
pub const MINERVA_FINISH_ERROR: minerva_finish_reason = 5;

/// Receives generated text, on the engine thread. `text` is valid UTF-8, never a split character,
/// never empty, NUL-terminated, `len` bytes without the NUL; it is valid only during the call.
/// Return `MINERVA_CONTINUE` to go on, or `MINERVA_STOP` (any other value) to end the stream with
/// `MINERVA_FINISH_STOP`. A slow callback holds back every stream of its engine.
pub type minerva_token_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        text: *const c_char,
        len: usize,
    ) -> minerva_control,
>;

/// Called exactly once per created stream, on the engine thread, after its last token callback,
/// with the final status and the reason it ended. From then on `user_data` is never touched
/// again, so this is the place to release it.
pub type minerva_finish_callback = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        status: minerva_status,
        reason: minerva_finish_reason,
    ),
>;

/// Settings of one generation. Fill it with `minerva_generate_params_init(&p, sizeof p)`, then
/// change what you need. It is read (and the stop strings copied) during `minerva_stream_new`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_generate_params {
    /// `sizeof(minerva_generate_params)` as the caller knows it; set by the init function.
    pub struct_size: u32,
    /// Tokens to generate at most (default 256); 0: until end-of-generation or a full context.
    pub max_tokens: u32,
    /// Sampling temperature (default 0.8); 0: greedy (the most likely token every time).
    /// Must be finite and >= 0.
    pub temperature: f32,
    /// Keep the k most likely tokens (default 40); 0: off. Must be >= 0.
    pub top_k: i32,
    /// Nucleus sampling (default 0.95); 1: off. Must be in (0, 1].
    pub top_p: f32,
    /// Drop tokens less likely than min_p times the most likely (default 0.05); 0: off.
    /// Must be in [0, 1].
    pub min_p: f32,
    /// Penalty on repeated tokens (default 1); 1: off. Must be finite and > 0.
    pub repeat_penalty: f32,
    /// How many recent tokens (prompt and output) `repeat_penalty`, `presence_penalty` and
    /// `frequency_penalty` look at (default 64; 0 to 1048576, larger is
    /// `MINERVA_ERR_INVALID_ARGUMENT`). The window never reaches past the stream's context, so
    /// values above `context_tokens` act as `context_tokens`. 0: the penalty is off.
    pub repeat_last_n: u32,
    /// Sampling seed (default `MINERVA_SEED_RANDOM`: a new seed for each stream). All 64 bits
    /// count: the seed is hashed to llama.cpp's 32-bit seed, so two distinct seeds give unrelated
    /// text (they meet on the same 32-bit seed with a chance of about one in four billion).
    /// With a fixed seed, the same prompt, params and engine settings give the same text when
    /// the stream is decoded alone and its prompt is computed afresh. Decoded in a batch with
    /// other streams, or starting from prompt cells cached by an earlier stream
    /// (`cache_prompt`), the arithmetic differs and the text may too: set `cache_prompt` false
    /// for text that depends on the seed alone. Where a GPU computes the logits, a stream
    /// without grammar, logit bias or penalties is sampled there, in llama.cpp's graph
    /// (`MINERVA_BACKEND_SAMPLING=0` in the environment keeps sampling on the CPU): its seed
    /// gives the same text every run on that device, but not the same text as on the CPU or
    /// another GPU. Greedy sampling picks the most likely token in either place (of exactly
    /// equal ones, not always the same one).
    pub seed: u64,
    /// Stop strings (default NULL): non-empty UTF-8. Generation ends when one appears, and the
    /// matched text is never delivered. Copied during the call.
    pub stop: *const *const c_char,
    /// Number of entries in `stop`.
    pub stop_count: usize,
    /// Keep going past end-of-generation (default false; for benchmarks).
    pub ignore_eos: bool,
    /// Reuse KV cache cells holding the same prompt prefix (default true).
    pub cache_prompt: bool,
    /// Optional finish callback (default NULL); gets the `user_data` given to
    /// `minerva_stream_new`.
    pub on_finish: minerva_finish_callback,
    // Added in 0.2. A program built against the 0.1 header passes a smaller struct_size and gets
    // the defaults for these.
    /// A grammar (default NULL) the output always follows: GBNF with a rule `root` (llama.cpp's
    /// grammar sampler), or, when the text starts with `%llguidance`, llguidance's Lark syntax
    /// with a rule `start` (`rule: ...` in lower case, terminals in capitals `NAME: /regex/` or
    /// `"literal"`, `|`, `*`, `+`, `?`, `{m,n}`, and `%json {...}` for a JSON Schema inside;
    /// docs/CHAT.md). The stream ends (`MINERVA_FINISH_EOS`) when the grammar is complete,
    /// `ignore_eos` or not. The output is a whole match when the stream ends with
    /// `MINERVA_FINISH_EOS`; `max_tokens` or a stop string can cut it short
    /// (`MINERVA_FINISH_LENGTH`, `_STOP`). An empty grammar, one nested more than 256 groups deep,
    /// a GBNF one of more than 10,000 rules, or one that does not parse is refused by
    /// `minerva_stream_new` (a Lark grammar's message says why; llama.cpp's GBNF parser prints
    /// its reason on stderr, not to the log); it is built on a thread of minerva's own, whatever
    /// the caller's stack. A Lark grammar's mask of allowed tokens is computed while the model
    /// computes the logits. With GBNF the chain picks a token first and the grammar checks that
    /// one, then the best candidates; only when neither settles it does the grammar check every
    /// candidate, on a worker thread of the engine: that stream waits for it, the engine's other
    /// streams go on, and a cancel or `minerva_engine_free` stops it at once. Copied during the
    /// call.
    pub grammar: *const c_char,
    /// A JSON Schema (default NULL): the output is JSON valid against it, whole when the stream
    /// ends with `MINERVA_FINISH_EOS`, which it does as soon as the JSON is complete, `ignore_eos`
    /// or not. Enforced token by token (llguidance): `type`, `enum`, `const`, `properties`,
    /// `required`, `additionalProperties`, `patternProperties`, `minProperties`,
    /// `maxProperties`, `items`, `prefixItems`, `additionalItems`, `minItems`, `maxItems`,
    /// `minLength`, `maxLength`, `pattern` (full regular expressions), `format` (`date-time`,
    /// `date`, `time`, `duration`, `email`, `hostname`, `ipv4`, `ipv6`, `uuid`, `uri`),
    /// `minimum`, `maximum`, `exclusiveMinimum`, `exclusiveMaximum`, `multipleOf`, `anyOf`,
    /// `allOf`, `oneOf` whose branches cannot both match, and `$ref` within the schema
    /// (recursive ones included); annotations (`title`, `description`, `default`, `examples`,
    /// ...) are ignored. Refused by `minerva_stream_new` with the keyword named: `uniqueItems`,
    /// `not`, `if`/`then`/`else`, `propertyNames`, `contains`, `dependentRequired`,
    /// `dependentSchemas`, `unevaluated*`, `oneOf` of branches that overlap, unknown formats,
    /// and `$ref` to other documents; `"x-guidance": {"lenient": true}` at the schema's root
    /// accepts such a schema with those keywords left unchecked. minerva narrows what a schema
    /// leaves open, so that a model cannot write on until `max_tokens`: a number without bounds
    /// has at most 16 digits before the point and 10 after it, and whitespace between two JSON
    /// tokens is one space, or one or two line breaks and an indent of at most 20 spaces or 5 tabs
    /// (`"x-guidance": {"whitespace_flexible": true}` lifts it); an object whose schema does not
    /// mention `additionalProperties` (or `patternProperties`) gets none, as llama.cpp's
    /// conversion did, unless the schema uses `allOf` (`"additionalProperties": true` keeps them).
    /// A schema that is not JSON, is nested more than 256 deep, reaches more than 1,000 levels
    /// deep through its `$ref`s, or compiles to more than 500,000 grammar symbols is refused,
    /// named. The first `json_schema` or Lark grammar of an engine builds its token table in
    /// that call (about a second for a vocabulary of 262,144 tokens). Not together with
    /// `grammar`. Copied during the call.
    pub json_schema: *const c_char,
    /// Penalty on tokens among the last `repeat_last_n` of the prompt and the output, once each
    /// (default 0: off). Finite.
    pub presence_penalty: f32,
    /// Penalty on tokens among the last `repeat_last_n` of the prompt and the output, by how
    /// often they occur there (default 0: off). Finite.
    pub frequency_penalty: f32,
    /// Added to the logits of tokens (default NULL); a bias of -INFINITY bans the token, and a
    /// banned token never comes out. Token ids must be in the vocabulary; a list that bans every
    /// token is refused (`MINERVA_ERR_INVALID`). Copied during the call.
    pub logit_bias: *const minerva_logit_bias,
    /// Number of entries in `logit_bias`.
    pub logit_bias_count: usize,
    /// Added in 0.3. The scale of each of the engine's LoRA adapters for this stream, in the
    /// order of `minerva_engine_params.loras` (`lora_count` of them; 0 turns one off); NULL
    /// (default): the engine's scales. Finite. Streams with different scales run on one engine
    /// at the same time, each with its own text: a step decodes the streams of one set of scales,
    /// and the sets take turns (docs/PERFORMANCE.md says what that costs). Copied during the call.
    pub lora_scales: *const f32,
}

/// A bias added to one token's logit (see `minerva_generate_params.logit_bias`).
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_logit_bias {
    /// The token id.
    pub token: i32,
    /// Added to its logit; -INFINITY bans it.
    pub bias: f32,
}

/// The size of `minerva_generate_params` as published in 0.1 (before `grammar`).
const FIRST_LAYOUT: usize = offset_of!(minerva_generate_params, grammar);

impl Default for minerva_generate_params {
    fn default() -> Self {
        let d = GenerateParams::default();
        minerva_generate_params {
            struct_size: std::mem::size_of::<Self>() as u32,
            max_tokens: d.max_tokens,
            temperature: d.sampling.temperature,
            top_k: d.sampling.top_k,
            top_p: d.sampling.top_p,
            min_p: d.sampling.min_p,
            repeat_penalty: d.sampling.repeat_penalty,
            repeat_last_n: d.sampling.repeat_last_n,
            seed: MINERVA_SEED_RANDOM,
            stop: std::ptr::null(),
            stop_count: 0,
            ignore_eos: d.ignore_eos,
            cache_prompt: d.cache_prompt,
            on_finish: None,
            grammar: std::ptr::null(),
            json_schema: std::ptr::null(),
            presence_penalty: d.sampling.presence_penalty,
            frequency_penalty: d.sampling.frequency_penalty,
            logit_bias: std::ptr::null(),
            logit_bias_count: 0,
            lora_scales: std::ptr::null(),
        }
    }
}

/// Fills `params` with the defaults. Call as `minerva_generate_params_init(&p, sizeof p)`. Only the
/// first `struct_size` bytes are written. NULL: no-op.
#[no_mangle]
pub unsafe extern "C" fn minerva_generate_params_init(
    params: *mut minerva_generate_params,
    struct_size: u32,
) {
    // SAFETY: the caller says `params` has struct_size writable bytes.
    ffi_export!(unsafe { init_params(params, struct_size, Default::default()) })
}

fn generate_params_bools() -> [usize; 2] {
    [
        offset_of!(minerva_generate_params, ignore_eos),
        offset_of!(minerva_generate_params, cache_prompt),
    ]
}

/// Reads the caller's params (NULL: defaults) into the engine's form, copying the stop strings.
pub(crate) unsafe fn convert_params(
    params: *const minerva_generate_params,
    lora_count: usize,
) -> Result<(GenerateParams, minerva_finish_callback), Error> {
    // SAFETY: params is NULL or a caller struct of struct_size bytes.
    let p = unsafe {
        read_params(
            params,
            minerva_generate_params::default(),
            FIRST_LAYOUT,
            "params",
            &generate_params_bools(),
        )
    }?;
    let mut stops = Vec::with_capacity(p.stop_count.min(64));
    if p.stop_count > 0 {
        if p.stop.is_null() {
            return Err(Error::invalid(format!(
                "params.stop is NULL but params.stop_count is {}",
                p.stop_count
            )));
        }
        for i in 0..p.stop_count {
            // SAFETY: the caller's array has stop_count entries.
            let s = unsafe { *p.stop.add(i) };
            if s.is_null() {
                return Err(Error::invalid(format!("params.stop[{i}] is NULL")));
            }
            // SAFETY: each entry is a NUL-terminated string.
            let s = unsafe { std::ffi::CStr::from_ptr(s) }
                .to_str()
                .map_err(|e| {
                    Error::invalid(format!(
                        "params.stop[{i}] is not valid UTF-8 (bad byte at offset {})",
                        e.valid_up_to()
                    ))
                })?;
            stops.push(s.to_owned());
        }
    }
    // SAFETY: NULL or NUL-terminated strings, as the header requires.
    let grammar = unsafe { opt_str(p.grammar, "params.grammar") }?.map(str::to_owned);
    let json_schema = unsafe { opt_str(p.json_schema, "params.json_schema") }?.map(str::to_owned);
    // SAFETY: logit_bias is NULL or the caller's array of logit_bias_count entries.
    let logit_bias = unsafe {
        array_arg(
            p.logit_bias,
            p.logit_bias_count,
            "params.logit_bias",
            "params.logit_bias_count",
        )
    }?
    .iter()
    .map(|b| (b.token, b.bias))
    .collect();
    let g = GenerateParams {
        max_tokens: p.max_tokens,
        sampling: SamplingParams {
            temperature: p.temperature,
            top_k: p.top_k,
            top_p: p.top_p,
            min_p: p.min_p,
            repeat_penalty: p.repeat_penalty,
            repeat_last_n: p.repeat_last_n,
            seed: p.seed,
            presence_penalty: p.presence_penalty,
            frequency_penalty: p.frequency_penalty,
            logit_bias,
            grammar: None,
        },
        stop: stops,
        ignore_eos: p.ignore_eos,
        cache_prompt: p.cache_prompt,
        grammar,
        json_schema,
        chat: None,
        lora_scales: (!p.lora_scales.is_null()).then(|| {
            // SAFETY: the caller's array holds one scale per adapter of the engine.
            unsafe { std::slice::from_raw_parts(p.lora_scales, lora_count) }.to_vec()
        }),
    };
    g.check()
        .map_err(|e| Error::invalid(format!("params.{}", e.message)))?;
    Ok((g, p.on_finish))
}
