//! 1. Compiles the C++ exception boundary over llama.cpp (src/engine/llama/shim.cpp) against the
//!    llama.cpp that llama-cpp-sys-2 built.
//! 2. Links libminerva.so with a SONAME carrying the ABI version (libminerva.so.<ABI>), and, in
//!    the default build (feature `portable`: llama.cpp as shared libraries, ggml's CPU backends
//!    loaded at run time), puts llama.cpp's libraries and backends in the private folder
//!    `minerva/` beside libminerva (target/<profile>/minerva/), which libminerva finds through
//!    its rpath `$ORIGIN/minerva`: wherever the two are installed or copied together, they work.
//! 3. Generates the C header from src/ffi into $OUT_DIR/minerva.h. The committed copy,
//!    include/minerva.h, is compared with it by tests/header.rs (MINERVA_BLESS=1 updates it).

use std::path::{Path, PathBuf};

/// llama.cpp's source folder, as llama-cpp-sys-2's CMake build recorded it. The crate announces
/// its CMake package folder (`<out>/lib/cmake`) to dependents as DEP_LLAMA_GGML_CMAKE_DIR; its
/// CMake cache lies in `<out>/build`.
fn llama_source_dir() -> PathBuf {
    let cmake_dir = std::env::var("DEP_LLAMA_GGML_CMAKE_DIR")
        .expect("DEP_LLAMA_GGML_CMAKE_DIR (set by llama-cpp-sys-2's build)");
    let out = PathBuf::from(cmake_dir)
        .ancestors()
        .nth(2)
        .expect("<out>/lib/cmake")
        .to_path_buf();
    let cache = std::fs::read_to_string(out.join("build/CMakeCache.txt"))
        .expect("llama-cpp-sys-2's CMakeCache.txt");
    let home = cache
        .lines()
        .find_map(|l| l.strip_prefix("CMAKE_HOME_DIRECTORY:INTERNAL="))
        .expect("CMAKE_HOME_DIRECTORY in CMakeCache.txt");
    PathBuf::from(home.trim())
}

/// `MINERVA_ABI_VERSION` as src/ffi/version.rs defines it.
fn abi_version(crate_dir: &str) -> u32 {
    let src = std::fs::read_to_string(format!("{crate_dir}/src/ffi/version.rs"))
        .expect("read src/ffi/version.rs");
    src.lines()
        .find_map(|l| l.strip_prefix("pub const MINERVA_ABI_VERSION: u32 = "))
        .and_then(|v| v.trim_end_matches(';').trim().parse().ok())
        .expect("MINERVA_ABI_VERSION in src/ffi/version.rs")
}

/// Copies `src` (following links) to `dst` unless `dst` is already the same size and no older;
/// through a temporary file and a rename, so that a program running the old copy keeps it.
fn copy_if_changed(src: &Path, dst: &Path) {
    let meta = std::fs::metadata(src).unwrap_or_else(|e| panic!("{src:?}: {e}"));
    if let Ok(old) = std::fs::metadata(dst) {
        let newer = match (meta.modified(), old.modified()) {
            (Ok(s), Ok(d)) => s > d,
            _ => true,
        };
        if old.len() == meta.len() && !newer {
            return;
        }
    }
    let tmp = dst.with_extension("tmp-copy");
    std::fs::copy(src, &tmp).unwrap_or_else(|e| panic!("copy {src:?} to {tmp:?}: {e}"));
    std::fs::rename(&tmp, dst).unwrap_or_else(|e| panic!("rename {tmp:?} to {dst:?}: {e}"));
}

