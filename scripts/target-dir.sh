# Sourced by demo.sh, test.sh and .ci/run: one build folder for all of them, so a newcomer
# who runs the demo and then the tests compiles the workspace once. CARGO_TARGET_DIR wins.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-/var/tmp/tensorcdc-target}"
