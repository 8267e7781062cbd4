#!/usr/bin/env bash
# Every benchmark, each with its reference in the same run; JSON lines to bench/out/.
set -euo pipefail
cd "$(dirname "$0")/.."
mkdir -p bench/out
bash bench/train.sh | tee bench/out/train.jsonl
cargo build --release -q -p tensorcdc-bench -p tensorcdc
target/release/bench-capture | tee bench/out/capture.jsonl
target/release/bench-types | tee bench/out/types.jsonl
target/release/bench-bigtx 1024 | tee bench/out/bigtx.jsonl
target/release/bench-ingest bench/.venv/bin/python | tee bench/out/ingest.jsonl
target/release/bench-latency 300 50 | tee bench/out/latency.jsonl
target/release/bench-tabular bench/.venv/bin/python 3 | tee bench/out/tabular.jsonl
