#!/usr/bin/env bash
# Runs the Python binding's tests against the built library and the real model.
# Needs: MINERVA_MODEL, MINERVA_CHAT_MODEL, MINERVA_LIB_DIR, MINERVA_INCLUDE_DIR; python3 (3.8+)
# with pytest. Writes nothing into the tree: no bytecode, no pytest cache.
set -euo pipefail
cd "$(dirname "$0")"

for v in MINERVA_MODEL MINERVA_CHAT_MODEL MINERVA_LIB_DIR MINERVA_INCLUDE_DIR; do
    if [ -z "${!v:-}" ]; then echo "test.sh: $v is not set" >&2; exit 2; fi
done
PYTHON=${PYTHON:-python3}
if ! "$PYTHON" -c 'import pytest' 2>/dev/null; then
    echo "test.sh: pytest is missing for $PYTHON (apt-get install python3-pytest, or pip install pytest)" >&2
    exit 2
fi

export MINERVA_LIBRARY="$MINERVA_LIB_DIR/libminerva.so"
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONDONTWRITEBYTECODE=1
export PYTHONFAULTHANDLER=1

exec "$PYTHON" -m pytest -p no:cacheprovider -v -rs --color=no -o console_output_style=classic \
    -W error::pytest.PytestUnraisableExceptionWarning \
    --durations=5 tests "$@"
