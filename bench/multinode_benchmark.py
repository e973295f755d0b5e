"""Multi-node rows: several real nodes on this machine (rayops.testing.cluster).

    python bench/multinode_benchmark.py [--quick]

Rows: multi_node_tasks_async (tasks spread over 2 nodes), multi_node_actor_calls_async
(one actor per node, called from the driver), cross_node_get_gigabytes (driver on the
head reads a 100 MB object made on another node), broadcast_1gb_3_nodes_s (a 1 GB
object read by one task on each of 3 other nodes). Prints figures; never fails.

``--tls both`` runs the rows on a cluster without and then one with TLS (rows ending in
``+tls``); under ``RAYOPS_FRAMED_LOCAL_SOCKETS=0`` the nodes talk TCP, as between hosts.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import rayops
from rayops.testing.cluster import Cluster
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def timed(fn: Callable[[], object], repeat: int) -> list[float]:
    out = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


SUFFIX = [""]  # "+tls" while the TLS cluster runs


def report(name: str, values: list[float], unit: str) -> None:
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    name += SUFFIX[0]
    print(f"{name:<36} {statistics.mean(values):>12.2f}  {unit}  +- {sd:.2f}", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--quick", action="store_true")
    p.add_argument("--tls", choices=["off", "on", "both"], default="off")
    args = p.parse_args()
    repeat = 2 if args.quick else 5
    from rayops.rpc import tls
    from rayops.testing.tls_files import loopback_certs

    with tempfile.TemporaryDirectory() as certs:
        files = loopback_certs(certs) if args.tls != "off" else None
        for on in {"off": [False], "on": [True], "both": [False, True]}[args.tls]:
            SUFFIX[0] = "+tls" if on else ""
            run_cluster(files if on else None, repeat)
            tls.configure(None)


def run_cluster(files: Any, repeat: int) -> None:
    with tempfile.TemporaryDirectory() as base:
        cluster = Cluster(base, head_cpus=1, object_store_memory=2 * 2**30, tls=files)
        # A resource per worker node pins one actor to each: actors take no node affinity
        # until one scheduler places them (issue 10).
        workers = [
            cluster.add_node(num_cpus=1, resources={f"worker{i}": 1}, object_store_memory=2 * 2**30)
            for i in range(3)
        ]
        cluster.wait_for_nodes(4)
        cluster.connect()
        try:
            run_rows(workers, repeat)
        finally:
            rayops.shutdown()
            cluster.shutdown()


def run_rows(workers: list, repeat: int) -> None:  # type: ignore[type-arg]
    @rayops.remote
    def small() -> bytes:
        return b"ok"

    rayops.get([small.remote() for _ in range(200)])
    t = timed(lambda: rayops.get([small.remote() for _ in range(1000)]), repeat)
    report("multi_node_tasks_async", [1000 / x for x in t], "tasks/s")

    class _Actor:
        def small(self) -> bytes:
            return b"ok"

    Actor: Any = rayops.remote(num_cpus=0)(_Actor)

    actors = [Actor.options(resources={f"worker{i}": 1}).remote() for i in range(2)]
    rayops.get([a.small.remote() for a in actors])
    t = timed(lambda: rayops.get([a.small.remote() for a in actors for _ in range(500)]), repeat)
    report("multi_node_actor_calls_async", [1000 / x for x in t], "calls/s")

    size = 100 * 2**20

    @rayops.remote
    def make(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.uint8)

    rates = []
    for _ in range(repeat):
        ref = make.options(
            scheduling_strategy=NodeAffinitySchedulingStrategy(workers[0].node_id, soft=False)
        ).remote(size)
        rayops.wait([ref])
        t0 = time.perf_counter()
        rayops.get(ref)
        rates.append(size / 1e9 / (time.perf_counter() - t0))
        del ref
    report("cross_node_get_gigabytes", rates, "GB/s")

    @rayops.remote
    def touch(a: np.ndarray) -> int:
        return int(a[-1])

    big = rayops.put(np.ones(2**30, dtype=np.uint8))  # on the head
    t0 = time.perf_counter()
    rayops.get(
        [
            touch.options(
                scheduling_strategy=NodeAffinitySchedulingStrategy(w.node_id, soft=False)
            ).remote(big)
            for w in workers
        ]
    )
    report("broadcast_1gb_3_nodes_s", [time.perf_counter() - t0], "s")


if __name__ == "__main__":
    main()
