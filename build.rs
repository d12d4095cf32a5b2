//! Generates the C header from src/ffi into $OUT_DIR/minerva.h. The committed copy,
//! include/minerva.h, is compared with it by tests/header.rs (MINERVA_BLESS=1 updates it).

fn main() {
    let crate_dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    let out_dir = std::env::var("OUT_DIR").expect("OUT_DIR");
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
