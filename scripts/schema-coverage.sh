#!/usr/bin/env bash
# Structured output on real-world JSON schemas (issue 19's coverage figures): the 26 schemas that
# check-jsonschema 0.39.0 vendors from JSON Schema Store and the projects themselves (GitHub
# workflows and actions, GitLab CI, Azure Pipelines, CircleCI, Renovate, docker compose, ...;
# their licences are in the package's builtin_schemas/vendor/licenses/), fetched once from PyPI
# into the cache directory and checked by sha256, with the `jsonschema` validator, in a virtual
# environment there. Each schema gets one greedy stream through the Python binding; the script
# prints, per schema and in all: refused (and why), valid, invalid, cut by max_tokens, too slow,
# and whether llama.cpp said it loosened a constraint.
#
#   scripts/schema-coverage.sh [--max-tokens N] [--seconds S] [--only NAME,...] [--lenient]
#                              [--suite]
#
# --suite runs the official JSON Schema Test Suite's schemas instead (draft 2020-12, vendored in
# tests/json-schema-suite/), one stream per group, with a summary per file.
#   MINERVA_MODEL=/path/model.gguf scripts/schema-coverage.sh
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
MINERVA_MODEL="${MINERVA_MODEL:-$(scripts/fetch-model.sh)}"
export MINERVA_MODEL
dir="${MINERVA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minerva}"
version=0.39.0
sha=14ce5c94871c551268ea948ffe21e9f1464dc48fb20bf9a4c13deeaaf756cf9b
wheel=$dir/check_jsonschema-$version-py3-none-any.whl
schemas=$dir/schemas-check-jsonschema-$version
if [ ! -d "$schemas" ]; then
  mkdir -p "$dir"
  [ -s "$wheel" ] || python3 -m pip download --quiet --no-deps "check-jsonschema==$version" -d "$dir" >&2
  echo "$sha  $wheel" | sha256sum -c --quiet - \
    || { echo "schema-coverage: $wheel does not match its sha256" >&2; exit 1; }
  rm -rf "$schemas.tmp" && mkdir -p "$schemas.tmp"
  python3 - "$wheel" "$schemas.tmp" <<'PY'
import sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z:
    for n in z.namelist():
        if "/builtin_schemas/vendor/" in n and (n.endswith(".json") or "/licenses/" in n):
            name = n.split("/builtin_schemas/vendor/", 1)[1]
            out = sys.argv[2] + "/" + name
            import os
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with open(out, "wb") as f:
                f.write(z.read(n))
PY
  mv "$schemas.tmp" "$schemas"
fi
venv=$dir/venv-schemas
[ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2 \
  || { echo "schema-coverage: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
"$venv/bin/python" -c "import jsonschema" 2>/dev/null || "$venv/bin/pip" install -q jsonschema >&2
cargo build --release --lib
# MINERVA_LIBRARY set by the caller runs another build (an earlier one, for a before-and-after).
export MINERVA_LIBRARY="${MINERVA_LIBRARY:-$PWD/${CARGO_TARGET_DIR:-target}/release/libminerva.so}"
export PYTHONPATH="$PWD/bindings/python/src" PYTHONDONTWRITEBYTECODE=1
dir_arg=$schemas
for a in "$@"; do
  [ "$a" = --suite ] && dir_arg=$PWD/tests/json-schema-suite
done
exec "$venv/bin/python" scripts/schema-coverage.py "$dir_arg" "$@"
