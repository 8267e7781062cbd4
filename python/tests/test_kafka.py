"""Datasets over a real Kafka-protocol broker (noida-db), fed by `tensorcdc capture` from a
private Postgres, as in the blog."""
import threading

import numpy as np
import pytest

import tensorcdc
from tensorcdc import testing
from conftest import FASHION, TRAIN_ROWS, count, idx, wait_for




def test_bounded_read_is_the_table_and_honours_offset(blog):
    ds = tensorcdc.from_kafka("tf.public.mnist_train", partition=0, offset=0, servers=blog["servers"])
    xs, ys = zip(*ds)
    x, y = np.concatenate(xs), np.concatenate(ys)
    assert all(len(b) <= 64 for b in ys)
    assert x.dtype == np.float32 and y.dtype == np.int64 and x.shape == (TRAIN_ROWS, 784)
    # The rows in insertion order, pixels / 255, exactly as the IDX files have them.
    want_x = idx("train-images-idx3-ubyte.gz")[:TRAIN_ROWS].astype(np.float32) / np.float32(255)
    np.testing.assert_array_equal(x, want_x)
    np.testing.assert_array_equal(y, idx("train-labels-idx1-ubyte.gz")[:TRAIN_ROWS])
    # TF-IO ignores the blog's offset=0 (it reads from the committed offset); we honour it.
    assert count(blog["servers"], "tf.public.mnist_train", offset=1000) == TRAIN_ROWS - 1000


def test_keras_fit_over_a_bounded_read_matches_numpy(blog):
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    ds = tensorcdc.from_kafka("tf.public.mnist_train", servers=blog["servers"])
    x = idx("train-images-idx3-ubyte.gz")[:TRAIN_ROWS].astype(np.float32) / np.float32(255)
    y = idx("train-labels-idx1-ubyte.gz")[:TRAIN_ROWS]
    test_x = idx("t10k-images-idx3-ubyte.gz")[:1000].astype(np.float32) / np.float32(255)
    test_y = idx("t10k-labels-idx1-ubyte.gz")[:1000]

    def model():
        keras.utils.set_random_seed(7)
        m = keras.Sequential([keras.Input(shape=(784,)), keras.layers.Dense(128, activation="relu"), keras.layers.Dense(10, activation="softmax")])
        m.compile(optimizer="adam", loss="sparse_categorical_crossentropy", metrics=["accuracy"])
        return m

    ours = model()
    hist = ours.fit(ds.to_tf(), epochs=3, verbose=0, shuffle=False)  # the dataset shuffles, if asked; Keras warns of its own shuffle
    assert len(hist.history["loss"]) == 3 and hist.history["loss"][2] < hist.history["loss"][0]
    ref = model()
    ref.fit(x, y, epochs=3, batch_size=64, shuffle=False, verbose=0)
    acc = ours.evaluate(test_x, test_y, verbose=0, return_dict=True)["accuracy"]
    ref_acc = ref.evaluate(test_x, test_y, verbose=0, return_dict=True)["accuracy"]
    assert ref_acc > 0.7
    assert abs(acc - ref_acc) < 0.02, (acc, ref_acc)
    # evaluate and predict take the dataset too.
    res = ours.evaluate(ds.to_tf(), verbose=0, return_dict=True)
    assert res["accuracy"] > 0.7
    assert ours.predict(ds.to_tf(), verbose=0).shape == (TRAIN_ROWS, 10)


def offsets(ds):
    """Iterates a group dataset; returns the (topic, partition, offset) of every record."""
    seen = []
    for x, y in ds:
        assert len(ds.positions) == len(y)
        seen.extend(ds.positions)
    return seen


def test_group_reads_rows_as_they_are_inserted_and_a_second_group_rereads(blog):
    pg, servers = blog["pg"], blog["servers"]
    # The topic does not exist yet: the group waits for it (as the blog's evaluation cell).
    ds = tensorcdc.KafkaGroupDataset(topics=["tf.public.mnist_test"], group_id="mnistcg", servers=servers, stream_timeout=5000,
                                     configuration=["session.timeout.ms=7000", "max.poll.interval.ms=8000", "auto.offset.reset=earliest"])
    loader = threading.Thread(target=testing.load_mnist, args=(pg.url, "mnist_test", FASHION, "test"), kwargs=dict(limit=500, chunk=50))
    loader.start()
    try:
        first = offsets(ds)
    finally:
        loader.join()
    assert len(first) == 500 and len(set(first)) == 500
    # mnistcg2: a second group reads everything again.
    again = offsets(tensorcdc.KafkaGroupDataset(["tf.public.mnist_test"], "mnistcg2", servers, stream_timeout=3000))
    assert sorted(again) == sorted(first)


