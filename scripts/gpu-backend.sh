#!/usr/bin/env bash
# Builds ONE ggml backend module (libggml-<backend>.so) from the llama.cpp source that minerva was
# built from, with CMake alone (no Rust, no network), and installs it into a minerva folder: the
# private folder of a build (target/release/minerva/), of an install (<prefix>/lib/minerva/), or of
# a GPU bundle (lib/minerva/, scripts/gpu-bundle.sh). minerva loads every backend it finds there
# when its first engine starts, so the next engine runs on the new device. docs/GPU.md.
#
#   scripts/gpu-backend.sh [options] BACKEND [MINERVA_DIR]
#
#   BACKEND      cuda     NVIDIA (needs the CUDA toolkit: nvcc; the machine's GPU is found with
#                         nvidia-smi, or give --arch)
#                vulkan   any Vulkan GPU (needs Vulkan headers >= 1.3.261, glslc, SPIR-V headers)
#                hip      AMD ROCm (needs hipconfig/ROCm clang; the GPU with rocminfo, or --arch)
#                rpc|blas other ggml modules (rpc builds on any machine: the script's own test)
#   MINERVA_DIR  the folder to install into: a minerva folder (the one holding libggml-base.so.0),
#                or a folder holding one (target/release, <prefix>/lib, <prefix>, a bundle).
#                Default: the bundle's lib/minerva when run from a bundle, else target/release/minerva.
#
#   --source DIR  llama.cpp's source (default: the bundle's llama.cpp/, else the folder that
#                 llama-cpp-sys-2's build recorded in target/release/build/*/out/build/CMakeCache.txt,
#                 else the crate's copy in ~/.cargo/registry)
#   --build DIR   the CMake build folder (default: target/gpu-backend/<backend>, in a bundle
#                 build/<backend>); a second run rebuilds only what changed
#   --arch LIST   CUDA architectures (CMAKE_CUDA_ARCHITECTURES, e.g. 90 for an H100/H200) or AMD
#                 targets (GPU_TARGETS, e.g. gfx90a); default: the GPUs of this machine
#   --jobs N      parallel compile jobs (default: nproc)
#   --no-install  build only; print the module's path
#   -DNAME=VALUE  passed on to CMake (e.g. -DGGML_CUDA_FA_ALL_QUANTS=ON)
#
# Prints the installed file's path on its last line. The module must come from the same llama.cpp
# source as the folder's libggml-base.so.0 (ggml's backend interface has no stable ABI): the
# script checks the ggml version of both and refuses a mismatch.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)

usage() { sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "gpu-backend: $*" >&2; exit 1; }

backend="" dest="" source="${LLAMA_CPP_SOURCE:-}" build="" arch="" jobs="" install=1
defs=()
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage 0 ;;
    --source) source="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --arch) arch="$2"; shift 2 ;;
    --jobs|-j) jobs="$2"; shift 2 ;;
    --no-install) install=0; shift ;;
    -D*) defs+=("$1"); shift ;;
    -*) echo "gpu-backend: unknown option $1" >&2; usage 2 ;;
    *) if [ -z "$backend" ]; then backend="$1"; elif [ -z "$dest" ]; then dest="$1"; else usage 2; fi; shift ;;
  esac
done
[ -n "$backend" ] || usage 2
backend=$(echo "$backend" | tr 'A-Z' 'a-z')
case "$backend" in
  cuda|vulkan|hip|rpc|blas|opencl|sycl|musa) ;;
  *) die "unknown backend '$backend' (cuda, vulkan, hip, rpc, blas)" ;;
esac
jobs=${jobs:-$(nproc 2>/dev/null || echo 2)}
command -v cmake >/dev/null || die "cmake not found (apt-get install cmake)"

# A bundle has llama.cpp/ and lib/minerva/ beside scripts/; a checkout has Cargo.toml.
in_bundle=0
[ -f "$top/llama.cpp/ggml/CMakeLists.txt" ] && [ -d "$top/lib/minerva" ] && in_bundle=1

# --- the minerva folder to install into
find_minerva_dir() {
  local d=$1
  for c in "$d" "$d/minerva" "$d/lib/minerva"; do
    if [ -e "$c/libggml-base.so.0" ] || ls "$c"/libggml-base.so* >/dev/null 2>&1; then
      (cd "$c" && pwd); return 0
    fi
  done
  return 1
}
if [ "$install" = 1 ]; then
  if [ -z "$dest" ]; then
    if [ "$in_bundle" = 1 ]; then dest="$top/lib/minerva"; else dest="$top/target/release/minerva"; fi
  fi
  [ -d "$dest" ] || die "$dest: no such folder (build minerva first: cargo build --release)"
  dest=$(find_minerva_dir "$dest") \
    || die "no minerva folder (one with libggml-base.so.0) in or under $dest; the default build (feature portable) has one, a --no-default-features build has none and cannot load backends"
fi

# --- llama.cpp's source
if [ -z "$source" ]; then
  if [ "$in_bundle" = 1 ]; then
    source="$top/llama.cpp"
  else
    cache=$(ls -t "$top"/target/release/build/llama-cpp-sys-2-*/out/build/CMakeCache.txt 2>/dev/null | head -n 1 || true)
    [ -n "$cache" ] && source=$(sed -n 's/^CMAKE_HOME_DIRECTORY:INTERNAL=//p' "$cache" | head -n 1)
    if [ -z "$source" ] || [ ! -d "$source" ]; then
      ver=$(sed -n '/^name = "llama-cpp-sys-2"/{n;s/^version = "\(.*\)"/\1/p}' "$top/Cargo.lock" 2>/dev/null || true)
      source=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-${ver:-*}"/llama.cpp 2>/dev/null | tail -n 1 || true)
    fi
  fi
