#!/usr/bin/env bash
# A restart of `tensorcdc run` over 1,000,000 unlabelled rows (issue 22): how long after the
# process starts it streams changes, and how fast it predicts the unlabelled rows again
# (beside the stream, batched upserts). Reference in the same run: `COPY` of the same table
# to /dev/null (reading every row once, the floor for a refill) and `COPY` of 1,000,000
# prediction rows into a table (the floor for writing them).
#
# The table: rows(id bigint PRIMARY KEY, a, b float8, c text, label int), 5,000 labelled
# rows and ROWS unlabelled ones. A first run predicts them all and is killed (-9); the
# restart is timed from its start; a row inserted once it streams must be predicted while
# the backlog is still being predicted or soon after.
#
#   bash bench/restart.sh [ROWS] [TENSORCDC_BIN]
set -euo pipefail
ROWS=${1:-1000000}
BIN=${2:-${CARGO_TARGET_DIR:-/var/tmp/tensorcdc-target}/release/tensorcdc}
source "$(dirname "$0")/pg.sh"
psql -c "CREATE TABLE rows(id bigint PRIMARY KEY, a float8, b float8, c text, label int)"
psql -c "INSERT INTO rows SELECT g, sin(g), cos(g * 7), 'c' || (g % 5), CASE WHEN g <= 5000 THEN (sin(g) + cos(g * 7) > 0)::int END
  FROM generate_series(1, $ROWS + 5000) g"
psql -c "VACUUM ANALYZE rows"
run() { exec "$BIN" run --source "$url" --table rows --label label --layers 16 --metrics-addr off --out "$work/versions" --stream-timeout=-1; }
run > "$work/first.out" 2> "$work/first.err" &
pid=$!
wait_sql "SELECT count(*) FROM rows_predictions" "$ROWS" 900 "the first run's predictions"
# How far the slot's confirmed position is behind the server's WAL: what a restart decodes
# again before the first new change.
slot_behind=$(psql -c "SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), confirmed_flush_lsn) FROM pg_replication_slots WHERE slot_name = 'tensorcdc_run_rows'")
kill -9 "$pid"; wait "$pid" 2>/dev/null || true; pid=
t0=$(now)
run > "$work/restart.out" 2> "$work/restart.err" &
pid=$!
deadline=$(( $(date +%s) + 300 ))
until grep -q "^run: streaming changes" "$work/restart.out"; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the restart did not stream: $(cat "$work/restart.out" "$work/restart.err")" >&2; exit 1; }
  sleep 0.05
done
streaming_s=$(echo "$(now) - $t0" | bc)
# A row committed now is predicted beside the backlog.
psql -c "INSERT INTO rows VALUES ($ROWS + 5001, 0.5, 0.5, 'c1', NULL)"
t_ins=$(now)
until [ "$(psql -c "SELECT count(*) FROM rows_predictions WHERE row_key = '$((ROWS + 5001))'")" = 1 ]; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the new row was not predicted" >&2; exit 1; }
  sleep 0.02
done
new_row_s=$(echo "$(now) - $t_ins" | bc)
until grep -q "^run: predicted the" "$work/restart.out"; do
  [ "$(date +%s)" -lt "$deadline" ] || { echo "the restart's backlog was not done: $(cat "$work/restart.out" "$work/restart.err")" >&2; exit 1; }
  sleep 0.05
done
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
said=$(grep "^run: predicted the" "$work/restart.out")
rate=$(echo "$said" | sed -E 's/.*\(([0-9]+) rows\/s\).*/\1/')
backlog_s=$(echo "$said" | sed -E 's/.* in ([0-9.]+) s .*/\1/')
streaming_said=$(grep "^run: streaming changes" "$work/restart.out" | sed -E 's/.*, ([0-9.]+) s after start/\1/')
# References, same server.
t0=$(now); psql -c "COPY rows TO '/dev/null'"; copy_out_s=$(echo "$(now) - $t0" | bc)
psql -c "CREATE TABLE copy_in(row_key text PRIMARY KEY, prediction text, probability real, model_version bigint)"
t0=$(now)
psql -c "COPY (SELECT g::text, (g % 2)::text, 0.5, 1 FROM generate_series(1, $ROWS) g) TO '$work/p.csv' WITH CSV"
t1=$(now)
psql -c "COPY copy_in FROM '$work/p.csv' WITH CSV"
copy_in_s=$(echo "$(now) - $t1" | bc)
chmod a+rx "$work" 2>/dev/null || true
echo "{\"bench\":\"restart\",\"rows\":$ROWS,\"streaming_after_s\":$streaming_s,\"streaming_said_s\":$streaming_said,\"new_row_predicted_s\":$new_row_s,\"slot_behind_bytes_at_kill\":$slot_behind,\"repredict_s\":$backlog_s,\"repredict_rows_per_s\":$rate,\"ref_copy_out_s\":$copy_out_s,\"ref_copy_in_predictions_s\":$copy_in_s}"
grep "^run:" "$work/restart.out" >&2
