# %% [markdown]
# # The blog's notebook, with tensorcdc's datasets
#
# Debezium's "Streaming data to TensorFlow" notebook trains Keras on `tf.public.mnist_train`
# read with TensorFlow I/O, evaluates while `mnist_test.sql` is loaded, re-reads with a
# second group (`mnistcg2`) and predicts the rows of `mnist_manual`, drawing them with their
# predicted class. Here the model and the Keras calls are the blog's; only the data-loading
# lines change. The data is Fashion-MNIST: ten classes of clothing, 28x28 grey pixels.
#
# Run it as a script (`python examples/notebook.py`, in a venv with TensorFlow, matplotlib and
# `pip install ./python`) or open `examples/notebook.ipynb` in Jupyter, from any directory.
#
# **Settings** (environment variables, read when the first cell runs):
#
# | variable | default | what |
# |---|---|---|
# | `DATA` | `/usr/share/datasets/fashion-mnist` | the Fashion-MNIST IDX files (`train-images-idx3-ubyte.gz`, ...) |
# | `ROWS` | `60000` | training rows loaded into `mnist_train` (when the notebook creates it) |
# | `TEST_ROWS` | `10000` | test rows loaded into `mnist_test` (likewise) |
# | `OUT` | a new temporary folder | where the figures (PNG) and `figures.json` (their titles) are written |
# | `KAFKA`, `POSTGRES` | unset | your broker (`host:port`) and database (a libpq URL); unset, the notebook starts its own |
# | `TENSORCDC_BIN` | found as below | the `tensorcdc` binary, for the capture the notebook starts when `KAFKA` is unset |
#
# With `KAFKA` and `POSTGRES` unset the notebook starts its own noida-db broker, a private
# Postgres and `tensorcdc capture` (the blog's Debezium connector: unwrap, MnistToCsv, string
# converter), so it runs on one machine. The binary is `$TENSORCDC_BIN`, else
# `$CARGO_TARGET_DIR/release/tensorcdc`, else `target/release/tensorcdc` of the repository the
# working directory is in (`cargo build --release -p tensorcdc`), else
# `/var/tmp/tensorcdc-target/release/tensorcdc` (where `scripts/demo.sh` builds), else
# `tensorcdc` on `PATH`.
#
# With `KAFKA` and `POSTGRES` set it starts nothing: a capture must be running from that
# database into that broker (the blog's connector, or `tensorcdc capture`). It writes only into
# the tables it creates itself (`mnist_train`, `mnist_test`, `mnist_manual` when they do not
# exist yet); for a table that exists it says what to run and reads what the topic holds.

# %%
import atexit
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # TensorFlow's INFO lines; its warnings stay
import matplotlib

if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")  # a script: figures go to files only
import matplotlib.pyplot as plt
import numpy as np
import tensorflow as tf

import tensorcdc
from tensorcdc import testing

CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
DATA = Path(os.environ.get("DATA", "/usr/share/datasets/fashion-mnist")).expanduser()
ROWS = int(os.environ.get("ROWS", "60000"))
TEST_ROWS = int(os.environ.get("TEST_ROWS", "10000"))
OUT = Path(os.environ["OUT"]).expanduser() if os.environ.get("OUT") else Path(tempfile.mkdtemp(prefix="tensorcdc-notebook-"))
OUT.mkdir(parents=True, exist_ok=True)
KAFKA, POSTGRES = os.environ.get("KAFKA"), os.environ.get("POSTGRES")
OWN = not KAFKA and not POSTGRES  # the notebook starts its own broker, database and capture
if not OWN and not (KAFKA and POSTGRES):
    raise SystemExit("set both KAFKA (your broker, host:port) and POSTGRES (your database, a libpq URL), with a capture running "
                     "from that database into that broker; or neither, and the notebook starts its own")
if not sorted(DATA.glob("train-images-idx3-ubyte*")):
    raise SystemExit(f"DATA={DATA}: no Fashion-MNIST IDX files there (train-images-idx3-ubyte.gz, ...); "
                     "set DATA to the folder that holds them (scripts/install-deps.sh installs them into /usr/share/datasets/fashion-mnist)")
