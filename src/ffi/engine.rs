//! Engines: `minerva_engine_params`, `minerva_engine_new`, `minerva_engine_get_info`,
//! `minerva_engine_free`.

use super::*;
use crate::engine::{self as eng, rpc, DeviceKind, Engine, EngineConfig, Error};
use std::ffi::{c_char, c_void};
use std::mem::offset_of;

/// What a callback answers: `MINERVA_CONTINUE`, or `MINERVA_STOP` to end the stream (or the load).
/// Any value other than `MINERVA_CONTINUE` stops.
pub type minerva_control = u32;
/// Go on.
pub const MINERVA_CONTINUE: minerva_control = 0;
/// Stop: a token callback ends its stream with `MINERVA_FINISH_STOP` (status `MINERVA_OK`); a
/// progress callback aborts the load with `MINERVA_ERR_CANCELLED`.
pub const MINERVA_STOP: minerva_control = 1;

/// The kind of device that holds most of the model.
pub type minerva_device_kind = u32;
/// The CPU.
pub const MINERVA_DEVICE_CPU: minerva_device_kind = 0;
/// An NVIDIA GPU through CUDA.
pub const MINERVA_DEVICE_CUDA: minerva_device_kind = 1;
/// An Apple GPU through Metal.
pub const MINERVA_DEVICE_METAL: minerva_device_kind = 2;
/// A GPU through Vulkan.
pub const MINERVA_DEVICE_VULKAN: minerva_device_kind = 3;
/// Another accelerator.
pub const MINERVA_DEVICE_OTHER: minerva_device_kind = 4;
/// The device of an RPC server (`minerva_engine_params.rpc_servers`).
pub const MINERVA_DEVICE_RPC: minerva_device_kind = 5;

/// An engine: one loaded GGUF model, the device chosen for it (a GPU set up at creation, the CPU
/// as the fallback), one KV cache, and one engine thread that decodes all of the engine's live
/// streams together in shared batches. Opaque; create with `minerva_engine_new`, release with
/// `minerva_engine_free`.
///
/// Thread safety: every function taking an engine may be called from any thread, concurrently,
/// except that `minerva_engine_free(e)` must not overlap another call on `e`.
pub struct minerva_engine {
    pub(crate) inner: Engine,
}

/// Load progress, from the thread that called `minerva_engine_new`, with `progress` from 0 to 1.
/// Return `MINERVA_CONTINUE` to go on, anything else to abort the load (`minerva_engine_new` then
/// returns `MINERVA_ERR_CANCELLED`).
pub type minerva_progress_callback =
    Option<unsafe extern "C" fn(user_data: *mut c_void, progress: f32) -> minerva_control>;

/// Settings of an engine. Fill it with `minerva_engine_params_init(&p, sizeof p)`, then change
/// what you need. The library reads only the fields that fit in `struct_size`, so a program built
/// against an older header keeps working.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_engine_params {
    /// `sizeof(minerva_engine_params)` as the caller knows it; set by the init function.
    pub struct_size: u32,
    /// Layers to offload to the best GPU and the `rpc_servers`' devices, spread over them in
    /// proportion to their free memory, as llama.cpp spreads them (the output layer counts as
    /// one). -1 (default; any negative value): as many as fit in their free memory, each device
    /// keeping room for its compute buffers: all; else the output layer and the layers that fit
    /// beside it; else, when the output layer leaves no room for one more, the layers that fit
    /// with the output layer on the CPU (`minerva_engine_info.devices` says which); 0: CPU only;
    /// N: at most N. If loading there fails, it is retried with half the layers, down to one,
    /// then on the CPU. Without a usable device the engine runs on the CPU, which is never an
    /// error (`minerva_engine_info.fallback_reason` says why).
    pub gpu_layers: i32,
    /// Tokens ONE stream can hold, prompt plus generated text (default 2048; 8 to 1048576). The KV
    /// cache holds `context_tokens * max_streams` tokens.
    pub context_tokens: u32,
    /// Streams decoded together (default 4; 1 to 256). More streams may be started: they wait in
    /// a queue until one ends.
    pub max_streams: u32,
    /// CPU threads for decoding. 0 (default): one per physical core. At most 1024; a value above
    /// the number of CPUs this process may run on is capped there, with a warning log line
    /// (llama.cpp's threads spin while they wait for each other: on 2 CPUs, 3 threads decode
    /// over 100 times slower than 2). `minerva_engine_info.threads` gives the number used.
    pub threads: u32,
    /// Tokens per decode step, all streams together (default 512; 1 to 65536; raised to
    /// `max_streams` if smaller). Long prompts are processed in chunks of this size, so other
    /// streams keep producing tokens meanwhile.
    pub batch_tokens: u32,
    /// Map the model file instead of reading it (default true).
    pub use_mmap: bool,
    /// Optional load progress callback (default NULL).
    pub progress: minerva_progress_callback,
    /// Passed to `progress`.
    pub progress_user_data: *mut c_void,
    /// Other machines' devices through ggml's RPC protocol (default NULL; NULL or "": none):
    /// "host:port" entries separated by commas, at most 16, each a `minerva-rpc-server` (or
    /// llama.cpp's `rpc-server` of the same version). Each is checked first: a connection, the
    /// protocol's handshake and what llama.cpp asks a server while an engine is created (its
    /// devices, their memory, alignment and largest buffer), 5 s for the connection, 5 s for
    /// the handshake and 5 s for the rest: a server that cannot be reached, is not one, falls
    /// silent, closes or answers wrongly gives `MINERVA_ERR_BACKEND` naming it. Their devices
    /// join the local GPU for `gpu_layers`.
    /// A server that dies while the engine uses it ends the process: llama.cpp's RPC client
    /// aborts (minerva logs which server first, and ignores SIGPIPE if the program left it at
    /// its default so that the abort can say so). The protocol has no authentication: use
    /// servers on loopback or a trusted network only (docs/RPC.md).
    pub rpc_servers: *const c_char,
    /// Added in 0.3. LoRA adapters loaded with the model (default NULL, `lora_count` 0): each a
    /// GGUF adapter made for this model (llama.cpp's format: `general.type` "adapter",
    /// `adapter.type` "lora"), with its default scale for every stream; a stream may choose
    /// its own scales (`minerva_generate_params.lora_scales`). At most 32. An adapter of another
    /// architecture, with tensors the model lacks or of other shapes, or a corrupt file is
    /// `MINERVA_ERR_MODEL` naming the file; a missing file `MINERVA_ERR_IO`. Read during the call.
    pub loras: *const minerva_lora,
    /// Number of entries in `loras`.
    pub lora_count: usize,
}

