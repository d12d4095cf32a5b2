//! 1. Compiles the C++ exception boundary over llama.cpp (src/engine/llama/shim.cpp) against the
//!    llama.cpp that llama-cpp-sys-2 built.
//! 2. Generates the C header from src/ffi into $OUT_DIR/minerva.h. The committed copy,
//!    include/minerva.h, is compared with it by tests/header.rs (MINERVA_BLESS=1 updates it).

use std::path::PathBuf;

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

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR");

    let llama = llama_source_dir();
    println!("cargo:rerun-if-changed=src/engine/llama/shim.cpp");
    println!("cargo:rerun-if-changed=src/engine/llama/chat_reference.cpp");
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/engine/llama/shim.cpp")
        .include(llama.join("include"))
        .include(llama.join("ggml/include"))
        .include(llama.join("common"))
        .include(llama.join("vendor"))
        .warnings(true)
        .extra_warnings(true)
        .compile("minerva_shim");
    // llama.cpp's own chat rendering, for the tests' comparison only (its headers warn).
    cc::Build::new()
        .cpp(true)
        .std("c++17")
        .file("src/engine/llama/chat_reference.cpp")
        .include(llama.join("include"))
        .include(llama.join("ggml/include"))
        .include(llama.join("common"))
        .include(llama.join("vendor"))
        .warnings(false)
        .compile("minerva_chat_reference");

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
