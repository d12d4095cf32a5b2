//! Where user code runs: the engine thread's identity and the callback scope, so that calls made
//! from inside a callback that would wait for the engine thread are refused instead of deadlocking.

use std::cell::Cell;

thread_local! {
    /// The id of the engine whose thread this is (0: not an engine thread).
    static ENGINE_THREAD: Cell<u64> = const { Cell::new(0) };
    /// How deep this thread is inside user callbacks.
    static CALLBACK_DEPTH: Cell<u32> = const { Cell::new(0) };
}

/// Runs `f` marked as a user callback, so that calls made from it that would block are refused.
pub(crate) fn callback_scope<R>(f: impl FnOnce() -> R) -> R {
    struct Depth;
    impl Drop for Depth {
        fn drop(&mut self) {
            CALLBACK_DEPTH.with(|d| d.set(d.get() - 1));
        }
    }
    CALLBACK_DEPTH.with(|d| d.set(d.get() + 1));
    let _depth = Depth;
    f()
}

/// True inside a token, finish or progress callback: a call that waits would deadlock.
pub fn in_callback() -> bool {
    CALLBACK_DEPTH.with(|d| d.get() > 0)
}

/// The id of the engine whose thread is calling, if the caller is an engine thread.
pub fn current_engine_thread() -> Option<u64> {
    let id = ENGINE_THREAD.with(|e| e.get());
    (id != 0).then_some(id)
}

/// Marks the calling thread as the engine thread of engine `id`.
pub(crate) fn enter_engine_thread(id: u64) {
    ENGINE_THREAD.with(|e| e.set(id));
}
