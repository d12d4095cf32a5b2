//! Threads with a deep stack for llama.cpp code that recurses as deep as its input lets it
//! (grammar rules, JSON schemas): it runs on them, never on a caller's thread, whose stack may be
//! small (1 MiB is common for threads of managed runtimes).

use super::error::{Error, Result, Status};

/// The stack of the engine thread, of constraint work, and of grammar and schema conversion:
/// reserved, not committed (untouched pages cost nothing).
pub const DEEP_STACK: usize = 64 << 20;

/// Runs `f` on a new thread with [`DEEP_STACK`] and returns what it returns.
pub fn on_deep_stack<T: Send>(f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|scope| {
        let thread = std::thread::Builder::new()
            .name("minerva-deep".into())
            .stack_size(DEEP_STACK)
            .spawn_scoped(scope, f)
            .map_err(|e| Error::new(Status::OutOfMemory, format!("cannot start a thread: {e}")))?;
        thread.join().unwrap_or_else(|_| {
            Err(Error::new(
                Status::Internal,
                "internal error: a panic while building the grammar",
            ))
        })
    })
}
