//! Compiles the C tests in tests/c/ against include/minerva.h and the built libminerva.so, with
//! AddressSanitizer and UndefinedBehaviorSanitizer (LeakSanitizer included), and runs them on
//! the real model. Each C program prints "ok - name" per case and exits non-zero on failure.

mod common;

use common::{lib_dir, model_path, root};
use std::path::{Path, PathBuf};
use std::process::Command;

fn compile(source: &str, compiler: &str, extra: &[&str]) -> PathBuf {
    let lib = lib_dir();
    let out_dir = root().join("target/ctest");
    std::fs::create_dir_all(&out_dir).unwrap();
    let name = Path::new(source).file_stem().unwrap().to_str().unwrap();
    let exe = out_dir.join(name);
    let mut cmd = Command::new(compiler);
    cmd.args(extra)
        .args([
            "-Wall",
            "-Wextra",
            "-Werror",
            "-g",
            "-fsanitize=address,undefined",
        ])
        .arg("-fno-sanitize-recover=all")
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join(source))
        .arg(format!("-L{}", lib.display()))
        .args(["-lminerva", "-lpthread", "-lm"])
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe);
    let out = cmd.output().expect("run the C compiler");
    assert!(
        out.status.success(),
        "compiling {source} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// A C test that has not ended after this long has hung (a deadlock or a stall): it is killed and
/// fails.
const C_TEST_LIMIT_SECS: u32 = 600;

fn run_c_test(source: &str) {
    let _one = common::one_at_a_time();
    let exe = if source.ends_with(".cpp") {
        compile(source, "c++", &["-std=c++17"])
    } else {
        compile(source, "cc", &["-std=c11"])
    };
    let out = Command::new("timeout")
        .args(["-s", "KILL", &C_TEST_LIMIT_SECS.to_string()])
        .arg(&exe)
        .env("MINERVA_MODEL", model_path())
        .env("MINERVA_CHAT_MODEL", common::chat_model_path())
        .env("MINERVA_LORA_DIR", common::lora_dir())
        .env(
            "MINERVA_DEFAULT_MODEL",
            if common::is_default_model() { "1" } else { "0" },
        )
        .env("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        .env("UBSAN_OPTIONS", "print_stacktrace=1:halt_on_error=1")
        .output()
        .expect("run the C test");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    print!("{stdout}");
    assert!(
        out.status.success(),
        "{source} failed ({}{}):\n{stdout}\n{stderr}",
        out.status,
        if out.status.code().is_none() {
            format!(", killed after {C_TEST_LIMIT_SECS} s: a hang")
        } else {
            String::new()
        }
    );
    assert!(
        !stderr.contains("ERROR: AddressSanitizer") && !stderr.contains("runtime error:"),
        "{source}: sanitizer report:\n{stderr}"
    );
    assert!(
        stdout.contains(" passed, 0 failed"),
        "{source} printed no summary"
    );
}

#[test]
fn c_generate() {
    run_c_test("tests/c/test_generate.c");
}

#[test]
fn c_errors() {
    run_c_test("tests/c/test_errors.c");
}

#[test]
fn c_lifecycle() {
    run_c_test("tests/c/test_lifecycle.c");
}

#[test]
fn c_regressions() {
    run_c_test("tests/c/test_regressions.c");
}

#[test]
fn c_tokens() {
    run_c_test("tests/c/test_tokens.c");
}

#[test]
fn c_structured() {
    run_c_test("tests/c/test_structured.c");
}

#[test]
fn c_chat() {
    run_c_test("tests/c/test_chat.c");
}

#[test]
fn c_cache() {
    run_c_test("tests/c/test_cache.c");
}

#[test]
fn c_embed() {
    run_c_test("tests/c/test_embed.c");
}

/// include/minerva.hpp, the C++ binding, under the same sanitizers.
#[test]
fn cpp_binding() {
    run_c_test("tests/c/test_hpp.cpp");
}

#[test]
fn c_release() {
    run_c_test("tests/c/test_release.c");
}

#[test]
fn c_concurrent() {
    run_c_test("tests/c/test_concurrent.c");
}

/// The header compiles as C++ (cpp_compat) and as strict C11 on its own, and a C++ program links
/// against the library.
#[test]
fn header_compiles_as_cpp_and_c11() {
    let _one = common::one_at_a_time();
    let exe = compile("tests/c/test_cpp.cpp", "c++", &["-std=c++11", "-pedantic"]);
    let out = Command::new(&exe).output().expect("run the C++ test");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let st = Command::new("cc")
        .args([
            "-std=c11",
            "-pedantic",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-fsyntax-only",
            "-x",
            "c",
        ])
        .arg(root().join("include/minerva.h"))
        .status()
        .unwrap();
    assert!(st.success(), "minerva.h does not compile on its own as C11");
}

/// The C examples build and stream.c produces text, run under Valgrind memcheck (which also
/// checks the library's own code, not only the C side).
#[test]
fn valgrind_stream_example() {
    let _one = common::one_at_a_time();
    if Command::new("valgrind").arg("--version").output().is_err() {
        panic!("valgrind is not installed (scripts/setup.sh installs it)");
    }
    let lib = lib_dir();
    let st = Command::new("make")
        .args(["-C", "examples-c", "-s"])
        .env("MINERVA_LIB_DIR", &lib)
        .status()
        .expect("run make");
    assert!(st.success(), "building examples-c failed");
    let out = Command::new("valgrind")
        .args([
            "--error-exitcode=99",
            "--leak-check=full",
            "--errors-for-leak-kinds=definite,indirect",
            "--show-leak-kinds=definite,indirect",
        ])
        .arg(root().join("examples-c/build/stream"))
        .args(["--max-tokens", "8", "--threads", "2", "The sky is"])
        .env("MINERVA_MODEL", model_path())
        .output()
        .expect("run valgrind");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("stream.c under valgrind: {stdout}");
    assert!(
        out.status.success(),
        "valgrind reported errors or leaks ({}):\n{stderr}",
        out.status
    );
    assert!(!stdout.trim().is_empty(), "stream.c printed no text");
}

/// examples-c/tools.c: a game character decides on an action through a REQUIRED tool call, the
/// game gives the result back, and the next turn runs.
#[test]
fn tools_example_decides_through_a_tool_call() {
    let _one = common::one_at_a_time();
    let lib = lib_dir();
    let st = Command::new("make")
        .args(["-C", "examples-c", "-s", "build/tools"])
        .env("MINERVA_LIB_DIR", &lib)
        .status()
        .expect("run make");
    assert!(st.success(), "building examples-c/tools.c failed");
    let out = Command::new(root().join("examples-c/build/tools"))
        .env("MINERVA_MODEL", model_path())
        .output()
        .expect("run tools");
    let stdout = String::from_utf8_lossy(&out.stdout);
    println!("{stdout}");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let calls = stdout
        .lines()
        .find_map(|l| l.strip_prefix("Bram decides: "))
        .expect("a line with the calls");
    let calls: serde_json::Value = serde_json::from_str(calls).unwrap();
    let names = ["walk_to", "draw_weapon", "open_gate"];
    for c in calls.as_array().unwrap() {
        assert!(names.contains(&c["name"].as_str().unwrap()), "{c}");
        assert!(c["arguments"].is_object(), "{c}");
    }
    assert!(stdout.contains("Game: "));
}
