"""tensorcdc: live database rows into machine learning.

Datasets read a Kafka topic (a bounded read, or a consumer group that streams) or a
Postgres table in-process, and yield ``(x, y)`` numpy batches: ``x`` float32 ``[B, F]``,
``y`` int64 class indices or float32 values. ``.to_tf()`` gives a ``tf.data.Dataset`` for
Keras' ``fit``/``evaluate``/``predict`` (of known length for bounded reads, and for streams
given ``take=``, so Keras ends each epoch without running out of input); ``.to_torch()`` a
PyTorch ``IterableDataset``.

Without ``label=`` a dataset reads the blog's MNIST records (the CSV of MnistToCsv, or
Debezium JSON with ``label`` and ``pixels``) as 784 pixels / 255 and the digit. With
``label=`` it reads any table (Debezium JSON with or without schemas, CSV with a header line
or ``columns=``) and encodes it with a feature spec: numbers standardised, booleans 0/1,
text one-hot with a slot for values never seen, bytes / 255, numeric arrays element-wise.

The argument names follow TensorFlow I/O's ``from_kafka`` and ``KafkaGroupIODataset`` where
they overlap (``topic``, ``partition``, ``offset``, ``servers``, ``configuration``,
``topics``, ``group_id``, ``stream_timeout``).
"""
from __future__ import annotations

import json
import sys
from typing import Iterator, Optional, Sequence, Tuple

import numpy as np

from . import _tensorcdc as _native
from ._tensorcdc import Model, TensorcdcError

__all__ = [
    "Dataset",
    "BoundedDataset",
    "KafkaGroupDataset",
    "PostgresDataset",
    "from_kafka",
    "load_model",
    "capture",
    "run",
    "Model",
    "TensorcdcError",
]

PIXELS = 784


def _spec_json(spec) -> Optional[str]:
    """A feature spec given as JSON text, a dict, a loaded Model, a checkpoint folder or a
    fitted dataset."""
    if spec is None:
        return None
    if isinstance(spec, Model):
        return spec.spec
    if isinstance(spec, Dataset):
        return spec.spec
    if isinstance(spec, dict):
        return json.dumps(spec)
    if isinstance(spec, str) and spec.lstrip().startswith("{"):
        return spec
    return Model(str(spec)).spec


class Dataset:
    """Batches of ``(x, y)``. Subclasses define ``_batches(shard)``."""

    batch_size: int = 64
    _label: Optional[str] = None
    _spec: Optional[str] = None

    def __iter__(self) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        return self._batches(None)

    def _batches(self, shard: Optional[Tuple[int, int]]) -> Iterator[Tuple[np.ndarray, np.ndarray]]:
        raise NotImplementedError

    @property
    def mnist(self) -> bool:
        """True when this dataset reads the blog's MNIST records (no ``label=``, no ``spec=``)."""
        return self._label is None and self._spec is None

    @property
    def spec(self) -> Optional[str]:
        """The feature spec (JSON) that encodes this dataset's rows; None for MNIST."""
        return self._spec

    @property
    def width(self) -> int:
        """Features per example."""
        if self.mnist:
            return PIXELS
        return sum(c["width"] for c in json.loads(self.spec)["columns"])

    @property
    def classification(self) -> bool:
        return self.mnist or json.loads(self.spec)["task"] == "classification"

    @property
    def classes(self) -> Sequence[str]:
        """Class names in output order."""
        if self.mnist:
            return [str(d) for d in range(10)]
        return json.loads(self.spec).get("classes", [])

    def to_tf(self):
        """A ``tf.data.Dataset`` of ``(x, y)`` batches, prefetched; each iteration (each epoch
        of ``model.fit``) reads the source again. Its length (cardinality) is unknown here;
        the datasets that know theirs say so (bounded reads, streams with ``take=``)."""
        return self._tf(lambda: iter(self), None)

    def _tf(self, batches, count: Optional[int]):
        """``batches`` (a callable giving an iterator of ``(x, y)``) as a ``tf.data.Dataset``;
        ``count``, when known, is its number of batches: Keras then ends each epoch after it
        instead of reading until the input runs out (which it warns of, with TensorFlow's
        ``OUT_OF_RANGE: End of sequence`` log lines)."""
        import tensorflow as tf

        width, y_type = self.width, tf.int64 if self.classification else tf.float32
        signature = (tf.TensorSpec(shape=(None, width), dtype=tf.float32), tf.TensorSpec(shape=(None,), dtype=y_type))
        ds = tf.data.Dataset.from_generator(batches, output_signature=signature)
        if count is not None:
            ds = ds.apply(tf.data.experimental.assert_cardinality(count))
        # prefetch: the next batches are made (reads release the GIL) while Keras trains.
        return ds.prefetch(tf.data.AUTOTUNE)

    def _what(self) -> str:
        """The source, for messages: its topics or its table."""
        cfg = getattr(self, "_cfg", {})
        if cfg.get("topics"):
            return ", ".join(cfg["topics"])
        return f"table {cfg.get('table')}" if cfg.get("table") else "the source"

    def to_torch(self):
        """A PyTorch ``IterableDataset`` of ``(x, y)`` tensor batches: use it with
        ``DataLoader(ds, batch_size=None, num_workers=N)``. Workers never hand out a record
        twice: a bounded read gives worker i every N-th batch; a consumer group gives each
        worker its own consumer, and Kafka shares the partitions among them."""
        import torch

        outer = self

        class _Torch(torch.utils.data.IterableDataset):
            def __iter__(self):
                info = torch.utils.data.get_worker_info()
                shard = (info.id, info.num_workers) if info is not None else None
                for x, y in outer._batches(shard):
                    yield torch.from_numpy(x), torch.from_numpy(y)

        return _Torch()


