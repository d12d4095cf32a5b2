#!/usr/bin/env bash
# minerva on a GPU machine that has no Rust and no network, from a bundle made on a build machine
# by scripts/gpu-bundle.sh (docs/GPU.md). In one run, in well under 15 minutes on a 16-core
# machine (the backend's build is most of it; a second run reuses it):
#   1. builds ggml's CUDA backend from the bundle's llama.cpp source (the one minerva was built
#      from) for this machine's GPU only, and installs libggml-cuda.so into lib/minerva/;
#   2. prints what the engine found (gpu_layers -1 and 0: device, layers, some greedy text);
#   3. runs the C tests with the model on the GPU (rebuilt with AddressSanitizer and UBSan when a
#      C compiler is there, else the bundle's plain builds);
#   4. runs minerva's benchmark (all layers on the GPU; against its llama.h baseline), then
#      llama.cpp's own llama-bench and llama-batched-bench on the same backend files.
# Everything it prints is a measurement; nothing is compared with figures from elsewhere.
#
#   tar xzf minerva-gpu-bundle.tar.gz && cd minerva-gpu && scripts/gpu-check.sh
#
#   --backend NAME   cuda (default), vulkan or hip: the module scripts/gpu-backend.sh builds
#   --arch LIST      CUDA architectures (default: nvidia-smi's compute capability, e.g. 90)
#   --reps N         benchmark repetitions (default 3)
#   --only STEPS     some of: backend,info,ctest,bench,tools (default all)
#   MINERVA_MODEL    the model (default: the bundle's model/*.gguf)
#   GPU_CHECK_SANITIZE=0   run the bundle's plain C test builds even when a compiler is there
#
# Needs: the GPU's driver, its toolkit (CUDA: nvcc), cmake, a C/C++ compiler; nothing else. Exits
# non-zero when a step fails (every step runs regardless); the last line sums the C tests up.
set -uo pipefail
cd "$(dirname "$0")/.."
top=$PWD
backend=cuda arch="" reps=3 only="backend,info,ctest,bench,tools"
while [ $# -gt 0 ]; do
  case "$1" in
    --backend) backend="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --reps) reps="$2"; shift 2 ;;
    --only) only="$2"; shift 2 ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-check: unknown argument $1" >&2; exit 2 ;;
  esac
done
if [ ! -d "$top/lib/minerva" ] || [ ! -d "$top/llama.cpp" ]; then
  echo "gpu-check: run me from a bundle (scripts/gpu-bundle.sh makes one from a build); in a" >&2
  echo "checkout with the GPU's toolkit, build with it instead: cargo build --release --features cuda" >&2
  exit 2
fi
runs() { [[ ",$only," == *",$1,"* ]]; }
t0=$(date +%s)
say() { printf '\n== %s (%d s)\n' "$*" "$(( $(date +%s) - t0 ))"; }
failed=()
fail() { failed+=("$1"); echo "gpu-check: FAILED: $1" >&2; }
jobs=$(nproc)
lib=$top/lib
work=$top/build
mkdir -p "$work"

say "machine"
cat BUNDLE 2>/dev/null
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total,memory.used --format=csv
command -v nvcc >/dev/null || [ ! -x /usr/local/cuda/bin/nvcc ] || export PATH=/usr/local/cuda/bin:$PATH
command -v nvcc >/dev/null && nvcc --version | tail -n 1
echo "cores: $jobs; $(cmake --version | head -n 1); $(cc --version 2>/dev/null | head -n 1)"

