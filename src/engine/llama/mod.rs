//! The one place where minerva calls llama.cpp. Everything here is a small safe wrapper over
//! `llama-cpp-sys-2`; every `unsafe` block says why it is sound. Every call that can throw a C++
//! exception goes through the exception boundary in `shim.cpp` ([`shim`]), so that none can reach
//! Rust (which would abort the process).

mod batch;
mod chat;
pub mod chat_format;
mod context;
mod devices;
mod inspect;
mod lora;
mod model;
mod sampler;
mod select;
mod shim;
mod tokenize;

pub use batch::Batch;
pub use chat::builtin_template;
#[cfg(test)]
pub use chat::reference_render;
pub use context::{Context, ContextParams};
pub use devices::{devices, rpc_devices, Device, DeviceKind};
pub use inspect::{inspect_gguf, GgufSummary};
pub use lora::{Lora, Loras};
pub use model::{LoadError, Model, ModelLoad, Token};
pub use sampler::{Sampled, Sampler, SamplingParams};
pub use select::argmax;

use super::log;
use llama_cpp_sys_2 as sys;
use shim::check;
use std::cell::RefCell;
use std::ffi::{c_char, c_void, CStr};
use std::sync::OnceLock;

/// Why loading the backends failed, if it did (the engine's error then says it).
static BACKEND_ERROR: OnceLock<String> = OnceLock::new();

/// Why no backend could be loaded, if so.
pub fn backend_error() -> Option<&'static str> {
    BACKEND_ERROR.get().map(String::as_str)
}

/// Initialises llama.cpp's backends and routes its logging, once per process.
pub fn init_backend() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        // SAFETY: called once, before any other llama.cpp call of minerva; the trampoline is a
        // plain function that lives for the whole process.
        unsafe { sys::llama_log_set(Some(llama_log_trampoline), std::ptr::null_mut()) };
        // SAFETY: as above; the callback is a plain function for the whole process.
        unsafe { sys::ggml_set_abort_callback(Some(abort_trampoline)) };
        #[cfg(feature = "portable")]
        let (dir, dynamic) = (backend_dir(), true);
        #[cfg(not(feature = "portable"))]
        let (dir, dynamic) = (None::<std::ffi::CString>, false);
        let dir_ptr = dir.as_ref().map_or(std::ptr::null(), |d| d.as_ptr());
        // SAFETY: dir_ptr is NULL or a NUL-terminated path that outlives the call.
        if let Err(e) = check(
            unsafe { shim::mshim_backend_init(dir_ptr, dynamic) },
            "backend init",
        ) {
            log::log(log::Level::Error, &e.message);
            let _ = BACKEND_ERROR.set(e.message);
        }
    });
}

/// Serves this machine's best device (a GPU if any, else the CPU) to RPC clients at `endpoint`
/// ("host:port") until the process ends, advertising `mem_bytes` of memory (0: the device's
/// own). Returns only when it cannot serve.
pub fn rpc_serve(endpoint: &str, mem_bytes: usize, threads: usize) -> String {
    init_backend();
    let Ok(c) = std::ffi::CString::new(endpoint) else {
        return "a NUL in the address".into();
    };
    // SAFETY: c is NUL-terminated and outlives the call.
    match check(
        unsafe { shim::mshim_rpc_serve(c.as_ptr(), mem_bytes, threads) },
        "RPC server",
    ) {
        Ok(()) => "the RPC server stopped".into(),
        Err(e) => e.message,
    }
}

/// The CPU backend in use, e.g. "x86-64 AVX-512 VBMI VNNI (icelake)": the instruction sets it
/// was built for and, in a run-time dispatch build, the variant chosen. Call after
/// [`init_backend`].
pub fn cpu_variant() -> String {
    static VARIANT: OnceLock<String> = OnceLock::new();
    VARIANT
        .get_or_init(|| {
            let mut buf = [0 as c_char; 96];
            // SAFETY: buf is writable for its length; the shim writes a NUL-terminated string.
            match check(
                unsafe { shim::mshim_cpu_variant(buf.as_mut_ptr(), buf.len()) },
                "cpu variant",
            ) {
                Ok(()) => unsafe { CStr::from_ptr(buf.as_ptr()) }
                    .to_string_lossy()
                    .into_owned(),
                Err(_) => String::new(),
            }
        })
        .clone()
}