fi
[ -n "$source" ] && [ -f "$source/ggml/CMakeLists.txt" ] \
  || die "llama.cpp's source not found${source:+ at $source}: give --source DIR"
source=$(cd "$source" && pwd)
ggml_version() {
  sed -n 's/^set(GGML_VERSION_\(MAJOR\|MINOR\|PATCH\) \([0-9]*\))/\2/p' "$1/ggml/CMakeLists.txt" | paste -sd.
}
src_version=$(ggml_version "$source")

# The folder's ggml must be the same: ggml_version() returns this string, so it is in the file.
if [ "$install" = 1 ]; then
  base=$(ls "$dest"/libggml-base.so* | head -n 1)
  if ! LC_ALL=C grep -aqF "$src_version" "$base"; then
    die "$source is ggml $src_version, but $base is not: build the module from the llama.cpp that minerva was built from (--source)"
  fi
fi

# --- configure: llama.cpp's own options for a backend module, as llama-cpp-sys-2 builds the rest
build=${build:-$([ "$in_bundle" = 1 ] && echo "$top/build/$backend" || echo "$top/target/gpu-backend/$backend")}
upper=$(echo "$backend" | tr 'a-z' 'A-Z')
opts=(
  -DCMAKE_BUILD_TYPE=Release -DBUILD_SHARED_LIBS=ON -DGGML_BACKEND_DL=ON -DGGML_NATIVE=OFF
  -DGGML_CPU=OFF -DGGML_OPENMP=OFF "-DGGML_$upper=ON"
  -DLLAMA_BUILD_COMMON=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
  -DLLAMA_BUILD_TOOLS=OFF -DLLAMA_BUILD_SERVER=OFF -DLLAMA_BUILD_APP=OFF -DLLAMA_CURL=OFF
)
case "$backend" in
  cuda)
    command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] \
      || die "nvcc not found: install the CUDA toolkit or put its bin/ on PATH (e.g. /usr/local/cuda/bin)"
    command -v nvcc >/dev/null || export PATH=/usr/local/cuda/bin:$PATH
    if [ -z "$arch" ] && command -v nvidia-smi >/dev/null; then
      arch=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader 2>/dev/null | tr -d '. ' | sort -u | paste -sd';' || true)
    fi
    [ -n "$arch" ] || die "no NVIDIA GPU found (nvidia-smi): give --arch, e.g. --arch 90 for an H100/H200, '80;86;89;90' for several"
    opts+=(-DGGML_CUDA_NCCL=OFF "-DCMAKE_CUDA_ARCHITECTURES=$arch") ;;
  hip)
    command -v hipconfig >/dev/null || die "hipconfig not found: install ROCm (HIP)"
    export HIPCXX="${HIPCXX:-$(hipconfig -l)/clang}" HIP_PATH="${HIP_PATH:-$(hipconfig -R)}"
    if [ -z "$arch" ] && command -v rocminfo >/dev/null; then
      arch=$(rocminfo 2>/dev/null | sed -n 's/^ *Name: *\(gfx[0-9a-f]*\).*/\1/p' | sort -u | paste -sd';' || true)
    fi
    [ -n "$arch" ] || die "no AMD GPU found (rocminfo): give --arch, e.g. --arch gfx90a"
    opts+=("-DGPU_TARGETS=$arch") ;;
  vulkan)
    command -v glslc >/dev/null || die "glslc not found (Vulkan SDK or apt-get install glslc); Vulkan headers >= 1.3.261 are needed too (docs/GPU.md)" ;;
esac

say() { printf 'gpu-backend: %s\n' "$*" >&2; }
say "ggml $src_version from $source"
say "configure $backend in $build${arch:+ (arch $arch)}"
mkdir -p "$build"
start=$(date +%s)
if ! cmake -S "$source" -B "$build" "${opts[@]}" "${defs[@]}" > "$build/configure.log" 2>&1; then
  tail -n 40 "$build/configure.log" >&2
  die "configure failed (whole log: $build/configure.log)"
fi
say "build ggml-$backend with $jobs jobs"
if ! cmake --build "$build" --target "ggml-$backend" -j "$jobs" > "$build/build.log" 2>&1; then
  grep -m 20 -B2 -A8 -i "error" "$build/build.log" >&2 || tail -n 40 "$build/build.log" >&2
  die "build failed (whole log: $build/build.log)"
fi
module="$build/bin/libggml-$backend.so"
[ -f "$module" ] || die "the build made no $module"
say "built $(basename "$module") ($(du -h "$module" | cut -f1)) in $(( $(date +%s) - start )) s"

if [ "$install" = 0 ]; then
  echo "$module"; exit 0
fi
# Through a temporary name and a rename: a program that has the old file loaded keeps it.
cp "$module" "$dest/.libggml-$backend.so.tmp"
mv -f "$dest/.libggml-$backend.so.tmp" "$dest/libggml-$backend.so"
say "installed into $dest: the next engine loads it"
echo "$dest/libggml-$backend.so"
