#!/usr/bin/env bash
# Installs the built library into PREFIX (default /usr/local), below DESTDIR if set:
#   lib/libminerva.so.<ABI>, lib/libminerva.so   the shared library (SONAME libminerva.so.<ABI>)
#   lib/libminerva.a                              the static library
#   lib/minerva/                                  llama.cpp's libraries and ggml's CPU backends,
#                                                 private to minerva (the default build)
#   include/minerva.h, include/minerva.hpp
#   lib/pkgconfig/minerva.pc, minerva-static.pc
#   lib/cmake/minerva/                            find_package(minerva 0.1 CONFIG REQUIRED)
#   bin/minerva-rpc-server                        lends this machine's device to other engines
# Builds nothing: `make install` builds first. Usage: scripts/install.sh [PREFIX]
set -euo pipefail
cd "$(dirname "$0")/.."
PREFIX="${1:-${PREFIX:-/usr/local}}"
DESTDIR="${DESTDIR:-}"
BUILD="${MINERVA_BUILD_DIR:-target/release}"
case "$PREFIX" in /*) ;; *) echo "install: PREFIX must be an absolute path: $PREFIX" >&2; exit 2;; esac
for f in "$BUILD/libminerva.so" "$BUILD/libminerva.a"; do
  [ -f "$f" ] || { echo "install: $f is missing: build first (make build)" >&2; exit 1; }
done

VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ABI=$(sed -n 's/^pub const MINERVA_ABI_VERSION: u32 = \([0-9]*\);/\1/p' src/ffi/version.rs)
root="$DESTDIR$PREFIX"
install -d "$root/lib/pkgconfig" "$root/lib/cmake/minerva" "$root/include" "$root/bin"
install -m 644 include/minerva.h include/minerva.hpp "$root/include/"
install -m 755 "$BUILD/libminerva.so" "$root/lib/libminerva.so.$ABI"
ln -sf "libminerva.so.$ABI" "$root/lib/libminerva.so"
install -m 644 "$BUILD/libminerva.a" "$root/lib/"
if [ -f "$BUILD/minerva-rpc-server" ]; then
  install -m 755 "$BUILD/minerva-rpc-server" "$root/bin/"
fi

# The private folder: llama.cpp's shared libraries (what libminerva.so and libminerva.a link to)
# and the backends (loaded at run time, never linked).
private=()
rm -rf "$root/lib/minerva"
if [ -d "$BUILD/minerva" ]; then
  install -d "$root/lib/minerva"
  install -m 755 "$BUILD"/minerva/lib*.so* "$root/lib/minerva/"
  for f in "$BUILD"/minerva/lib*.so.*; do
    [ -e "$f" ] && private+=("$(basename "$f")")
  done
fi

# Linking libminerva.a: the private libraries (with an rpath to find them from any directory)
# and what Rust's standard library and llama.cpp need from the system.
system_libs="-lstdc++ -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc"
pc_private="$system_libs"
static_note="Self-contained: llama.cpp is linked into it."
if [ ${#private[@]} -gt 0 ]; then
  pc_private="$(printf '${libdir}/minerva/%s ' "${private[@]}")-Wl,-rpath,\${libdir}/minerva $system_libs"
  static_note="llama.cpp stays shared (lib/minerva/), so ggml still picks the CPU backend at run time."
fi
cmake_private=$(IFS=';'; echo "${private[*]:-}")
subst() {
  sed -e "s|@PREFIX@|$PREFIX|g" -e "s|@VERSION@|$VERSION|g" -e "s|@ABI@|$ABI|g" \
      -e "s|@PRIVATE_LIBS@|$pc_private|g" -e "s|@STATIC_NOTE@|$static_note|g" \
      -e "s|@CMAKE_PRIVATE_LIBS@|$cmake_private|g" "$1" > "$2"
}
subst packaging/minerva.pc.in "$root/lib/pkgconfig/minerva.pc"
subst packaging/minerva-static.pc.in "$root/lib/pkgconfig/minerva-static.pc"
subst packaging/minervaConfig.cmake.in "$root/lib/cmake/minerva/minervaConfig.cmake"
subst packaging/minervaConfigVersion.cmake.in "$root/lib/cmake/minerva/minervaConfigVersion.cmake"
# A relocatable install (the release archive, scripts/dist.sh): pkg-config finds the prefix from
# the .pc file's own place, and a program linked by it gets the library's folder as its rpath
# (CMake's imported targets are relocatable already and give it by themselves).
if [ "${MINERVA_RELOCATABLE:-0}" = 1 ]; then
  for pc in "$root/lib/pkgconfig/minerva.pc" "$root/lib/pkgconfig/minerva-static.pc"; do
    sed -i -e 's|^prefix=.*|prefix=${pcfiledir}/../..|' "$pc"
  done
  sed -i -e 's|^Libs: -L${libdir} -lminerva$|Libs: -L${libdir} -Wl,-rpath,${libdir} -lminerva|' \
    "$root/lib/pkgconfig/minerva.pc"
fi
echo "installed minerva $VERSION (ABI $ABI) into $root"