/// A run-time dispatch build's backends are separate files (one CPU backend per instruction set,
/// GPU backends), which the build puts beside llama.cpp's own libraries in minerva's private
/// folder. They are loaded from the first of:
/// 1. `$MINERVA_BACKEND_DIR`, if set;
/// 2. the folder of the ggml library this process loaded (the private folder, wherever the
///    library was installed or copied: it travels with libminerva, or with a program linked to
///    libminerva.a);
/// 3. the folder of libminerva itself, or its `minerva/` subfolder;
/// 4. where the build put them.
#[cfg(feature = "portable")]
fn backend_dir() -> Option<std::ffi::CString> {
    fn has_cpu_backend(dir: &std::path::Path) -> bool {
        std::fs::read_dir(dir).is_ok_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libggml-cpu"))
        })
    }
    /// The folder of the loaded file that holds `addr`.
    fn dir_of(addr: *const c_void) -> Option<std::path::PathBuf> {
        let mut info: libc::Dl_info = unsafe { std::mem::zeroed() };
        // SAFETY: dladdr only reads the address and fills `info`; dli_fname, when set, is a
        // NUL-terminated path owned by the dynamic loader.
        let found = unsafe { libc::dladdr(addr, &mut info) } != 0;
        if !found || info.dli_fname.is_null() {
            return None;
        }
        let path = unsafe { CStr::from_ptr(info.dli_fname) }.to_string_lossy();
        Some(std::path::Path::new(&*path).parent()?.to_path_buf())
    }
    let ggml_dir = dir_of(sys::ggml_backend_load_all_from_path as *const c_void);
    let own_dir = dir_of(backend_dir as *const c_void);
    let candidates = ggml_dir
        .into_iter()
        .chain(own_dir.iter().cloned())
        .chain(own_dir.iter().map(|d| d.join("minerva")));
    std::env::var("MINERVA_BACKEND_DIR")
        .ok()
        .or_else(|| {
            candidates
                .into_iter()
                .find(|d| has_cpu_backend(d))
                .map(|d| d.to_string_lossy().into_owned())
        })
        .or_else(|| sys::BACKENDS_DIR.map(String::from))
        .and_then(|d| std::ffi::CString::new(d).ok())
}

/// ggml's last words before it aborts the process (a lost RPC server, a failed assertion): said
/// through minerva's log, so that a program's log callback gets the reason. The abort follows;
/// nothing short of patching ggml prevents it.
unsafe extern "C" fn abort_trampoline(message: *const c_char) {
    let text = if message.is_null() {
        String::new()
    } else {
        // SAFETY: ggml passes a NUL-terminated message valid for this call.
        unsafe { CStr::from_ptr(message) }
            .to_string_lossy()
            .into_owned()
    };
    let _ = std::panic::catch_unwind(|| {
        log::log(
            log::Level::Error,
            &format!("llama.cpp is ending the process: {}", text.trim()),
        );
    });
}

thread_local! {
    /// llama.cpp's pieces of the current line on this thread, with the line's level.
    static PARTIAL: RefCell<(log::Level, String)> = const { RefCell::new((log::Level::Info, String::new())) };
    /// The last error line llama.cpp logged on this thread: it names the reason a load failed.
    static LAST_LLAMA_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

/// Takes the last error line that llama.cpp logged on this thread ("" if none).
pub(crate) fn take_last_llama_error() -> String {
    LAST_LLAMA_ERROR.with(|e| std::mem::take(&mut *e.borrow_mut()))
}

/// Installed as llama.cpp's and ggml's log callback.
unsafe extern "C" fn llama_log_trampoline(
    level: llama_cpp_sys_2::ggml_log_level,
    text: *const c_char,
    _user_data: *mut c_void,
) {
    if text.is_null() {
        return;
    }
    // SAFETY: llama.cpp passes a NUL-terminated string valid for this call.
    let text = unsafe { CStr::from_ptr(text) }.to_string_lossy();
    // Never unwind into C: a panic here is dropped.
    let _ = std::panic::catch_unwind(|| {
        let level_now = match level {
            llama_cpp_sys_2::GGML_LOG_LEVEL_DEBUG => Some(log::Level::Debug),
            llama_cpp_sys_2::GGML_LOG_LEVEL_INFO => Some(log::Level::Info),
            llama_cpp_sys_2::GGML_LOG_LEVEL_WARN => Some(log::Level::Warn),
            llama_cpp_sys_2::GGML_LOG_LEVEL_ERROR => Some(log::Level::Error),
            _ => None, // CONT or NONE: continues the previous line
        };
        let mut lines = Vec::new();
        let _ = PARTIAL.try_with(|p| {
            let mut p = p.borrow_mut();
            if let Some(l) = level_now {
                if !p.1.is_empty() {
                    // A new line began without the old one ending: emit the old one.
                    lines.push((p.0, std::mem::take(&mut p.1)));
                }
                p.0 = l;
            }
            p.1.push_str(&text);
            while let Some(nl) = p.1.find('\n') {
                let rest = p.1.split_off(nl + 1);
                let mut line = std::mem::replace(&mut p.1, rest);
                line.truncate(nl);
                lines.push((p.0, line));
            }
        });
        for (l, line) in lines {
            if line.trim().is_empty() {
                continue;
            }
            if l == log::Level::Error {
                let _ = LAST_LLAMA_ERROR.try_with(|e| *e.borrow_mut() = line.clone());
            }
            log::log(l, &line);
        }
    });
}
