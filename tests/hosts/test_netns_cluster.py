"""A cluster whose nodes each live in their own network namespace with their own address:
nodes reach each other only through those addresses, and a node taken off the network is
declared dead and, when its link comes back, cannot rejoin (no split brain)."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator

import pytest

from rayops.testing.hosts import unavailable_reason, wait_until
from rayops.testing.netns_cluster import NsCluster, running_cluster

pytestmark = pytest.mark.slow

PY = sys.executable


@pytest.fixture(scope="module")
def ns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("nscluster")
    with running_cluster(base) as cluster:
        yield cluster


def test_nodes_work_together_through_their_own_addresses(ns_cluster: NsCluster) -> None:
    nodes = ns_cluster.status()
    ips = sorted(n["node_ip"] for n in nodes if n["state"] == "ALIVE")
    assert ips == sorted(h.ip for h in ns_cluster.net.hosts.values())
    out = ns_cluster.driver(
        """
        import hashlib, socket, time
        import numpy as np
        from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy as NA

        @rayops.remote(scheduling_strategy="SPREAD")
        def where():
            time.sleep(0.2)
            return rayops.get_runtime_context().get_node_id()

        print("NODES", len(set(rayops.get([where.remote() for _ in range(9)]))))
        nodes = [n["NodeID"] for n in rayops.nodes() if not n["IsHeadNode"]]

        @rayops.remote
        def make():
            return np.arange(4_000_000, dtype=np.int64)

        @rayops.remote
        def digest(a):
            return hashlib.sha256(a.tobytes()).hexdigest()

        ref = make.options(scheduling_strategy=NA(nodes[0], soft=False)).remote()
        far = digest.options(scheduling_strategy=NA(nodes[1], soft=False)).remote(ref)
        local = hashlib.sha256(rayops.get(ref).tobytes()).hexdigest()
        print("SAME", rayops.get(far) == local)
        """
    )
    assert out.returncode == 0, out.stderr
    assert "NODES 3" in out.stdout and "SAME True" in out.stdout, out.stdout + out.stderr


def test_node_off_the_network_is_declared_dead_and_cannot_rejoin(ns_cluster: NsCluster) -> None:
    net = ns_cluster.net
    h3_ip = net.hosts["h3"].ip
    pid = ns_cluster.raylet_pid("h3")
    assert pid is not None
    net.link("h3", up=False)
    t0 = time.monotonic()
    try:
        wait_until(
            lambda: any(
                n["node_ip"] == h3_ip and n["state"] == "DEAD" for n in ns_cluster.status()
            ),
            "h3 to be declared dead after its link went down",
            timeout=10,
        )
        detected = time.monotonic() - t0
        assert detected < 10
        # The rest of the cluster keeps working meanwhile.
        out = ns_cluster.driver(
            """
            @rayops.remote
            def one():
                return 1
            print("SUM", sum(rayops.get([one.remote() for _ in range(20)], timeout=60)))
            """
        )
        assert "SUM 20" in out.stdout, out.stdout + out.stderr
    finally:
        net.link("h3", up=True)
    # Back on the network, the old raylet learns it was declared dead and stops; the GCS
    # never lets that node id back in.
    wait_until(
        lambda: ns_cluster.raylet_pid("h3") is None, "the stale h3 raylet to stop", timeout=20
    )
    states = [n["state"] for n in ns_cluster.status() if n["node_ip"] == h3_ip]
    assert states == ["DEAD"]
