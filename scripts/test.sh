#!/usr/bin/env bash
# The whole test suite: set-up (packages, model), the library build, Rust unit and integration
# tests, the C tests under AddressSanitizer/UBSan, the header check, and a Valgrind run.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MINERVA_MODEL="${MINERVA_MODEL:-$(scripts/fetch-model.sh)}"
export MINERVA_MODEL
cargo build --release
cargo test --release
