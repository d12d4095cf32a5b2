//! The committed header, include/minerva.h, must be what the build generates from src/ffi.
//! Run with MINERVA_BLESS=1 to update it after changing the C surface.

#[test]
fn committed_header_is_current() {
    let generated = include_str!(concat!(env!("OUT_DIR"), "/minerva.h"));
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/include/minerva.h");
    if std::env::var_os("MINERVA_BLESS").is_some() {
        std::fs::write(path, generated).expect("write include/minerva.h");
    }
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        committed == generated,
        "include/minerva.h differs from the header generated from src/ffi; run \
         `MINERVA_BLESS=1 cargo test --release --test header` and commit include/minerva.h"
    );
}
