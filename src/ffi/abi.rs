//! The plumbing of the C ABI: pointer arguments (NULL checks), strings, parameter structs read up
//! to the caller's `struct_size`, output structs written up to it, fixed char arrays, user data.

use crate::engine::Error;
use std::ffi::c_char;

/// `&T` from a pointer argument, or `MINERVA_ERR_INVALID_ARGUMENT` naming it.
macro_rules! try_ref {
    ($ptr:expr, $name:literal) => {
        // SAFETY: the caller passes a valid pointer or NULL, as the header requires.
        match unsafe { $ptr.as_ref() } {
            Some(r) => r,
            None => return Err($crate::engine::Error::invalid(concat!($name, " is NULL"))),
        }
    };
}

/// `&mut T` from a pointer argument, or `MINERVA_ERR_INVALID_ARGUMENT` naming it.
macro_rules! try_mut {
    ($ptr:expr, $name:literal) => {
        // SAFETY: the caller passes a valid pointer or NULL, as the header requires.
        match unsafe { $ptr.as_mut() } {
            Some(r) => r,
            None => return Err($crate::engine::Error::invalid(concat!($name, " is NULL"))),
        }
    };
}

/// `&str` from a NUL-terminated UTF-8 argument, or `MINERVA_ERR_INVALID_ARGUMENT` naming it.
macro_rules! try_str {
    ($ptr:expr, $name:literal) => {{
        let p: *const std::ffi::c_char = $ptr;
        if p.is_null() {
            return Err($crate::engine::Error::invalid(concat!($name, " is NULL")));
        }
        // SAFETY: the caller passes a NUL-terminated string, as the header requires.
        match unsafe { std::ffi::CStr::from_ptr(p) }.to_str() {
            Ok(s) => s,
            Err(e) => {
                return Err($crate::engine::Error::invalid(format!(
                    concat!($name, " is not valid UTF-8 (bad byte at offset {})"),
                    e.valid_up_to()
                )))
            }
        }
    }};
}

pub(crate) use {try_mut, try_ref, try_str};

/// An optional string argument: NULL is None; otherwise it must be UTF-8 (`name` is its name in
/// the error).
///
/// # Safety
/// `p` is NULL or a NUL-terminated string that outlives the returned reference.
pub(crate) unsafe fn opt_str<'a>(p: *const c_char, name: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: as the caller promises.
    unsafe { std::ffi::CStr::from_ptr(p) }
        .to_str()
        .map(Some)
        .map_err(|e| {
            Error::invalid(format!(
                "{name} is not valid UTF-8 (bad byte at offset {})",
                e.valid_up_to()
            ))
        })
}

/// Reads a caller's parameter struct that begins with `uint32_t struct_size`: the fields that fit
/// in `struct_size` come from the caller, the rest from `defaults` (a program built against an
/// older header). `first` is the size of the first published layout: a smaller `struct_size` is
/// refused. `bool_offsets` are the offsets of its `bool` fields, which are normalized to 0 or 1
/// (a C caller may store any byte there).
///
/// # Safety
/// `ptr` is NULL or points to at least `struct_size` readable bytes.
pub(crate) unsafe fn read_params<T: Copy>(
    ptr: *const T,
    defaults: T,
    first: usize,
    name: &str,
    bool_offsets: &[usize],
) -> Result<T, Error> {
    if ptr.is_null() {
        return Ok(defaults);
    }
    // SAFETY: every parameter struct begins with a u32 struct_size.
    let size = unsafe { (ptr as *const u32).read_unaligned() } as usize;
    if size < first {
        return Err(Error::invalid(format!(
            "{name}.struct_size is {size}, smaller than the first published layout ({first} \
             bytes); call the _init function with sizeof"
        )));
    }
    let n = size.min(std::mem::size_of::<T>());
    let mut value = defaults;
    let dst = &mut value as *mut T as *mut u8;
    // SAFETY: the caller's struct has at least n readable bytes; `value` has size_of::<T>() >= n.
    unsafe {
        std::ptr::copy_nonoverlapping(ptr as *const u8, dst, n);
        for &off in bool_offsets.iter().filter(|&&off| off < n) {
            let b = dst.add(off);
            *b = (*b != 0) as u8;
        }
    }
    Ok(value)
}

