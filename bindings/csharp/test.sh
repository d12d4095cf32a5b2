#!/usr/bin/env bash
# Builds the C# binding (Minerva.dll) and its tests with Mono's mcs, and runs the tests against the
# real model. Needs mono-devel (mcs, mono) and the four variables the harness sets:
#   MINERVA_MODEL, MINERVA_CHAT_MODEL, MINERVA_LIB_DIR, MINERVA_INCLUDE_DIR
# Everything it builds goes to build/ (ignored). Arguments: names of tests to run (default all).
set -euo pipefail
cd "$(dirname "$0")"
: "${MINERVA_MODEL:?}" "${MINERVA_CHAT_MODEL:?}" "${MINERVA_LIB_DIR:?}" "${MINERVA_INCLUDE_DIR:?}"
for tool in mcs mono; do
    command -v "$tool" >/dev/null || { echo "test.sh: $tool not found (apt-get install mono-devel)" >&2; exit 1; }
done
mkdir -p build

# C# 7.2: the subset both .NET and Unity (and Debian's mcs) accept. With MINERVA_CSHARP_PACKAGE
# (an unpacked Minerva.nupkg of scripts/nuget.sh), the tests run against the package as NuGet lays
# it out: its lib/netstandard2.0/Minerva.dll and its runtimes/linux-x64/native/ library.
if [ -n "${MINERVA_CSHARP_PACKAGE:-}" ]; then
    cp "$MINERVA_CSHARP_PACKAGE/lib/netstandard2.0/Minerva.dll" build/Minerva.dll
    MINERVA_LIB_DIR="$MINERVA_CSHARP_PACKAGE/runtimes/linux-x64/native"
else
    mcs -langversion:7.2 -target:library -nologo -warnaserror+ -debug \
        -out:build/Minerva.dll src/*.cs
fi
mcs -langversion:7.2 -nologo -warnaserror+ -debug -r:build/Minerva.dll \
    -out:build/Minerva.Tests.exe tests/*.cs

# Every struct of minerva.h as a C compiler lays it out (size, and each field's offset and size),
# for the test that compares the [StructLayout] mirrors with it. The fields are read from the
# header itself, so a field added there and missing here fails that test.
unset MINERVA_LAYOUT
if cc=$(command -v cc || command -v gcc || command -v clang); then
    {
        echo '#include <minerva.h>'
        echo '#include <stddef.h>'
        echo '#include <stdio.h>'
        echo '#define S(t) printf("%s - 0 %zu\n", #t, sizeof(t));'
        echo '#define F(t, f) printf("%s %s %zu %zu\n", #t, #f, offsetof(t, f), sizeof(((t *)0)->f));'
        echo 'int main(void) {'
        awk '
            /^typedef struct [a-z_]+ \{/ { s = $3; print "    S(" s ")"; next }
            /^\} [a-z_]+;/ { s = ""; next }
            s != "" && /^  [A-Za-z]/ && /;$/ {
                l = $0; sub(/;$/, "", l); sub(/\[.*\]/, "", l); n = split(l, a, /[ *]+/)
                print "    F(" s ", " a[n] ")"
            }' "$MINERVA_INCLUDE_DIR/minerva.h"
        echo '    return 0;'
        echo '}'
    } >build/layout.c
    "$cc" -std=c11 -I"$MINERVA_INCLUDE_DIR" build/layout.c -o build/layout
    build/layout >build/layout.txt
    export MINERVA_LAYOUT="$PWD/build/layout.txt"
fi

# DllImport("minerva") finds libminerva.so through LD_LIBRARY_PATH.
export LD_LIBRARY_PATH="$MINERVA_LIB_DIR${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
exec mono --debug build/Minerva.Tests.exe "$@"
