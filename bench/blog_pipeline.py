"""The blog's whole pipeline, two ways, same machine, same run (issue 20):

  debezium   Debezium 3.6.3 (embedded engine, crates/dbzref's harness) with the blog's
             connector chain (ExtractNewRecordState, MnistToCsv, String converter) into
             noida-db, then the blog's Keras fit (Dense 128 relu, Dense 10, Adam, batch 64)
             fed by tensorcdc.from_kafka(...).to_tf() (TF-IO 0.37 cannot read noida-db 0.2.3),
             evaluated on the test topic read the same way.
  tensorcdc  `tensorcdc capture` with the same chain into the same broker, then
             `tensorcdc train --kafka` (the same network, optimiser and batch) and
             `tensorcdc evaluate --kafka` on the test topic.

Both start from the same rows in a private Postgres (the 60,000 + 10,000 Fashion-MNIST rows,
loaded before the clock starts) and stop at the test accuracy. Prints one JSON line per way
with capture_s (start to both topics complete), fit_s, eval_s, total_s and test_accuracy.

Usage: /var/tmp/tensorcdc-tools/pyvenv/bin/python bench/blog_pipeline.py [EPOCHS]
"""
import json
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = "/usr/share/datasets/fashion-mnist"
LIBS = Path(os.environ.get("TENSORCDC_DEBEZIUM_LIBS", "/var/tmp/tensorcdc-tools/debezium/libs"))
TARGET = Path(os.environ.get("CARGO_TARGET_DIR", "/var/tmp/tensorcdc-target"))
BIN = str(TARGET / "release" / "tensorcdc")
# noida-db 0.2.3 ignores fetch byte limits: a fetch can return the whole 150 MB topic.
CONF = ["receive.message.max.bytes=1000000000", "fetch.max.bytes=900000000"]


def records(tensorcdc, topic, servers):
    ds = tensorcdc.from_kafka(topic, servers=servers, configuration=CONF, batch_size=8192)
    for _ in ds:
        pass
    return ds.records


def wait_topics(tensorcdc, servers, prefix, want):
    deadline = time.monotonic() + 900
    while True:
        have = {t: records(tensorcdc, f"{prefix}.public.{t}", servers) for t in want}
        if all(have[t] >= n for t, n in want.items()):
            return
        if time.monotonic() > deadline:
            sys.exit(f"{prefix}: {have} of {want} after 900 s")
        time.sleep(0.5)


def keras_fit(tensorcdc, servers, prefix, epochs):
    import keras

    keras.utils.set_random_seed(42)
    model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    t = time.perf_counter()
    data = tensorcdc.from_kafka(f"{prefix}.public.mnist_train", offset=0, servers=servers, configuration=CONF, batch_size=64, shuffle=True, seed=42).to_tf()
    model.fit(data, epochs=epochs, verbose=0)
    fit_s = time.perf_counter() - t
    t = time.perf_counter()
    xs, ys = zip(*tensorcdc.from_kafka(f"{prefix}.public.mnist_test", offset=0, servers=servers, configuration=CONF, batch_size=1000))
    res = model.evaluate(np.concatenate(xs), np.concatenate(ys), verbose=0, return_dict=True)
    return fit_s, time.perf_counter() - t, res["accuracy"]


