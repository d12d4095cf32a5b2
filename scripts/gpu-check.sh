#!/usr/bin/env bash
# minerva on an NVIDIA GPU, in one run: builds `--features cuda` (in target/cuda), prints what the
# engine found (device, layers, free memory), runs the C test suite with the model on the GPU,
# then the benchmark (1 and 8 streams, memory) against a baseline written against llama.h of the
# same build, and llama.cpp's own llama-bench and llama-batched-bench built with CUDA from the
# same llama.cpp source. Everything it prints is a measurement; nothing is compared with figures
# from elsewhere.
#
#   scripts/gpu-check.sh                # MINERVA_MODEL=/path/model.gguf to use another model
#   GPU_CHECK_REPS=5 scripts/gpu-check.sh
#
# Needs: an NVIDIA driver (nvidia-smi), the CUDA toolkit (nvcc), cmake, a C/C++ compiler, Rust,
# and the crates already in ~/.cargo (or network to crates.io). Takes 15 to 30 minutes, most of
# it compiling CUDA kernels; a second run reuses the builds.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
reps=${GPU_CHECK_REPS:-3}

say() { printf '\n== %s\n' "$*"; }
need() { command -v "$1" >/dev/null 2>&1 || { echo "gpu-check: $1 not found: $2" >&2; exit 1; }; }
need nvidia-smi "an NVIDIA driver is needed"
need nvcc "the CUDA toolkit is needed (or put its bin/ on PATH, e.g. /usr/local/cuda/bin)"
need cmake "apt-get install cmake"
need cargo "Rust: https://rustup.rs"

say "machine"
nvidia-smi --query-gpu=name,driver_version,memory.total,memory.used --format=csv
nvcc --version | tail -n 1
nproc

MINERVA_MODEL="${MINERVA_MODEL:-$(scripts/fetch-model.sh)}"
export MINERVA_MODEL
echo "model: $MINERVA_MODEL"

say "build: cargo build --release --features cuda (target/cuda)"
export CARGO_TARGET_DIR=$root/target/cuda
# All of the GPU's compute capabilities are not needed: the one of this GPU is enough.
if [ -z "${CMAKE_CUDA_ARCHITECTURES:-}" ]; then
  cap=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '.')
  [ -n "$cap" ] && export CMAKE_CUDA_ARCHITECTURES=$cap
fi
time cargo build --release --features cuda --lib --bins --examples
lib=$CARGO_TARGET_DIR/release
ls "$lib/minerva/" | tr '\n' ' '; echo

say "engine info"
info=$(mktemp -d)
trap 'rm -rf "$info"' EXIT
cat > "$info/info.c" <<'EOF'
#include <minerva.h>
#include <stdio.h>
int main(int argc, char **argv) {
    for (int layers = -1; layers <= 0; layers++) {
        minerva_engine_params p;
        minerva_engine_params_init(&p, sizeof p);
        p.gpu_layers = layers;
        minerva_engine *e;
        if (minerva_engine_new(argv[1], &p, &e) != MINERVA_OK) {
            printf("gpu_layers %d: %s\n", layers, minerva_last_error());
            return 1;
        }
        minerva_engine_info i = {0};
        i.struct_size = sizeof i;
        minerva_engine_get_info(e, &i);
        printf("gpu_layers %d: device kind %u, %s; %d of %d layers (%s); fallback '%s'; cpu %s\n",
               layers, i.device_kind, i.device_name, i.gpu_layers, i.total_layers, i.devices,
               i.fallback_reason, i.cpu_variant);
        minerva_engine_free(e);
    }
    return 0;
}
EOF
cc -std=c11 -I include "$info/info.c" -L "$lib" -lminerva -Wl,-rpath,"$lib" -o "$info/info"
"$info/info" "$MINERVA_MODEL" 2> "$info/log" || { cat "$info/log"; exit 1; }
grep -i "cuda\|offload\|VRAM\|CUDA0" "$info/log" | head -n 20 || true
nvidia-smi --query-gpu=memory.used --format=csv

say "C test suite with the model on the GPU"
# The C tests create engines with the default gpu_layers (-1: as many as fit), so this runs
# every C test (sanitizers included) against the CUDA backend.
cargo test --release --features cuda --test c_api -- --test-threads 1 2>&1 | tail -n 25

say "benchmark: minerva and the llama.h baseline, all layers on the GPU"
MINERVA_BENCH_GPU_LAYERS=-1 "$lib/examples/bench" --reps "$reps" --only single,batched,memory

say "llama.cpp's own tools, CUDA, from the same source"
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$lib"/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt | head -n 1)
tools=$root/target/cuda/llama-tools
cmake -S "$src" -B "$tools" -G "Unix Makefiles" -DCMAKE_BUILD_TYPE=Release -DGGML_CUDA=ON \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=ON -DLLAMA_BUILD_TOOLS=ON \
  ${CMAKE_CUDA_ARCHITECTURES:+-DCMAKE_CUDA_ARCHITECTURES=$CMAKE_CUDA_ARCHITECTURES} > "$tools.log" 2>&1 \
  || { tail -n 30 "$tools.log"; exit 1; }
cmake --build "$tools" -j "$(nproc)" --target llama-bench llama-batched-bench >> "$tools.log" 2>&1 \
  || { tail -n 30 "$tools.log"; exit 1; }
"$tools/bin/llama-bench" -m "$MINERVA_MODEL" -ngl 99 -p 512 -n 128 -r "$reps"
"$tools/bin/llama-batched-bench" -m "$MINERVA_MODEL" -ngl 99 -c 4096 -b 512 -ub 512 \
  -npp 128 -ntg 128 -npl 1,8 2>/dev/null | grep -E "^\|" || true

say "done"
echo "minerva's figures above: 'benchmark'; llama.cpp's: the last two tables (S_TG t/s is generation)."
