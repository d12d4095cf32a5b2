//! Errors of the engine. Each carries a [`Status`] (the C API's status code) and a message that
//! names the problem.

use std::fmt;

/// The kinds of failure. The numeric values are the C API's `minerva_status` values and are never
/// reused or renumbered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Status {
    Ok = 0,
    InvalidArgument = 1,
    Io = 2,
    Model = 3,
    OutOfMemory = 4,
    ContextFull = 5,
    Cancelled = 6,
    Timeout = 7,
    Backend = 8,
    Internal = 9,
    BufferTooSmall = 10,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub message: String,
}

impl Error {
    pub fn new(status: Status, message: impl Into<String>) -> Self {
        Error {
            status,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(Status::InvalidArgument, message)
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
