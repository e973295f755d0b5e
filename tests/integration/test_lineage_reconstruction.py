"""Lineage reconstruction across a node's death (real raylets and workers on loopback):
a lost task result is rebuilt by rerunning its task (recursively for lost inputs), within
the task's retries; what cannot be rebuilt raises Ray's error saying why; a borrower
whose owner died gets OwnerDiedError."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import numpy as np
import psutil
import pytest

import rayops
from rayops import exceptions as rex
from rayops.core_worker import state
from rayops.testing.cluster import Cluster, ClusterNode
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy

N = 300_000  # int64 elements: 2.4 MB, so a result lives in its node's store, not inline
LINEAGE_CAP = 200_000  # bytes of lineage the driver keeps in this module


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "lineage"), head_cpus=2)
    c.wait_for_nodes(1)
    old = os.environ.get("RAYOPS_MAX_LINEAGE_BYTES")
    os.environ["RAYOPS_MAX_LINEAGE_BYTES"] = str(LINEAGE_CAP)  # read once, by init()
    try:
        c.connect()
    finally:
        if old is None:
            del os.environ["RAYOPS_MAX_LINEAGE_BYTES"]
        else:
            os.environ["RAYOPS_MAX_LINEAGE_BYTES"] = old
    yield c
    rayops.shutdown()
    c.shutdown()


def _victim(
    cluster: Cluster, resources: dict[str, float] | None = None
) -> tuple[ClusterNode, NodeAffinitySchedulingStrategy]:
    alive = len([n for n in rayops.nodes() if n["Alive"]])
    node = cluster.add_node(num_cpus=1, resources=resources)
    cluster.wait_for_nodes(alive + 1)
    return node, NodeAffinitySchedulingStrategy(node.node_id, soft=True)


def _kill_node(cluster: Cluster, node: ClusterNode) -> None:
    """SIGKILL the node's raylet and every worker it started."""
    workers = psutil.Process(node.raylet_pid).children(recursive=True)
    cluster.kill_raylet(node, signal.SIGKILL)
    for p in workers:
        try:
            p.send_signal(signal.SIGKILL)
        except psutil.NoSuchProcess:
            pass
    psutil.wait_procs(workers, timeout=10)


def _held_on(ref: rayops.ObjectRef) -> str:
    """The node whose store holds the owner's copy of ``ref`` ("" if inline)."""
    cw = state.require()
    entry = cw.memory_store.get(ref.binary())
    assert entry is not None
    return entry[1] if entry[0] == "s" else ""


def _held_on_now(ref: rayops.ObjectRef) -> str | None:
    """Like ``_held_on``, None while the object is being rebuilt."""
    entry = state.require().memory_store.get(ref.binary())
    return None if entry is None else entry[1] if entry[0] == "s" else ""


@rayops.remote(max_retries=2)
def make(seed: int) -> np.ndarray:
    return np.full(N, seed, dtype=np.int64)


@rayops.remote(max_retries=2)
def plus(a: np.ndarray, k: int) -> np.ndarray:
    return a + k


@rayops.remote
def node_of_worker() -> str:
    return rayops.get_runtime_context().get_node_id()


def test_chain_of_lost_results_is_rebuilt(cluster: Cluster) -> None:
    victim, there = _victim(cluster)
    a = make.options(scheduling_strategy=there).remote(7)
    b = plus.options(scheduling_strategy=there).remote(a, 1)
    rayops.wait([b], timeout=30)
    assert _held_on(a) == victim.node_id and _held_on(b) == victim.node_id
    del a  # only b is held: a survives as b's lineage
    stats = state.require().recovery.stats
    before = stats.resubmitted
    t0 = time.monotonic()
    _kill_node(cluster, victim)
    got = rayops.get(b, timeout=60)  # the read fails, then both tasks run again
    assert got.shape == (N,) and (got == 8).all()
    assert stats.resubmitted - before == 2  # b's task and, recursively, a's
    assert _held_on(b) not in ("", victim.node_id)
    print(f"rebuilt a chain of 2 lost results in {time.monotonic() - t0:.1f} s")


def test_readers_elsewhere_wait_for_the_rebuild(cluster: Cluster) -> None:
    """Right after the kill the owner still names the dead node: a task given that
    location, and a borrower asking the owner, both read the rebuilt value."""
    victim, there = _victim(cluster)
    head = NodeAffinitySchedulingStrategy(cluster.nodes[0].node_id, soft=False)

    @rayops.remote(num_cpus=0)
    class Borrower:
        def hold(self, refs: list[rayops.ObjectRef]) -> bool:
            self.refs = refs
            return True

        def total(self) -> int:
            return int(rayops.get(self.refs[0]).sum())

    a = make.options(scheduling_strategy=there).remote(2)
    rayops.wait([a], timeout=30)
    borrower = Borrower.options(scheduling_strategy=head).remote()
    assert rayops.get(borrower.hold.remote([a]), timeout=30)
    _kill_node(cluster, victim)
    assert _held_on(a) == victim.node_id  # not heard of the death yet
    pushed = plus.options(scheduling_strategy=head).remote(a, 1)  # given the dead location
    assert rayops.get(borrower.total.remote(), timeout=60) == 2 * N
    assert (rayops.get(pushed, timeout=60) == 3).all()


