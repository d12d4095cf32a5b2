#!/usr/bin/env bash
# minerva's benchmark against a baseline written directly against llama.h (same llama.cpp build,
# same threads and batch sizes), interleaved, best of N. See docs/PERFORMANCE.md.
#
#   scripts/bench.sh [--threads N] [--reps N] [--only load,single,batched,callback,memory,chat]
#   MINERVA_MODEL=/path/model.gguf scripts/bench.sh
#
# Extra cargo flags go in BENCH_CARGO_FLAGS (e.g. "--features portable"), extra rustc flags in
# RUSTFLAGS, and a separate build directory in CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MINERVA_MODEL="${MINERVA_MODEL:-$(scripts/fetch-model.sh)}"
export MINERVA_MODEL
# shellcheck disable=SC2086
cargo build --release --example bench ${BENCH_CARGO_FLAGS:-}
exec "${CARGO_TARGET_DIR:-target}/release/examples/bench" "$@"
