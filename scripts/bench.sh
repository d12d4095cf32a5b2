#!/usr/bin/env bash
# minerva's benchmark against a baseline written directly against llama.h (same llama.cpp build,
# same threads and batch sizes), interleaved, best of N; then the frame-loop benchmark (a 60 fps
# game loop: per-call latency, time between tokens with prompts arriving, bursts). See
# docs/PERFORMANCE.md.
#
#   scripts/bench.sh [--threads N] [--reps N] [--seconds N]
#                    [--only load,single,batched,callback,memory,chat,structured,tools,embed,rpc,frame,state]
#                    [--tiny] [--llama-tools DIR]
#   MINERVA_MODEL=/path/model.gguf scripts/bench.sh
#
# --tiny runs on the tiny model of scripts/tiny-model.sh (the default model's vocabulary, 2 layers
# of width 64: decode takes about a millisecond, as the real model's does on a GPU), which makes
# minerva's host work per step plain in the engine thread's profile lines.
#
# --llama-tools DIR also runs llama.cpp's llama-bench and llama-batched-bench from DIR on the same
# model, threads and layers, and prints minerva's figures against theirs (generation against
# tg128, 1 and 8 streams against batched-bench). scripts/gpu-bundle.sh builds them into
# target/gpu-bundle/minerva-gpu/tools/bin; minerva's CPU backends are linked in beside them.
#
# Extra cargo flags go in BENCH_CARGO_FLAGS (e.g. "--features portable"), extra rustc flags in
# RUSTFLAGS, and a separate build directory in CARGO_TARGET_DIR.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
for a in "$@"; do
  [ "$a" = --tiny ] && MINERVA_MODEL=$(scripts/tiny-model.sh)
done
MINERVA_MODEL="${MINERVA_MODEL:-$(scripts/fetch-model.sh)}"
export MINERVA_MODEL
# The real-world schemas of the structured section, where scripts/schema-coverage.sh fetched them.
cache="${MINERVA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minerva}"
export MINERVA_SCHEMAS="${MINERVA_SCHEMAS:-$cache/schemas-check-jsonschema-0.39.0}"
# shellcheck disable=SC2086
cargo build --release --example bench --example frame_loop --example bench_state \
  --bin minerva-rpc-server ${BENCH_CARGO_FLAGS:-}
bin="${CARGO_TARGET_DIR:-target}/release/examples"

bench_args=() frame_args=() only=""
while [ $# -gt 0 ]; do
  case "$1" in
    --threads) bench_args+=("$1" "$2"); frame_args+=("$1" "$2"); shift 2 ;;
    --seconds) frame_args+=("$1" "$2"); shift 2 ;;
    --only) only="$2"; bench_args+=("$1" "$2"); shift 2 ;;
    --tiny) shift ;;
    --llama-tools)
      tools=$(realpath "$2")
      [ -x "$tools/llama-bench" ] && [ -x "$tools/llama-batched-bench" ] \
        || { echo "bench.sh: no llama-bench and llama-batched-bench in $tools" >&2; exit 2; }
      # ggml loads its backends from the program's folder: minerva's CPU variants.
      for f in "${CARGO_TARGET_DIR:-target}"/release/minerva/libggml-cpu-*.so; do
        ln -sf "$(realpath "$f")" "$tools/"
      done
      bench_args+=(--llama-tools "$tools"); shift 2 ;;
    *) bench_args+=("$1"); shift ;;
  esac
done
if [ -z "$only" ] || [[ ",$only," == *",state,"* ]]; then
  # Game state (prefill, save, load) and LoRA adapter sets: examples/bench_state.rs.
  MINERVA_LORA_DIR="${MINERVA_LORA_DIR:-$(scripts/lora-adapters.sh)}" \
    "$bin/bench_state" "${frame_args[@]}"
  echo
fi
if [ -z "$only" ] || [[ "$only" != "frame" && "$only" != "state" ]]; then
  "$bin/bench" "${bench_args[@]}"
fi
if [ -z "$only" ] || [[ ",$only," == *",frame,"* ]]; then
  echo
  "$bin/frame_loop" "${frame_args[@]}"
fi
