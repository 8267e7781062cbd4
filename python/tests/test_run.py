"""``tensorcdc.run(...)`` from Python: the CLI's exactly-once crash test (``kill -9`` at 10
random moments while small transactions of every kind are written), then a run to the end
of the stream; and a bad option's error. The loop is the command's own (tensorcdc-learn's
``run``), called in-process through the native module."""
import json
import queue
import random
import subprocess
import sys
import threading
import time

import pytest

import tensorcdc
from tensorcdc import testing

RUNNER = """
import sys, tensorcdc
tensorcdc.run(sys.argv[1], "crash", "label", out=sys.argv[2], layers=[8], retrain_every=25, retrain_secs=1,
              initial_epochs=3, refresh_epochs=1, replay=100, metrics_addr="off", stream_timeout=int(sys.argv[3]))
print("returned", flush=True)
"""
ROUNDS = 10
TXNS = 120


def one(url, sql):
    return testing.query(url, sql)[0][0]


def row(rng, labelled):
    a, b = rng.uniform(-1, 1), rng.uniform(-1, 1)
    c = rng.choice(["x", "y", "z"])
    label = str(int(a + b > 0)) if labelled else "NULL"
    return f"{a!r}, {b!r}, '{c}', {label}"


def write_round(url, rng, ids):
    """Small transactions of every kind; returns the labelled changes made."""
    labelled = 0
    for _ in range(TXNS):
        kind = rng.randrange(10)
        if kind <= 5:
            with_label = kind <= 3
            n = rng.randint(1, 4)
            values = []
            for _ in range(n):
                ids[0] += 1
                values.append(f"({ids[0]}, {row(rng, with_label)})")
            testing.execute(url, f"INSERT INTO crash(id, a, b, c, label) VALUES {', '.join(values)}")
            labelled += n if with_label else 0
        elif kind <= 7:
            r = testing.query(url, f"UPDATE crash SET a = a * 0.999 WHERE id = {rng.randint(1, ids[0])} RETURNING label IS NOT NULL")
            labelled += sum(1 for (l,) in r if l == "t")
        elif kind == 8:
            r = testing.query(url, f"UPDATE crash SET label = (a + b > 0)::int WHERE id = (SELECT min(id) FROM crash WHERE label IS NULL AND id > {rng.randrange(ids[0])}) RETURNING id")
            labelled += len(r)
        else:
            testing.execute(url, f"DELETE FROM crash WHERE id = {rng.randint(1, ids[0])}")
    return labelled


def lines_of(proc):
    q = queue.Queue()

    def read():
        for line in proc.stdout:
            q.put(line.rstrip("\n"))
        q.put(None)

    threading.Thread(target=read, daemon=True).start()
    return q


