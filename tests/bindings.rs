//! Runs each language binding's own tests (bindings/*/test.sh, examples-godot/test.sh) against the
//! built library and the real model, one at a time. A script gets:
//!   MINERVA_MODEL        the default model (a base model with no chat template)
//!   MINERVA_CHAT_MODEL   the same model with a chat template in its metadata
//!   MINERVA_LIB_DIR      the folder of the built libminerva.so and libminerva.a
//!   MINERVA_INCLUDE_DIR  the folder of minerva.h and minerva.hpp
//! and exits non-zero on failure. Whatever it builds goes to ignored folders.

mod common;

use common::{chat_model_path, lib_dir, model_path, root};
use std::process::Command;

/// A binding's tests that have not ended after this long have hung: they are killed and fail.
const LIMIT_SECS: u32 = 600;

fn run_script(script: &str) {
    let _one = common::one_at_a_time();
    let lib = lib_dir();
    let path = root().join(script);
    assert!(path.exists(), "{script} is missing");
    let out = Command::new("timeout")
        .arg(LIMIT_SECS.to_string())
        .arg("bash")
        .arg(&path)
        .env("MINERVA_MODEL", model_path())
        .env("MINERVA_CHAT_MODEL", chat_model_path())
        .env("MINERVA_LIB_DIR", &lib)
        .env("MINERVA_INCLUDE_DIR", root().join("include"))
        .current_dir(path.parent().unwrap())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    eprintln!("{stderr}");
    assert!(
        out.status.success(),
        "{script} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
}

#[test]
fn python() {
    run_script("bindings/python/test.sh");
}

#[test]
fn go() {
    run_script("bindings/go/test.sh");
}

#[test]
fn csharp() {
    run_script("bindings/csharp/test.sh");
}

#[test]
fn swift_module_map() {
    run_script("bindings/swift/test.sh");
}

#[test]
fn godot() {
    run_script("examples-godot/test.sh");
}
