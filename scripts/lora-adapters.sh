#!/usr/bin/env bash
# Writes, once, the LoRA adapters minerva's tests and benchmarks use (scripts/lora-adapters.py:
# voice.gguf, calm.gguf, wrong-shape.gguf) beside the default model, and prints their folder.
# It needs the default model (scripts/fetch-model.sh) and the gguf and numpy packages from PyPI,
# installed into a virtual environment in the cache directory (as scripts/tiny-model.sh does).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${MINERVA_CACHE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/minerva}"
out=$dir/lora-v1
if [ ! -s "$out/wrong-shape.gguf" ]; then
  src=$(scripts/fetch-model.sh)
  venv=$dir/venv-gguf
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv" >&2 \
    || { echo "lora-adapters: python3 -m venv failed (apt-get install python3-venv)" >&2; exit 1; }
  "$venv/bin/python" -c "import gguf, numpy" 2>/dev/null || "$venv/bin/pip" install -q gguf numpy >&2
  "$venv/bin/python" scripts/lora-adapters.py "$src" "$out" >&2
fi
echo "$out"