/// A LoRA adapter for `minerva_engine_params.loras`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_lora {
    /// The adapter's GGUF file (UTF-8, NUL-terminated).
    pub path: *const c_char,
    /// Its default scale for every stream (1: as trained; 0: off). Finite.
    pub scale: f32,
}

/// The size of `minerva_engine_params` as published in 0.2 (before `loras`).
const ENGINE_PARAMS_FIRST_LAYOUT: usize = offset_of!(minerva_engine_params, loras);

impl Default for minerva_engine_params {
    fn default() -> Self {
        let d = EngineConfig::default();
        minerva_engine_params {
            struct_size: std::mem::size_of::<Self>() as u32,
            gpu_layers: d.gpu_layers,
            context_tokens: d.context_tokens,
            max_streams: d.max_streams,
            threads: d.threads,
            batch_tokens: d.batch_tokens,
            use_mmap: d.use_mmap,
            progress: None,
            progress_user_data: std::ptr::null_mut(),
            rpc_servers: std::ptr::null(),
            loras: std::ptr::null(),
            lora_count: 0,
        }
    }
}

/// What an engine runs on and what it loaded; filled by `minerva_engine_get_info`. Set
/// `struct_size` to `sizeof(minerva_engine_info)` (or 0) before the call; the library writes only
/// the fields that fit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct minerva_engine_info {
    /// Set by the caller: `sizeof(minerva_engine_info)`, or 0 for the first published layout.
    pub struct_size: u32,
    /// The device that holds most of the model (a `MINERVA_DEVICE_*` value).
    pub device_kind: minerva_device_kind,
    /// The device's name, e.g. the CPU model or "NVIDIA H200"; NUL-terminated UTF-8.
    pub device_name: [c_char; 128],
    /// Why the CPU was used although a GPU was asked for; "" if not.
    pub fallback_reason: [c_char; 256],
    /// Layers offloaded to GPUs and RPC servers' devices (0 on the CPU), of `total_layers`; the
    /// output layer, which `gpu_layers` in the parameters counts as one more, is not counted
    /// here: `devices` says where it is.
    pub gpu_layers: i32,
    /// Layers of the model.
    pub total_layers: i32,
    /// Tokens one stream can hold.
    pub context_tokens: u32,
    /// Streams decoded together.
    pub max_streams: u32,
    /// CPU threads used for decoding.
    pub threads: u32,
    /// llama.cpp's description of the model, e.g. "gemma3 270M Q4_K - Medium".
    pub model_description: [c_char; 128],
    /// Parameters of the model.
    pub parameter_count: u64,
    /// Size of the model file in bytes.
    pub file_bytes: u64,
    /// Tokens in the model's vocabulary.
    pub vocab_size: u32,
    /// The context length the model was trained with.
    pub train_context_tokens: u32,
    /// Whether the model file carries a chat template.
    pub has_chat_template: bool,
    /// The length of the vectors `minerva_embed` gives (the model's embedding size).
    pub embedding_dims: u32,
    /// The CPU backend in use: the instruction sets it was built for and, in a build with run-time
    /// dispatch (the default), the variant chosen for this CPU, e.g. "x86-64 AVX-512 VBMI VNNI
    /// (icelake)"; "(built in)" for a build with one fixed CPU backend. NUL-terminated UTF-8.
    pub cpu_variant: [c_char; 64],
    /// Each device that holds layers, with how many, and which holds the output layer, e.g.
    /// "RPC0 (10.0.0.2:50052): 10 layers + output, CPU: 8 layers". NUL-terminated UTF-8.
    pub devices: [c_char; 256],
    /// Added in 0.3. Tokens the engine's pinned prefixes hold now (`minerva_cache_prefill` with
    /// `pin`), and the bytes of KV cache they take (0 when the model's header does not say enough
    /// to count them). Pinned prefixes share the cache's `context_tokens * max_streams` cells
    /// with the streams and may hold all but one stream's context of them.
    pub pinned_tokens: u64,
    pub pinned_bytes: u64,
}

