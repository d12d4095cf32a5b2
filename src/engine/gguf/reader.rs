//! The byte-level reader: scalars, strings and arrays, each length checked against the file.

use super::{Res, Value, MAX_KEY, MAX_LAYERS, MAX_VALUE};
use std::io::Read;

pub(super) const T_U8: u32 = 0;
pub(super) const T_I8: u32 = 1;
pub(super) const T_U16: u32 = 2;
pub(super) const T_I16: u32 = 3;
pub(super) const T_U32: u32 = 4;
pub(super) const T_I32: u32 = 5;
pub(super) const T_F32: u32 = 6;
pub(super) const T_BOOL: u32 = 7;
pub(super) const T_STR: u32 = 8;
pub(super) const T_ARR: u32 = 9;
pub(super) const T_U64: u32 = 10;
pub(super) const T_I64: u32 = 11;
pub(super) const T_F64: u32 = 12;

pub(super) fn scalar_size(t: u32) -> Option<u64> {
    Some(match t {
        T_U8 | T_I8 | T_BOOL => 1,
        T_U16 | T_I16 => 2,
        T_U32 | T_I32 | T_F32 => 4,
        T_U64 | T_I64 | T_F64 => 8,
        _ => return None,
    })
}

pub(super) struct Reader<R: Read> {
    pub(super) inner: R,
    pub(super) pos: u64,
    pub(super) len: u64,
}

impl<R: Read> Reader<R> {
    pub(super) fn remaining(&self) -> u64 {
        self.len.saturating_sub(self.pos)
    }

    pub(super) fn bytes(&mut self, n: u64, what: &str) -> Res<Vec<u8>> {
        if n > self.remaining() {
            return Err(format!(
                "the file is truncated: {what} needs {n} bytes at offset {}, {} are left",
                self.pos,
                self.remaining()
            ));
        }
        let mut v = vec![0u8; n as usize];
        self.inner
            .read_exact(&mut v)
            .map_err(|e| format!("cannot read {what} at offset {}: {e}", self.pos))?;
        self.pos += n;
        Ok(v)
    }

    pub(super) fn skip(&mut self, n: u64, what: &str) -> Res<()> {
        if n > self.remaining() {
            return Err(format!(
                "the file is truncated: {what} needs {n} bytes at offset {}, {} are left",
                self.pos,
                self.remaining()
            ));
        }
        let copied = std::io::copy(&mut (&mut self.inner).take(n), &mut std::io::sink())
            .map_err(|e| format!("cannot read {what} at offset {}: {e}", self.pos))?;
        if copied != n {
            return Err(format!("the file is truncated in {what}"));
        }
        self.pos += n;
        Ok(())
    }

    pub(super) fn u32(&mut self, what: &str) -> Res<u32> {
        let b = self.bytes(4, what)?;
        Ok(u32::from_le_bytes(b.try_into().expect("4 bytes")))
    }

    pub(super) fn u64(&mut self, what: &str) -> Res<u64> {
        let b = self.bytes(8, what)?;
        Ok(u64::from_le_bytes(b.try_into().expect("8 bytes")))
    }

    /// A string of at most `max` bytes (longer ones are refused before anything is allocated).
    pub(super) fn string_max(&mut self, what: &str, max: u64) -> Res<String> {
        let n = self.u64(what)?;
        if n > max {
            return Err(format!("{what} is {n} bytes long (at most {max})"));
        }
        let b = self.bytes(n, what)?;
        String::from_utf8(b).map_err(|_| format!("{what} is not valid UTF-8"))
    }

    pub(super) fn string(&mut self, what: &str) -> Res<String> {
        self.string_max(what, MAX_KEY)
    }

    pub(super) fn scalar(&mut self, t: u32, what: &str) -> Res<Value> {
        let size = scalar_size(t).ok_or_else(|| format!("{what} has unknown type {t}"))?;
        let b = self.bytes(size, what)?;
        let mut raw = [0u8; 8];
        raw[..b.len()].copy_from_slice(&b);
        let u = u64::from_le_bytes(raw);
        Ok(match t {
            T_U8 | T_U16 | T_U32 | T_U64 => Value::Uint(u),
            T_I8 => Value::Int(b[0] as i8 as i64),
            T_I16 => Value::Int(i16::from_le_bytes([b[0], b[1]]) as i64),
            T_I32 => Value::Int(i32::from_le_bytes(b[..4].try_into().expect("4")) as i64),
            T_I64 => Value::Int(u as i64),
            T_F32 => Value::Float(f32::from_le_bytes(b[..4].try_into().expect("4")) as f64),
            T_F64 => Value::Float(f64::from_bits(u)),
            T_BOOL => match b[0] {
                0 => Value::Bool(false),
                1 => Value::Bool(true),
                v => return Err(format!("{what} is a bool with value {v}")),
            },
            _ => unreachable!(),
        })
    }

    pub(super) fn value(&mut self, t: u32, what: &str) -> Res<Value> {
        match t {
            T_STR => {
                // Long values (a chat template, a license) are kept up to MAX_VALUE bytes; a
                // longer one is skipped, not allocated.
                let n = self.u64(what)?;
                if n > MAX_VALUE {
                    self.skip(n, what)?;
                    return Ok(Value::Str(String::new()));
                }
                let b = self.bytes(n, what)?;
                Ok(Value::Str(String::from_utf8_lossy(&b).into_owned()))
            }
            T_ARR => {
                let elem_type = self.u32(what)?;
                let len = self.u64(what)?;
                match elem_type {
                    T_STR => {
                        // Each string has at least its 8-byte length.
                        if len > self.remaining() / 8 {
                            return Err(format!(
                                "{what}: an array of {len} strings cannot fit in the {} bytes left",
                                self.remaining()
                            ));
                        }
                        for i in 0..len {
                            let n = self.u64(what)?;
                            self.skip(n, &format!("{what}[{i}]"))?;
                        }
                        Ok(Value::Array {
                            elem_type,
                            len,
                            ints: Vec::new(),
                        })
                    }
                    T_ARR => Err(format!(
                        "{what} is an array of arrays, which GGUF does not allow"
                    )),
                    t => {
                        let size = scalar_size(t)
                            .ok_or_else(|| format!("{what} is an array of unknown type {t}"))?;
                        let bytes = len
                            .checked_mul(size)
                            .filter(|&b| b <= self.remaining())
                            .ok_or_else(|| {
                                format!(
                                    "the file is truncated: {what} is an array of {len} elements"
                                )
                            })?;
                        let is_int = !matches!(t, T_F32 | T_F64 | T_BOOL);
                        if is_int && len <= MAX_LAYERS {
                            let mut ints = Vec::with_capacity(len as usize);
                            for _ in 0..len {
                                match self.scalar(t, what)? {
                                    Value::Uint(v) => ints.push(v.min(i64::MAX as u64) as i64),
                                    Value::Int(v) => ints.push(v),
                                    _ => unreachable!(),
                                }
                            }
                            Ok(Value::Array {
                                elem_type,
                                len,
                                ints,
                            })
                        } else {
                            self.skip(bytes, what)?;
                            Ok(Value::Array {
                                elem_type,
                                len,
                                ints: Vec::new(),
                            })
                        }
                    }
                }
            }
            t => self.scalar(t, what),
        }
    }
}
