#!/usr/bin/env bash
# Any table, from capture to live predictions, on a Postgres you already have:
#   PGURL=postgres://postgres:secret@localhost:5432/postgres bash examples/any-table.sh
# It makes a `wines` table from scikit-learn's wine data (real measurements, three
# cultivars), trains on it straight from Postgres (no Kafka), predicts one raw row, then
# follows the table and predicts each new row as it is inserted, writing the predictions to
# `wine_predictions`. Needs: tensorcdc on PATH (or target/release), psql, and a Python with
# scikit-learn (scripts/install-deps.sh puts one in /var/tmp/tensorcdc-tools/venv).
set -euo pipefail
cd "$(dirname "$0")/.."
: "${PGURL:?set PGURL to your Postgres, e.g. postgres://postgres@localhost/postgres}"
TENSORCDC="${TENSORCDC:-$(command -v tensorcdc || echo target/release/tensorcdc)}"
PY="${PY:-/var/tmp/tensorcdc-tools/venv/bin/python}"
work="$(mktemp -d)"
follower=""
trap '[ -n "$follower" ] && kill "$follower" 2>/dev/null; rm -rf "$work"' EXIT

# 1. The table: 13 numeric columns, a text label (the cultivar's name), a primary key.
"$PY" scripts/sklearn_csv.py wine "$work/wine.csv"
cols=$(head -1 "$work/wine.csv" | tr -d '\r' | sed 's/,target$//')
psql "$PGURL" -q -v ON_ERROR_STOP=1 <<SQL
DROP TABLE IF EXISTS wines, wines_new, wine_predictions;
CREATE TABLE wines (id serial PRIMARY KEY, $(echo "$cols" | sed 's/,/ float8, /g') float8, cultivar text);
CREATE TABLE wines_new (LIKE wines INCLUDING ALL);
CREATE TEMP TABLE raw ($(echo "$cols" | sed 's/,/ float8, /g') float8, target int);
\copy raw FROM '$work/wine.csv' WITH (FORMAT csv, HEADER)
INSERT INTO wines ($cols, cultivar) SELECT $cols, (ARRAY['barolo','grignolino','barbera'])[target + 1] FROM raw;
SQL

# 2. Train from the table (every column but the key and the label is a feature).
"$TENSORCDC" train --source "$PGURL" --table wines --label cultivar --layers 32 --epochs 60 --out "$work/model"

# 3. Predict one raw row from the checkpoint alone.
"$TENSORCDC" predict --model "$work/model" --row '{"alcohol": 13.2, "malic_acid": 1.78, "ash": 2.14, "alcalinity_of_ash": 11.2, "magnesium": 100, "total_phenols": 2.65, "flavanoids": 2.76, "nonflavanoid_phenols": 0.26, "proanthocyanins": 1.28, "color_intensity": 4.38, "hue": 1.05, "od280_od315_of_diluted_wines": 3.4, "proline": 1050}'

# 4. Live: follow wines_new, insert three rows, read the three predictions.
"$TENSORCDC" predict --follow --source "$PGURL" --table wines_new --model "$work/model" \
    --predictions-table wine_predictions --max 3 > "$work/predictions.jsonl" &
follower=$!
for _ in $(seq 1 100); do
  [ "$(psql "$PGURL" -Atc "SELECT count(*) FROM pg_replication_slots WHERE active AND slot_name LIKE 'tensorcdc_wines_new_%'")" = 1 ] && break
  sleep 0.1
done
psql "$PGURL" -q -c "INSERT INTO wines_new SELECT * FROM wines WHERE id IN (1, 70, 150)"
wait $follower
cat "$work/predictions.jsonl"
psql "$PGURL" -c "SELECT row_key, prediction, round(probability::numeric, 3) AS p, round(latency_ms::numeric, 1) AS ms FROM wine_predictions ORDER BY id"
