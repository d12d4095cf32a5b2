#!/usr/bin/env bash
# Writes the release archive dist/minerva-<version>-linux-<arch>.tar.gz from the built library
# (`make dist` builds first): the layout of `make install`, relocatable, in one folder
# minerva-<version>-linux-<arch>/:
#   lib/libminerva.so.<ABI>, lib/libminerva.so, lib/libminerva.a, lib/minerva/ (llama.cpp and
#   ggml's CPU backends, private), include/, lib/pkgconfig/ and lib/cmake/minerva/ (found from
#   where they lie: PKG_CONFIG_PATH=<dir>/lib/pkgconfig or CMAKE_PREFIX_PATH=<dir>),
#   bin/minerva-rpc-server, share/minerva/BUILD-INFO (versions and build options), README.md,
#   LICENSE files.
# Unpacked anywhere, a program built against it runs without LD_LIBRARY_PATH: the pkg-config
# file puts the library's folder in the program's rpath, CMake's imported targets do the same,
# and libminerva finds its private folder by its own rpath ($ORIGIN/minerva).
# Prints the archive's path and its sha256. Usage: scripts/dist.sh [OUT_DIR]   (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
BUILD="${MINERVA_BUILD_DIR:-target/release}"
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ABI=$(sed -n 's/^pub const MINERVA_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/version.rs)
arch=$(uname -m)
name="minerva-$VERSION-linux-$arch"
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The installed layout, relocatable (prefix found from the .pc file's own place).
MINERVA_RELOCATABLE=1 DESTDIR="$stage" scripts/install.sh "/$name" >/dev/null
root="$stage/$name"

# What was built, and how.
llama=$(sed -n '/^name = "llama-cpp-sys-2"$/{n;s/^version = "\(.*\)"/\1/p}' Cargo.lock)
llama_src=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/"llama-cpp-sys-2-$llama" 2>/dev/null | head -1)
llama_commit=$(sed -n 's/.*"sha1": "\(.*\)".*/\1/p' "$llama_src/.cargo_vcs_info.json" 2>/dev/null || true)
features="portable (run-time CPU dispatch)"
[ -d "$BUILD/minerva" ] || features="--no-default-features (one fixed CPU backend, llama.cpp linked in)"
variants=$(cd "$BUILD/minerva" 2>/dev/null && ls libggml-cpu-*.so 2>/dev/null | sed 's/libggml-cpu-\(.*\)\.so/\1/' | tr '\n' ' ' || true)
gpu=$(ls "$BUILD"/minerva/libggml-{cuda,vulkan,metal}*.so 2>/dev/null | xargs -r -n1 basename | tr '\n' ' ' || true)
install -d "$root/share/minerva"
{
  echo "minerva $VERSION (ABI $ABI)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet HEAD 2>/dev/null || echo ' (with uncommitted changes)')"
  echo "llama.cpp: the crate llama-cpp-sys-2 $llama (its repository's commit ${llama_commit:-unknown})"
  echo "build: $features"
  echo "CPU backends: ${variants:-built in}"
  echo "GPU backends: ${gpu:-none}"
  echo "target: $(rustc -vV | sed -n 's/^host: //p'), $(rustc --version)"
  echo "glibc: built against $(ldd --version | head -1 | awk '{print $NF}')"
  echo "built: $(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$root/share/minerva/BUILD-INFO"
install -m 644 README.md "$root/share/minerva/"
for f in LICENSE*; do if [ -f "$f" ]; then install -m 644 "$f" "$root/share/minerva/"; fi; done

mkdir -p "$out"
tarball="$out/$name.tar.gz"
# Reproducible order and owners.
tar -C "$stage" --sort=name --owner=0 --group=0 --numeric-owner -czf "$tarball.tmp" "$name"
mv "$tarball.tmp" "$tarball"
echo "$tarball"
sha256sum "$tarball"
