"""A consumer group that never gets partitions (a member killed with kill -9 on noida-db, which
never expires it) says so on stderr while it waits, and the wait ends (the reader counts it
toward stream_timeout). About 40 s: the members are processes of their own."""
import subprocess
import sys
import time

import pytest

from conftest import TRAIN_ROWS, count, wait_for

MEMBER = """
import sys, time, tensorcdc
ds = tensorcdc.KafkaGroupDataset([sys.argv[1]], sys.argv[2], sys.argv[3], stream_timeout=-1, batch_size=10)
it = iter(ds)
next(it)
print("member has a batch", flush=True)
time.sleep(600)
"""

LATE = """
import sys, tensorcdc
ds = tensorcdc.KafkaGroupDataset([sys.argv[1]], sys.argv[2], sys.argv[3], stream_timeout=3000)
print("examples", sum(len(y) for _, y in ds), flush=True)
"""


def test_a_group_without_partitions_says_so_and_ends(blog):
    servers, topic, group = blog["servers"], "tf.public.mnist_train", "stuck-after-kill"
    wait_for("the training topic", lambda: count(servers, topic) >= TRAIN_ROWS)
    member = subprocess.Popen([sys.executable, "-c", MEMBER, topic, group, servers], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert member.stdout.readline().strip() == "member has a batch"
    finally:
        member.kill()  # SIGKILL: it never leaves the group
        member.wait()
    start = time.monotonic()
    try:
        late = subprocess.run([sys.executable, "-c", LATE, topic, group, servers], capture_output=True, text=True, timeout=120)
    except subprocess.TimeoutExpired as e:
        pytest.fail(f"the new member waited 120 s without its stream ending; its stderr:\n{e.stderr}")
    took = time.monotonic() - start
    assert late.returncode == 0, late.stderr
    if "group assigned partitions" in late.stderr and "examples 0" not in late.stdout:
        pytest.skip("the broker expired the killed member and the new one got its partitions: nothing to wait for")
    waiting = [l for l in late.stderr.splitlines() if "waiting" in l and group in l]
    assert waiting, f"no line says the member waits for partitions of group {group}; its stderr:\n{late.stderr}"
    assert "examples 0" in late.stdout and took < 100, (late.stdout, took)
