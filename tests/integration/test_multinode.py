"""Several nodes on one machine (real raylets, one GCS): placement, spreading,
objects moving between nodes, and node death."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator

import numpy as np
import pytest

import rayops
from rayops import exceptions as rex
from rayops.testing.cluster import Cluster
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "multi"), head_cpus=1)
    c.add_node(num_cpus=1, resources={"special": 1})
    c.add_node(num_cpus=1)
    c.wait_for_nodes(3)
    c.connect()
    yield c
    rayops.shutdown()
    c.shutdown()


@rayops.remote
def where() -> str:
    return rayops.get_runtime_context().get_node_id()


def test_cluster_view(cluster: Cluster) -> None:
    assert len([n for n in rayops.nodes() if n["Alive"]]) == 3
    assert rayops.cluster_resources()["CPU"] == 3.0
    assert rayops.cluster_resources()["special"] == 1.0


def test_custom_resource_runs_on_the_node_that_has_it(cluster: Cluster) -> None:
    special = cluster.nodes[1].node_id
    got = rayops.get([where.options(resources={"special": 1}).remote() for _ in range(4)])
    assert set(got) == {special}


def test_tasks_spill_over_when_local_is_busy(cluster: Cluster) -> None:
    @rayops.remote
    def busy(s: float) -> str:
        time.sleep(s)
        return rayops.get_runtime_context().get_node_id()

    got = rayops.get([busy.remote(1.0) for _ in range(3)], timeout=60)
    assert len(set(got)) >= 2


def test_spread_really_spreads(cluster: Cluster) -> None:
    @rayops.remote(scheduling_strategy="SPREAD")
    def nap() -> str:
        time.sleep(0.3)
        return rayops.get_runtime_context().get_node_id()

    got = rayops.get([nap.remote() for _ in range(6)], timeout=60)
    assert len(set(got)) == 3


def test_spread_spreads_a_burst_of_fast_tasks(cluster: Cluster) -> None:
    """SPREAD leases are reused, but each lease request carries a task of its own, so a burst
    of tasks that each take microseconds still reaches every node the rotation picks."""

    @rayops.remote(scheduling_strategy="SPREAD")
    def square(x: int) -> tuple[int, str]:
        return x * x, rayops.get_runtime_context().get_node_id()

    for _ in range(3):
        got = rayops.get([square.remote(i) for i in range(30)], timeout=60)
        assert sum(v for v, _ in got) == sum(i * i for i in range(30))
        assert len({node for _, node in got}) == 3


def test_node_affinity(cluster: Cluster) -> None:
    target = cluster.nodes[2].node_id
    hard = NodeAffinitySchedulingStrategy(target, soft=False)
    assert set(
        rayops.get([where.options(scheduling_strategy=hard).remote() for _ in range(3)])
    ) == {target}
    ghost = NodeAffinitySchedulingStrategy("ff" * 28, soft=False)
    with pytest.raises(rex.TaskUnschedulableError, match="soft=True"):
        rayops.get(where.options(scheduling_strategy=ghost).remote(), timeout=30)
    soft = NodeAffinitySchedulingStrategy("ff" * 28, soft=True)
    assert rayops.get(where.options(scheduling_strategy=soft).remote(), timeout=30)


def test_large_array_moves_between_nodes(cluster: Cluster) -> None:
    @rayops.remote(resources={"special": 1})
    def make() -> np.ndarray:
        return np.random.default_rng(7).integers(0, 255, size=200 * 2**20, dtype=np.uint8)

    @rayops.remote
    def checksum(a: np.ndarray) -> tuple[str, str]:
        return hashlib.sha256(a.tobytes()).hexdigest(), rayops.get_runtime_context().get_node_id()

    ref = make.remote()
    expected = hashlib.sha256(
        np.random.default_rng(7).integers(0, 255, size=200 * 2**20, dtype=np.uint8).tobytes()
    ).hexdigest()
    # The driver (head node) reads it from the special node's store.
    assert hashlib.sha256(rayops.get(ref).tobytes()).hexdigest() == expected
    other = cluster.nodes[2].node_id
    digest, node = rayops.get(
        checksum.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(other, soft=False)
        ).remote(ref)
    )
    assert (digest, node) == (expected, other)


def test_actor_on_a_custom_resource_node(cluster: Cluster) -> None:
    @rayops.remote(resources={"special": 0.5})
    class Here:
        def node(self) -> str:
            return rayops.get_runtime_context().get_node_id()

    a = Here.remote()
    assert rayops.get(a.node.remote()) == cluster.nodes[1].node_id


def test_killed_raylet_is_declared_dead_and_work_moves(cluster: Cluster) -> None:
    victim = cluster.add_node(num_cpus=1, resources={"doomed": 1})
    cluster.wait_for_nodes(4)
    assert rayops.get(where.options(resources={"doomed": 1}).remote(), timeout=30) == victim.node_id

    @rayops.remote(max_retries=3)
    def slow_where(s: float) -> str:
        time.sleep(s)
        return rayops.get_runtime_context().get_node_id()

    @rayops.remote(resources={"doomed": 1}, max_retries=0)  # not rebuilt: nowhere to rerun
    def big() -> np.ndarray:
        return np.zeros(2 * 2**20, dtype=np.uint8)  # large: stays in the victim's store

    only_copy = big.remote()
    rayops.wait([only_copy], timeout=30)
    hard = NodeAffinitySchedulingStrategy(victim.node_id, soft=True)
    refs = [slow_where.options(scheduling_strategy=hard).remote(3.0) for _ in range(2)]
    time.sleep(1.0)
    t0 = time.monotonic()
    cluster.kill_raylet(victim)
    deadline = t0 + 10
    while True:
        alive = {n["NodeID"] for n in rayops.nodes() if n["Alive"]}
        if victim.node_id not in alive:
            break
        assert time.monotonic() < deadline, "the dead node was not declared dead within 10 s"
        time.sleep(0.1)
    detected = time.monotonic() - t0
    assert detected < 10
    got = rayops.get(refs, timeout=60)
    assert victim.node_id not in got
    with pytest.raises(rex.ObjectLostError):
        rayops.get(only_copy, timeout=30)
    assert cluster.wait_for_nodes(3) is None


def test_status_lists_every_node_and_pending_demand(cluster: Cluster) -> None:
    import subprocess
    import sys

    @rayops.remote(resources={"unobtainium": 1})
    def never() -> None:
        pass

    ref = never.remote()
    env = {**os.environ, "RAYOPS_TOKEN_FILE": cluster.token_file}
    deadline = time.monotonic() + 10
    while True:
        out = subprocess.run(
            [sys.executable, "-m", "rayops.cli.main", "status", "--address", cluster.address],
            capture_output=True,
            text=True,
            timeout=60,
            env=env,
        )
        assert out.returncode == 0, out.stderr
        if "{CPU: 1, unobtainium: 1}: 1 pending  (no node can run this)" in out.stdout:
            break
        assert time.monotonic() < deadline, out.stdout
        time.sleep(0.2)
    assert "Active: 3" in out.stdout or "Active: 4" in out.stdout
    rayops.cancel(ref)


def test_a_new_node_is_visible_within_2s(cluster: Cluster) -> None:
    from rayops.gcs.client import GcsClient

    t0 = time.monotonic()
    node = cluster.add_node(num_cpus=1)
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        while node.node_id not in {n.node_id for n in gcs.get_all_nodes(alive_only=True)}:
            assert time.monotonic() - t0 < 2.0, "the new node was not visible within 2 s"
            time.sleep(0.02)
    cluster.remove_node(node)