/// Writes an output struct that begins with `uint32_t struct_size` (set by the caller; 0 means the
/// first published layout, `first` bytes): only the bytes that fit are written, and struct_size is
/// kept.
///
/// # Safety
/// `out` points to a writable struct of the caller's `struct_size` (or `first` bytes for 0).
pub(crate) unsafe fn write_out<T>(out: *mut T, value: &T, first: usize) {
    // SAFETY: every output struct begins with a u32 struct_size.
    let size = unsafe { (out as *const u32).read_unaligned() } as usize;
    let full = std::mem::size_of::<T>();
    let n = if size == 0 { first } else { size }.min(full);
    if n <= 4 {
        return;
    }
    // SAFETY: the caller's struct has n writable bytes; bytes 0..4 (struct_size) are kept.
    unsafe {
        std::ptr::copy_nonoverlapping(
            (value as *const T as *const u8).add(4),
            (out as *mut u8).add(4),
            n - 4,
        );
    }
}

/// Fills a caller's parameter struct with `defaults`, as far as `struct_size` reaches, and sets
/// its struct_size. NULL or a size below 4: nothing is written.
///
/// # Safety
/// `params` is NULL or points to `struct_size` writable bytes.
pub(crate) unsafe fn init_params<T>(params: *mut T, struct_size: u32, defaults: T) {
    if params.is_null() || struct_size < 4 {
        return;
    }
    // SAFETY: as the caller promises; write_out then writes only what fits in struct_size.
    unsafe {
        (params as *mut u32).write_unaligned(struct_size);
        write_out(params, &defaults, struct_size as usize);
    }
}

/// Copies `s` into a fixed C char array, truncated on a character boundary, NUL-terminated.
pub(crate) fn fill_chars<const N: usize>(dst: &mut [c_char; N], s: &str) {
    let mut n = s.len().min(N - 1);
    while !s.is_char_boundary(n) {
        n -= 1;
    }
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    dst[n] = 0;
}

/// A `void *user_data` that the engine thread may carry. The caller promises (in the header) that
/// its callbacks may be called from the engine thread with it.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub *mut std::ffi::c_void);
// SAFETY: see above; minerva never dereferences it, it only passes it back to the caller's code.
unsafe impl Send for UserData {}
unsafe impl Sync for UserData {}

/// A caller's array of `count` items at `ptr` (`what` and `count_name` name them in the error):
/// empty for a count of 0 whatever `ptr` is, an error for NULL with a count.
///
/// # Safety
/// `ptr` is NULL or points to `count` readable items that outlive `'a`.
pub(crate) unsafe fn array_arg<'a, T>(
    ptr: *const T,
    count: usize,
    what: &str,
    count_name: &str,
) -> Result<&'a [T], Error> {
    if count == 0 {
        Ok(&[])
    } else if ptr.is_null() {
        Err(Error::invalid(format!(
            "{what} is NULL but {count_name} is {count}"
        )))
    } else {
        // SAFETY: the caller's array of count items (above).
        Ok(unsafe { std::slice::from_raw_parts(ptr, count) })
    }
}

/// Copies `data` into a caller's buffer (`buf`, room for `cap` items) under the rule of the 0.2
/// functions: `*out_len` always gets the whole length needed; `MINERVA_ERR_BUFFER_TOO_SMALL` when
/// it does not fit (the buffer is then not written), so that `f(..., NULL, 0, &n)` asks for the
/// size. With `nul`, text is NUL-terminated when there is room for it.
///
/// # Safety
/// `buf` is NULL or points to `cap` writable items.
pub(crate) unsafe fn fill_buffer<T: Copy>(
    data: &[T],
    buf: *mut T,
    cap: usize,
    out_len: &mut usize,
    nul: Option<T>,
    what: &str,
) -> Result<(), Error> {
    if buf.is_null() && cap > 0 {
        return Err(Error::invalid(format!(
            "{what} is NULL but its cap is {cap}"
        )));
    }
    *out_len = data.len();
    if data.len() > cap {
        return Err(Error::new(
            crate::engine::Status::BufferTooSmall,
            format!("{what} holds {cap}; {} needed", data.len()),
        ));
    }
    if data.is_empty() && buf.is_null() {
        return Ok(());
    }
    // SAFETY: buf has cap >= data.len() writable items (checked above).
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), buf, data.len());
        if let Some(z) = nul.filter(|_| cap > data.len()) {
            *buf.add(data.len()) = z;
        }
    }
    Ok(())
}
