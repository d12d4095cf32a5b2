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

# The tests whose expectations rest on the model's text run a second time with ggml's AVX2 CPU
# variant (haswell) forced, whatever this CPU's best: exact greedy text is only comparable between
# runs on the same kernels, and this catches a test that assumes the kernels of the machine it was
# written on. MINERVA_BACKEND_DIR points at a folder with the private folder's files but only that
# CPU variant. Needs a CPU with AVX2.
if grep -qw avx2 /proc/cpuinfo 2>/dev/null && [ -f target/release/minerva/libggml-cpu-haswell.so ]; then
  forced=$PWD/target/cpu-haswell
  rm -rf "$forced" && mkdir -p "$forced"
  for f in target/release/minerva/*; do
    case "$(basename "$f")" in
      libggml-cpu-*) ;;
      *) ln -s "$PWD/$f" "$forced/" ;;
    esac
  done
  ln -s "$PWD/target/release/minerva/libggml-cpu-haswell.so" "$forced/"
  echo "== again with the haswell (AVX2) CPU variant forced: MINERVA_BACKEND_DIR=$forced"
  export MINERVA_BACKEND_DIR=$forced MINERVA_EXPECT_CPU_VARIANT=haswell
  # Greedy text compared between streams, engines and servers; structured output; the C tests that
  # compare texts (prompt cache, seeds, callback and pull).
  cargo test --release --no-fail-fast --test engine --test rpc --test structured 2>&1 \
    | tee -a "$log" || status=$?
  cargo test --release --no-fail-fast --test c_api -- c_generate c_regressions 2>&1 \
    | tee -a "$log" || status=$?
  unset MINERVA_BACKEND_DIR MINERVA_EXPECT_CPU_VARIANT
else
  echo "== no AVX2 on this CPU: the run with the haswell CPU variant forced is skipped"
fi
# cargo prints one "test result: ok. N passed; M failed; ..." line per test binary.
awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
     END { printf "%d passed, %d failed\n", p, f }' "$log"
exit "$status"
