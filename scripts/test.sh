#!/usr/bin/env bash
# The whole test suite: set-up (packages, model), the library build, Rust unit and integration
# tests, the C tests under AddressSanitizer/UBSan (with a time limit each), the header check, and a
# Valgrind run. Every test runs, even after a failure; the last line sums them all up.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MINERVA_MODEL="${MINERVA_MODEL:-$(scripts/fetch-model.sh)}"
export MINERVA_MODEL
cargo build --release
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
cargo test --release --no-fail-fast 2>&1 | tee "$log" || status=$?
# cargo prints one "test result: ok. N passed; M failed; ..." line per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
