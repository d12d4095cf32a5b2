//! minerva's patch: the nesting of values is bounded where it is walked.
//!
//! Templates can nest values as deep as they like: a loop that does
//! `{% set ns.v = [ns.v] %}` 30,000 times makes a list 30,000 deep, and
//! `{% set ns.v = ns %}` makes a namespace that contains itself.  Every
//! operation that walks a value recursively (printing it, `pprint`, `==`,
//! sorting, hashing, serializing) then recursed as deep as the value, and the
//! process died of a stack overflow.
//!
//! Each of those operations enters a [`DepthGuard`] for every container it
//! descends into.  Past [`MAX_DEPTH`] levels the guard refuses: the operation
//! stops descending (printing fails, comparing gives a fixed answer) and the
//! thread is marked, so that the engine fails the rendering with
//! the error of [`take_tripped`] at the next instruction instead of using that answer.  The
//! guard is a thread local counter: O(1) per level, nothing to walk when a
//! value is built, and cycles are caught like any other deep value.
//!
//! Printing a container is bounded in size the same way: the bytes printed
//! from inside containers by one instruction are counted
//! ([`MAX_DISPLAY_BYTES`]).
//!
//! Dropping a deep value is made iterative in `type_erase.rs`.
use std::cell::Cell;

use crate::error::{Error, ErrorKind};

/// How many containers deep a value may be walked.  Real templates nest a few
/// levels (messages, tool calls, JSON schemas); JSON from `tojson` inputs is
/// itself limited to 128 levels by the host.
pub const MAX_DEPTH: usize = 256;

/// How many bytes one instruction of a rendering may make by printing
/// containers (`{{ list }}`, `~`, `|string`, `|join`, `|pprint`, `%s`, ...).
/// Printing a container makes text that can be far larger than the container
/// (`[big] * 1000` holds one string a thousand times), and the fuel is only
/// charged for it once it exists.
pub const MAX_DISPLAY_BYTES: usize = 16 << 20;

/// How many values one instruction may visit inside the walks of `==`,
/// ordering and hashing.  A value shared at several places is visited at each
/// of them, so a list built by `{% set ns.v = [ns.v, ns.v] %}` 30 times takes
/// 2^30 visits to compare (and a namespace that contains itself twice, 2^256
/// to hash) while holding 30 lists.  The visits are charged to the fuel like
/// the items a filter visits; this many are what a quarter of the fuel pays
/// for (about 130 ms).
pub const MAX_WALK_STEPS: usize = 1 << 20;

/// Why a walk was refused.
#[derive(Copy, Clone, PartialEq, Eq)]
enum Trip {
    None,
    Deep,
    Large,
    Long,
    Fuel,
}

thread_local! {
    static DEPTH: Cell<usize> = const { Cell::new(0) };
    static TRIPPED: Cell<Trip> = const { Cell::new(Trip::None) };
    // renderings in progress on this thread, and the bytes printed from
    // containers by the current instruction.
    static RENDERING: Cell<usize> = const { Cell::new(0) };
    static DISPLAYED: Cell<usize> = const { Cell::new(0) };
    static STEPS: Cell<usize> = const { Cell::new(0) };
}

/// Marks a rendering in progress on this thread while it lives.
pub(crate) struct Rendering(());

impl Rendering {
    pub(crate) fn start() -> Rendering {
        let _ = RENDERING.try_with(|r| r.set(r.get() + 1));
        let _ = DISPLAYED.try_with(|d| d.set(0));
        let _ = STEPS.try_with(|s| s.set(0));
        Rendering(())
    }
}

impl Drop for Rendering {
    fn drop(&mut self) {
        let _ = RENDERING.try_with(|r| r.set(r.get().saturating_sub(1)));
    }
}

/// A new instruction: the bytes printed from containers start from zero.
#[inline]
pub(crate) fn next_instruction() {
    let _ = DISPLAYED.try_with(|d| d.set(0));
}

#[cfg_attr(not(all(feature = "fuel", feature = "builtins")), allow(dead_code))]
/// Marks the thread when the fuel ran out in the middle of a walk (`pprint`
/// writing): loops over the items of a container stop.
pub(crate) fn out_of_fuel() {
    let _ = TRIPPED.try_with(|t| {
        if t.get() == Trip::None {
            t.set(Trip::Fuel)
        }
    });
}

/// Whether a walk was refused and the rendering is about to fail: loops over
/// the items of a container stop.
#[inline]
pub(crate) fn tripped() -> bool {
    TRIPPED.try_with(|t| t.get() != Trip::None).unwrap_or(false)
}

/// `Iterator::cmp` that stops when a walk was refused.
pub(crate) fn cmp_iters<T: Ord>(
    mut a: impl Iterator<Item = T>,
    mut b: impl Iterator<Item = T>,
) -> std::cmp::Ordering {
    use std::cmp::Ordering;
    loop {
        if tripped() {
            return Ordering::Equal;
        }
        match (a.next(), b.next()) {
            (None, None) => return Ordering::Equal,
            (None, Some(_)) => return Ordering::Less,
            (Some(_), None) => return Ordering::Greater,
            (Some(x), Some(y)) => match x.cmp(&y) {
                Ordering::Equal => {}
                other => return other,
            },
        }
    }
}

