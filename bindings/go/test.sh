#!/usr/bin/env bash
# Runs the Go binding's tests (go test -race) on the real model. Needs, as tests/bindings.rs
# sets them: MINERVA_MODEL, MINERVA_CHAT_MODEL, MINERVA_LIB_DIR (libminerva.so),
# MINERVA_INCLUDE_DIR (minerva.h). Prints one line per test and a summary; exits 0 only if all
# passed. Go's build cache is Go's own (~/.cache/go-build, or $GOCACHE): nothing is written here.
set -euo pipefail
cd "$(dirname "$0")"

for v in MINERVA_MODEL MINERVA_CHAT_MODEL MINERVA_LIB_DIR MINERVA_INCLUDE_DIR; do
    if [ -z "${!v:-}" ]; then echo "test.sh: $v is not set" >&2; exit 2; fi
done

GO=$(command -v go || true)
[ -n "$GO" ] || GO=/usr/local/go/bin/go
# scripts/setup.sh fetches Go here when none is installed.
[ -x "$GO" ] || GO=$HOME/.cache/minerva/go/bin/go
if [ ! -x "$GO" ]; then echo "test.sh: Go (1.23 or later) is not installed" >&2; exit 2; fi

export GOTOOLCHAIN=local GOFLAGS= GO111MODULE=on CGO_ENABLED=1
export CGO_CFLAGS="-I$MINERVA_INCLUDE_DIR -O2 -g"
export CGO_LDFLAGS="-L$MINERVA_LIB_DIR -Wl,-rpath,$MINERVA_LIB_DIR"
# Go keeps its build cache in ~/.cache/go-build; without a HOME, in the ignored .cache/ here.
if [ -z "${GOCACHE:-}" ] && [ -z "${HOME:-}" ]; then export GOCACHE="$PWD/.cache/go-build"; fi

log=$(mktemp)
trap 'rm -f "$log"' EXIT
start=$SECONDS
status=0
"$GO" vet ./... >"$log" 2>&1 || status=$?
if [ $status -ne 0 ]; then cat "$log"; echo "go vet: FAIL"; echo "0 passed, 1 failed (go vet)"; exit 1; fi
echo "--- PASS: go vet"
"$GO" test -race -count=1 -v -timeout 500s ./... >"$log" 2>&1 || status=$?
grep -E '^\s*--- (PASS|FAIL|SKIP)' "$log" || true
passed=$(grep -cE '^--- PASS' "$log" || true)
failed=$(grep -cE '^--- FAIL' "$log" || true)
skipped=$(grep -cE '^--- SKIP' "$log" || true)
if [ $status -ne 0 ] || [ "$skipped" -ne 0 ]; then
    cat "$log"
    [ "$failed" -gt 0 ] || failed=1
    echo "$passed passed, $failed failed, $skipped skipped ($((SECONDS - start)) s)"
    exit 1
fi
echo "$passed passed, 0 failed ($((SECONDS - start)) s)"
