#!/usr/bin/env bash
# Installs what building and testing minerva needs, where missing, and fetches the default model.
# Idempotent and non-interactive: a second run does nothing but check.
#
#   Debian packages: cmake, clang, libclang-dev (llama-cpp-sys-2 builds llama.cpp with CMake and
#   generates bindings with bindgen), make, a C/C++ compiler, pkg-config, valgrind (tests);
#   for the bindings' tests: mono-devel (C#), godot3-server (the Godot sample).
#   pytest and wheel (the Python binding's tests) from PyPI; Go from the Go module proxy's toolchain
#   downloads when no `go` is on the PATH (into ~/.cache/minerva/go).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
have_cmd() { command -v "$1" >/dev/null 2>&1; }
have_cmd cmake || need+=(cmake)
have_cmd clang || need+=(clang)
have_cmd make || need+=(make)
have_cmd cc || need+=(gcc)
have_cmd c++ || need+=(g++)
have_cmd pkg-config || need+=(pkg-config)
have_cmd valgrind || need+=(valgrind)
have_cmd mcs || need+=(mono-devel)
have_cmd godot3-server || need+=(godot3-server)
have_cmd curl || need+=(curl)
have_cmd unzip || need+=(unzip)
if ! ls /usr/lib/llvm-*/lib/libclang*.so* /usr/lib/x86_64-linux-gnu/libclang*.so* >/dev/null 2>&1; then
  need+=(libclang-dev)
fi

if [ ${#need[@]} -gt 0 ]; then
  if ! have_cmd apt-get; then
    echo "setup: please install: ${need[*]} (no apt-get on this machine)" >&2
    exit 1
  fi
  SUDO=""
  if [ "$(id -u)" != 0 ]; then
    if have_cmd sudo; then SUDO="sudo -n"; else
      echo "setup: please install as root: ${need[*]}" >&2
      exit 1
    fi
  fi
  echo "setup: installing ${need[*]}" >&2
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq </dev/null >&2
  $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" </dev/null >&2
fi

if ! have_cmd cargo; then
  echo "setup: cargo (Rust 1.80 or newer) is needed: https://rustup.rs" >&2
  exit 1
fi

# pytest runs the Python binding's tests; wheel lets them try `pip install` offline.
for mod in pytest wheel; do
  if ! python3 -c "import $mod" >/dev/null 2>&1; then
    echo "setup: installing $mod" >&2
    python3 -m pip install -q "$mod" </dev/null >&2
  fi
done

# Go: the binding needs Go 1.23 or newer (bindings/go/go.mod).
GO_VERSION=1.23.12
if ! have_cmd go && [ ! -x "$HOME/.cache/minerva/go/bin/go" ]; then
  echo "setup: fetching Go $GO_VERSION from the Go module proxy" >&2
  arch=$(uname -m); case "$arch" in x86_64) arch=amd64;; aarch64) arch=arm64;; esac
  tmp=$(mktemp -d)
  curl -fsSL -o "$tmp/go.zip" \
    "https://proxy.golang.org/golang.org/toolchain/@v/v0.0.1-go$GO_VERSION.linux-$arch.zip"
  (cd "$tmp" && unzip -q go.zip)
  mkdir -p "$HOME/.cache/minerva"
  rm -rf "$HOME/.cache/minerva/go"
  mv "$tmp"/golang.org/toolchain@*/ "$HOME/.cache/minerva/go"
  chmod +x "$HOME/.cache/minerva/go/bin/"* "$HOME/.cache/minerva/go/pkg/tool/"*/* 2>/dev/null || true
  rm -rf "$tmp"
fi

scripts/fetch-model.sh >/dev/null