def main():
    epochs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    import tensorcdc
    from tensorcdc import testing

    work = Path(tempfile.mkdtemp(prefix="tensorcdc-blog-pipeline-"))
    broker, pg = testing.Broker(), testing.LocalPostgres()
    procs = []
    try:
        testing.load_mnist(pg.url, "mnist_train", FASHION, "train", chunk=5000)
        testing.load_mnist(pg.url, "mnist_test", FASHION, "test", chunk=5000)
        want = {"mnist_train": 60000, "mnist_test": 10000}
        subprocess.run(["javac", "-nowarn", "-encoding", "UTF-8", "-cp", f"{LIBS}/*", "-d", str(work / "classes"),
                        str(ROOT / "crates/dbzref/java/DbzHarness.java"), str(ROOT / "crates/dbzref/java/MnistToCsv.java")], check=True)
        port = str(urllib.parse.urlparse(pg.url).port)
        props = {
            "connector.class": "io.debezium.connector.postgresql.PostgresConnector",
            "offset.storage": "org.apache.kafka.connect.storage.FileOffsetBackingStore",
            "offset.storage.file.filename": str(work / "offsets.dat"), "offset.flush.interval.ms": "10000", "name": "blog",
            "database.hostname": "127.0.0.1", "database.port": port, "database.user": "postgres", "database.password": "unused",
            "database.dbname": "postgres", "topic.prefix": "dbz", "plugin.name": "pgoutput", "slot.name": "dbz_blog",
            "publication.name": "dbz_blog", "publication.autocreate.mode": "filtered", "table.include.list": "public.mnist_.*",
            "transforms": "unwrap,mnist", "transforms.unwrap.type": "io.debezium.transforms.ExtractNewRecordState",
            "transforms.mnist.type": "MnistToCsv", "key.converter": "org.apache.kafka.connect.storage.StringConverter",
            "value.converter": "org.apache.kafka.connect.storage.StringConverter", "producer.bootstrap.servers": broker.servers,
        }
        (work / "blog.properties").write_text("".join(f"{k}={v.replace(':', chr(92) + ':')}\n" for k, v in props.items()))
        results = {}
        # Debezium -> Kafka -> Keras.
        t0 = time.perf_counter()
        p = subprocess.Popen(["java", "-XX:+UseSerialGC", "-cp", f"{work / 'classes'}:{LIBS}/*", "DbzHarness", "capture", str(work / "blog.properties"),
                              str(work / "dbz.jsonl")], stdout=subprocess.DEVNULL, stderr=open(work / "dbz.log", "w"))
        procs.append(p)
        wait_topics(tensorcdc, broker.servers, "dbz", want)
        capture_s = time.perf_counter() - t0
        p.terminate()
        p.wait(timeout=60)
        fit_s, eval_s, acc = keras_fit(tensorcdc, broker.servers, "dbz", epochs)
        results["debezium"] = dict(way="Debezium 3.6.3 -> noida-db -> Keras 3.15.1 (fed by tensorcdc.from_kafka)", capture_s=capture_s, fit_s=fit_s, eval_s=eval_s,
                                   total_s=time.perf_counter() - t0, test_accuracy=acc)
        # tensorcdc capture -> Kafka -> tensorcdc train / evaluate.
        t0 = time.perf_counter()
        cap = subprocess.Popen([BIN, "capture", "--postgres", pg.url, "--kafka", broker.servers, "--table-include-list", "public.mnist_.*", "--topic-prefix", "tf",
                                "--slot-name", "tf_blog", "--set", "publication.name=tf_blog", "--transforms", "unwrap,mnist-csv", "--converter", "string"],
                               env=dict(os.environ, TENSORCDC_STATE_DIR=str(work / "state")), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        procs.append(cap)
        wait_topics(tensorcdc, broker.servers, "tf", want)
        capture_s = time.perf_counter() - t0
        cap.terminate()
        cap.wait(timeout=60)
        t = time.perf_counter()
        x = [a for c in CONF for a in ("-X", c)]
        subprocess.run([BIN, "train", "--kafka", broker.servers, "--topic", "tf.public.mnist_train", "--epochs", str(epochs), "--out", str(work / "model")] + x,
                       check=True, capture_output=True)
        fit_s = time.perf_counter() - t
        t = time.perf_counter()
        out = subprocess.run([BIN, "evaluate", "--kafka", broker.servers, "--topic", "tf.public.mnist_test", "--model", str(work / "model")] + x,
                             check=True, capture_output=True, text=True).stdout
        eval_s = time.perf_counter() - t
        acc = float(re.findall(r"accuracy: ([0-9.]+)", out)[-1])
        results["tensorcdc"] = dict(way="tensorcdc capture -> noida-db -> tensorcdc train/evaluate", capture_s=capture_s, fit_s=fit_s, eval_s=eval_s,
                                    total_s=time.perf_counter() - t0, test_accuracy=acc)
        for r in results.values():
            print(json.dumps({k: (round(v, 2) if isinstance(v, float) and k != "test_accuracy" else (round(v, 4) if isinstance(v, float) else v)) for k, v in r.items()}))
        print(json.dumps({"epochs": epochs, "total_speedup": round(results["debezium"]["total_s"] / results["tensorcdc"]["total_s"], 1),
                          "capture_speedup": round(results["debezium"]["capture_s"] / results["tensorcdc"]["capture_s"], 1)}))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
        pg.stop()
        broker.stop()


if __name__ == "__main__":
    main()