model=${MINERVA_MODEL:-$(ls "$top"/model/*.gguf 2>/dev/null | grep -v '\.chat\.gguf$' | head -n 1)}
[ -n "$model" ] && [ -f "$model" ] || { echo "gpu-check: no model: set MINERVA_MODEL (the bundle has none)" >&2; exit 1; }
export MINERVA_MODEL=$model
echo "model: $model"
# The default model's exact-text assertions run only on it (its sha256 as fetch-model.sh knows it).
want=$(sed -n 's/^SHA256=//p' "$top/scripts/fetch-model.sh" 2>/dev/null)
if [ -n "$want" ] && [ "$(sha256sum "$model" | cut -d' ' -f1)" = "$want" ]; then
  export MINERVA_DEFAULT_MODEL=1
else
  export MINERVA_DEFAULT_MODEL=0
fi
# The chat tests' model: the model with a chat template in its metadata, rebuilt from the header
# the bundle carries (model/chat-head.bin, then the model's tensor data from the offset given).
if [ -z "${MINERVA_CHAT_MODEL:-}" ] && [ -f "$top/model/chat-head.bin" ]; then
  off=$(cat "$top/model/chat-head.offset")
  MINERVA_CHAT_MODEL=$work/chat.gguf
  { cat "$top/model/chat-head.bin"; tail -c +$((off + 1)) "$model"; } > "$MINERVA_CHAT_MODEL"
fi
export MINERVA_CHAT_MODEL=${MINERVA_CHAT_MODEL:-}

if runs backend; then
  say "backend: ggml-$backend from llama.cpp/ (cmake -j $jobs, this GPU's architecture only)"
  s=$(date +%s)
  if scripts/gpu-backend.sh "$backend" ${arch:+--arch "$arch"} --jobs "$jobs" "$lib/minerva"; then
    echo "backend build and install: $(( $(date +%s) - s )) s"
  else
    fail "backend build"
  fi
fi
ls "$lib/minerva/" | tr '\n' ' '; echo

if runs info; then
  say "engine info"
  if timeout 300 "$top/bin/engine-info" "$model" > "$work/info.out" 2> "$work/info.log"; then
    cat "$work/info.out"
    grep -iE "cuda|vulkan|rocm|hip|offload|VRAM" "$work/info.log" | head -n 20
    if grep -q "^gpu_layers -1: device kind 0" "$work/info.out"; then
      fail "engine info: with gpu_layers -1 the engine stayed on the CPU (fallback above)"
    fi
  else
    cat "$work/info.out"; tail -n 30 "$work/info.log"; fail "engine info"
  fi
  command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=memory.used --format=csv
fi

passed=0 cfailed=0
if runs ctest; then
  # The C tests create engines with the default gpu_layers (-1: as many as fit): they run against
  # the GPU backend.
  sanitize=0
  if [ "${GPU_CHECK_SANITIZE:-1}" != 0 ] && command -v cc >/dev/null && command -v c++ >/dev/null; then
    sanitize=1
  fi
  bin=$top/bin
  if [ "$sanitize" = 1 ]; then
    say "C tests (rebuilt with ASan+UBSan), the model on the GPU"
    bin=$work/ctest
    mkdir -p "$bin"
    for f in "$top"/tests/c/test_*.c "$top"/tests/c/test_*.cpp; do
      name=$(basename "${f%.*}")
      case "$f" in *.cpp) c=(c++ -std=c++17) ;; *) c=(cc -std=c11) ;; esac
      "${c[@]}" -Wall -Wextra -g -fsanitize=address,undefined -fno-sanitize-recover=all \
        -I"$top/include" "$f" -L"$lib" -lminerva -lpthread -lm -Wl,-rpath,"$lib" -o "$bin/$name" \
        || { fail "compile $name"; rm -f "$bin/$name"; }
    done
    # CUDA's driver maps memory where ASan keeps its shadow gap; the driver's and the runtime's
    # own allocations live as long as the process and are not minerva's leaks.
    printf 'leak:libcuda.so\nleak:libcudart\nleak:libcublas\nleak:libnvidia\nleak:libggml-cuda.so\nleak:libvulkan\nleak:libamdhip\nleak:libhsa\n' > "$work/lsan.supp"
    export ASAN_OPTIONS=protect_shadow_gap=0:detect_leaks=1:abort_on_error=0
    export LSAN_OPTIONS=suppressions=$work/lsan.supp
    export UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
  else
    say "C tests (the bundle's plain builds), the model on the GPU"
  fi
  for t in "$bin"/test_*; do
    [ -x "$t" ] || continue
    name=$(basename "$t")
    if [ -z "$MINERVA_CHAT_MODEL" ] && grep -q MINERVA_CHAT_MODEL "$top"/tests/c/"$name".c* 2>/dev/null; then
      echo "skip $name: no chat model (MINERVA_CHAT_MODEL; the bundle carries model/chat-head.bin when made after the test suite ran)"
      continue
    fi
    s=$(date +%s)
    timeout -s KILL 600 "$t" > "$work/$name.out" 2> "$work/$name.err"
    rc=$?
    summary=$(grep -E "^[0-9]+ passed, [0-9]+ failed" "$work/$name.out" | tail -n 1)
    # A program with no checks of its own to count (test_cpp: the header in C++) passes by its
    # exit status.
    [ -z "$summary" ] && [ "$rc" = 0 ] && ! grep -q check.h "$top"/tests/c/"$name".c* \
      && summary="1 passed, 0 failed"
    p=$(echo "$summary" | cut -d' ' -f1) f=$(echo "$summary" | cut -d' ' -f3)
    passed=$((passed + ${p:-0})) cfailed=$((cfailed + ${f:-0}))
    if [ "$rc" != 0 ] || [ -z "$summary" ] || grep -q "ERROR: AddressSanitizer\|runtime error:" "$work/$name.err"; then
      [ "${f:-0}" = 0 ] && cfailed=$((cfailed + 1))
      echo "$name: FAILED (exit $rc, $(( $(date +%s) - s )) s)"
      grep -v "^ok " "$work/$name.out" | tail -n 10; tail -n 30 "$work/$name.err"
      fail "$name"
    else
      echo "$name: $summary ($(( $(date +%s) - s )) s)"
    fi
  done
  unset ASAN_OPTIONS LSAN_OPTIONS UBSAN_OPTIONS
fi

if runs bench; then
  say "benchmark: minerva and the llama.h baseline, all layers on the GPU"
  # With llama.cpp's tools run by run beside minerva's (ggml loads backends from their folder).
  tool_args=()
  if [ -x "$top/tools/bin/llama-bench" ]; then
    for f in "$lib"/minerva/libggml-*.so; do ln -sf "$f" "$top/tools/bin/"; done
    "$top/tools/bin/llama-bench" --help >/dev/null 2>&1 && tool_args=(--llama-tools "$top/tools/bin")
  fi
  MINERVA_BENCH_GPU_LAYERS=-1 timeout 600 "$lib/examples/bench" --reps "$reps" \
    --only single,batched,memory "${tool_args[@]}" || fail "minerva bench"
fi

if runs tools; then
  say "llama.cpp's llama-bench and llama-batched-bench, on the same backend files"
  tools=$top/tools/bin
  # ggml loads backends from the program's folder: minerva's CPU variants and the GPU module.
  for f in "$lib"/minerva/libggml-*.so; do ln -sf "$f" "$tools/"; done
  if ! "$tools/llama-bench" --help >/dev/null 2>&1; then
    echo "the bundle's llama-bench does not run here: building it from llama.cpp/"
    tb=$work/tools
    cmake -S "$top/llama.cpp" -B "$tb" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
      -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF -DGGML_CPU=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_COMMON=ON \
      -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF \
      -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF > "$work/tools.log" 2>&1 \
      && cmake --build "$tb" -j "$jobs" --target llama-bench llama-batched-bench >> "$work/tools.log" 2>&1 \
      || { tail -n 30 "$work/tools.log"; fail "llama.cpp tools build"; }
    tools=$tb/bin
    for f in "$lib"/minerva/libggml-*.so; do ln -sf "$f" "$tools/"; done
  fi
  timeout 600 "$tools/llama-bench" -m "$model" -ngl 99 -p 512 -n 128 -r "$reps" || fail "llama-bench"
  timeout 600 "$tools/llama-batched-bench" -m "$model" -ngl 99 -c 4096 -b 512 -ub 512 \
    -npp 128 -ntg 128 -npl 1,8 2> "$work/batched.log" | grep -E "^\|" || { tail -n 20 "$work/batched.log"; fail "llama-batched-bench"; }
fi

say "done"
echo "minerva's figures: 'benchmark'; llama.cpp's: the last two tables (S_TG t/s is generation)."
[ ${#failed[@]} -eq 0 ] || echo "failed: ${failed[*]}"
echo "C tests: $passed passed, $cfailed failed"
[ ${#failed[@]} -eq 0 ]