def test_group_offsets_resume_exactly_after_a_restart(blog):
    servers = blog["servers"]
    wait_for("500 rows in tf.public.mnist_test", lambda: count(servers, "tf.public.mnist_test") >= 500)
    ds = tensorcdc.KafkaGroupDataset(["tf.public.mnist_test"], "resume", servers, stream_timeout=3000, batch_size=50)
    seen = []
    it = iter(ds)
    for _ in range(3):
        x, y = next(it)
        seen.extend(ds.positions)
    it.close()  # the consumer stops: offsets of the batches handed out are committed
    rest = offsets(tensorcdc.KafkaGroupDataset(["tf.public.mnist_test"], "resume", servers, stream_timeout=3000, batch_size=50))
    assert len(seen) == 150
    assert not set(seen) & set(rest), "a record was handed out twice"
    assert len(seen) + len(rest) == 500


def test_bad_records_are_skipped_or_fail_naming_the_offset(blog):
    pg, servers = blog["pg"], blog["servers"]
    testing.load_mnist(pg.url, "mnist_bad", FASHION, "test", limit=5)
    # A row whose pixels are not 28x28: MnistToCsv writes 3 values.
    testing.execute(pg.url, "INSERT INTO mnist_bad(label, pixels) VALUES (1, '\\x010203')")
    wait_for("6 records in tf.public.mnist_bad", lambda: count(servers, "tf.public.mnist_bad") >= 6)
    ds = tensorcdc.from_kafka("tf.public.mnist_bad", servers=servers)
    assert sum(len(y) for _, y in ds) == 5 and ds.skipped == 1
    with pytest.raises(tensorcdc.TensorcdcError, match=r"tf\.public\.mnist_bad/0@5"):
        list(tensorcdc.from_kafka("tf.public.mnist_bad", servers=servers, on_error="fail"))


def test_torch_workers_never_hand_out_a_record_twice(blog):
    ds = tensorcdc.from_kafka("tf.public.mnist_train", servers=blog["servers"], batch_size=100)
    whole = np.concatenate([y for _, y in ds])
    shards = [[y for _, y in ds._batches((i, 2))] for i in range(2)]
    assert [len(s) for s in shards] == [15, 15]
    # Worker 0 has batches 0, 2, 4, ...; worker 1 batches 1, 3, 5, ...: together every record once.
    merged = np.concatenate([b for pair in zip(*shards) for b in pair])
    np.testing.assert_array_equal(merged, whole)
    torch = pytest.importorskip("torch")
    loader = torch.utils.data.DataLoader(ds.to_torch(), batch_size=None, num_workers=2)
    assert sum(len(y) for _, y in loader) == TRAIN_ROWS


def test_each_epoch_reads_the_rows_added_since_the_last(blog):
    pg, servers = blog["pg"], blog["servers"]
    testing.load_mnist(pg.url, "mnist_grow", FASHION, "test", limit=100)
    wait_for("100 records in tf.public.mnist_grow", lambda: count(servers, "tf.public.mnist_grow") >= 100)
    ds = tensorcdc.from_kafka("tf.public.mnist_grow", servers=servers, batch_size=32)
    first = np.concatenate([y for _, y in ds])
    assert len(first) == 100
    testing.load_mnist(pg.url, "mnist_grow", FASHION, "test", limit=50, offset=100)
    wait_for("150 records in tf.public.mnist_grow", lambda: count(servers, "tf.public.mnist_grow") >= 150)
    second = np.concatenate([y for _, y in ds])
    np.testing.assert_array_equal(second, idx("t10k-labels-idx1-ubyte.gz")[:150])
    assert ds.records == 150, "the second epoch read only the 50 new records"
