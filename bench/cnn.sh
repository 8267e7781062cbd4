#!/usr/bin/env bash
# The CNN of issue 23 trained from Postgres by tensorcdc (`train --model-spec`, Keras' own
# to_json()) beside Keras 3.15 on the same 60,000 Fashion-MNIST rows, same epochs, batch 64,
# Adam; test accuracy on the same 10,000 rows (tensorcdc: `evaluate` from Postgres). Seconds
# per epoch: tensorcdc's own "s/epoch" line (its read of the table is not counted), Keras'
# mean of its timed epochs.
#
#   bash bench/cnn.sh [EPOCHS] [TENSORCDC_BIN]
set -euo pipefail
EPOCHS=${1:-3}
BIN=${2:-${CARGO_TARGET_DIR:-/var/tmp/tensorcdc-target}/release/tensorcdc}
PYTHON=${PYTHON:-/var/tmp/tensorcdc-tools/pyvenv/bin/python}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
here=$(cd "$(dirname "$0")" && pwd)
work=$(mktemp -d /tmp/tensorcdc-bench-cnn.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() {
  "$PGBIN/pg_ctl" -D "$work/pg" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
chown_run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
mkdir -p "$work/pg" && { [ "$(id -u)" != 0 ] || chown postgres "$work" "$work/pg"; }
chown_run "'$PGBIN/initdb' -D '$work/pg' -U postgres -A trust >/dev/null"
chown_run "'$PGBIN/pg_ctl' -D '$work/pg' -l '$work/pg.log' -o '-p $port -k /tmp -c wal_level=logical -c fsync=off' -w start >/dev/null"
url="postgres://postgres@127.0.0.1:$port/postgres"
"$BIN" mnist load --data /usr/share/datasets/fashion-mnist --postgres "$url" >/dev/null
"$PYTHON" "$here/keras_cnn.py" "$EPOCHS" 42 "$work/cnn.json" 2>/dev/null | grep '^{'
out=$("$BIN" train --source "$url" --table mnist_train --label label --model-spec "$work/cnn.json" --epochs "$EPOCHS" --seed 42 --out "$work/model" 2>&1)
spe=$(echo "$out" | sed -n 's/.*(\([0-9.]*\) s\/epoch).*/\1/p')
acc=$("$BIN" evaluate --source "$url" --table mnist_test --model "$work/model" | sed -n 's/.*accuracy: \([0-9.]*\).*/\1/p')
echo "{\"who\": \"tensorcdc\", \"epochs\": $EPOCHS, \"seed\": 42, \"s_per_epoch\": $spe, \"test_accuracy\": $acc}"
