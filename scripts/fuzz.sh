#!/usr/bin/env bash
# Coverage-guided fuzzing (cargo fuzz, libFuzzer) of minerva's GGUF reader, of the saved-cache
# reader, of chat-template
# rendering, of the C API surface and of the check of RPC peers, each for a bounded time. Needs a nightly toolchain and cargo-fuzz:
#   rustup toolchain install nightly && cargo install cargo-fuzz
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]     (default 120)
#
# The GGUF target starts from small GGUF files that the project writes itself (the unit test
# engine::gguf::tests::fuzz_seed_corpus); the API target runs the real model ($MINERVA_MODEL).
# Crashes land in fuzz/artifacts/<target>/; each one found is kept as a regression test.
set -euo pipefail
cd "$(dirname "$0")/.."
secs="${1:-120}"
scripts/setup.sh
MINERVA_MODEL="${MINERVA_MODEL:-$(scripts/fetch-model.sh)}"
export MINERVA_MODEL
MINERVA_FUZZ_SEEDS="$PWD/fuzz/corpus/gguf" cargo test --release --lib gguf::tests::fuzz_seed_corpus -q >/dev/null
MINERVA_FUZZ_SEEDS="$PWD/fuzz/corpus/cache" cargo test --release --lib cache_fuzz_seed_corpus -q >/dev/null
cd fuzz
cargo +nightly fuzz run gguf corpus/gguf -- -max_total_time="$secs" -max_len=4096 2>&1 | tail -n 15
mkdir -p corpus/chat_template
cp ../tests/templates/*.jinja corpus/chat_template/
cargo +nightly fuzz run chat_template --features api corpus/chat_template -- \
  -max_total_time="$secs" -timeout=2 -rss_limit_mb=2048 -max_len=4096 2>&1 | tail -n 15
mkdir -p corpus/cache
cargo +nightly fuzz run cache --features api corpus/cache -- -max_total_time="$secs" \
  -max_len=4096 2>&1 | tail -n 15
mkdir -p corpus/rpc_peer
cargo +nightly fuzz run rpc_peer --features api corpus/rpc_peer -- -max_total_time="$secs" \
  -timeout=5 -max_len=256 2>&1 | tail -n 15
mkdir -p corpus/api
cargo +nightly fuzz run api --features api corpus/api -- -max_total_time="$secs" -rss_limit_mb=4096 \
  2>&1 | tail -n 15
