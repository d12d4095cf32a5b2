#!/usr/bin/env bash
# Packs what a GPU machine needs to run minerva on its GPU without Rust and without a network,
# into one tarball (docs/GPU.md): run on the build machine after `cargo build --release`, unpack
# on the GPU machine, run its scripts/gpu-check.sh there.
#
#   scripts/gpu-bundle.sh [--out FILE] [--no-model] [--split MIB] [--tools-src DIR]
#
#   --out FILE       the tarball (default target/minerva-gpu-bundle.tar.gz)
#   --no-model       leave the model out (the GPU machine then needs MINERVA_MODEL); by default
#                    $MINERVA_MODEL, or the default model (scripts/fetch-model.sh), goes in model/
#   --split MIB      also cut the tarball into parts of at most MIB MiB (FILE.part-aa, -ab, ...);
#                    join them with `cat FILE.part-* > FILE`
#   --tools-src DIR  a llama.cpp tree holding tools/llama-bench and tools/batched-bench (the crate's
#                    llama.cpp has only their README.md); default: the llama-cpp-python source
#                    distribution from PyPI (pip download), unpacked under target/gpu-bundle/
#
# The bundle (minerva-gpu/):
#   lib/libminerva.so, lib/minerva/      the library and its private folder (CPU backends)
#   lib/examples/bench, lib/minerva-rpc-server
#   include/                             minerva.h, minerva.hpp
#   bin/                                 the C tests and engine-info, built against lib/ (rpath)
#   tests/c/                             their sources (gpu-check rebuilds them with sanitizers)
#   llama.cpp/                           the llama.cpp source minerva was built from, with
#                                        tools/ = llama-bench and batched-bench only
#   tools/bin/                           llama-bench, llama-batched-bench and their llama.cpp
#                                        libraries, built from that source (CPU; backends are
#                                        loaded from tools/bin/ at run time)
#   scripts/gpu-backend.sh, gpu-check.sh
#   model/                               the model (unless --no-model)
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD
out=$root/target/minerva-gpu-bundle.tar.gz split="" model=1 tools_src=""
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out=$(realpath -m "$2"); shift 2 ;;
    --no-model) model=0; shift ;;
    --split) split="$2"; shift 2 ;;
    --tools-src) tools_src=$(realpath "$2"); shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
    *) echo "gpu-bundle: unknown argument $1" >&2; exit 2 ;;
  esac
done
say() { printf '== %s\n' "$*" >&2; }
die() { echo "gpu-bundle: $*" >&2; exit 1; }

rel=$root/target/release
for f in libminerva.so minerva/libggml-base.so.0 examples/bench minerva-rpc-server; do
  [ -e "$rel/$f" ] || die "$rel/$f is missing: cargo build --release --lib --bins --example bench"