print(f"Fashion-MNIST from {DATA}; figures into {OUT}")


def find_tensorcdc() -> str:
    """The tensorcdc binary: $TENSORCDC_BIN, $CARGO_TARGET_DIR/release/tensorcdc, the
    repository's target/release/tensorcdc (the first folder up from the working directory, or
    from this file, with Cargo.toml and crates/), or tensorcdc on PATH."""
    if os.environ.get("TENSORCDC_BIN"):
        p = Path(os.environ["TENSORCDC_BIN"]).expanduser()
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
        raise SystemExit(f"TENSORCDC_BIN={p}: not an executable file")
    looked, said = [], ["$TENSORCDC_BIN (unset)"]
    if os.environ.get("CARGO_TARGET_DIR"):
        looked.append(Path(os.environ["CARGO_TARGET_DIR"]).expanduser() / "release" / "tensorcdc")
    else:
        said.append("$CARGO_TARGET_DIR/release/tensorcdc (unset)")
    starts = [Path.cwd()] + ([Path(__file__).resolve().parent] if "__file__" in globals() else [])
    for start in starts:
        repo = next((d for d in [start, *start.parents] if (d / "Cargo.toml").is_file() and (d / "crates").is_dir()), None)
        if repo is None:
            said.append(f"a repository (Cargo.toml and crates/) in or above {start} (none)")
        elif repo / "target" / "release" / "tensorcdc" not in looked:
            looked.append(repo / "target" / "release" / "tensorcdc")
    # Where scripts/demo.sh and scripts/test.sh build when CARGO_TARGET_DIR is unset (scripts/target-dir.sh).
    looked.append(Path("/var/tmp/tensorcdc-target/release/tensorcdc"))
    for p in looked:
        if p.is_file() and os.access(p, os.X_OK):
            return str(p)
    if shutil.which("tensorcdc"):
        return shutil.which("tensorcdc")
    said += [f"{p} (missing)" for p in looked] + ["tensorcdc on PATH (none)"]
    raise SystemExit("no tensorcdc binary found; looked for " + ", ".join(said) + ". Build it (cargo build --release -p tensorcdc) "
                     "and set TENSORCDC_BIN to it; or set KAFKA and POSTGRES to a broker and a database with a capture running")


def shown(url: str) -> str:
    """A database URL without its password, for messages."""
    u = urlsplit(url)
    if u.password is None:
        return url
    return urlunsplit(u._replace(netloc=u.netloc.replace(":" + u.password + "@", ":***@")))


services = []  # stopped at the end, or when the kernel exits


def stop_services():
    while services:
        services.pop()()


atexit.register(stop_services)

if OWN:
    BIN = find_tensorcdc()
    broker = testing.Broker()
    services.append(broker.stop)
    pg = testing.LocalPostgres()
    services.append(pg.stop)
    SERVERS, URL, RUN = broker.servers, pg.url, ""
    print(f"started a noida-db broker at {SERVERS} and Postgres at {shown(URL)}; capture with {BIN}")
else:
    SERVERS, URL = KAFKA, POSTGRES
    # Group names of this run: a rerun re-reads the topics instead of resuming after them.
    RUN = "-" + time.strftime("%Y%m%d-%H%M%S")
    print(f"using your broker {SERVERS} and database {shown(URL)}. A capture must be running from that database into that broker,\n"
          f"producing the blog's CSV topics tf.public.mnist_* (the blog's Debezium connector: unwrap, MnistToCsv, StringConverter;\n"
          f"or: tensorcdc capture --postgres '{shown(URL)}' --kafka {SERVERS} --table-include-list 'public.mnist_.*' "
          f"--transforms unwrap,mnist-csv --converter string). The notebook starts none.")

CREATED = set()  # the tables this notebook created: the only ones it writes into


