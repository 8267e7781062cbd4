"""tf.data datasets that know their length (cardinality): Keras' fit and evaluate then end each
epoch where the data does, without "Your input ran out of data" warnings or TensorFlow's
"OUT_OF_RANGE: End of sequence" log lines."""
import warnings

import numpy as np
import pytest

import tensorcdc
from tensorcdc import testing
from conftest import FASHION, TRAIN_ROWS, count, wait_for

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")


def model():
    keras.utils.set_random_seed(3)
    m = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)])
    m.compile(optimizer="adam", loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
    return m


def quiet(capfd, run):
    """Runs `run()`; fails on a Python warning or an end-of-input line on stdout/stderr (the
    file descriptors: TensorFlow logs from C++)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = run()
    said = capfd.readouterr()
    text = said.out + said.err
    assert not [str(w.message) for w in caught], [str(w.message) for w in caught]
    assert "ran out of data" not in text and "OUT_OF_RANGE" not in text, text
    return out, said.err


def test_bounded_to_tf_has_its_length_and_keras_does_not_warn(blog, capfd):
    ds = tensorcdc.from_kafka("tf.public.mnist_train", servers=blog["servers"], batch_size=64, shuffle=True, seed=1)
    t = ds.to_tf()
    assert int(t.cardinality()) == -(-TRAIN_ROWS // 64)
    m = model()
    capfd.readouterr()
    hist, _ = quiet(capfd, lambda: m.fit(t, epochs=2, verbose=0, shuffle=False))
    assert len(hist.history["loss"]) == 2
    res, _ = quiet(capfd, lambda: m.evaluate(t, verbose=0, return_dict=True))
    assert res["accuracy"] > 0.5
    pred, _ = quiet(capfd, lambda: m.predict(t, verbose=0))
    assert pred.shape == (TRAIN_ROWS, 10)


def test_rows_added_after_to_tf_are_spread_over_the_same_batches(blog, capfd):
    pg, servers = blog["pg"], blog["servers"]
    testing.load_mnist(pg.url, "mnist_len", FASHION, "test", limit=100)
    wait_for("100 records in tf.public.mnist_len", lambda: count(servers, "tf.public.mnist_len") >= 100)
    ds = tensorcdc.from_kafka("tf.public.mnist_len", servers=servers, batch_size=32)
    t = ds.to_tf()
    assert int(t.cardinality()) == 4
    assert [len(y) for _, y in t] == [32, 32, 32, 4]
    testing.load_mnist(pg.url, "mnist_len", FASHION, "test", limit=50, offset=100)
    wait_for("150 records in tf.public.mnist_len", lambda: count(servers, "tf.public.mnist_len") >= 150)
    capfd.readouterr()
    sizes = [len(y) for _, y in t]
    # Every row, in the 4 batches the dataset says it has; said on stderr.
    assert sizes == [38, 38, 37, 37]
    assert "150 rows now, 4 batches of 32 when to_tf() was called" in capfd.readouterr().err


@pytest.fixture(scope="module")
def take_topic(blog):
    """tf.public.mnist_take: 400 test rows."""
    testing.load_mnist(blog["pg"].url, "mnist_take", FASHION, "test", limit=400)
    wait_for("400 records in tf.public.mnist_take", lambda: count(blog["servers"], "tf.public.mnist_take") >= 400)
    return "tf.public.mnist_take"


def test_group_take_gives_full_batches_and_a_known_length(blog, take_topic, capfd):
    servers = blog["servers"]
    ds = tensorcdc.KafkaGroupDataset([take_topic], "take-len", servers, stream_timeout=5000, batch_size=64, take=300)
    t = ds.to_tf()
    assert int(t.cardinality()) == 5
    m = model()
    capfd.readouterr()
    res, _ = quiet(capfd, lambda: m.evaluate(t, verbose=0, return_dict=True))
    assert ds.examples == 300 and 0 <= res["accuracy"] <= 1
    # In Python too: full batches but the last, and keys/positions of each batch.
    again = tensorcdc.KafkaGroupDataset([take_topic], "take-py", servers, stream_timeout=5000, batch_size=64, take=150)
    sizes = []
    for x, y in again:
        assert len(again.positions) == len(y)
        sizes.append(len(y))
    assert sizes == [64, 64, 22] and again.examples == 150


def test_group_take_more_than_comes_fails_saying_so(blog, take_topic):
    servers = blog["servers"]
    n = count(servers, take_topic)
    ds = tensorcdc.KafkaGroupDataset([take_topic], "take-short", servers, stream_timeout=2000, take=n + 10)
    got = 0
    with pytest.raises(tensorcdc.TensorcdcError, match=rf"ended after {n} of the {n + 10} examples asked for"):
        for _, y in ds:
            got += len(y)
    assert got == n
