"""Fixtures: a private PostgreSQL cluster, a noida-db broker (a real Kafka-protocol broker on
loopback), Fashion-MNIST rows loaded into the blog's tables, and `tensorcdc capture` running
the blog's connector chain (unwrap, MnistToCsv, string converter) into the broker."""
import os
import subprocess
import time
from pathlib import Path

import pytest

import tensorcdc
from tensorcdc import testing

ROOT = Path(__file__).resolve().parents[2]
FASHION = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
TRAIN_ROWS = 3000


def idx(name):
    """A Fashion-MNIST IDX file as numpy: images (n, 784) uint8, labels (n,) int64."""
    import gzip
    import numpy as np
    with gzip.open(f"{FASHION}/{name}", "rb") as f:
        data = f.read()
    if "images" in name:
        return np.frombuffer(data, np.uint8, offset=16).reshape(-1, 784)
    return np.frombuffer(data, np.uint8, offset=8).astype(np.int64)


def tensorcdc_bin() -> str:
    if os.environ.get("TENSORCDC_BIN"):
        return os.environ["TENSORCDC_BIN"]
    target = Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target"))
    return str(target / "release" / "tensorcdc")


def wait_for(what, check, timeout=60.0):
    """Polls `check` until it returns a true value; fails naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        v = check()
        if v:
            return v
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


def count(servers, topic, offset=0):
    """Records in `topic` from `offset` (a bounded read; bad records count too)."""
    ds = tensorcdc.from_kafka(topic, offset=offset, servers=servers, batch_size=1000)
    for _ in ds:
        pass
    return ds.records


@pytest.fixture(scope="session")
def pg():
    p = testing.LocalPostgres()
    yield p
    p.stop()


@pytest.fixture(scope="session")
def broker():
    b = testing.Broker()
    yield b
    b.stop()


@pytest.fixture(scope="session")
def blog(pg, broker, tmp_path_factory):
    """mnist_train loaded (TRAIN_ROWS rows) and `tensorcdc capture` producing the blog's CSV
    topics tf.public.mnist_* to the broker; it keeps running for the tests that insert."""
    testing.load_mnist(pg.url, "mnist_train", FASHION, "train", limit=TRAIN_ROWS)
    state = tmp_path_factory.mktemp("state")
    cap = subprocess.Popen(
        [tensorcdc_bin(), "capture", "--postgres", pg.url, "--kafka", broker.servers, "--table-include-list", "public.mnist_.*",
         "--slot-name", "pytest", "--transforms", "unwrap,mnist-csv", "--converter", "string"],
        env=dict(os.environ, TENSORCDC_STATE_DIR=str(state)), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_for("the snapshot of mnist_train in tf.public.mnist_train", lambda: count(broker.servers, "tf.public.mnist_train") >= TRAIN_ROWS, 120)
        yield dict(pg=pg, servers=broker.servers, capture=cap)
    finally:
        cap.kill()
        cap.wait()
