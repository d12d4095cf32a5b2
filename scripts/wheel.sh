#!/usr/bin/env bash
# Writes a Python wheel of the binding with the built library inside (`make wheel` builds first):
# minerva/ (bindings/python/src/minerva) with minerva/_native/libminerva.so.1 and its private
# folder minerva/_native/minerva/ (llama.cpp and ggml's CPU backends, found by the library's own
# rpath). capi.py loads the bundled library before any other, so `pip install` of the wheel is
# all a program needs. The platform tag is the manylinux tag `auditwheel show` gives the wheel
# (auditwheel from PyPI, in a virtual environment in the cache directory), else linux_<arch> and
# the reason (today: llama.cpp's common library links OpenSSL 3, outside every manylinux policy;
# auditwheel puts the wheel at manylinux_2_35 otherwise).
# Prints the wheel's path. Usage: scripts/wheel.sh [OUT_DIR]   (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
BUILD="${MINERVA_BUILD_DIR:-target/release}"
[ -f "$BUILD/libminerva.so" ] || { echo "wheel: $BUILD/libminerva.so is missing: build first" >&2; exit 1; }
ABI=$(sed -n 's/^pub const MINERVA_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/version.rs)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
cp -r bindings/python/src/minerva "$stage/"
find "$stage" -name __pycache__ -prune -exec rm -rf {} +
install -d "$stage/minerva/_native"
install -m 755 "$BUILD/libminerva.so" "$stage/minerva/_native/libminerva.so.$ABI"
if [ -d "$BUILD/minerva" ]; then
  install -d "$stage/minerva/_native/minerva"
  install -m 755 "$BUILD"/minerva/lib*.so* "$stage/minerva/_native/minerva/"
fi
mkdir -p "$out"
python3 scripts/wheel.py "$stage" bindings/python/pyproject.toml bindings/python/README.md \
  "linux_$(uname -m)" "$out" > "$stage/wheel-path"
wheel=$(cat "$stage/wheel-path")

# The manylinux tag, where auditwheel can say which.
cache="${MINERVA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minerva}"
venv=$cache/venv-auditwheel
if [ ! -x "$venv/bin/auditwheel" ]; then
  { python3 -m venv "$venv" && "$venv/bin/pip" install -q auditwheel; } >&2 || true
fi
tag=""
if [ -x "$venv/bin/auditwheel" ]; then
  tag=$("$venv/bin/auditwheel" show "$wheel" 2>/dev/null \
    | sed -n 's/.*consistent with the following platform tag: *"\([^"]*\)".*/\1/p' | head -1)
  [ -n "$tag" ] || tag=$("$venv/bin/auditwheel" show "$wheel" 2>/dev/null | tr -d '\n' \
    | sed -n 's/.*following platform tag: *"\([^"]*\)".*/\1/p')
fi
if [ -n "$tag" ] && [ "$tag" != "linux_$(uname -m)" ]; then
  rm -f "$wheel"
  python3 scripts/wheel.py "$stage" bindings/python/pyproject.toml bindings/python/README.md \
    "$tag" "$out" > "$stage/wheel-path"
  wheel=$(cat "$stage/wheel-path")
elif [ -x "$venv/bin/auditwheel" ]; then
  # Why not manylinux: auditwheel names the libraries outside its policy.
  why=$("$venv/bin/auditwheel" show "$wheel" 2>/dev/null | tr '\n' ' ' \
    | grep -o 'lib\(ssl\|crypto\)[^ ]* with versions' | sed 's/ with versions//' | tr '\n' ' ')
  echo "wheel: tagged linux_$(uname -m), not manylinux: the library links ${why:-libraries outside the manylinux policy}(llama.cpp's common library, for its HTTPS downloads), which no manylinux policy allows" >&2
else
  echo "wheel: tagged linux_$(uname -m): auditwheel could not be installed to say more" >&2
fi
echo "$wheel"