/// The size of `minerva_engine_info` as published in 0.1 (up to `has_chat_template`, padded), what
/// a `struct_size` of 0 stands for.
const INFO_FIRST_LAYOUT: usize = {
    let end = std::mem::offset_of!(minerva_engine_info, has_chat_template) + 1;
    let align = std::mem::align_of::<minerva_engine_info>();
    end.div_ceil(align) * align
};

/// Fills `params` with the defaults. Call as `minerva_engine_params_init(&p, sizeof p)`. Only the
/// first `struct_size` bytes are written. NULL: no-op.
#[no_mangle]
pub unsafe extern "C" fn minerva_engine_params_init(
    params: *mut minerva_engine_params,
    struct_size: u32,
) {
    // SAFETY: the caller says `params` has struct_size writable bytes.
    ffi_export!(unsafe { init_params(params, struct_size, Default::default()) })
}

/// The adapters of `minerva_engine_params`, copied.
///
/// # Safety
/// `loras` is NULL or points to `count` entries whose paths are NULL or NUL-terminated.
unsafe fn convert_loras(
    loras: *const minerva_lora,
    count: usize,
) -> Result<Vec<(String, f32)>, Error> {
    if count > crate::engine::params::MAX_LORAS {
        return Err(Error::invalid(format!(
            "params.lora_count is {count}; an engine takes at most {} adapters",
            crate::engine::params::MAX_LORAS
        )));
    }
    // SAFETY: loras is NULL or the caller's array of count entries.
    let list = unsafe { array_arg(loras, count, "params.loras", "params.lora_count") }?;
    let mut out = Vec::with_capacity(count);
    for (i, l) in list.iter().enumerate() {
        if l.path.is_null() {
            return Err(Error::invalid(format!("params.loras[{i}].path is NULL")));
        }
        // SAFETY: a NUL-terminated string, as the header requires.
        let path = unsafe { opt_str(l.path, &format!("params.loras[{i}].path")) }?.unwrap_or("");
        out.push((path.to_owned(), l.scale));
    }
    Ok(out)
}

fn engine_params_bools() -> [usize; 1] {
    [offset_of!(minerva_engine_params, use_mmap)]
}

