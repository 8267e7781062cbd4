# %% [markdown]
# # The blog's notebook, with tensorcdc's datasets
#
# Debezium's "Streaming data to TensorFlow" notebook trains Keras on `tf.public.mnist_train`
# read with TensorFlow I/O, evaluates while `mnist_test.sql` is loaded, re-reads with a
# second group (`mnistcg2`) and predicts the rows of `mnist_manual`. Here the model and the
# Keras calls are the blog's; only the data-loading lines change.
#
# Run it as a script (`python examples/notebook.py`, in a venv with TensorFlow and
# `pip install ./python`) or open `examples/notebook.ipynb`. With `KAFKA` and `POSTGRES` unset
# it starts its own noida-db broker, private Postgres and `tensorcdc capture` (the blog's
# Debezium connector: unwrap, MnistToCsv, string converter), so it runs on one machine.

# %%
import os
import subprocess
import threading
from pathlib import Path

import numpy as np
import tensorflow as tf

import tensorcdc
from tensorcdc import testing

FASHION = os.environ.get("FASHION_MNIST", "/usr/share/datasets/fashion-mnist")
ROWS = int(os.environ.get("ROWS", "60000"))
ROOT = Path(__file__).resolve().parents[1] if "__file__" in globals() else Path.cwd()
BIN = os.environ.get("TENSORCDC_BIN", str(Path(os.environ.get("CARGO_TARGET_DIR", ROOT / "target")) / "release" / "tensorcdc"))

if os.environ.get("KAFKA"):
    SERVERS, URL = os.environ["KAFKA"], os.environ["POSTGRES"]
else:
    broker, pg = testing.Broker(), testing.LocalPostgres()
    SERVERS, URL = broker.servers, pg.url
    testing.load_mnist(URL, "mnist_train", FASHION, "train", limit=ROWS, chunk=5000)  # psql -f mnist_train.sql
    capture = subprocess.Popen([BIN, "capture", "--postgres", URL, "--kafka", SERVERS, "--table-include-list", "public.mnist_.*",
                                "--slot-name", "notebook", "--transforms", "unwrap,mnist-csv", "--converter", "string"],
                               env=dict(os.environ, TENSORCDC_STATE_DIR="/tmp/tensorcdc-notebook-%d" % os.getpid()), stderr=subprocess.DEVNULL)
print("Kafka at", SERVERS)

# %% [markdown]
# ## Training from `tf.public.mnist_train`
# The blog: `tfio.IODataset.from_kafka(...)`, `.shuffle(64)`, `.map(decode_kafka_item)`,
# `.batch(64)`. tensorcdc decodes the CSV itself (pixels / 255, the key as the label) and
# honours `offset=0`. The bounded read waits for the topic and reads to its end as it is
# when each epoch starts.

# %%
import time

deadline = time.monotonic() + 300
while True:  # the snapshot is being produced: wait until every row is in the topic
    probe = tensorcdc.from_kafka("tf.public.mnist_train", servers=SERVERS, batch_size=4096)
    for _ in probe:
        pass
    if probe.records >= ROWS or time.monotonic() > deadline:
        break
    time.sleep(1)

train_ds = tensorcdc.from_kafka("tf.public.mnist_train", partition=0, offset=0, servers=SERVERS, batch_size=64, shuffle=True).to_tf()

model = tf.keras.Sequential([
    tf.keras.Input(shape=(784,)),
    tf.keras.layers.Dense(128, activation="relu"),
    tf.keras.layers.Dense(10),
])
model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
model.fit(train_ds, epochs=5)

# %% [markdown]
# ## Evaluation while `mnist_test.sql` is loaded
# The blog: `tfio.experimental.streaming.KafkaGroupIODataset(topics=[...], group_id="mnistcg",
# ...)` then `.map(decode_kafka_test_item).batch(64)`. Same arguments here; the topic need not
# exist yet.

# %%
loader = threading.Thread(target=testing.load_mnist, args=(URL, "mnist_test", FASHION, "test"), kwargs=dict(chunk=500))
loader.start()  # psql -f mnist_test.sql, while the model evaluates
test_ds = tensorcdc.KafkaGroupDataset(
    topics=["tf.public.mnist_test"],
    group_id="mnistcg",
    servers=SERVERS,
    stream_timeout=10000,
    configuration=["session.timeout.ms=7000", "max.poll.interval.ms=8000", "auto.offset.reset=earliest"],
).to_tf()
res = model.evaluate(test_ds, return_dict=True)
loader.join()
print(res)

# %% [markdown]
# ## `mnistcg2`: a second group reads the test topic again

# %%
again = tensorcdc.KafkaGroupDataset(["tf.public.mnist_test"], "mnistcg2", SERVERS, stream_timeout=10000,
                                    configuration=["auto.offset.reset=earliest"]).to_tf()
print(model.evaluate(again, return_dict=True))

# %% [markdown]
# ## Predictions for `mnist_manual`
# The blog inserts a digit into `mnist_manual` and predicts it from the topic. Here: the
# first five test rows (as `head -5 mnist_test.sql | sed s/test/manual/`), read in a group,
# predicted, with the row's position in the topic.

# %%
testing.load_mnist(URL, "mnist_manual", FASHION, "test", limit=5)
manual = tensorcdc.KafkaGroupDataset(["tf.public.mnist_manual"], "predict", SERVERS, stream_timeout=5000)
for x, y in manual:
    pred = np.argmax(model.predict(x, verbose=0), axis=1)
    for p, t, pos in zip(pred, y, manual.positions):
        print(f"{pos}: predicted {p}, true {t}")

# %%
if not os.environ.get("KAFKA"):
    capture.kill()
    capture.wait()
    pg.stop()
    broker.stop()
