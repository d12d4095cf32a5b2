#!/usr/bin/env bash
# Checks the CMinerva module map with clang's module support (what Swift's importer uses): the
# module builds from the installed header with -Werror, a C program imports it and runs a
# generation on the model. Run by tests/bindings.rs; needs clang, MINERVA_MODEL,
# MINERVA_LIB_DIR, MINERVA_INCLUDE_DIR.
set -euo pipefail
cd "$(dirname "$0")"
: "${MINERVA_LIB_DIR:?}" "${MINERVA_INCLUDE_DIR:?}" "${MINERVA_MODEL:?}"
out=build
rm -rf "$out" && mkdir -p "$out"
clang -x objective-c -fmodules -fmodules-cache-path="$out/cache" -fmodule-map-file=Sources/CMinerva/module.modulemap \
  -I "$MINERVA_INCLUDE_DIR" -Wall -Wextra -Werror -Wno-module-import-in-extern-c \
  Tests/module_check.m -o "$out/module_check" \
  -L "$MINERVA_LIB_DIR" -lminerva -Wl,-rpath,"$MINERVA_LIB_DIR"
"$out/module_check"
# The module map's `link "minerva"` is what lets Swift link without flags: check clang reads it
# (the module records it as an autolink entry).
clang -x objective-c -fmodules -fmodules-cache-path="$out/cache" -fmodule-map-file=Sources/CMinerva/module.modulemap \
  -I "$MINERVA_INCLUDE_DIR" -Wall -Werror -S -emit-llvm Tests/module_check.m -o "$out/module_check.ll"
grep -q '^!.*!"lib", !"minerva"' "$out/module_check.ll" \
  && echo "ok - module map links libminerva" \
  || { echo "not ok - no link entry for minerva in the module"; exit 1; }
echo "swift module map: 3 checks passed"