/// Loads the GGUF model at `model_path` (UTF-8, NUL-terminated) and starts the engine's thread.
///
/// `params` may be NULL for the defaults; it is read during the call only. Blocks while the model
/// loads. The GPU is set up here: with `gpu_layers` != 0 and a GPU backend built in, layers go to
/// the GPU with the most free memory; if there is none, or loading there fails, the model loads
/// on the CPU and `minerva_engine_info.fallback_reason` says why.
///
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` (NULL path or out, a field out of range, named in the
/// message), `MINERVA_ERR_IO` (missing or unreadable file), `MINERVA_ERR_MODEL` (not GGUF,
/// truncated, corrupt, unsupported), `MINERVA_ERR_OUT_OF_MEMORY`, `MINERVA_ERR_CANCELLED` (the
/// progress callback stopped the load). On success `*out` owns the engine: release it with
/// `minerva_engine_free`. On failure `*out` is not written.
#[no_mangle]
pub unsafe extern "C" fn minerva_engine_new(
    model_path: *const c_char,
    params: *const minerva_engine_params,
    out: *mut *mut minerva_engine,
) -> minerva_status {
    ffi_export!({
        let path = try_str!(model_path, "model_path");
        let out = try_mut!(out, "out");
        // SAFETY: params is NULL or a caller struct of struct_size bytes.
        let p = unsafe {
            read_params(
                params,
                minerva_engine_params::default(),
                ENGINE_PARAMS_FIRST_LAYOUT,
                "params",
                &engine_params_bools(),
            )
        }?;
        // SAFETY: rpc_servers is NULL or a NUL-terminated string of the caller's.
        let rpc_servers = unsafe { opt_str(p.rpc_servers, "rpc_servers") }?.unwrap_or("");
        let config = EngineConfig {
            gpu_layers: p.gpu_layers.max(-1),
            context_tokens: p.context_tokens,
            max_streams: p.max_streams,
            threads: p.threads,
            batch_tokens: p.batch_tokens,
            use_mmap: p.use_mmap,
            rpc_servers: rpc::parse_servers(rpc_servers)?,
            // SAFETY: the caller's array of lora_count adapters, as the header requires.
            loras: unsafe { convert_loras(p.loras, p.lora_count) }?,
        };
        let ud = UserData(p.progress_user_data);
        let mut progress_fn = p.progress.map(|cb| {
            move |progress: f32| {
                // SAFETY: the caller's callback, called as the header documents.
                (unsafe { cb(ud.0, progress) }) == MINERVA_CONTINUE
            }
        });
        let engine = Engine::new(
            path,
            &config,
            progress_fn
                .as_mut()
                .map(|f| f as &mut dyn FnMut(f32) -> bool),
        )?;
        *out = Box::into_raw(Box::new(minerva_engine { inner: engine }));
        Ok(())
    })
}

/// Fills `*out` with what the engine runs on and what it loaded. Set `out->struct_size` first.
/// Errors: `MINERVA_ERR_INVALID_ARGUMENT` for a NULL argument.
#[no_mangle]
pub unsafe extern "C" fn minerva_engine_get_info(
    engine: *const minerva_engine,
    out: *mut minerva_engine_info,
) -> minerva_status {
    ffi_export!({
        let engine = try_ref!(engine, "engine");
        if out.is_null() {
            return Err(Error::invalid("out is NULL"));
        }
        let i = engine.inner.info();
        // SAFETY: an all-zero minerva_engine_info is valid (integers, arrays and a bool).
        let mut v: minerva_engine_info = unsafe { std::mem::zeroed() };
        v.device_kind = i.device_kind.unwrap_or(DeviceKind::Cpu) as minerva_device_kind;
        fill_chars(&mut v.device_name, &i.device_name);
        fill_chars(&mut v.fallback_reason, &i.fallback_reason);
        fill_chars(&mut v.model_description, &i.model_description);
        v.gpu_layers = i.gpu_layers;
        v.total_layers = i.total_layers;
        v.context_tokens = i.context_tokens;
        v.max_streams = i.max_streams;
        v.threads = i.threads;
        v.parameter_count = i.parameter_count;
        v.file_bytes = i.file_bytes;
        v.vocab_size = i.vocab_size;
        v.train_context_tokens = i.train_context_tokens;
        v.has_chat_template = i.has_chat_template;
        v.embedding_dims = i.embedding_dims;
        fill_chars(&mut v.cpu_variant, &i.cpu_variant);
        fill_chars(&mut v.devices, &i.devices);
        let (pinned_tokens, pinned_bytes) = engine.inner.pinned();
        v.pinned_tokens = pinned_tokens as u64;
        v.pinned_bytes = pinned_bytes;
        // SAFETY: out points to the caller's struct of its struct_size.
        unsafe { write_out(out, &v, INFO_FIRST_LAYOUT) };
        Ok(())
    })
}

/// Cancels the engine's streams (they finish with `MINERVA_ERR_CANCELLED` and their finish
/// callbacks run), waits until no callback of the engine can run, and releases the model and the
/// KV cache. Stream handles not yet freed stay valid to read, wait on, query and free. NULL:
/// no-op. Called from a callback of this same engine it is ignored (and logged as a warning):
/// an engine cannot wait for its own thread. Called from a token, finish or progress callback of
/// another engine it does not wait: the engine shuts down on its own thread (its streams end,
/// their finish callbacks run, then the model is released), so that two engines whose callbacks
/// free each other cannot deadlock. Then a token callback of that engine's current step may still
/// run after this returns, and its thread may still be shutting down when the program exits.
#[no_mangle]
pub unsafe extern "C" fn minerva_engine_free(engine: *mut minerva_engine) {
    ffi_export!({
        if engine.is_null() {
            return;
        }
        // SAFETY: a non-NULL engine came from minerva_engine_new and is freed once.
        let id = unsafe { (*engine).inner.id() };
        if eng::current_engine_thread() == Some(id) {
            eng::log::log(
                eng::log::Level::Warn,
                "minerva_engine_free called from a callback of the same engine: ignored",
            );
            return;
        }
        // SAFETY: as above; ownership returns to Rust and the engine is dropped (joined) here.
        drop(unsafe { Box::from_raw(engine) });
    });
}
