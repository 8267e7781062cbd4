"""Datasets read from Postgres in-process (no Kafka), checkpoints from Python, and change
events as dicts, against a private PostgreSQL cluster."""
import json
import subprocess

import numpy as np
import pytest

import tensorcdc
from tensorcdc import testing
from conftest import FASHION, tensorcdc_bin

LOANS = """
CREATE TABLE loans(id serial PRIMARY KEY, income float8, grade text, insured bool, defaulted bool);
INSERT INTO loans(income, grade, insured, defaulted)
  SELECT 1000 + g * 37 % 900, (ARRAY['A','B','C'])[g % 3 + 1], g % 4 = 0, (g % 3 = 2) OR (1000 + g * 37 % 900 < 1200)
  FROM generate_series(1, 600) g;
INSERT INTO loans(income, grade, insured, defaulted) VALUES (NULL, 'A', true, false);
"""


@pytest.fixture(scope="module")
def loans(pg):
    testing.execute(pg.url, LOANS)
    return pg.url


def test_postgres_dataset_any_table(loans):
    ds = tensorcdc.PostgresDataset(loans, "loans", label="defaulted", batch_size=100)
    x, y = map(np.concatenate, zip(*ds))
    # income (standardised), grade one-hot A/B/C + unseen, insured 0/1; the NULL row skipped.
    assert x.shape == (600, 6) and x.dtype == np.float32 and y.dtype == np.int64
    assert list(ds.classes) == ["false", "true"] and ds.width == 6
    assert len(ds.skipped_rows) == 1 and "NULL" in ds.skipped_rows[0][1]
    assert abs(float(x[:, 0].mean())) < 1e-4 and abs(float(x[:, 0].std()) - 1) < 1e-3
    assert set(np.unique(x[:, 1:4])) <= {0.0, 1.0}


def test_postgres_dataset_mnist_snapshot_and_stream(pg):
    testing.load_mnist(pg.url, "mnist_pg", FASHION, "test", limit=300)
    bounded = tensorcdc.PostgresDataset(pg.url, "mnist_pg")
    assert sum(len(y) for _, y in bounded) == 300
    # A stream: the snapshot, then rows as they commit, until 2 s without one.
    streamed = tensorcdc.PostgresDataset(pg.url, "mnist_pg", stream=True, stream_timeout=2000)
    it = iter(streamed)
    n = 0
    for x, y in it:
        n += len(y)
        if n == 300:
            testing.load_mnist(pg.url, "mnist_pg", FASHION, "test", limit=50, offset=300)
    assert n == 350


def test_checkpoint_predicts_raw_rows_as_the_cli_does(loans, tmp_path):
    model_dir = tmp_path / "loans-model"
    subprocess.run([tensorcdc_bin(), "train", "--source", loans, "--table", "loans", "--label", "defaulted", "--layers", "16",
                    "--epochs", "20", "--out", str(model_dir)], check=True, capture_output=True)
    m = tensorcdc.load_model(model_dir)
    assert m.classes == ["false", "true"] and m.task == "classification"
    row = {"income": 1100.0, "grade": "C", "insured": False}
    [p] = m.predict([row])
    assert p["prediction"] in ("false", "true") and 0.5 <= p["probability"] <= 1
    assert abs(sum(p["probabilities"].values()) - 1) < 1e-5
    cli = subprocess.run([tensorcdc_bin(), "predict", "--model", str(model_dir), "--row", json.dumps(row)], check=True, capture_output=True, text=True)
    assert p["prediction"] in cli.stdout and f"{p['probability']:.4f}"[:4] in cli.stdout, cli.stdout
    # A grade never seen in training goes to the unseen slot, not an error; a wrong type is.
    assert m.predict([dict(row, grade="Z")])[0]["prediction"] in m.classes
    with pytest.raises(tensorcdc.TensorcdcError, match="row 0.*income"):
        m.predict([dict(row, income="lots")])


def test_capture_yields_change_events(pg):
    testing.execute(pg.url, "CREATE TABLE events_t(id int PRIMARY KEY, name text, score float8); INSERT INTO events_t VALUES (1, 'a', 0.5)")
    ev = tensorcdc.capture(pg.url, "events_t", stream_timeout=3000)
    first = next(ev)
    assert first["op"] == "upsert" and first["key"] == "1" and first["row"] == {"id": 1, "name": "a", "score": 0.5}
    testing.execute(pg.url, "UPDATE events_t SET score = 0.75 WHERE id = 1; DELETE FROM events_t WHERE id = 1")
    rest = list(ev)
    assert [(e["op"], e["key"]) for e in rest] == [("upsert", "1"), ("delete", "1")]
    assert rest[0]["row"]["score"] == 0.75 and rest[0]["position"].startswith("lsn ") and rest[0]["commit_ts_ms"] > 0