def create_table(table: str) -> bool:
    """Creates `table` as the blog's mnist2sql does; False (and why) when it cannot, e.g.
    because it exists: the notebook then never writes into it."""
    try:
        testing.execute(URL, f"CREATE TABLE {table}(id SERIAL NOT NULL PRIMARY KEY, label SMALLINT, pixels BYTEA)")
    except tensorcdc.TensorcdcError as e:
        why = "it exists already" if "42P07" in str(e) else f"not created: {str(e).splitlines()[0]}"
        print(f"{table}: {why}; the notebook does not write into it")
        return False
    CREATED.add(table)
    return True


train_loaded = None
if create_table("mnist_train"):
    print(f"loading {ROWS} rows into mnist_train (psql -f mnist_train.sql)")
    train_loaded = testing.load_mnist(URL, "mnist_train", str(DATA), "train", limit=ROWS, chunk=5000)
else:
    print("training on what tf.public.mnist_train holds (load it with the blog's: psql -f mnist_train.sql)")

if OWN:
    state = Path(tempfile.mkdtemp(prefix="tensorcdc-notebook-state-"))
    capture_log = OUT / "capture.log"
    capture = subprocess.Popen([BIN, "capture", "--postgres", URL, "--kafka", SERVERS, "--table-include-list", "public.mnist_.*",
                                "--slot-name", "notebook", "--transforms", "unwrap,mnist-csv", "--converter", "string"],
                               env=dict(os.environ, TENSORCDC_STATE_DIR=str(state)), stdout=subprocess.DEVNULL,
                               stderr=capture_log.open("wb"))

    def stop_capture():
        capture.terminate()
        try:
            capture.wait(timeout=10)
        except subprocess.TimeoutExpired:
            capture.kill()
            capture.wait()
        shutil.rmtree(state, ignore_errors=True)

    services.append(stop_capture)
    print(f"tensorcdc capture running (pid {capture.pid}), its log in {capture_log}")


def capture_failed() -> str:
    """Why the capture this notebook started is gone ("" while it runs, or when it is not ours)."""
    if not OWN or capture.poll() is None:
        return ""
    tail = capture_log.read_text(errors="replace").splitlines()[-15:]
    return f"tensorcdc capture exited with status {capture.returncode}; the end of {capture_log}:\n" + "\n".join(tail)


def wait_for_topic(topic: str, expected=None, settle_s: float = 10, limit_s: float = 900, required: bool = True) -> int:
    """Waits until `topic` holds `expected` records, or has records and got no new one for
    `settle_s` s (the snapshot or load is done, or `expected` is not what will come); says
    every 5 s how many it holds. Gives up after `limit_s` s: an error when `required`, else
    returns what it has. Returns the records the topic holds."""
    probe = tensorcdc.from_kafka(topic, servers=SERVERS, batch_size=4096)  # reads only what was added since its last read
    until = (f"it holds {expected} records, or" if expected else "it has records and") + f" gets none new for {settle_s:.0f} s"
    print(f"{topic}: waiting until {until}, at most {limit_s:.0f} s (it gets none while no capture produces from the table to {SERVERS})")
    start = grew = said = time.monotonic()
    n = 0
    while True:
        try:
            probe.read()
        except tensorcdc.TensorcdcError as e:
            if "did not appear" not in str(e):
                raise
            print(f"{topic}: {e}")  # no topic yet; the reader said so on stderr while it waited
        now = time.monotonic()
        if probe.records != n:
            n, grew = probe.records, now
        if expected is not None and n >= expected:
            print(f"{topic}: {n} records, all {expected} expected ({now - start:.0f} s)")
            return n
        if n > 0 and now - grew >= settle_s:
            print(f"{topic}: {n} records, and none new for {settle_s:.0f} s: reading those" + (f" (not the {expected} expected)" if expected else ""))
            return n
        if capture_failed():
            raise RuntimeError(capture_failed())
        if now - start >= limit_s:
            msg = f"{topic}: {n} records after {limit_s:.0f} s" + (f", not the {expected} expected" if expected else "")
            if required:
                raise TimeoutError(msg + ": is the capture running, and producing from the table's database to " + SERVERS + "?")
            print(msg + ": going on without them")
            return n
        if now - said >= 5:
            print(f"{topic}: {n} records so far" + (f" of {expected}" if expected else "") + f" ({now - start:.0f} s)")
            said = now
        time.sleep(1)