/// The run-time files of a build with dynamic backends, copied into `<profile dir>/minerva/`:
/// each shared library of llama.cpp under its SONAME (`libllama.so.0`, ...), and every backend
/// (`libggml-cpu-<variant>.so`, ...).
fn stage_runtime(llama_out: &Path, out_dir: &Path) {
    let profile_dir = out_dir
        .ancestors()
        .nth(3)
        .expect("<target>/<profile>/build/<pkg>/out");
    let stage = profile_dir.join("minerva");
    std::fs::create_dir_all(&stage).expect("create the minerva/ folder");
    let is_soname = |name: &str| {
        name.starts_with("lib")
            && name
                .rsplit_once(".so.")
                .is_some_and(|(_, v)| !v.is_empty() && v.bytes().all(|b| b.is_ascii_digit()))
    };
    let mut staged = Vec::new();
    for (dir, want) in [
        (llama_out.join("lib"), &is_soname as &dyn Fn(&str) -> bool),
        (llama_out.join("build/common"), &is_soname),
        (llama_out.join("backends"), &|n: &str| {
            n.starts_with("lib") && n.ends_with(".so")
        }),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if want(&name) {
                copy_if_changed(&e.path(), &stage.join(&name));
                staged.push(name);
            }
        }
    }
    assert!(
        staged.iter().any(|n| n.starts_with("libggml-cpu")),
        "no CPU backend found in {llama_out:?}/backends"
    );
    println!("cargo:rerun-if-changed={}", stage.display());

    // llama-cpp-sys-2 hard-links llama.cpp's `lib*.so` into the profile folder, `deps/` and
    // `examples/`; those are symbolic links to versioned names that are not there, and on its
    // next run (a changed GGML_* option) it fails on them ("File exists"). They serve nothing:
    // remove them.
    for dir in [
        profile_dir.to_path_buf(),
        profile_dir.join("deps"),
        profile_dir.join("examples"),
    ] {
        let Ok(entries) = std::fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let dangling = std::fs::symlink_metadata(e.path()).is_ok_and(|m| m.is_symlink())
                && std::fs::metadata(e.path()).is_err();
            if dangling && e.file_name().to_string_lossy().starts_with("lib") {
                let _ = std::fs::remove_file(e.path());
            }
        }
    }
}

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR");

    let llama = llama_source_dir();
    let abi = abi_version(&crate_dir);
    println!("cargo:rerun-if-changed=src/ffi/version.rs");
    // Linux (ELF) only: another system's linker takes other flags, and is not tested here.
    let linux = std::env::var("CARGO_CFG_TARGET_OS").is_ok_and(|os| os == "linux");
    if linux {
        println!("cargo:rustc-cdylib-link-arg=-Wl,-soname,libminerva.so.{abi}");
        // Programs linked to target/<profile>/libminerva.so ask the loader for its SONAME.
        let profile_dir = Path::new(&out_dir)
            .ancestors()
            .nth(3)
            .expect("<target>/<profile>");
        let link = profile_dir.join(format!("libminerva.so.{abi}"));
        #[cfg(unix)]
        if std::fs::read_link(&link).is_err() {
            let _ = std::fs::remove_file(&link);
            std::os::unix::fs::symlink("libminerva.so", &link).expect("link libminerva.so.<ABI>");
        }
    }
    if linux && std::env::var_os("CARGO_FEATURE_PORTABLE").is_some() {
        let cmake_dir =
            std::env::var("DEP_LLAMA_GGML_CMAKE_DIR").expect("DEP_LLAMA_GGML_CMAKE_DIR");
        let llama_out = Path::new(&cmake_dir)
            .ancestors()
            .nth(2)
            .expect("<out>/lib/cmake");
        stage_runtime(llama_out, Path::new(&out_dir));
        println!("cargo:rustc-cdylib-link-arg=-Wl,-rpath,$ORIGIN/minerva");
        // This crate's own programs find the same folder: examples in <profile>/examples/,
        // tests in <profile>/deps/.
        println!("cargo:rustc-link-arg-examples=-Wl,-rpath,$ORIGIN/../minerva");
        println!("cargo:rustc-link-arg-tests=-Wl,-rpath,$ORIGIN/../minerva");
        // minerva-rpc-server: beside the library in the build, in <prefix>/bin when installed.
        println!("cargo:rustc-link-arg-bins=-Wl,-rpath,$ORIGIN/minerva:$ORIGIN/../lib/minerva");
    }
    println!("cargo:rerun-if-changed=src/engine/llama/shim.cpp");
    println!("cargo:rerun-if-changed=src/engine/llama/rpc.cpp");
    println!("cargo:rerun-if-changed=src/engine/llama/chat_reference.cpp");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/engine/llama/shim.cpp")
        .file("src/engine/llama/rpc.cpp")
        .include(llama.join("include"))
        .include(llama.join("ggml/src"))
        .include(llama.join("ggml/include"))
        .include(llama.join("common"))
        .include(llama.join("vendor"))
        .warnings(true)
        .extra_warnings(true)
        .compile("minerva_shim");
    // llama.cpp's chat-format detection and output parsers (common/chat.h), and its own chat
    // rendering for the tests' comparison (its headers warn).
    println!("cargo:rerun-if-changed=src/engine/llama/chat_format.cpp");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/engine/llama/chat_format.cpp")
        .file("src/engine/llama/chat_reference.cpp")
        .include(llama.join("include"))
        .include(llama.join("ggml/include"))
        .include(llama.join("common"))
        .include(llama.join("vendor"))
        .warnings(false)
        .compile("minerva_chat");

    // cbindgen reads the whole crate: any public item anywhere could reach the header.
    println!("cargo:rerun-if-changed=src");
    println!("cargo:rerun-if-changed=cbindgen.toml");
    let config = cbindgen::Config::from_file(format!("{crate_dir}/cbindgen.toml"))
        .expect("read cbindgen.toml");
    cbindgen::Builder::new()
        .with_crate(&crate_dir)
        .with_config(config)
        .generate()
        .expect("generate the C header")
        .write_to_file(format!("{out_dir}/minerva.h"));
}
