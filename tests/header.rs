//! The committed header, include/minerva.h, must be what the build generates from src/ffi, and
//! every `MINERVA_*` value in it must be the Rust value it mirrors.
//! Run with MINERVA_BLESS=1 to update the header after changing the C surface.

use minerva::engine::chat::ToolChoice;
use minerva::engine::embed::Pooling;
use minerva::engine::{log::Level, DeviceKind, FinishReason, Status, SEED_RANDOM};
use std::collections::BTreeMap;

const HEADER: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/include/minerva.h");

#[test]
fn committed_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/minerva.h"));
    if std::env::var_os("MINERVA_BLESS").is_some() {
        std::fs::write(HEADER, generated).expect("write include/minerva.h");
    }
    let committed = std::fs::read_to_string(HEADER).unwrap_or_default();
    assert!(
        committed == generated,
        "include/minerva.h differs from the header generated from src/ffi; run \
         `MINERVA_BLESS=1 cargo test --release --test header` and commit include/minerva.h"
    );
}

/// `#define MINERVA_X value` lines of the header (as generated; the test above checks that the
/// committed one is the same), as numbers.
fn header_values() -> BTreeMap<String, u64> {
    let text = include_str!(concat!(env!("OUT_DIR"), "/minerva.h"));
    text.lines()
        .filter_map(|l| l.strip_prefix("#define MINERVA_"))
        .filter_map(|l| {
            let mut parts = l.split_whitespace();
            let name = format!("MINERVA_{}", parts.next()?);
            let value = match parts.next()? {
                "UINT64_MAX" => u64::MAX,
                v => v.parse().unwrap_or_else(|_| panic!("{name}: value {v:?}")),
            };
            Some((name, value))
        })
        .collect()
}

#[test]
fn every_value_in_the_header_is_the_rust_value_it_mirrors() {
    use FinishReason as F;
    let mut rust: Vec<(&str, u64)> = vec![
        (
            "MINERVA_ABI_VERSION",
            minerva::ffi::minerva_abi_version() as u64,
        ),
        ("MINERVA_SEED_RANDOM", SEED_RANDOM),
        // Callback answers: 0 goes on, anything else stops (src/ffi/stream.rs, engine.rs).
        ("MINERVA_CONTINUE", 0),
        ("MINERVA_STOP", 1),
    ];
    let statuses = [
        ("OK", Status::Ok),
        ("ERR_INVALID_ARGUMENT", Status::InvalidArgument),
        ("ERR_IO", Status::Io),
        ("ERR_MODEL", Status::Model),
        ("ERR_OUT_OF_MEMORY", Status::OutOfMemory),
        ("ERR_CONTEXT_FULL", Status::ContextFull),
        ("ERR_CANCELLED", Status::Cancelled),
        ("ERR_TIMEOUT", Status::Timeout),
        ("ERR_BACKEND", Status::Backend),
        ("ERR_INTERNAL", Status::Internal),
        ("ERR_BUFFER_TOO_SMALL", Status::BufferTooSmall),
    ];
    let finishes = [
        ("RUNNING", F::Running),
        ("LENGTH", F::Length),
        ("STOP", F::Stop),
        ("EOS", F::Eos),
        ("CANCELLED", F::Cancelled),
        ("ERROR", F::Error),
    ];
    let devices = [
        ("CPU", DeviceKind::Cpu),
        ("CUDA", DeviceKind::Cuda),
        ("METAL", DeviceKind::Metal),
        ("VULKAN", DeviceKind::Vulkan),
        ("OTHER", DeviceKind::Other),
        ("RPC", DeviceKind::Rpc),
    ];
    let levels = [
        ("DEBUG", Level::Debug),
        ("INFO", Level::Info),
        ("WARN", Level::Warn),
        ("ERROR", Level::Error),
        ("NONE", Level::None),
    ];
    let tool_choices = [
        ("AUTO", ToolChoice::Auto),
        ("NONE", ToolChoice::None),
        ("REQUIRED", ToolChoice::Required),
    ];
    let poolings = [
        ("DEFAULT", Pooling::Default),
        ("MEAN", Pooling::Mean),
        ("LAST", Pooling::Last),
        ("CLS", Pooling::Cls),
    ];
    let names: Vec<(String, u64)> = statuses
        .iter()
        .map(|(n, v)| (format!("MINERVA_{n}"), *v as u64))
        .chain(
            finishes
                .iter()
                .map(|(n, v)| (format!("MINERVA_FINISH_{n}"), *v as u64)),
        )
        .chain(
            devices
                .iter()
                .map(|(n, v)| (format!("MINERVA_DEVICE_{n}"), *v as u64)),
        )
        .chain(
            levels
                .iter()
                .map(|(n, v)| (format!("MINERVA_LOG_{n}"), *v as u64)),
        )
        .chain(
            poolings
                .iter()
                .map(|(n, v)| (format!("MINERVA_POOLING_{n}"), *v as u64)),
        )
        .chain(
            tool_choices
                .iter()
                .map(|(n, v)| (format!("MINERVA_TOOL_CHOICE_{n}"), *v as u64)),
        )
        .collect();
    rust.extend(names.iter().map(|(n, v)| (n.as_str(), *v)));
    // The reasoning switch is a bool in Rust (ChatOptions::reasoning); the C values are these.
    rust.push((
        "MINERVA_REASONING_AUTO",
        minerva::ffi::chat::MINERVA_REASONING_AUTO as u64,
    ));
    rust.push((
        "MINERVA_REASONING_NONE",
        minerva::ffi::chat::MINERVA_REASONING_NONE as u64,
    ));
    assert_eq!(minerva::ffi::chat::MINERVA_REASONING_AUTO, 0);
    assert_eq!(minerva::ffi::chat::MINERVA_REASONING_NONE, 1);

    let header = header_values();
    for (name, value) in &rust {
        assert_eq!(
            header.get(*name),
            Some(value),
            "{name}: the header and the Rust value it mirrors differ"
        );
    }
    for name in header.keys() {
        assert!(
            rust.iter().any(|(n, _)| n == name),
            "{name} is in the header but pinned by no test: add it here"
        );
    }
    // Status words come from one table too.
    for (_, s) in statuses {
        let words = unsafe { std::ffi::CStr::from_ptr(minerva::ffi::minerva_status_str(s as u32)) };
        assert_ne!(words.to_bytes(), b"unknown");
    }
}
