"""Cross-node pulls between real raylets on loopback (raylet/object_manager.py): large objects
arrive byte for byte, one object read on several nodes fans out from the nodes that already
hold it, and a holder killed mid-transfer fails the read cleanly with no file left behind."""

from __future__ import annotations

import glob
import hashlib
import os
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import rayops
from rayops.exceptions import RayError
from rayops.testing.cluster import Cluster, ClusterNode

MiB = 2**20
BIG = 300 * MiB


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "xfer"), head_cpus=1, object_store_memory=1024 * MiB)
    try:
        for i in range(3):
            c.add_node(num_cpus=1, resources={f"w{i}": 1}, object_store_memory=1024 * MiB)
        c.add_node(num_cpus=1, resources={"victim": 1}, object_store_memory=1024 * MiB)
        c.wait_for_nodes(5)
        c.connect()
        yield c
    finally:
        rayops.shutdown()
        c.shutdown()


@rayops.remote(num_cpus=0, max_retries=0)
def make(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


@rayops.remote(num_cpus=0)
def digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.data).hexdigest()


def _on(res: str) -> dict[str, Any]:
    return {"resources": {res: 0.01}}


def _raylet_log(node: ClusterNode) -> str:
    out = ""
    for path in glob.glob(os.path.join(node.temp_dir, "session_latest", "logs", "raylet*")):
        with open(path, errors="replace") as f:
            out += f.read()
    return out


def test_large_object_arrives_byte_identical(cluster: Cluster) -> None:
    ref = make.options(**_on("w0")).remote(BIG, 1)
    expected = rayops.get(digest.options(**_on("w0")).remote(ref))  # read where it was made
    got = rayops.get(ref, timeout=60)  # pulled to the head, the driver's node
    assert got.nbytes == BIG
    assert hashlib.sha256(got.data).hexdigest() == expected
    del got, ref


def test_broadcast_to_three_nodes_is_byte_identical_and_fans_out(cluster: Cluster) -> None:
    payload = np.random.default_rng(2).integers(0, 256, 200 * MiB, dtype=np.uint8)
    expected = hashlib.sha256(payload.data).hexdigest()
    ref = rayops.put(payload)  # on the head
    del payload
    got = rayops.get([digest.options(**_on(f"w{i}")).remote(ref) for i in range(3)], timeout=90)
    assert got == [expected] * 3
    # The head serves one pull of the object at a time; the others were sent to (or waited
    # for) a worker that already had a complete copy.
    head = cluster.head.node_id[:12]
    oid = ref.hex()[:12]
    sources = []
    for node in cluster.nodes[1:4]:
        for line in _raylet_log(node).splitlines():
            if f"pulled {oid} from node" in line and "ok=True" in line:
                sources.append(line.split("from node ")[1].split()[0])
    assert len(sources) == 3, sources
    assert any(s != head for s in sources), f"every copy came from the head: {sources}"


@pytest.mark.slow
def test_holder_killed_mid_transfer_fails_cleanly(cluster: Cluster) -> None:
    victim = cluster.nodes[4]
    ref = make.options(**_on("victim")).remote(700 * MiB, 3)
    rayops.wait([ref], timeout=60)
    shm = cluster.head.started.record.shm_dir
    outcome: list[BaseException | object] = []

    def reader() -> None:
        try:
            outcome.append(rayops.get(ref, timeout=60))
        except BaseException as err:
            outcome.append(err)

    thread = threading.Thread(target=reader)
    thread.start()
    deadline = time.monotonic() + 30
    while not glob.glob(os.path.join(shm, ref.hex() + "*.tmp")):  # the pull has begun
        assert time.monotonic() < deadline, "the pull never started"
        assert thread.is_alive(), f"the get ended first: {outcome}"
        time.sleep(0.002)
    cluster.kill_raylet(victim)
    thread.join(90)
    assert not thread.is_alive()
    [result] = outcome
    assert isinstance(result, RayError), f"expected Ray's error, got {result!r}"
    # Neither the half-written file nor a final file of the object is left on the head.
    assert glob.glob(os.path.join(shm, ref.hex() + "*")) == []