# %% [markdown]
# ## Training from `tf.public.mnist_train`
# The blog: `tfio.IODataset.from_kafka(...)`, `.shuffle(64)`, `.map(decode_kafka_item)`,
# `.batch(64)`. tensorcdc decodes the CSV itself (pixels / 255, the key as the label) and
# honours `offset=0`. The bounded read reads the topic to its end as it is when each epoch
# starts; the first waits until the capture has produced the snapshot of `mnist_train`.

# %%
train_rows = wait_for_topic("tf.public.mnist_train", train_loaded, settle_s=20)
train_ds = tensorcdc.from_kafka("tf.public.mnist_train", partition=0, offset=0, servers=SERVERS, batch_size=64, shuffle=True).to_tf()

model = tf.keras.Sequential([
    tf.keras.Input(shape=(784,)),
    tf.keras.layers.Dense(128, activation="relu"),
    tf.keras.layers.Dense(10),
])
model.compile(optimizer="adam", loss=tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True), metrics=["accuracy"])
# shuffle=False: the dataset shuffles its rows each epoch (shuffle=True above); Keras' own
# shuffle does not apply to a tf.data.Dataset, and it warns when asked to.
model.fit(train_ds, epochs=5, shuffle=False)

# %% [markdown]
# ## Evaluation while `mnist_test.sql` is loaded
# The blog: `tfio.experimental.streaming.KafkaGroupIODataset(topics=[...], group_id="mnistcg",
# ...)` then `.map(decode_kafka_test_item).batch(64)`. Same arguments here; the topic need not
# exist yet. `take=` says how many examples to read, so Keras knows where the data ends.

# %%
load_error = []


def load_test():
    try:
        testing.load_mnist(URL, "mnist_test", str(DATA), "test", limit=TEST_ROWS, chunk=500)
    except Exception as e:  # said after the evaluation, which then fails for want of rows
        load_error.append(e)


if create_table("mnist_test"):
    expected_test = min(TEST_ROWS, 10000)
    loader = threading.Thread(target=load_test)
    loader.start()  # psql -f mnist_test.sql, while the model evaluates
else:
    loader = None
    print("evaluating what tf.public.mnist_test holds now; to evaluate while it loads, run the blog's psql -f mnist_test.sql")
    expected_test = wait_for_topic("tf.public.mnist_test")
test = tensorcdc.KafkaGroupDataset(
    topics=["tf.public.mnist_test"],
    group_id="mnistcg" + RUN,
    servers=SERVERS,
    stream_timeout=10000,
    configuration=["session.timeout.ms=7000", "max.poll.interval.ms=8000", "auto.offset.reset=earliest"],
    take=expected_test,
)
res = model.evaluate(test.to_tf(), return_dict=True)
if loader is not None:
    loader.join()
    if load_error:
        raise load_error[0]
print(f"group {'mnistcg' + RUN} evaluated {test.examples} examples of tf.public.mnist_test: {res}")

# %% [markdown]
# ## `mnistcg2`: a second group reads the test topic again
# A new group has no committed offsets: with `auto.offset.reset=earliest` it reads the topic
# from its first record, whatever `mnistcg` read. It gets every record the topic holds, and
# the same accuracy.

# %%
test_records = wait_for_topic("tf.public.mnist_test", expected_test)
again = tensorcdc.KafkaGroupDataset(["tf.public.mnist_test"], "mnistcg2" + RUN, SERVERS, stream_timeout=10000,
                                    configuration=["auto.offset.reset=earliest"], take=test_records)
res2 = model.evaluate(again.to_tf(), return_dict=True)
print(f"group {'mnistcg2' + RUN} read {again.examples} of the {test_records} records in tf.public.mnist_test "
      f"(mnistcg read {test.examples}): {res2}")
