#!/usr/bin/env bash
# Debezium 3.6.3 (embedded engine, crates/dbzref's harness, Java 17) beside tensorcdc, same
# server, same run (issue 20). Tables: the 60,000-row Fashion-MNIST table and a 100,000-row
# table of mixed types (integers, numeric, text, timestamptz, double, boolean, jsonb, uuid,
# date). For each: the snapshot to a JSON-lines file and to noida-db, then the stream of
# the same rows inserted in one transaction, to a file and to noida-db, one capture at a
# time (each measured from the insert's commit). Times run from
# process start (Debezium's include its JVM start, reported beside) to the last record
# written (file: the line count; noida-db: Debezium's harness flushes its producer per
# batch before it writes the batch's lines, tensorcdc's capture reports sent records).
# Median of 3 runs for the snapshots, 1 run for the streams. Needs scripts/install-deps.sh.
#
#   bash bench/debezium.sh [TENSORCDC_BIN]        (BENCH_ONLY=stream: the streams only)
set -euo pipefail
BIN=${1:-${CARGO_TARGET_DIR:-/var/tmp/tensorcdc-target}/release/tensorcdc}
LIBS=${TENSORCDC_DEBEZIUM_LIBS:-/var/tmp/tensorcdc-tools/debezium/libs}
NOIDA=$(ls /var/tmp/tensorcdc-tools/venv/lib/python3*/site-packages/noida_db/noida-db | head -1)
PGBIN=$(ls -d /usr/lib/postgresql/*/bin | tail -1)
here=$(cd "$(dirname "$0")/.." && pwd)
work=$(mktemp -d /tmp/tensorcdc-bench-dbz.XXXXXX)
port=$((20000 + RANDOM % 20000))
kport=$((port + 1))
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  "$PGBIN/pg_ctl" -D "$work/pg" stop -m immediate >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
chown_run() { if [ "$(id -u)" = 0 ]; then su postgres -s /bin/bash -c "$*"; else bash -c "$*"; fi; }
mkdir -p "$work/pg" "$work/classes" && { [ "$(id -u)" != 0 ] || chown postgres "$work" "$work/pg"; }
chown_run "'$PGBIN/initdb' -D '$work/pg' -U postgres -A trust >/dev/null"
chown_run "'$PGBIN/pg_ctl' -D '$work/pg' -l '$work/pg.log' -o '-p $port -k /tmp -c wal_level=logical -c fsync=off -c max_wal_senders=20 -c max_replication_slots=20' -w start >/dev/null"
url="postgres://postgres@127.0.0.1:$port/postgres"
psql() { command psql -qAt "$url" "$@"; }
javac -nowarn -encoding UTF-8 -cp "$LIBS/*" -d "$work/classes" "$here/crates/dbzref/java/DbzHarness.java" "$here/crates/dbzref/java/MnistToCsv.java"
"$NOIDA" start --only kafka --kafka-port "$kport" --data-dir "$work/noida" >/dev/null 2>&1 &
pids+=($!)
"$BIN" mnist load --data /usr/share/datasets/fashion-mnist --postgres "$url" --split train >/dev/null
psql -c "CREATE TABLE mixed(id serial PRIMARY KEY, n integer, big bigint, amount numeric(12,2), name text, at timestamptz, x double precision, ok boolean, doc jsonb, u uuid, d date)"
mixed_rows() { # TABLE FROM TO
  psql -c "INSERT INTO $1(n, big, amount, name, at, x, ok, doc, u, d) SELECT g, g::bigint * 1000003, (g % 100000) / 7.0, 'row number ' || g,
    '2026-01-01'::timestamptz + g * interval '1 second', g / 3.0, g % 2 = 0, jsonb_build_object('g', g, 'tag', 't' || (g % 10)),
    md5(g::text)::uuid, '2000-01-01'::date + (g % 9000) FROM generate_series($2, $3) g"
}
mixed_rows mixed 1 100000
psql -c "CREATE TABLE mnist_more (LIKE mnist_train INCLUDING ALL); CREATE TABLE mixed_more (LIKE mixed INCLUDING ALL)"
now() { date +%s.%N; }
lines() { [ -f "$1" ] && wc -l < "$1" || echo 0; }
wait_lines() { # FILE N -> prints the time the N-th line is there
  local deadline=$(( $(date +%s) + 600 ))
  while [ "$(lines "$1")" -lt "$2" ]; do
    [ "$(date +%s)" -lt "$deadline" ] || { echo "timed out: $(lines "$1") of $2 lines in $1" >&2; exit 1; }
    sleep 0.05
  done
  now
}
dbz_props() { # DIR TABLE MODE [KAFKA]
  cat > "$1/props" <<EOF
connector.class=io.debezium.connector.postgresql.PostgresConnector
offset.storage=org.apache.kafka.connect.storage.FileOffsetBackingStore
offset.storage.file.filename=$1/offsets.dat
offset.flush.interval.ms=10000
name=bench
database.hostname=127.0.0.1
database.port=$port
database.user=postgres
database.password=unused
database.dbname=postgres
topic.prefix=dbz$RANDOM
plugin.name=pgoutput
slot.name=$(basename "$1")
publication.name=$(basename "$1")
publication.autocreate.mode=filtered
table.include.list=public.$2
snapshot.mode=$3
EOF
  [ -z "${4:-}" ] || echo "producer.bootstrap.servers=$4" >> "$1/props"
}
# Debezium's snapshot of TABLE (N rows) [to KAFKA]: prints "total jvm_start" seconds.
dbz_snapshot() {
  local d="$work/dbz_s$RANDOM"; mkdir -p "$d"; dbz_props "$d" "$1" initial "${3:-}"
  local t0 t1 t2; t0=$(now)
  java -XX:+UseSerialGC -cp "$work/classes:$LIBS/*" DbzHarness capture "$d/props" "$d/out" > "$d/stdout" 2> "$d/log" &
  local pid=$!
  t1=$(wait_lines "$d/out" 1); t2=$(wait_lines "$d/out" "$2")
  kill "$pid"; wait "$pid" 2>/dev/null || true
  echo "$(echo "$t2 - $t0" | bc) $(echo "$t1 - $t0" | bc)"
}
tcdc_snapshot() { # TABLE N [KAFKA]
  local t0 t1; t0=$(now)
  if [ -n "${3:-}" ]; then
    "$BIN" capture --postgres "$url" --table-include-list "public.$1" --snapshot-mode initial_only --slot-name "t$RANDOM" --kafka "$3" 2>/dev/null
  else
    "$BIN" capture --postgres "$url" --table-include-list "public.$1" --snapshot-mode initial_only --slot-name "t$RANDOM" --sink "file:$work/t.jsonl" 2>/dev/null
    [ "$(lines "$work/t.jsonl")" = "$2" ] || { echo "tensorcdc wrote $(lines "$work/t.jsonl") of $2" >&2; exit 1; }
    rm -f "$work/t.jsonl"
  fi
  t1=$(now); echo "$t1 - $t0" | bc
}
median3() { sort -n | sed -n 2p; }
rate() { echo "$1 / $2" | bc -l; }
row() { printf "%-58s %7.2f s %9.0f rows/s%s\n" "$1" "$2" "$(rate "$3" "$2")" "${4:-}"; }
kafka="127.0.0.1:$kport"
echo "machine: $(nproc) cores, $(free -g | awk '/Mem/{print $2}') GiB; Debezium 3.6.3 (Java $(java -version 2>&1 | head -1 | cut -d'"' -f2)), tensorcdc $(git -C "$here" rev-parse --short HEAD)"
for spec in "mnist_train 60000" "mixed 100000"; do
  set -- $spec; table=$1; n=$2
  for sink in file kafka; do
    [ "${BENCH_ONLY:-}" != stream ] || continue
    k=""; [ "$sink" = kafka ] && k=$kafka
    dz=(); jv=()
    for _ in 1 2 3; do read -r a b < <(dbz_snapshot "$table" "$n" "$k"); dz+=("$a"); jv+=("$b"); done
    dmed=$(printf "%s\n" "${dz[@]}" | median3); jmed=$(printf "%s\n" "${jv[@]}" | median3)
    tmed=$(for _ in 1 2 3; do tcdc_snapshot "$table" "$n" "$k"; done | median3)
    row "snapshot $table -> $sink: Debezium 3.6.3" "$dmed" "$n" "  (first record after $(printf %.1f "$jmed") s)"
    row "snapshot $table -> $sink: tensorcdc" "$tmed" "$n" "  ($(printf %.1f "$(echo "$dmed / $tmed" | bc -l)")x)"
  done
  # The stream: one capture at a time (no snapshot) while N rows are inserted in one
  # transaction (two at once would share the two cores and Postgres' decoding).
  for sink in file kafka; do
    k=""; [ "$sink" = kafka ] && k=$kafka
    more=mnist_more; [ "$table" = mixed ] && more=mixed_more
    insert() { psql -c "TRUNCATE $more"; t0=$(now); if [ "$table" = mixed ]; then mixed_rows "$more" 1 "$n"; else psql -c "INSERT INTO $more(label, pixels) SELECT label, pixels FROM mnist_train"; fi; tc=$(now); }
    wait_active() { # SLOT LOG
      local deadline=$(( $(date +%s) + 120 ))
      until [ "$(psql -c "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name = '$1'")" = 1 ]; do
        [ "$(date +%s)" -lt "$deadline" ] || { echo "capture did not start" >&2; tail -5 "$2" >&2; exit 1; }; sleep 0.2
      done
    }
    d="$work/dbz_t$RANDOM"; mkdir -p "$d"; dbz_props "$d" "$more" no_data "$k"
    java -XX:+UseSerialGC -cp "$work/classes:$LIBS/*" DbzHarness capture "$d/props" "$d/out" > "$d/stdout" 2> "$d/log" & dpid=$!
    pids+=("$dpid"); wait_active "$(basename "$d")" "$d/log"; sleep 1
    insert; dc=$tc; td=$(wait_lines "$d/out" "$n")
    kill "$dpid"; wait "$dpid" 2>/dev/null || true
    ts="$work/ts$RANDOM"; tslot="ts$RANDOM"
    if [ -n "$k" ]; then
      "$BIN" capture --postgres "$url" --table-include-list "public.$more" --snapshot-mode never --slot-name "$tslot" --kafka "$k" --set status.interval.ms=100 2> "$ts.log" & tpid=$!
    else
      "$BIN" capture --postgres "$url" --table-include-list "public.$more" --snapshot-mode never --slot-name "$tslot" --sink "file:$ts" 2> "$ts.log" & tpid=$!
    fi
    pids+=("$tpid"); wait_active "$tslot" "$ts.log"; sleep 1
    insert
    if [ -n "$k" ]; then
      # Delivered to the broker: the capture confirms the slot only past delivered records.
      target=$(psql -c "SELECT pg_current_wal_lsn()")
      until [ "$(psql -c "SELECT confirmed_flush_lsn >= '$target' FROM pg_replication_slots WHERE slot_name = '$tslot'")" = t ]; do
        grep -q "capture stopped\|error" "$ts.log" && { cat "$ts.log" >&2; exit 1; }
        [ "$(echo "$(now) - $t0 > 600" | bc)" = 0 ] || { echo "tensorcdc stream timed out" >&2; tail -3 "$ts.log" >&2; exit 1; }
        sleep 0.05
      done
      tt=$(now)
    else
      tt=$(wait_lines "$ts" "$n")
    fi
    kill "$tpid"; wait "$tpid" 2>/dev/null || true
    row "stream $table -> $sink: Debezium 3.6.3 (from commit)" "$(echo "$td - $dc" | bc)" "$n"
    row "stream $table -> $sink: tensorcdc (from commit)" "$(echo "$tt - $tc" | bc)" "$n" "  ($(printf %.1f "$(echo "($td - $dc) / ($tt - $tc)" | bc -l)")x)"
  done
done