class BoundedDataset(Dataset):
    """Everything in the source when an iteration starts (a topic to its high watermark, or a
    snapshot of a table), keyed as the table is: an update replaces its row, a delete removes
    it. Every iteration reads the source again (a Kafka partition: only what was added since
    the last iteration); the feature spec is fitted on the first read (or given with
    ``spec=``) and kept, so every epoch is encoded the same way."""

    def __init__(self, cfg: dict, batch_size: int, label, spec, options: dict, shuffle: bool, seed: Optional[int]):
        self._cfg = cfg
        self.batch_size = batch_size
        self._label = label
        self._spec = _spec_json(spec)
        self._options = dict(options, label=label)
        self._shuffle = shuffle
        self._rng = np.random.default_rng(seed)
        self.records = 0
        self.skipped = 0
        self.skipped_rows: list = []
        # A read made by to_tf() to count the batches, used by the first iteration (not for an
        # incremental Kafka partition, whose next read costs only the records added since).
        self._primed: Optional[Tuple[np.ndarray, np.ndarray]] = None

    @property
    def _incremental(self) -> bool:
        return self._cfg.get("servers") is not None and self._cfg.get("partition") is not None

    def read(self) -> Tuple[np.ndarray, np.ndarray]:
        """One bounded read: all examples as ``(x, y)`` arrays (MNIST pixels as uint8).

        A Kafka partition is read as a table kept between reads: each read fetches only the
        records added since the last one (up to the high watermark now) and applies them to
        the rows already read, so an epoch costs a full read only once."""
        if self._cfg.get("servers") is not None and self._cfg.get("partition") is not None:
            if getattr(self, "_table", None) is None:
                self._table = _native.KafkaTable(self._cfg, self._spec, None if (self.mnist or self._spec) else self._options)
            out = self._table.refresh()
            if self.mnist:
                x, y, self.records, self.skipped = out
                return x, y
        elif self.mnist:
            x, y, self.records, self.skipped = _native.read_examples(self._cfg)
            return x, y
        else:
            out = _native.read_rows(self._cfg, self._spec, None if self._spec else self._options)
        self._spec = out["spec"]
        self.records, self.skipped, self.skipped_rows = out["records"], out["bad"], out["skipped"]
        return out["x"], out["y"]

    @property
    def spec(self) -> Optional[str]:
        if self._spec is None and self._label is not None:
            self.read()
        return self._spec

    def _batches(self, shard):
        x, y = self.read()
        order = self._rng.permutation(len(y)) if self._shuffle else None
        for i, start in enumerate(range(0, len(y), self.batch_size)):
            if shard is not None and i % shard[1] != shard[0]:
                continue
            idx = slice(start, start + self.batch_size) if order is None else order[start : start + self.batch_size]
            yield _batch(x, y, idx)

    def to_tf(self):
        """A ``tf.data.Dataset`` of ``(x, y)`` batches, prefetched, whose length Keras knows:
        the source is read now, and its rows make ``ceil(rows / batch_size)`` batches (the
        dataset's cardinality), so ``fit`` and ``evaluate`` end each epoch there without
        running out of input. Each iteration (each epoch) reads the source again; when rows
        were added or deleted since ``to_tf()``, that epoch spreads the rows it read over the
        same number of batches (slightly larger or smaller ones, said on stderr): every row is
        used and the length stays true. Call ``to_tf()`` again for batches of ``batch_size``.
        A source with no rows yet gives a dataset of unknown length."""
        x, y = self.read()
        if len(y) == 0:
            return super().to_tf()
        count = -(-len(y) // self.batch_size)
        self._primed = None if self._incremental else (x, y)
        return self._tf(lambda: self._counted_batches(count), count)

    def _counted_batches(self, count: int):
        """Exactly ``count`` batches of the rows read now."""
        if self._primed is not None:
            (x, y), self._primed = self._primed, None
        else:
            x, y = self.read()
        n = len(y)
        if n == 0:
            raise TensorcdcError(f"{self._what()}: no rows left to make the {count} batches of this tf.data dataset (rows were deleted since to_tf())")
        order = self._rng.permutation(n) if self._shuffle else np.arange(n)
        if -(-n // self.batch_size) == count:
            for start in range(0, n, self.batch_size):
                yield _batch(x, y, order[start : start + self.batch_size])
            return
        # The source changed since to_tf(): the same number of batches, of every row read.
        if n < count:
            order = np.resize(order, count)
        print(f"{self._what()}: {n} rows now, {count} batches of {self.batch_size} when to_tf() was called: "
              f"this epoch spreads the {n} rows over those {count} batches (about {-(-n // count)} a batch); "
              f"call to_tf() again for batches of {self.batch_size}", file=sys.stderr)
        for idx in np.array_split(order, count):
            yield _batch(x, y, idx)


def _batch(x: np.ndarray, y: np.ndarray, idx) -> Tuple[np.ndarray, np.ndarray]:
    """Rows ``idx`` of ``(x, y)``, MNIST pixels (uint8) as float32 / 255."""
    xb = x[idx]
    if xb.dtype == np.uint8:
        xb = xb.astype(np.float32) / np.float32(255.0)
    return xb, y[idx]


class _StreamDataset(Dataset):
    """Batches as rows arrive, from a consumer group or an in-process capture. ``keys`` and
    ``positions`` are those of the last batch handed out; ``examples`` counts the examples
    the current (or last) iteration handed out."""

    def __init__(self, cfg: dict, batch_size: int, stream_timeout: int, label, spec, take: Optional[int] = None):
        self._cfg = cfg
        self.batch_size = batch_size
        self._timeout = stream_timeout
        self._label = label
        self._spec = _spec_json(spec)
        if label is not None and self._spec is None:
            raise ValueError("a stream of any table needs spec= (a checkpoint folder, a Model, or a fitted bounded dataset), to encode rows the way the model was trained")
        if take is not None and take < 1:
            raise ValueError(f"take={take}: give the number of examples to read (1 or more), or None for the whole stream")
        self._take = take
        self.keys: list = []
        self.positions: list = []
        self.examples = 0

    def to_tf(self):
        """A ``tf.data.Dataset`` of ``(x, y)`` batches, prefetched; each iteration opens the
        stream again (a consumer group resumes after its committed offsets). With ``take=N``
        its length is known, ``ceil(N / batch_size)`` batches, so Keras' ``evaluate`` and
        ``fit`` end there without running out of input; without it Keras reads until the
        stream ends (``stream_timeout``) and warns that the input ran out."""
        count = None if self._take is None else -(-self._take // self.batch_size)
        return self._tf(lambda: self._batches(None), count)

    def _batches(self, shard):
        # Each DataLoader worker gets a consumer of its own: Kafka splits the partitions.
        stream = _native.Stream(self._cfg, "mnist" if self.mnist else "rows", self._timeout, self._spec)
        self.examples = 0
        try:
            if self._take is None:
                while True:
                    b = stream.next(self.batch_size)
                    if b is None:
                        return
                    yield self._hand_out(*b)
            # take=N: full batches (but the last), so that there are ceil(N / batch_size).
            while self.examples < self._take:
                want = min(self.batch_size, self._take - self.examples)
                parts, have, ended = [], 0, False
                while have < want:
                    b = stream.next(want - have)
                    if b is None:
                        ended = True
                        break
                    parts.append(b)
                    have += len(b[1])
                if parts:
                    yield self._hand_out(np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts]),
                                         [k for p in parts for k in p[2]], [q for p in parts for q in p[3]])
                if ended:
                    raise TensorcdcError(
                        f"{self._what()}: the stream ended after {self.examples} of the {self._take} examples asked for (take={self._take}): "
                        f"{self._timeout} ms without a record (stream_timeout); "
                        + ("is the capture running, and do the topics hold them?" if self._cfg.get("topics") else "does the table get that many rows?"))
        finally:
            stream.close()

    def _hand_out(self, x, y, keys, positions):
        self.keys, self.positions = keys, positions
        self.examples += len(y)
        if x.dtype == np.uint8:
            x = x.astype(np.float32) / np.float32(255.0)
        return x, y


def _kafka_cfg(servers, configuration, on_error, fmt, columns, **kw) -> dict:
    return dict(kw, servers=servers, configuration=list(configuration or []), on_error=on_error, format=fmt, columns=columns)


def from_kafka(
    topic: str,
    partition: Optional[int] = 0,
    offset: int = 0,
    servers: str = "localhost:9092",
    configuration: Optional[Sequence[str]] = None,
    *,
    label: Optional[str] = None,
    features: Optional[Sequence[str]] = None,
    spec=None,
    batch_size: int = 64,
    on_error: str = "skip",
    format: str = "auto",
    columns: Optional[Sequence[str]] = None,
    scaling: str = "standard",
    nulls: str = "skip",
    task: Optional[str] = None,
    shuffle: bool = False,
    seed: Optional[int] = None,
    strict: bool = False,
) -> BoundedDataset:
    """A bounded read of ``topic`` from ``offset`` up to the high watermark seen when each
    iteration starts (TF-IO's ``from_kafka``; unlike it, ``offset`` is honoured).
    ``partition=None`` reads every partition."""
    cfg = _kafka_cfg(servers, configuration, on_error, format, columns, topics=[topic], partition=partition, offset=offset, strict=strict)
    opts = dict(features=list(features) if features else None, scaling=scaling, nulls=nulls, task=task)
    return BoundedDataset(cfg, batch_size, label, spec, opts, shuffle, seed)


class KafkaGroupDataset(_StreamDataset):
    """Streams ``topics`` in the consumer group ``group_id`` (TF-IO's
    ``KafkaGroupIODataset``): waits for topics that do not exist yet, ends after
    ``stream_timeout`` ms without a record (-1: never), and commits the offsets of the
    batches it handed out, so a restart resumes after them. A second group reads the topics
    again from the start (``auto.offset.reset=earliest``, the default).

    ``take=N``: the stream ends after N examples, in full batches (the last may be
    smaller), and fails if it ends sooner (``stream_timeout`` without a record); ``to_tf()``
    then has a known length, so Keras' ``evaluate`` does not warn that its input ran out.
    While the group waits for Kafka to assign it partitions it says so on stderr."""

    def __init__(
        self,
        topics: Sequence[str],
        group_id: str,
        servers: str = "localhost:9092",
        stream_timeout: int = -1,
        configuration: Optional[Sequence[str]] = None,
        *,
        label: Optional[str] = None,
        spec=None,
        batch_size: int = 64,
        on_error: str = "skip",
        format: str = "auto",
        columns: Optional[Sequence[str]] = None,
        take: Optional[int] = None,
    ):
        cfg = _kafka_cfg(servers, configuration, on_error, format, columns, topics=list(topics), group_id=group_id, stream_timeout=stream_timeout)
        super().__init__(cfg, batch_size, stream_timeout, label, spec, take)


class PostgresDataset(Dataset):
    """A table read in-process (no Kafka): a snapshot (bounded, like ``from_kafka``), or with
    ``stream=True`` the snapshot and then the rows as they commit, ending after
    ``stream_timeout`` ms without a row (-1: never). The capture uses a temporary
    replication slot, which the server drops when the read ends, even after a crash.
    ``take=N`` (a stream): end after N examples, as ``KafkaGroupDataset``'s."""

    def __new__(cls, url: str, table: str, *, stream: bool = False, stream_timeout: int = 10000, label=None, features=None, spec=None, batch_size: int = 64,
                on_error: str = "skip", scaling: str = "standard", nulls: str = "skip", task=None, shuffle: bool = False, seed=None, take=None):
        cfg = dict(url=url, table=table, on_error=on_error, stream_timeout=stream_timeout)
        if stream:
            return _StreamDataset(cfg, batch_size, stream_timeout, label, spec, take)
        if take is not None:
            raise ValueError("take= is for streams (stream=True); a bounded read gives the whole table")
        opts = dict(features=list(features) if features else None, scaling=scaling, nulls=nulls, task=task)
        return BoundedDataset(cfg, batch_size, label, spec, opts, shuffle, seed)


def load_model(path: str) -> Model:
    """A checkpoint written by ``tensorcdc train`` (any table, or the blog's MNIST network):
    ``predict(rows)`` takes dicts of column values and returns the class name and
    probability (or the value) per row. A bytes column (the blog's ``pixels``) takes
    ``bytes``, a list of ints 0-255 or a numpy array of them."""
    return Model(str(path))


def capture(url: str, table: str, stream_timeout: int = -1, batch_size: int = 256) -> Iterator[dict]:
    """The change events of ``table``, in-process: the snapshot's rows, then each insert,
    update and delete as it commits, as dicts ``{"op": "upsert"|"delete", "key", "row",
    "position", "commit_ts_ms"}``. Ends after ``stream_timeout`` ms without a change (-1:
    never), or when the caller stops iterating."""
    stream = _native.Stream(dict(url=url, table=table, stream_timeout=stream_timeout), "changes", stream_timeout, None)
    try:
        while True:
            events = stream.next(batch_size)
            if events is None:
                return
            yield from events
    finally:
        stream.close()


def run(source: str, table: str, label: str, out: str = "models", **options) -> None:
    """Continuous learning on ``table``, in this process: what ``tensorcdc run`` does, with the
    same options and defaults (each keyword is the command's flag: ``retrain_every=50`` is
    ``--retrain-every=50``; a list is comma-separated, ``layers=[16, 16]``; ``True`` is a bare
    flag; ``None`` leaves the default).

    Labelled rows (``label`` not NULL) train versions published into ``out`` (``v000001/``,
    ``versions.jsonl``, ``serving``), each counting every labelled change exactly once across
    crashes; unlabelled rows are predicted into ``<table>_predictions``. Returns when the
    stream ends (``stream_timeout`` ms without a change; -1, the default, never) or on
    SIGINT/SIGTERM; raises ``TensorcdcError`` with the command's message otherwise."""
    flags = [f"--source={source}", f"--table={table}", f"--label={label}", f"--out={out}"]
    for name, value in options.items():
        flag = "--" + name.replace("_", "-")
        if value is None or value is False:
            continue
        if value is True:
            flags.append(flag)
        elif isinstance(value, (list, tuple)):
            flags.append(f"{flag}={','.join(str(v) for v in value)}")
        else:
            flags.append(f"{flag}={value}")
    _native.run(flags)
