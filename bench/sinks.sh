#!/usr/bin/env bash
# The file and stdout sinks (issue 20): the 60,000-row Fashion-MNIST table snapshotted by
# `tensorcdc capture --snapshot-mode initial_only` into a JSON-lines file (fsync per batch)
# and to stdout (sent to /dev/null), Debezium JSON with schemas; median of 3 runs each, from
# process start to exit. Reference in the same run, on the same server: `COPY mnist_train TO`
# a file through psql (the table's rows, no change events). A second binary (e.g. a build of
# an earlier commit) is measured beside the first when given.
#
#   bash bench/sinks.sh [TENSORCDC_BIN [OTHER_BIN]]
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-/var/tmp/tensorcdc-target}/release/tensorcdc}
OTHER=${2:-}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
work=$(mktemp -d /tmp/tensorcdc-bench-sinks.XXXXXX)
port=$((20000 + RANDOM % 20000))
cleanup() { "$PGBIN/pg_ctl" -D "$work/pg" stop -m immediate >/dev/null 2>&1 || true; rm -rf "$work"; }
trap cleanup EXIT
chown_run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
mkdir -p "$work/pg" && { [ "$(id -u)" != 0 ] || chown postgres "$work" "$work/pg"; }
chown_run "'$PGBIN/initdb' -D '$work/pg' -U postgres -A trust >/dev/null"
chown_run "'$PGBIN/pg_ctl' -D '$work/pg' -l '$work/pg.log' -o '-p $port -k /tmp -c wal_level=logical -c fsync=off -c max_wal_senders=4 -c max_replication_slots=4' -w start >/dev/null"
url="postgres://postgres@127.0.0.1:$port/postgres"
"$BIN" mnist load --data /usr/share/datasets/fashion-mnist --postgres "$url" --split train >/dev/null
median() { sort -n | sed -n 2p; }
secs() { local t0 t1; t0=$(date +%s.%N); "$@"; t1=$(date +%s.%N); echo "$t1 - $t0" | bc; }
capture() { # BIN SINK
  "$1" capture --postgres "$url" --table-include-list public.mnist_train --snapshot-mode initial_only --slot-name bench_$RANDOM \
    --sink "$2" 2>/dev/null
}
run3() { for _ in 1 2 3; do secs "$@" || exit 1; done | median; }
rows=60000
report() { printf "%-44s %6.2f s  %8.0f rows/s\n" "$1" "$2" "$(echo "$rows / $2" | bc -l)"; }
report "reference: COPY mnist_train TO a file" "$(run3 psql -q "$url" -c "\\copy mnist_train TO '$work/copy.txt'")"
# Each binary's output counted once, so a run that fails fast cannot pass for a fast one.
for b in "$BIN" $OTHER; do
  n=$("$b" capture --postgres "$url" --table-include-list public.mnist_train --snapshot-mode initial_only --slot-name bench_count --sink stdout 2>/dev/null | wc -l)
  [ "$n" = "$rows" ] || { echo "$b: $n lines on stdout, expected $rows" >&2; exit 1; }
done
for b in "$BIN" $OTHER; do
  report "$(basename "$(dirname "$(dirname "$b")")")/$(basename "$b"): --sink file:" "$(run3 capture "$b" "file:$work/events.jsonl")"
  rm -f "$work/events.jsonl"
  report "$(basename "$(dirname "$(dirname "$b")")")/$(basename "$b"): --sink stdout >/dev/null" "$(run3 sh -c "exec \"\$0\" capture --postgres '$url' --table-include-list public.mnist_train --snapshot-mode initial_only --slot-name bench_\$\$ --sink stdout >/dev/null 2>&1" "$b")"
done
