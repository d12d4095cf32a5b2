#!/usr/bin/env bash
# Builds the GDNative library build/libminerva_godot.so against minerva and copies it into the
# Godot project as project/bin/libminerva_godot.so (ignored), where minerva.gdnlib points.
#   MINERVA_INCLUDE_DIR  the folder of minerva.h       (default: ../include)
#   MINERVA_LIB_DIR      the folder of libminerva.so   (default: ../target/release)
#   CC                   the C compiler                 (default: cc)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
inc=${MINERVA_INCLUDE_DIR:-$here/../include}
lib=${MINERVA_LIB_DIR:-$here/../target/release}
mkdir -p "$here/build" "$here/project/bin"
"${CC:-cc}" -std=c11 -O2 -g -Wall -Wextra -Wshadow -Wno-missing-field-initializers \
    -shared -fPIC -fvisibility=hidden \
    -I"$inc" "$here/src/minerva_godot.c" \
    -L"$lib" -lminerva -Wl,-rpath,"$lib" -Wl,--no-undefined \
    -o "$here/build/libminerva_godot.so"
cp "$here/build/libminerva_godot.so" "$here/project/bin/libminerva_godot.so"