done
cache=$(ls -t "$rel"/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt | head -n 1)
src=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache" | head -n 1)
[ -f "$src/ggml/CMakeLists.txt" ] || die "llama.cpp's source not found (from $cache)"
ggml=$(sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$src/ggml/CMakeLists.txt" | paste -sd.)

work=$root/target/gpu-bundle
stage=$work/minerva-gpu
rm -rf "$stage"
mkdir -p "$stage"/{lib/examples,include,bin,tests/c,scripts,tools/bin}

say "minerva: lib/, include/"
cp -a "$rel/libminerva.so" "$stage/lib/"
ln -s libminerva.so "$stage/lib/libminerva.so.$(sed -n 's/^pub const MINERVA_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/version.rs)"
cp -a "$rel/minerva" "$stage/lib/minerva"
rm -f "$stage"/lib/minerva/*.tmp-copy
cp -a "$rel/minerva-rpc-server" "$stage/lib/"
cp -a "$rel/examples/bench" "$stage/lib/examples/"
cp include/minerva.h include/minerva.hpp "$stage/include/"
cp scripts/gpu-backend.sh scripts/gpu-check.sh "$stage/scripts/"
cp scripts/fetch-model.sh "$stage/scripts/"   # gpu-check reads the default model's sha256 there
cp tests/c/*.c tests/c/*.cpp tests/c/*.h scripts/engine-info.c "$stage/tests/c/"

say "C programs: bin/ (rpath \$ORIGIN/../lib)"
for f in tests/c/*.c tests/c/*.cpp scripts/engine-info.c; do
  name=$(basename "${f%.*}")
  case "$f" in
    *.cpp) c=(c++ -std=c++17) ;;
    *) c=(cc -std=c11) ;;
  esac
  "${c[@]}" -O1 -g -Wall -Wextra -Werror -Iinclude "$f" -L"$stage/lib" -lminerva -lpthread -lm \
    -Wl,-rpath,'$ORIGIN/../lib' -o "$stage/bin/$name"
done

say "llama.cpp source (ggml $ggml) from $src"
mkdir -p "$stage/llama.cpp"
(cd "$src" && tar cf - --exclude=./tools --exclude=./tests --exclude=./examples --exclude=./pocs \
  --exclude=./models --exclude=./docs --exclude=./gguf-py .) | tar xf - -C "$stage/llama.cpp"

if [ -z "$tools_src" ]; then
  # llama-cpp-python's sdist vendors a llama.cpp with the tools' sources; its version is the one
  # whose ggml is nearest the crate's that was tried (they compile against the crate's llama.h).
  lcp=${LLAMA_CPP_PYTHON_VERSION:-0.3.36}
  tools_src=$work/llama_cpp_python-$lcp/vendor/llama.cpp
  if [ ! -d "$tools_src/tools/llama-bench" ]; then
    say "llama-bench's sources: llama-cpp-python $lcp from PyPI"
    python3 -m pip download --quiet --no-binary :all: --no-deps "llama-cpp-python==$lcp" -d "$work" \
      || die "pip download llama-cpp-python==$lcp failed: give --tools-src DIR"
    tar xzf "$work/llama_cpp_python-$lcp.tar.gz" -C "$work" "llama_cpp_python-$lcp/vendor/llama.cpp/tools"
  fi
fi
mkdir -p "$stage/llama.cpp/tools"
for t in llama-bench batched-bench; do
  [ -d "$tools_src/tools/$t" ] || die "$tools_src/tools/$t is missing"
  cp -a "$tools_src/tools/$t" "$stage/llama.cpp/tools/"
done
cat > "$stage/llama.cpp/tools/CMakeLists.txt" <<'EOF'
# minerva's GPU bundle: llama.cpp's two benchmarks only (their sources from llama-cpp-python's
# vendored llama.cpp; the crate's copy has only their README.md).
find_package(Threads REQUIRED)
llama_add_compile_flags()
add_subdirectory(llama-bench)
add_subdirectory(batched-bench)
EOF

say "llama-bench and llama-batched-bench (CPU build; backends come from tools/bin/ at run time)"
tb=$work/tools-build
# GGML_CPU=OFF: ggml itself then depends on no backend target; the CPU variants of minerva's
# folder are linked into tools/bin/ by gpu-check.sh.
cmake -S "$stage/llama.cpp" -B "$tb" -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON \
  -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF -DGGML_CPU=OFF -DGGML_OPENMP=OFF -DLLAMA_BUILD_COMMON=ON \
  -DLLAMA_BUILD_TOOLS=ON -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_SERVER=OFF \
  -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF -DLLAMA_OPENSSL=OFF -DCMAKE_BUILD_WITH_INSTALL_RPATH=ON \
  -DCMAKE_INSTALL_RPATH='$ORIGIN' \
  > "$work/tools-configure.log" 2>&1 || { tail -n 30 "$work/tools-configure.log"; die "tools: configure failed"; }
cmake --build "$tb" -j "${JOBS:-$(nproc)}" --target llama-bench llama-batched-bench \
  > "$work/tools-build.log" 2>&1 || { grep -m 10 -A5 error "$work/tools-build.log"; die "tools: build failed ($work/tools-build.log)"; }
cp "$tb/bin/llama-bench" "$tb/bin/llama-batched-bench" "$stage/tools/bin/"
for f in "$tb"/bin/lib*.so.*; do
  name=$(basename "$f")
  [[ $name =~ \.so\.[0-9]+$ ]] && cp -L "$f" "$stage/tools/bin/$name"
done
for f in "$tb"/bin/lib*.so; do   # unversioned shared libraries (none expected), modules
  [ -L "$f" ] || cp "$f" "$stage/tools/bin/"
done

if [ "$model" = 1 ]; then
  m=${MINERVA_MODEL:-$(scripts/fetch-model.sh)}
  say "model: $m"
  mkdir -p "$stage/model"
  cp "$m" "$stage/model/"
  # The chat tests' model (the model with a chat template added, made beside it by the test
  # suite: tests/common chat_model_path) differs from the model only in its header: the bundle
  # carries that header and where the model's tensor data starts.
  chat=$(ls -t "${m%.gguf}".chat-*.gguf 2>/dev/null | head -n 1 || true)
  if [ -n "$chat" ]; then
    off=$(python3 - "$m" <<'EOF'
import struct, sys
f = open(sys.argv[1], "rb")
magic, _, n_tensors, n_kv = struct.unpack("<4sIQQ", f.read(24))
assert magic == b"GGUF"
fixed = {0: 1, 1: 1, 7: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 10: 8, 11: 8, 12: 8}
u32 = lambda: struct.unpack("<I", f.read(4))[0]
u64 = lambda: struct.unpack("<Q", f.read(8))[0]
align = 32
for _ in range(n_kv):
    key = f.read(u64()); t = u32()
    if t == 8: f.seek(u64(), 1)
    elif t == 9:
        it, n = u32(), u64()
        if it == 8:
            for _ in range(n): f.seek(u64(), 1)
        else: f.seek(n * fixed[it], 1)
    elif key == b"general.alignment" and t == 4: align = u32()
    else: f.seek(fixed[t], 1)
for _ in range(n_tensors):
    f.seek(u64(), 1); dims = u32(); f.seek(dims * 8 + 4 + 8, 1)
print(-(-f.tell() // align) * align)
EOF
)
    head=$(( $(stat -c %s "$chat") - $(stat -c %s "$m") + off ))
    if cmp -s -i "$off:$head" "$m" "$chat"; then
      head -c "$head" "$chat" > "$stage/model/chat-head.bin"
      echo "$off" > "$stage/model/chat-head.offset"
    else
      say "$chat is not $m with another header: the chat tests will be skipped"
    fi
  else
    say "no chat model beside $m (the test suite makes it): the chat tests will be skipped"
  fi
fi

{
  echo "minerva $(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1), $(git describe --always --dirty 2>/dev/null || echo unknown)"
  echo "llama.cpp: llama-cpp-sys-2 $(basename "$(dirname "$src")" | sed 's/^llama-cpp-sys-2-//'), ggml $ggml"
  echo "tools: from $tools_src"
  echo "made $(date -u +%Y-%m-%dT%H:%MZ) on $(uname -m), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
} > "$stage/BUNDLE"

say "tarball $out"
mkdir -p "$(dirname "$out")"
tar czf "$out" -C "$work" minerva-gpu
ls -l "$out" >&2
if [ -n "$split" ]; then
  rm -f "$out".part-*
  split -b "${split}M" "$out" "$out.part-"
  ls -l "$out".part-* >&2
  echo "join: cat $(basename "$out").part-* > $(basename "$out")" >&2
fi
echo "$out"
