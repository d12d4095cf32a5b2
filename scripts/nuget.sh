#!/usr/bin/env bash
# Packages the C# binding with the built library, without a NuGet client (none installs here):
#   dist/Minerva.<version>.nupkg   a NuGet package: lib/netstandard2.0/Minerva.dll (built by
#       Mono's mcs from bindings/csharp/src, C# 7.2, against Mono's framework assemblies, which
#       .NET loads through its compatibility facades), runtimes/linux-x64/native/libminerva.so
#       with its private folder minerva/ beside it (found by the library's own rpath), the
#       .nuspec, [Content_Types].xml and _rels/.rels; zipped by scripts/nuget.py.
#   dist/com.minerva.llm/         a Unity package folder: package.json, Runtime/ (the binding's
#       sources and an assembly definition), Plugins/x86_64/ (libminerva.so and minerva/).
# Prints the two paths. Usage: scripts/nuget.sh [OUT_DIR]   (default dist/)
set -euo pipefail
cd "$(dirname "$0")/.."
out="${1:-dist}"
BUILD="${MINERVA_BUILD_DIR:-target/release}"
[ -f "$BUILD/libminerva.so" ] || { echo "nuget: $BUILD/libminerva.so is missing: build first" >&2; exit 1; }
command -v mcs >/dev/null || { echo "nuget: mcs not found (apt-get install mono-devel)" >&2; exit 1; }
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# The NuGet layout.
pkg=$stage/nupkg
install -d "$pkg/lib/netstandard2.0" "$pkg/runtimes/linux-x64/native"
mcs -langversion:7.2 -target:library -nologo -warnaserror+ -nowarn:1591 -optimize+ \
    -doc:"$pkg/lib/netstandard2.0/Minerva.xml" \
    -out:"$pkg/lib/netstandard2.0/Minerva.dll" bindings/csharp/src/*.cs
native() {
  install -m 755 "$BUILD/libminerva.so" "$1/libminerva.so"
  if [ -d "$BUILD/minerva" ]; then
    install -d "$1/minerva"
    install -m 755 "$BUILD"/minerva/lib*.so* "$1/minerva/"
  fi
}
native "$pkg/runtimes/linux-x64/native"
cat > "$pkg/Minerva.nuspec" <<NUSPEC
<?xml version="1.0" encoding="utf-8"?>
<package xmlns="http://schemas.microsoft.com/packaging/2013/05/nuspec.xsd">
  <metadata>
    <id>Minerva</id>
    <version>$VERSION</version>
    <authors>minerva</authors>
    <description>Local LLM inference (llama.cpp) inside any program: the C# binding of libminerva, with the native library for linux-x64.</description>
    <license type="expression">MIT OR Apache-2.0</license>
    <tags>llm llama.cpp gguf inference unity</tags>
    <dependencies><group targetFramework=".NETStandard2.0" /></dependencies>
  </metadata>
</package>
NUSPEC
mkdir -p "$out"
python3 scripts/nuget.py "$pkg" "$out/Minerva.$VERSION.nupkg"

# The Unity package folder.
unity="$out/com.minerva.llm"
rm -rf "$unity"
install -d "$unity/Runtime" "$unity/Plugins/x86_64"
cp bindings/csharp/src/*.cs "$unity/Runtime/"
cat > "$unity/Runtime/Minerva.Runtime.asmdef" <<'ASMDEF'
{
    "name": "Minerva",
    "allowUnsafeCode": false,
    "autoReferenced": true
}
ASMDEF
native "$unity/Plugins/x86_64"
cat > "$unity/package.json" <<JSON
{
  "name": "com.minerva.llm",
  "version": "$VERSION",
  "displayName": "minerva: local LLM inference",
  "description": "A GGUF model inside the game (llama.cpp): streams pulled once a frame, JSON and tool calls, saved prompt caches, LoRA voices. The C# binding and libminerva for Linux x86_64.",
  "unity": "2021.3",
  "license": "MIT OR Apache-2.0"
}
JSON
echo "$out/Minerva.$VERSION.nupkg"
echo "$unity"