/// The values visited by walks since the last call (and starts again from
/// zero), for the engine to charge.
#[inline]
pub(crate) fn take_steps() -> usize {
    STEPS.try_with(|s| s.replace(0)).unwrap_or(0)
}

/// Counts one value visited inside a walk (`==`, ordering, hashing).  False
/// (and the thread is marked) past [`MAX_WALK_STEPS`] since the engine last
/// charged them: the caller gives a fixed answer and the rendering fails.
/// Only counts inside a walk while a rendering is in progress.
#[inline]
pub(crate) fn step() -> bool {
    if DEPTH.try_with(|d| d.get()).unwrap_or(0) == 0
        || RENDERING.try_with(|r| r.get()).unwrap_or(0) == 0
    {
        return true;
    }
    let steps = STEPS
        .try_with(|s| {
            let n = s.get().saturating_add(1);
            s.set(n);
            n
        })
        .unwrap_or(0);
    if steps > MAX_WALK_STEPS {
        let _ = TRIPPED.try_with(|t| {
            if t.get() == Trip::None {
                t.set(Trip::Long)
            }
        });
        false
    } else {
        true
    }
}

/// Counts `n` bytes about to be printed from inside a container.  False (and
/// the thread is marked) when the instruction printed more than
/// [`MAX_DISPLAY_BYTES`]: the caller prints a placeholder instead and the
/// rendering fails.  Only counts while a rendering is in progress.
#[inline]
pub(crate) fn charge_display(n: usize) -> bool {
    if DEPTH.try_with(|d| d.get()).unwrap_or(0) == 0
        || RENDERING.try_with(|r| r.get()).unwrap_or(0) == 0
    {
        return true;
    }
    let total = DISPLAYED
        .try_with(|d| {
            let total = d.get().saturating_add(n);
            d.set(total);
            total
        })
        .unwrap_or(0);
    if total > MAX_DISPLAY_BYTES {
        let _ = TRIPPED.try_with(|t| {
            if t.get() == Trip::None {
                t.set(Trip::Large)
            }
        });
        false
    } else {
        true
    }
}

/// One level of a recursive walk over a value.
pub(crate) struct DepthGuard(bool);

impl DepthGuard {
    /// Enters one more level, or `None` (and the thread is marked) when the
    /// walk is already [`MAX_DEPTH`] deep.
    #[inline]
    pub(crate) fn enter() -> Option<DepthGuard> {
        match DEPTH.try_with(|d| {
            let n = d.get();
            if n >= MAX_DEPTH {
                false
            } else {
                d.set(n + 1);
                true
            }
        }) {
            Ok(true) => Some(DepthGuard(true)),
            Ok(false) => {
                let _ = TRIPPED.try_with(|t| t.set(Trip::Deep));
                None
            }
            // thread locals are being destroyed: only drops run then.
            Err(_) => Some(DepthGuard(false)),
        }
    }

    /// How many levels deep the walk of this thread is.
    #[inline]
    #[cfg_attr(not(all(feature = "fuel", feature = "builtins")), allow(dead_code))]
    pub(crate) fn current() -> usize {
        DEPTH.try_with(|d| d.get()).unwrap_or(0)
    }
}

impl Drop for DepthGuard {
    #[inline]
    fn drop(&mut self) {
        if self.0 {
            let _ = DEPTH.try_with(|d| d.set(d.get().saturating_sub(1)));
        }
    }
}

/// The error of a walk refused since the last call (and clears the mark).
#[inline]
pub(crate) fn take_tripped() -> Option<Error> {
    match TRIPPED.try_with(|t| t.replace(Trip::None)) {
        Ok(Trip::Deep) => Some(Error::new(
            ErrorKind::InvalidOperation,
            format!("value nested more than {MAX_DEPTH} levels deep (or containing itself)"),
        )),
        #[cfg(feature = "fuel")]
        Ok(Trip::Fuel) => Some(Error::from(ErrorKind::OutOfFuel)),
        Ok(Trip::Long) => Some(Error::new(
            ErrorKind::InvalidOperation,
            format!("comparing or hashing a value visited more than {MAX_WALK_STEPS} values"),
        )),
        Ok(Trip::Large) => Some(Error::new(
            ErrorKind::InvalidOperation,
            format!("printing a value made more than {MAX_DISPLAY_BYTES} bytes"),
        )),
        _ => None,
    }
}

/// The error of serializing a value nested too deep.
#[cfg_attr(not(feature = "json"), allow(dead_code))]
pub(crate) fn too_deep_json() -> Error {
    Error::new(
        ErrorKind::InvalidOperation,
        format!("cannot serialize a value nested more than {MAX_DEPTH} levels deep"),
    )
}
