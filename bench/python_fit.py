"""The blog's Keras fit fed three ways, same broker, same topic, same run (issue 12):

  tensorcdc  tensorcdc.from_kafka(topic, ...).to_tf()          (this repository's package)
  tfio       tfio.IODataset.from_kafka + decode_csv + batch    (the blog's cell; TF-IO 0.37.1)
  numpy      the same pixels as numpy arrays in memory         (the ceiling)

Usage: bench/.venv/bin/python bench/python_fit.py noida|mock [EPOCHS] [ROWS]

Starts a broker (noida-db, or librdkafka's mock cluster in `tensorcdc-mock-kafka`) and a
private Postgres (tensorcdc.testing), loads ROWS Fashion-MNIST training rows into mnist_train,
runs `tensorcdc capture` with the blog's chain (unwrap, MnistToCsv, string converter) until
tf.public.mnist_train holds them all, then runs each fit in a fresh Python process: the blog's
model (Dense 128 relu, Dense 10), Adam, batch 64, EPOCHS (default 5) epochs, evaluated on the
10,000 test images. Each way reads the topic again every epoch (TF-IO the whole topic;
tensorcdc the records added since its last read, kept as a keyed table). Prints one JSON line
per way and a summary line.

TF-IO 0.37.1 cannot read from noida-db 0.2.3 (`from_kafka` fails resolving the topic's tail:
"failed to consume tail message: Local: Timed out"; `KafkaGroupIODataset` reads 0 records),
so with `noida` only numpy and tensorcdc run (ROWS default 60,000). The mock cluster keeps
about 5 MiB per partition, so with `mock` ROWS defaults to 2,000 and all three ways run.
"""
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
FASHION = "/usr/share/datasets/fashion-mnist"
TOPIC = "tf.public.mnist_train"


def idx(name):
    with gzip.open(f"{FASHION}/{name}", "rb") as f:
        data = f.read()
    if "images" in name:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784)
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)


def fit(way, servers, epochs, rows):
    import tensorflow as tf
    import keras

    keras.utils.set_random_seed(42)
    model = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10)])
    model.compile(optimizer=keras.optimizers.Adam(0.001), loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    read_s = None
    if way == "tensorcdc":
        import tensorcdc

        t = time.perf_counter()
        # One full read alone, on a dataset of its own, to show what reading costs; the fit's
        # dataset starts cold (its first epoch reads the whole topic, later ones what was added).
        tensorcdc.from_kafka(TOPIC, partition=0, offset=0, servers=servers).read()
        read_s = time.perf_counter() - t
        data = tensorcdc.from_kafka(TOPIC, partition=0, offset=0, servers=servers, batch_size=64, shuffle=True, seed=42).to_tf()
    elif way == "tfio":
        import tensorflow_io as tfio

        def decode_kafka_item(item):
            message = tf.io.decode_csv(item.message, [[0.0] for _ in range(784)])
            key = tf.strings.to_number(item.key, out_type=tf.int64)
            return (tf.stack(message) / 255.0, key)

        # The blog's cell: from_kafka, shuffle(64), map(decode), batch(64).
        data = tfio.IODataset.from_kafka(TOPIC, partition=0, offset=0, servers=servers, configuration=["session.timeout.ms=7000", "max.poll.interval.ms=8000"])
        data = data.shuffle(buffer_size=64).map(decode_kafka_item).batch(64)
    else:
        data = None

    times = []

    class Timer(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            self.t = time.perf_counter()

        def on_epoch_end(self, epoch, logs=None):
            times.append(time.perf_counter() - self.t)

    t = time.perf_counter()
    if data is None:
        x = idx("train-images-idx3-ubyte.gz")[:rows].astype(np.float32) / np.float32(255)
        y = idx("train-labels-idx1-ubyte.gz")[:rows]
        hist = model.fit(x, y, batch_size=64, epochs=epochs, callbacks=[Timer()], verbose=0)
    else:
        hist = model.fit(data, epochs=epochs, callbacks=[Timer()], verbose=0)
    total = time.perf_counter() - t
    test_x = idx("t10k-images-idx3-ubyte.gz").astype(np.float32) / np.float32(255)
    res = model.evaluate(test_x, idx("t10k-labels-idx1-ubyte.gz"), verbose=0, return_dict=True)
    print(json.dumps({"way": way, "fit_s": round(total, 2), "epoch_s": [round(e, 2) for e in times], "train_accuracy": round(hist.history["accuracy"][-1], 4),
                      "test_accuracy": round(res["accuracy"], 4), **({"one_read_s": round(read_s, 2)} if read_s else {}), "tensorflow": tf.__version__, "keras": keras.__version__}))


def main():
    if len(sys.argv) > 1 and sys.argv[1] == "fit":
        return fit(sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]))
    kind = sys.argv[1] if len(sys.argv) > 1 else "noida"
    epochs = int(sys.argv[2]) if len(sys.argv) > 2 else 5
    rows = int(sys.argv[3]) if len(sys.argv) > 3 else (60000 if kind == "noida" else 2000)
    import tensorcdc
    from tensorcdc import testing

    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    if kind == "noida":
        broker = testing.Broker()
        servers, ways = broker.servers, ["numpy", "tensorcdc"]
    else:
        broker = subprocess.Popen([str(target / "release" / "tensorcdc-mock-kafka"), f"{TOPIC}:1"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        servers, ways = broker.stdout.readline().strip(), ["numpy", "tensorcdc", "tfio"]
    pg = testing.LocalPostgres()
    cap = None
    try:
        testing.load_mnist(pg.url, "mnist_train", FASHION, "train", limit=rows, chunk=5000)
        cap = subprocess.Popen([str(target / "release" / "tensorcdc"), "capture", "--postgres", pg.url, "--kafka", servers,
                                "--table-include-list", "public.mnist_train", "--slot-name", "bench", "--transforms", "unwrap,mnist-csv", "--converter", "string"],
                               env=dict(os.environ, TENSORCDC_STATE_DIR=str(Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-python-{os.getpid()}")),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 600
        while True:
            ds = tensorcdc.from_kafka(TOPIC, servers=servers, batch_size=4096)
            for _ in ds:
                pass
            if ds.records >= rows:
                break
            if time.monotonic() > deadline:
                sys.exit(f"only {ds.records} of {rows} records in {TOPIC} after 600 s")
            time.sleep(1)
        cap.kill()
        results = {}
        for way in ways:
            out = subprocess.run([sys.executable, __file__, "fit", way, servers, str(epochs), str(rows)], capture_output=True, text=True)
            if out.returncode != 0:
                sys.exit(f"{way} failed:\n{out.stderr[-3000:]}")
            results[way] = json.loads(out.stdout.strip().splitlines()[-1])
            print(json.dumps(results[way]), flush=True)
        summary = {"broker": kind, "rows": rows, "epochs": epochs, "tensorcdc_fit_vs_numpy": round(results["tensorcdc"]["fit_s"] / results["numpy"]["fit_s"], 2)}
        if "tfio" in results:
            summary["tfio_fit_vs_tensorcdc"] = round(results["tfio"]["fit_s"] / results["tensorcdc"]["fit_s"], 1)
        print(json.dumps(summary))
    finally:
        if cap is not None:
            cap.kill()
            cap.wait()
        pg.stop()
        if kind == "noida":
            broker.stop()
        else:
            broker.stdin.close()
            broker.wait()


if __name__ == "__main__":
    main()
