#!/usr/bin/env bash
# The test suite: the Rust workspace, then the Python package built from it and its pytest
# suite (python/tests) against noida-db and private Postgres clusters. Run
# scripts/install-deps.sh first (.ci/run does).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/target-dir.sh
# Formatting (rustfmt.toml) and lints, before anything runs.
cargo fmt --all --check
cargo clippy --release --workspace --all-targets -- -D warnings
cargo test --release --workspace
PYVENV=/var/tmp/tensorcdc-tools/pyvenv
# Builds the native module with maturin from this workspace (same target dir: the crates
# the tests just built are reused).
"$PYVENV/bin/pip" install -q ./python
TENSORCDC_BIN="$CARGO_TARGET_DIR/release/tensorcdc" "$PYVENV/bin/python" -m pytest -q python/tests
# The blog's notebook as a user runs it: jupyter nbconvert --execute, from examples/.
TENSORCDC_BIN="$CARGO_TARGET_DIR/release/tensorcdc" bash scripts/notebook-test.sh
# The README's quick start, word for word, from a fresh clone of this checkout's HEAD.
bash scripts/quickstart-test.sh