def test_run_from_python_counts_every_labelled_change_once_across_kills(pg, tmp_path):
    seed = int(__import__("os").environ.get("TENSORCDC_CRASH_SEED", "13"))
    rng = random.Random(seed)
    url = pg.url
    testing.execute(url, "DROP TABLE IF EXISTS crash, crash_predictions; CREATE TABLE crash(id int PRIMARY KEY, a float8, b float8, c text, label int)")
    snapshot = [f"({i}, {row(rng, i <= 200)})" for i in range(1, 231)]
    testing.execute(url, f"INSERT INTO crash(id, a, b, c, label) VALUES {', '.join(snapshot)}")
    expected, ids, out = 200, [230], tmp_path / "versions"
    resumed = 0
    for rnd in range(ROUNDS):
        proc = subprocess.Popen([sys.executable, "-c", RUNNER, url, str(out), "-1"], stdout=subprocess.PIPE, text=True)
        lines = lines_of(proc)
        said = []
        kill_after = rng.uniform(0.8, 3.5)
        started = time.monotonic()
        first = not (out / "versions.jsonl").exists()
        if first and rnd > 0:
            # Changes made while the first snapshot is read are folded into it: writes begin
            # once version 1 is out.
            while not any(l.startswith("version 1:") for l in said):
                said.append(lines.get(timeout=120))
        writer_rng = random.Random(rng.random())
        got = {}
        writer = None
        if not first or rnd > 0:
            writer = threading.Thread(target=lambda: got.update(n=write_round(url, writer_rng, ids)))
            writer.start()
        time.sleep(max(0.0, kill_after - (time.monotonic() - started)))
        proc.kill()
        proc.wait(timeout=30)
        if writer:
            writer.join(timeout=120)
            assert not writer.is_alive()
            expected += got["n"]
        while True:
            try:
                l = lines.get(timeout=5)
            except queue.Empty:
                break
            if l is None:
                break
            said.append(l)
        resumed += any(l.startswith("run: resuming from version") for l in said)
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, url, str(out), "4000"], stdout=subprocess.PIPE, text=True)
    said, _ = proc.communicate(timeout=240)
    assert proc.returncode == 0 and "returned" in said, said
    assert "run: resuming from version" in said, said
    assert resumed >= 3, f"only {resumed} of {ROUNDS} killed runs resumed from a version"
    hist = [json.loads(l) for l in (out / "versions.jsonl").read_text().splitlines()]
    seen = [v["examples_seen"] for v in hist]
    assert seen == sorted(seen), seen
    assert seen[-1] == expected, (seen, expected, said)
    assert [v["version"] for v in hist] == list(range(1, len(hist) + 1))
    assert int(one(url, "SELECT count(*) FROM crash c WHERE label IS NULL AND NOT EXISTS (SELECT 1 FROM crash_predictions p WHERE p.row_key = c.id::text)")) == 0
    assert int(one(url, "SELECT count(*) FROM crash_predictions p WHERE NOT EXISTS (SELECT 1 FROM crash c WHERE c.id::text = p.row_key AND c.label IS NULL)")) == 0, \
        "a deleted or labelled row keeps no prediction"
    testing.execute(url, "SELECT pg_drop_replication_slot('tensorcdc_run_crash')")


def test_run_from_python_says_what_is_wrong(pg, tmp_path):
    with pytest.raises(tensorcdc.TensorcdcError, match="retrain-every"):
        tensorcdc.run(pg.url, "crash", "label", out=str(tmp_path / "v"), retrain_every="many")
    with pytest.raises(tensorcdc.TensorcdcError, match="does not exist"):
        tensorcdc.run(pg.url, "no_such_table", "label", out=str(tmp_path / "v"))


def test_ctrl_c_ends_a_python_run_as_it_ends_the_command(pg, tmp_path):
    """SIGINT (Ctrl-C) in a process running ``tensorcdc.run``: the loop stops as the command
    does (its closing line printed, the slot confirmed), then Python raises KeyboardInterrupt."""
    import signal
    url = pg.url
    testing.execute(url, "DROP TABLE IF EXISTS sigint, sigint_predictions; CREATE TABLE sigint(id int PRIMARY KEY, a float8, b float8, c text, label int)")
    rng = random.Random(5)
    testing.execute(url, f"INSERT INTO sigint(id, a, b, c, label) VALUES {', '.join(f'({i}, {row(rng, i <= 100)})' for i in range(1, 121))}")
    code = RUNNER.replace('"crash"', '"sigint"')
    proc = subprocess.Popen([sys.executable, "-c", code, url, str(tmp_path / "v"), "-1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines = lines_of(proc)
    said = []
    deadline = time.monotonic() + 120
    while not any(l.startswith("version 1:") for l in said):
        assert time.monotonic() < deadline, said
        said.append(lines.get(timeout=120))
    proc.send_signal(signal.SIGINT)
    proc.wait(timeout=60)
    err = proc.stderr.read()
    while True:
        l = lines.get(timeout=10)
        if l is None:
            break
        said.append(l)
    assert proc.returncode != 0 and "KeyboardInterrupt" in err, (proc.returncode, err)
    assert any(l.startswith("run: ") and "predictions written" in l for l in said), said
    assert "returned" not in said
    assert int(one(url, "SELECT count(*) FROM sigint_predictions")) == 20
    testing.execute(url, "SELECT pg_drop_replication_slot('tensorcdc_run_sigint')")
