//! Fault injection for minerva's own tests: makes the next decodes fail as llama.cpp would, so that
//! the tests can check what each fault does to the streams. Not part of the API; one relaxed atomic
//! load per decode when unused.

use std::sync::atomic::{AtomicI32, AtomicU32, Ordering};

static DECODE_FAULTS: AtomicU32 = AtomicU32::new(0);
static DECODE_CODE: AtomicI32 = AtomicI32::new(0);

/// The next `count` decodes (of any engine in the process) fail with `code`, as llama_decode's
/// return value: 1 is "no KV slot", -1 an invalid batch, 2 aborted, below -1 a fatal error.
pub fn fail_next_decodes(code: i32, count: u32) {
    DECODE_CODE.store(code, Ordering::SeqCst);
    DECODE_FAULTS.store(count, Ordering::SeqCst);
}

/// The engine thread asks before each decode.
pub(crate) fn take_decode_fault() -> Option<i32> {
    if DECODE_FAULTS.load(Ordering::Relaxed) == 0 {
        return None;
    }
    DECODE_FAULTS
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
        .ok()
        .map(|_| DECODE_CODE.load(Ordering::SeqCst))
}
