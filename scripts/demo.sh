#!/usr/bin/env bash
# The main job on a fresh machine: install what is missing, build, run the demo.
# Extra arguments go to `tensorcdc demo` (e.g. --kafka HOST:PORT, --keep, --rows 10000).
# Without --data or --download it uses Fashion-MNIST from Debian's dataset-fashion-mnist.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
source scripts/target-dir.sh
cargo build --release -p tensorcdc
args=("$@")
if [[ " ${args[*]-} " != *" --data "* && " ${args[*]-} " != *" --download "* ]]; then
  args+=(--data /usr/share/datasets/fashion-mnist)
fi
exec "$CARGO_TARGET_DIR/release/tensorcdc" demo "${args[@]}"