assert again.examples == test_records, f"mnistcg2 read {again.examples} of the {test_records} records in tf.public.mnist_test"

# %% [markdown]
# ## Predictions for `mnist_manual`
# The blog inserts an image into `mnist_manual`, reads it from `tf.public.mnist_manual` and
# draws it with the class the model predicts. Here: the first five test rows (as
# `head -5 mnist_test.sql | sed s/test/manual/`), read in a group, predicted, drawn.

# %%
def as_pixels(pixels) -> np.ndarray:
    """784 pixels 0-255 (bytes as the table's column holds them, a list or an array) as uint8."""
    px = np.frombuffer(bytes(pixels), np.uint8) if isinstance(pixels, (bytes, bytearray, memoryview)) else np.asarray(pixels)
    if px.size != 784 or px.min() < 0 or px.max() > 255:
        raise ValueError(f"expected 784 pixels 0-255, got {px.size} values from {px.min()} to {px.max()}")
    return px.astype(np.uint8).reshape(784)


def predict(pixels):
    """The class the model predicts (its index) and its probability."""
    logits = model.predict(as_pixels(pixels).reshape(1, 784).astype(np.float32) / np.float32(255), verbose=0)[0]
    p = np.exp(logits - logits.max())
    return int(np.argmax(p)), float(p.max() / p.sum())


def draw(ax, pixels):
    """One image on `ax`, titled with the class name the model predicts for it."""
    k, _ = predict(pixels)
    ax.imshow(as_pixels(pixels).reshape(28, 28), cmap="gray")
    ax.set_title(CLASSES[k])
    ax.axis("off")


figures = []


def show(fig, name):
    """Saves `fig` as OUT/name (PNG) with its titles in OUT/figures.json; shows it in Jupyter."""
    path = OUT / name
    fig.savefig(path, dpi=100)
    titles = [ax.get_title() for ax in fig.axes if ax.get_title()]
    figures.append({"file": name, "titles": titles})
    (OUT / "figures.json").write_text(json.dumps({"classes": CLASSES, "figures": figures}, indent=1) + "\n")
    print(f"{name}: predicted {' | '.join(titles)}")
    if "ipykernel" in sys.modules:
        from IPython.display import display
        display(fig)
    plt.close(fig)


def plot_and_predict(pixels):
    """Draws one 28x28 image with the class the model predicts for it as the title."""
    fig, ax = plt.subplots(figsize=(3, 3.3))
    draw(ax, pixels)
    show(fig, "prediction.png")


if create_table("mnist_manual"):
    manual_rows = testing.load_mnist(URL, "mnist_manual", str(DATA), "test", limit=5)
    expected_manual = wait_for_topic("tf.public.mnist_manual", manual_rows)
else:
    print("predicting what tf.public.mnist_manual holds; add rows with INSERT INTO mnist_manual(label, pixels) VALUES (...)")
    expected_manual = wait_for_topic("tf.public.mnist_manual", limit_s=60, required=False)
images, truths = [], []
if expected_manual:
    manual = tensorcdc.KafkaGroupDataset(["tf.public.mnist_manual"], "predict" + RUN, SERVERS, stream_timeout=10000, take=expected_manual)
    for x, y in manual:
        pred = np.argmax(model.predict(x, verbose=0), axis=1)
        for px, p, t, pos in zip(x, pred, y, manual.positions):
            print(f"{pos}: predicted {CLASSES[p]}, true {CLASSES[t]}")
            images.append(np.rint(px * 255).astype(np.uint8))  # the row's pixels, 0-255
            truths.append(int(t))

# %%
if images:
    plot_and_predict(images[0])

# %%
if len(images) >= 4:
    fig, axes = plt.subplots(2, 2, figsize=(5, 5.6))
    for ax, px in zip(axes.flat, images):
        draw(ax, px)
    fig.tight_layout()
    show(fig, "predictions-2x2.png")

# %%
stop_services()
print(f"done; figures in {OUT}")
