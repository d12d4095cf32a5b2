//! Packaging, as a user meets it:
//! - `scripts/install.sh` (what `make install` runs) into a temporary prefix, then a C program
//!   (tests/install/hello.c) built against it four ways: pkg-config and CMake, shared and static.
//!   Each runs from `/`, with no LD_LIBRARY_PATH and no MINERVA_BACKEND_DIR, and must load the
//!   model, name the CPU backend chosen and generate text.
//!   The installed minerva-rpc-server starts and listens.
//! - Run-time CPU dispatch: the same program run with the chosen backend's file taken away picks
//!   the next best one; with no backend at all, the engine fails with a message, not a crash.

mod common;

use common::{lib_dir, model_path, root, run, scratch, sh};
use std::path::Path;
use std::process::{Command, Output};

/// Runs the hello program from `/`, as a user's program would be, with nothing in the
/// environment pointing at minerva. Returns its stdout.
fn hello(exe: &Path, backend_dir: Option<&Path>) -> Output {
    let mut cmd = Command::new(exe);
    cmd.arg(model_path())
        .current_dir("/")
        .env_remove("LD_LIBRARY_PATH")
        .env_remove("MINERVA_BACKEND_DIR");
    if let Some(d) = backend_dir {
        cmd.env("MINERVA_BACKEND_DIR", d);
    }
    cmd.output().unwrap_or_else(|e| panic!("{exe:?}: {e}"))
}

/// The CPU backend line ("x86-64 AVX-512 VBMI VNNI (icelake)") of a successful run.
fn cpu_line(exe: &Path, out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{exe:?} failed ({}):\n{stdout}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let text = stdout
        .lines()
        .find_map(|l| l.strip_prefix("text: "))
        .unwrap_or("");
    assert!(
        !text.trim().is_empty(),
        "{exe:?} printed no text:\n{stdout}"
    );
    stdout
        .lines()
        .find_map(|l| l.strip_prefix("cpu: "))
        .unwrap_or_else(|| panic!("{exe:?} printed no cpu line:\n{stdout}"))
        .to_string()
}

#[test]
fn install_then_build_with_pkg_config_and_cmake() {
    let _one = common::one_at_a_time();
    let lib = lib_dir();
    let work = scratch("install");
    let prefix = work.join("prefix");
    run(Command::new(root().join("scripts/install.sh"))
        .arg(&prefix)
        .env("MINERVA_BUILD_DIR", &lib));
    let p = prefix.display();
    let src = root().join("tests/install/hello.c");
    let src = src.display();
    let pc = format!("PKG_CONFIG_PATH={p}/lib/pkgconfig");

    // pkg-config: the program names its own rpath to the library, as for any library outside
    // the loader's default paths.
    let shared = work.join("hello_pc_shared");
    sh(&format!(
        "cc -std=c11 -Wall -Werror {src} -o {} $({pc} pkg-config --cflags --libs minerva) \
         -Wl,-rpath,$({pc} pkg-config --variable=libdir minerva)",
        shared.display()
    ));
    let fully_static = work.join("hello_pc_static");
    sh(&format!(
        "cc -std=c11 -Wall -Werror {src} -o {} $({pc} pkg-config --cflags --libs minerva-static)",
        fully_static.display()
    ));

    // CMake: find_package(minerva 0.1 CONFIG REQUIRED), minerva::minerva and
    // minerva::minerva_static.
    let build = work.join("cmake-build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(root().join("tests/install"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={p}"))
        .arg("-DCMAKE_BUILD_TYPE=Release"));
    run(Command::new("cmake").arg("--build").arg(&build));

    let mut seen = Vec::new();
    for exe in [
        shared,
        fully_static,
        build.join("hello_shared"),
        build.join("hello_static"),
    ] {
        let cpu = cpu_line(&exe, &hello(&exe, None));
        // What the loader resolved: minerva's own files from the prefix, never the build tree.
        let ldd = run(Command::new("ldd").arg(&exe).env_remove("LD_LIBRARY_PATH"));
        let ldd = String::from_utf8_lossy(&ldd.stdout).into_owned();
        for line in ldd
            .lines()
            .filter(|l| l.contains("minerva") || l.contains("llama"))
        {
            assert!(
                line.contains(&*p.to_string()),
                "{exe:?} resolves outside the prefix: {line}"
            );
        }
        println!("{}: cpu {cpu}", exe.display());
        seen.push(cpu);
    }
    seen.dedup();
    assert_eq!(
        seen.len(),
        1,
        "the builds chose different backends: {seen:?}"
    );

    // The installed RPC server starts from its installed place and listens.
    drop(common::RpcServer::start_at(
        &prefix.join("bin/minerva-rpc-server"),
        &["--threads", "1"],
    ));
}

#[test]
fn cpu_backend_falls_back_to_the_next_best() {
    let _one = common::one_at_a_time();
    let lib = lib_dir();
    let private = lib.join("minerva");
    if !private.is_dir() {
        println!("skipped: a build without run-time dispatch (--no-default-features)");
        return;
    }
    let work = scratch("fallback");
    let exe = work.join("hello");
    run(Command::new("cc")
        .args(["-std=c11", "-Wall", "-Werror"])
        .arg(format!("-I{}", root().join("include").display()))
        .arg(root().join("tests/install/hello.c"))
        .arg(format!("-L{}", lib.display()))
        .arg("-lminerva")
        .arg(format!("-Wl,-rpath,{}", lib.display()))
        .arg("-o")
        .arg(&exe));

    let best = cpu_line(&exe, &hello(&exe, None));
    let variant = best
        .rsplit_once('(')
        .and_then(|(_, v)| v.strip_suffix(')'))
        .unwrap_or_else(|| panic!("no variant in {best:?}"))
        .to_string();
    println!("best: {best}");

    // All backends but the chosen one.
    let fewer = work.join("backends");
    std::fs::create_dir_all(&fewer).unwrap();
    let mut copied = 0;
    for e in std::fs::read_dir(&private).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if name.starts_with("libggml-cpu-") && name != format!("libggml-cpu-{variant}.so") {
            std::fs::copy(e.path(), fewer.join(&name)).unwrap();
            copied += 1;
        }
    }
    assert!(copied > 0, "no other CPU backend in {private:?}");
    let next = cpu_line(&exe, &hello(&exe, Some(&fewer)));
    println!("without libggml-cpu-{variant}.so: {next}");
    assert!(
        !next.ends_with(&format!("({variant})")),
        "the removed backend was still used: {next}"
    );

    // No backend at all: a clear error.
    let none = work.join("none");
    std::fs::create_dir_all(&none).unwrap();
    let out = hello(&exe, Some(&none));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an engine started with no backend");
    assert!(
        stderr.contains("backend"),
        "the error does not say what is missing: {stderr}"
    );
}
