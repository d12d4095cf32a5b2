//! The one shape of every export: `ffi_export!` runs the body inside a panic boundary, under the
//! export's own name (taken from the function itself), and turns what the body returns into what
//! C receives. What a caught panic answers follows from the body's type ([`Exported`]):
//! `Result<(), Error>` answers a `minerva_status` (`MINERVA_ERR_INTERNAL` on a panic; an error's
//! words go to `minerva_last_error`), `()` answers nothing, a string pointer answers "".
//!
//! ```ignore
//! #[no_mangle]
//! pub unsafe extern "C" fn minerva_thing(engine: *mut minerva_engine) -> minerva_status {
//!     ffi_export!({
//!         let engine = try_ref!(engine, "engine");
//!         ...
//!         Ok(())
//!     })
//! }
//! ```

use super::status::{minerva_status, MINERVA_ERR_INTERNAL, MINERVA_OK};
use crate::engine::Error;
use std::cell::RefCell;
use std::ffi::{c_char, CString};

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

/// Records the message `minerva_last_error` gives on this thread.
pub(crate) fn set_last_error(message: &str) {
    let c = CString::new(message.replace('\0', " ")).unwrap_or_default();
    let _ = LAST_ERROR.try_with(|e| *e.borrow_mut() = c);
}

/// The message of the last failure on this thread (a pointer valid until the next call that
/// records one on this thread).
pub(crate) fn last_error() -> *const c_char {
    LAST_ERROR
        .try_with(|e| e.borrow().as_ptr())
        .unwrap_or(c"".as_ptr())
}

/// What an export's body returns, and what C receives for it.
pub(crate) trait Exported {
    type C;
    /// The C value; `name` is the export's name, for the words of an error.
    fn into_c(self, name: &str) -> Self::C;
    /// The answer after a caught panic.
    fn panicked() -> Self::C;
}

impl Exported for Result<(), Error> {
    type C = minerva_status;
    fn into_c(self, name: &str) -> minerva_status {
        match self {
            Ok(()) => MINERVA_OK,
            Err(e) => {
                set_last_error(&format!("{name}: {}", e.message));
                e.status as minerva_status
            }
        }
    }
    fn panicked() -> minerva_status {
        MINERVA_ERR_INTERNAL
    }
}

impl Exported for () {
    type C = ();
    fn into_c(self, _: &str) {}
    fn panicked() {}
}

impl Exported for *const c_char {
    type C = *const c_char;
    fn into_c(self, _: &str) -> *const c_char {
        self
    }
    fn panicked() -> *const c_char {
        c"".as_ptr()
    }
}

impl Exported for u32 {
    type C = u32;
    fn into_c(self, _: &str) -> u32 {
        self
    }
    fn panicked() -> u32 {
        0
    }
}

/// The export's name from the path of a function item declared inside it
/// (`minerva::ffi::stream::minerva_stream_new::here`).
fn export_name(here: &'static str) -> &'static str {
    let path = here.strip_suffix("::here").unwrap_or(here);
    path.rsplit("::").next().unwrap_or(path)
}

/// Runs `body`; see the module documentation. Called by `ffi_export!` only.
pub(crate) fn boundary<R: Exported>(here: &'static str, body: impl FnOnce() -> R) -> R::C {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(body)) {
        Ok(r) => r.into_c(export_name(here)),
        Err(_) => {
            set_last_error(&format!(
                "{}: internal error (a panic was caught)",
                export_name(here)
            ));
            R::panicked()
        }
    }
}

/// The body of an export, inside its panic boundary; see the module documentation.
macro_rules! ffi_export {
    ($body:expr) => {{
        fn here() {}
        $crate::ffi::export::boundary(std::any::type_name_of_val(&here), || $body)
    }};
}
pub(crate) use ffi_export;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_name_comes_from_the_function() {
        fn minerva_example() -> minerva_status {
            ffi_export!({ Err(Error::invalid("nope")) })
        }
        assert_eq!(minerva_example(), 1);
        let msg = unsafe { std::ffi::CStr::from_ptr(last_error()) };
        assert_eq!(msg.to_str().unwrap(), "minerva_example: nope");
    }

    #[test]
    fn a_panic_answers_the_default_of_the_return_type() {
        fn minerva_panics() -> minerva_status {
            ffi_export!({
                if std::hint::black_box(true) {
                    panic!("bug");
                }
                Ok(())
            })
        }
        fn minerva_panics_str() -> *const c_char {
            ffi_export!({
                if std::hint::black_box(true) {
                    panic!("bug");
                }
                c"x".as_ptr()
            })
        }
        let hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        assert_eq!(minerva_panics(), MINERVA_ERR_INTERNAL);
        let msg = unsafe { std::ffi::CStr::from_ptr(last_error()) };
        assert_eq!(
            msg.to_str().unwrap(),
            "minerva_panics: internal error (a panic was caught)"
        );
        assert_eq!(
            unsafe { std::ffi::CStr::from_ptr(minerva_panics_str()) }.to_bytes(),
            b""
        );
        std::panic::set_hook(hook);
    }
}
