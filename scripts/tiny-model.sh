#!/usr/bin/env bash
# Writes, once, the tiny model that makes minerva's per-step host work visible on a CPU (see
# scripts/tiny-model.py and docs/PERFORMANCE.md), beside the default model, and prints its path.
# It needs the default model (scripts/fetch-model.sh) and the gguf and numpy packages from PyPI,
# installed into a virtual environment in the cache directory.
#
#   MINERVA_MODEL=$(scripts/tiny-model.sh) scripts/bench.sh --only single,batched
#   scripts/bench.sh --tiny --only single,batched          # the same
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${MINERVA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minerva}"
out=$dir/tiny-gemma3.gguf
if [ ! -s "$out" ]; then
  src=$(scripts/fetch-model.sh)
  venv=$dir/venv-gguf
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2 \
    || { echo "tiny-model: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -c "import gguf, numpy" 2>/dev/null || "$venv/bin/pip" install -q gguf numpy >&2
  "$venv/bin/python" scripts/tiny-model.py "$src" "$out.tmp" >&2
  mv "$out.tmp" "$out"
fi
echo "$out"
