#!/usr/bin/env bash
# Installs what building and testing minerva needs, where missing, and fetches the default model.
# Idempotent and non-interactive: a second run does nothing but check.
#
#   Debian packages: cmake, clang, libclang-dev (llama-cpp-sys-2 builds llama.cpp with CMake and
#   generates bindings with bindgen), make, a C/C++ compiler, pkg-config, valgrind (tests).
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

scripts/fetch-model.sh >/dev/null
