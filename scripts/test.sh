#!/usr/bin/env bash
# The test suite: the Rust workspace, then the Python package built from it and its pytest
# suite (python/tests) against noida-db and private Postgres clusters. Run
# scripts/install-deps.sh first (.ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test --release --workspace
PYVENV=/var/tmp/tensorcdc-tools/pyvenv
# Builds the native module with maturin from this workspace (same target dir: the crates
# the tests just built are reused).
"$PYVENV/bin/pip" install -q ./python
TARGET="${CARGO_TARGET_DIR:-$PWD/target}"
TENSORCDC_BIN="$TARGET/release/tensorcdc" "$PYVENV/bin/python" -m pytest -q python/tests