def test_result_of_task_without_retries_is_not_rebuilt(cluster: Cluster) -> None:
    victim, there = _victim(cluster)
    once = make.options(scheduling_strategy=there, max_retries=0).remote(3)
    kept = make.options(scheduling_strategy=there).remote(4)
    rayops.wait([once, kept], num_returns=2, timeout=30)
    assert _held_on(once) == victim.node_id
    _kill_node(cluster, victim)
    with pytest.raises(rex.ObjectReconstructionFailedError) as info:
        rayops.get(once, timeout=60)
    assert not isinstance(info.value, rex.ObjectReconstructionFailedMaxAttemptsExceededError)
    assert "max_retries=0" in str(info.value)
    assert (rayops.get(kept, timeout=60) == 4).all()


def test_retries_used_up_by_rebuilds(cluster: Cluster) -> None:
    # Only the two "spare" nodes can run it: the rebuild runs on the second one.
    victim, there = _victim(cluster, {"spare": 1})
    victim2, _ = _victim(cluster, {"spare": 1})
    ref = make.options(scheduling_strategy=there, max_retries=1, resources={"spare": 1}).remote(5)
    rayops.wait([ref], timeout=30)
    assert _held_on(ref) == victim.node_id
    _kill_node(cluster, victim)
    deadline = time.monotonic() + 30
    while _held_on_now(ref) != victim2.node_id:  # rebuilt (unread: no copy on the head)
        assert time.monotonic() < deadline, "not rebuilt on the spare node within 30 s"
        time.sleep(0.05)
    _kill_node(cluster, victim2)
    with pytest.raises(rex.ObjectReconstructionFailedMaxAttemptsExceededError):
        rayops.get(ref, timeout=60)


def test_actor_result_lost_with_its_node_says_why(cluster: Cluster) -> None:
    victim, there = _victim(cluster)

    @rayops.remote
    class Maker:
        def make(self) -> np.ndarray:
            return np.ones(N, dtype=np.int64)

    actor = Maker.options(scheduling_strategy=there, num_cpus=0).remote()
    ref = actor.make.remote()
    rayops.wait([ref], timeout=30)
    assert _held_on(ref) == victim.node_id
    _kill_node(cluster, victim)
    with pytest.raises(rex.ObjectLostError, match="actor method call"):
        rayops.get(ref, timeout=60)


def test_lineage_over_the_cap_is_evicted(cluster: Cluster) -> None:
    victim, there = _victim(cluster)

    @rayops.remote
    def padded(pad: bytes, seed: int) -> np.ndarray:
        return np.full(N, seed, dtype=np.int64)

    pad = b"x" * 60_000  # inline in the spec: each entry costs the cap ~60 kB
    stats = state.require().recovery.stats
    evicted_before = stats.evicted
    refs = [padded.options(scheduling_strategy=there).remote(pad, i) for i in range(5)]
    rayops.wait(refs, num_returns=5, timeout=60)
    assert all(_held_on(r) == victim.node_id for r in refs)
    assert stats.evicted - evicted_before >= 2
    assert stats.bytes <= LINEAGE_CAP
    _kill_node(cluster, victim)
    with pytest.raises(rex.ObjectReconstructionFailedLineageEvictedError):
        rayops.get(refs[0], timeout=60)
    assert (rayops.get(refs[-1], timeout=60) == 4).all()


def test_borrower_of_a_dead_owner_gets_owner_died(cluster: Cluster) -> None:
    @rayops.remote(num_cpus=0)
    class Owner:
        def pid(self) -> int:
            return os.getpid()

        def lend(self, to: rayops.actor.ActorHandle) -> bool:
            ref = rayops.put(np.arange(N))
            return rayops.get(to.hold.remote([ref]))

    @rayops.remote(num_cpus=0)
    class Borrower:
        def hold(self, refs: list[rayops.ObjectRef]) -> bool:
            self.refs = refs
            return True

        def read(self) -> str:
            try:
                return str(rayops.get(self.refs[0]).sum())
            except rex.ObjectLostError as err:
                return type(err).__name__

    owner = Owner.remote()
    borrower = Borrower.remote()
    assert rayops.get(owner.lend.remote(borrower), timeout=30)
    os.kill(rayops.get(owner.pid.remote()), signal.SIGKILL)
    assert rayops.get(borrower.read.remote(), timeout=60) == "OwnerDiedError"
