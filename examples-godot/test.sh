#!/usr/bin/env bash
# The Godot sample's tests, as tests/bindings.rs runs them: `bash test.sh` from this folder with
# MINERVA_MODEL, MINERVA_CHAT_MODEL, MINERVA_LIB_DIR and MINERVA_INCLUDE_DIR set.
#
# Builds the GDNative library (build.sh), copies the Godot project to build/run (so whatever Godot
# writes stays in build/), and runs headless Godot 3 (godot3-server; GODOT=... to use another) on:
#   - project/tests/api_test.gd: MinervaEngine from GDScript against the real models (errors,
#     pull mode, determinism, stop, JSON schema, cancel, stale ids, lifetimes, chat, tool calls);
#   - main.tscn: two characters talking, each line a stream pulled once a frame; it fails if no
#     text arrived or a frame took longer than 250 ms, and prints the frame figures either way.
# Each Godot run is killed after 180 s if it hangs. Prints one line per check and a summary;
# exits 0 only if every check passed.
set -uo pipefail
cd "$(dirname "$0")"
here=$PWD
for v in MINERVA_MODEL MINERVA_CHAT_MODEL MINERVA_LIB_DIR MINERVA_INCLUDE_DIR; do
    if [ -z "${!v:-}" ]; then echo "not ok - $v is not set"; echo "godot: 0 passed, 1 failed"; exit 1; fi
done
t0=$(date +%s%N)
passed=0
failed=0
ok() { echo "ok - $*"; passed=$((passed + 1)); }
not_ok() { echo "not ok - $*"; failed=$((failed + 1)); }
summary() {
    echo "godot: $passed passed, $failed failed ($(( ($(date +%s%N) - t0) / 1000000 )) ms)"
    [ "$failed" -eq 0 ]
    exit
}

godot=${GODOT:-$(command -v godot3-server || true)}
if [ -z "$godot" ]; then
    not_ok "godot3-server not found (Debian/Ubuntu: apt-get install godot3-server)"
    summary
fi
version=$("$godot" --version 2>/dev/null | tail -n 1)
case "$version" in
    3.[1-9]*) ok "Godot $version ($godot)" ;;
    *) not_ok "Godot 3.1 to 3.x is needed, $godot is '$version'"; summary ;;
esac

mkdir -p build
if bash build.sh >build/build.log 2>&1; then
    ok "build: build/libminerva_godot.so against $MINERVA_LIB_DIR"
else
    not_ok "build failed:"
    sed 's/^/    /' build/build.log
    summary
fi

rm -rf build/run build/xdg
cp -r project build/run
# Godot's user data and config (logs, editor settings) go under build/ too.
export XDG_DATA_HOME=$here/build/xdg/data XDG_CONFIG_HOME=$here/build/xdg/config XDG_CACHE_HOME=$here/build/xdg/cache
export LANG=en_US.UTF-8

# Runs Godot headless; its "ok - " / "not ok - " lines count as checks.
run_godot() {
    local name=$1
    shift
    timeout -k 10 180 "$godot" --path build/run "$@" </dev/null >"build/$name.out" 2>"build/$name.err"
    local rc=$?
    local lines
    lines=$(grep -E '^(ok|not ok) - ' "build/$name.out")
    [ -n "$lines" ] && echo "$lines"
    passed=$((passed + $(grep -c '^ok - ' "build/$name.out")))
    local bad
    bad=$(grep -c '^not ok - ' "build/$name.out")
    failed=$((failed + bad))
    grep '^  failure: ' "build/$name.out"
    if [ "$rc" -ne 0 ] && [ "$bad" -eq 0 ]; then
        case $rc in 124 | 137) not_ok "$name: Godot hung and was killed after 180 s" ;; *) not_ok "$name: Godot exited with $rc" ;; esac
    elif [ "$rc" -eq 0 ] && [ "$bad" -eq 0 ] && [ -z "$lines" ]; then
        not_ok "$name: Godot reported nothing"
        rc=1
    fi
    if [ "$rc" -ne 0 ]; then
        echo "    --- build/$name.out and .err (last lines) ---"
        tail -n 20 "build/$name.out" | sed 's/^/    /'
        tail -n 30 "build/$name.err" | sed 's/^/    /'
    fi
}

MINERVA_REASONING_TEMPLATE="$here/../tests/templates/real/deepseek-ai-DeepSeek-R1-Distill-Qwen-32B.jinja" \
    run_godot api -s res://tests/api_test.gd
run_godot dialogue --quit-when-done
echo "    the dialogue:"
grep -E '^(Tom|Mira): ' build/dialogue.out | sed 's/^/    /'
summary
