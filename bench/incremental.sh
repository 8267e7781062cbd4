#!/usr/bin/env bash
# Incremental snapshot (signal table, chunks between watermarks; issue 21) beside the
# initial snapshot, same server, same run. Tables: the 60,000-row Fashion-MNIST table and a
# 100,000-row table of mixed types (as bench/debezium.sh). Both to a JSON-lines file (fsync
# per batch), Debezium JSON with schemas, median of 3 runs:
#   - initial: `capture --snapshot-mode initial_only`, from process start to exit;
#   - incremental: `capture --snapshot-mode no_data --set signal.data.collection=...` already
#     streaming, from the execute-snapshot signal's commit to the offsets file saying the
#     snapshot is done (its last chunk durable); each run's read events counted first.
# Chunk size: Debezium's default 1024, and 8192.
#
#   bash bench/incremental.sh [TENSORCDC_BIN]
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-/var/tmp/tensorcdc-target}/release/tensorcdc}
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
work=$(mktemp -d /tmp/tensorcdc-bench-incr.XXXXXX)
port=$((20000 + RANDOM % 20000))
pid=
cleanup() {
  [ -z "$pid" ] || kill "$pid" 2>/dev/null || true
  "$PGBIN/pg_ctl" -D "$work/pg" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
chown_run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
mkdir -p "$work/pg" && { [ "$(id -u)" != 0 ] || chown postgres "$work" "$work/pg"; }
chown_run "'$PGBIN/initdb' -D '$work/pg' -U postgres -A trust >/dev/null"
chown_run "'$PGBIN/pg_ctl' -D '$work/pg' -l '$work/pg.log' -o '-p $port -k /tmp -c wal_level=logical -c fsync=off -c max_wal_senders=8 -c max_replication_slots=8' -w start >/dev/null"
url="postgres://postgres@127.0.0.1:$port/postgres"
psql() { command psql -qAt "$url" "$@"; }
"$BIN" mnist load --data /usr/share/datasets/fashion-mnist --postgres "$url" --split train >/dev/null
psql -c "CREATE TABLE mixed(id serial PRIMARY KEY, n integer, big bigint, amount numeric(12,2), name text, at timestamptz, x double precision, ok boolean, doc jsonb, u uuid, d date)"
psql -c "INSERT INTO mixed(n, big, amount, name, at, x, ok, doc, u, d) SELECT g, g::bigint * 1000003, (g % 100000) / 7.0, 'row number ' || g,
    '2026-01-01'::timestamptz + g * interval '1 second', g / 3.0, g % 2 = 0, jsonb_build_object('g', g, 'tag', 't' || (g % 10)),
    md5(g::text)::uuid, '2000-01-01'::date + (g % 9000) FROM generate_series(1, 100000) g"
psql -c "CREATE TABLE debezium_signal (id VARCHAR(42) PRIMARY KEY, type VARCHAR(32) NOT NULL, data VARCHAR(2048) NULL)"
now() { date +%s.%N; }
median() { sort -n | sed -n 2p; }
initial() { # TABLE -> seconds
  local t0 t1 n
  rm -f "$work/initial.jsonl"
  t0=$(now)
  "$BIN" capture --postgres "$url" --table-include-list "public.$1" --snapshot-mode initial_only --slot-name "bi_$RANDOM" \
    --sink "file:$work/initial.jsonl" 2>/dev/null
  t1=$(now)
  n=$(wc -l < "$work/initial.jsonl")
  [ "$n" = "$2" ] || { echo "initial snapshot of $1: $n lines, expected $2" >&2; exit 1; }
  echo "$t1 - $t0" | bc
}
incremental() { # TABLE ROWS CHUNK -> seconds
  local slot="inc_$RANDOM" state="$work/state-$RANDOM" t0 t1 n deadline
  rm -f "$work/incr.jsonl"
  TENSORCDC_STATE_DIR=$state "$BIN" capture --postgres "$url" --table-include-list "public.$1" --snapshot-mode no_data --slot-name "$slot" \
    --set signal.data.collection=public.debezium_signal --set "incremental.snapshot.chunk.size=$3" \
    --sink "file:$work/incr.jsonl" 2>"$work/incr.err" &
  pid=$!
  deadline=$(( $(date +%s) + 60 ))
  until grep -q "streaming from LSN" "$work/incr.err"; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "capture did not stream: $(cat "$work/incr.err")" >&2; exit 1; }
    sleep 0.02
  done
  t0=$(now)
  psql -c "INSERT INTO debezium_signal VALUES ('$slot', 'execute-snapshot', '{\"data-collections\": [\"public.$1\"], \"type\": \"incremental\"}')"
  deadline=$(( $(date +%s) + 600 ))
  until [ -f "$state"/offsets-*.json ] && grep -q last_signal_lsn "$state"/offsets-*.json && ! grep -q '"incremental"' "$state"/offsets-*.json; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "incremental snapshot of $1 did not finish" >&2; exit 1; }
    sleep 0.01
  done
  t1=$(now)
  kill "$pid"; wait "$pid" || true; pid=
  n=$(grep -c '"snapshot":"incremental"' "$work/incr.jsonl")
  [ "$n" = "$2" ] || { echo "incremental snapshot of $1: $n read events, expected $2" >&2; exit 1; }
  psql -c "SELECT pg_drop_replication_slot('$slot')" >/dev/null
  echo "$t1 - $t0" | bc
}
report() { printf "%-48s %6.2f s  %8.0f rows/s\n" "$1" "$2" "$(echo "$3 / $2" | bc -l)"; }
for spec in "mnist_train 60000" "mixed 100000"; do
  set -- $spec
  report "$1: initial snapshot (initial_only, process start to exit)" "$(for _ in 1 2 3; do initial "$1" "$2"; done | median)" "$2"
  for chunk in 1024 8192; do
    report "$1: incremental snapshot, chunk $chunk (signal to done)" "$(for _ in 1 2 3; do incremental "$1" "$2" "$chunk"; done | median)" "$2"
  done
done
