"""Cross-node object transfer against the physical limit, measured in the same run.

    .venv/bin/python bench/transfer_benchmark.py [--runtime rayops|ray] [--tls on|off]
        [--trials 5] [--skip-1gb] [--stripes N]
    # Ray 2.60 (installed in /tmp/rayvenv), from /tmp:
    RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 RAY_USAGE_STATS_ENABLED=0 \\
        /tmp/rayvenv/bin/python /path/to/bench/transfer_benchmark.py --runtime ray

Several real nodes on this machine (rayops.testing.cluster, or ray.cluster_utils.Cluster for
Ray): a head (the driver's node) and three worker nodes. Rows:

    loopback_tcp_100MB           raw TCP on 127.0.0.1, one sender and one receiver thread,
                                 sendall / recv_into a preallocated buffer (GB/s)
    memcpy_fresh_100MB           copy into a freshly allocated buffer (GB/s)
    cross_node_get_100MB         the driver gets a 100 MB array made on a worker node (GB/s)
    cross_node_get_1GB           the same for 1 GB (GB/s)
    broadcast_100MB_to_3_nodes   a 100 MB array put on the head read by one task on each of
                                 the three worker nodes (s, and aggregate GB/s)
    ratio rows                   cross_node_get_100MB / loopback_tcp_100MB

Only the public Core API is used, so the same code measures both runtimes. Prints figures
and never fails.
"""

from __future__ import annotations

import argparse
import importlib
import os
import socket
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np

MB = 2**20


def loopback_tcp(size: int) -> float:
    """GB/s of `size` bytes over a loopback TCP connection (the wire's limit here)."""
    src = np.ones(size, dtype=np.uint8)
    dst = np.empty(size, dtype=np.uint8)
    dst.fill(0)  # touched: measures the wire, not page faults
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    got: list[float] = []

    def receive() -> None:
        conn, _ = listener.accept()
        with conn, dst.data as view:
            pos = 0
            while pos < size:
                n = conn.recv_into(view[pos:], size - pos)
                if n == 0:
                    break
                pos += n
        got.append(time.perf_counter())

    thread = threading.Thread(target=receive)
    thread.start()
    with socket.create_connection(("127.0.0.1", port)) as out:
        t0 = time.perf_counter()
        out.sendall(src.data)
        thread.join()
    listener.close()
    return size / 1e9 / (got[0] - t0)


def memcpy_fresh(size: int) -> float:
    src = np.ones(size, dtype=np.uint8)
    t0 = time.perf_counter()
    dst = np.empty(size, dtype=np.uint8)
    np.copyto(dst, src)
    return size / 1e9 / (time.perf_counter() - t0)


def best_of(fn: Callable[[], float], trials: int) -> list[float]:
    return [fn() for _ in range(trials)]


def report(name: str, values: list[float], unit: str) -> float:
    mean = statistics.mean(values)
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    print(f"{name:<34} {mean:>9.3f} {unit:<5} +- {sd:.3f}  (best {max(values):.3f})", flush=True)
    return mean


# ------------------------------------------------------------------ clusters
class RayopsNodes:
    def __init__(self, tls_on: bool, store: int) -> None:
        from rayops.testing.cluster import Cluster

        self._tmp = tempfile.TemporaryDirectory(prefix="xferbench")
        files = None
        if tls_on:
            from rayops.testing.tls_files import loopback_certs

            files = loopback_certs(os.path.join(self._tmp.name, "certs"))
        self.cluster = Cluster(
            os.path.join(self._tmp.name, "c"),
            head_cpus=1,
            object_store_memory=store,
            tls=files,
        )
        for i in range(3):
            self.cluster.add_node(num_cpus=1, resources={f"w{i}": 1}, object_store_memory=store)
        self.cluster.wait_for_nodes(4)
        self.cluster.connect()

    def close(self) -> None:
        import rayops
        from rayops.rpc import tls

        rayops.shutdown()
        self.cluster.shutdown()
        tls.configure(None)
        self._tmp.cleanup()


class RayNodes:
    def __init__(self, store: int) -> None:
        import ray
        from ray.cluster_utils import Cluster

        self.cluster = Cluster(
            initialize_head=True,
            head_node_args={"num_cpus": 1, "object_store_memory": store},
        )
        for i in range(3):
            self.cluster.add_node(num_cpus=1, resources={f"w{i}": 1}, object_store_memory=store)
        self.cluster.wait_for_nodes()
        ray.init(address=self.cluster.address)

    def close(self) -> None:
        import ray

        ray.shutdown()
        self.cluster.shutdown()


# ------------------------------------------------------------------ rows
def run_rows(rt: Any, trials: int, skip_1gb: bool) -> dict[str, float]:
    out: dict[str, float] = {}

    @rt.remote(num_cpus=0)
    def make(n: int) -> np.ndarray:
        return np.ones(n, dtype=np.uint8)

    @rt.remote(num_cpus=0)
    def touch(a: np.ndarray) -> int:
        return int(a[-1]) + a.nbytes

    def cross_get(size: int) -> float:
        ref = make.options(resources={"w0": 0.01}).remote(size)
        rt.wait([ref], fetch_local=False)  # made, not yet moved (Ray would prefetch)
        t0 = time.perf_counter()
        value = rt.get(ref)
        elapsed = time.perf_counter() - t0
        assert value.nbytes == size
        del value, ref
        return size / 1e9 / elapsed

    cross_get(MB)  # warm: workers up, connections open
    out["cross_node_get_100MB"] = report(
        "cross_node_get_100MB", best_of(lambda: cross_get(100 * MB), trials), "GB/s"
    )
    if not skip_1gb:
        out["cross_node_get_1GB"] = report(
            "cross_node_get_1GB", best_of(lambda: cross_get(1024 * MB), max(2, trials // 2)), "GB/s"
        )

    # Warm a worker on every node first.
    rt.get([touch.options(resources={f"w{i}": 0.01}).remote(np.ones(8)) for i in range(3)])

    def broadcast() -> float:
        big = rt.put(np.ones(100 * MB, dtype=np.uint8))
        t0 = time.perf_counter()
        rt.get([touch.options(resources={f"w{i}": 0.01}).remote(big) for i in range(3)])
        elapsed = time.perf_counter() - t0
        del big
        return elapsed

    times = best_of(broadcast, trials)
    out["broadcast_100MB_to_3_nodes"] = report("broadcast_100MB_to_3_nodes", times, "s")
    report("broadcast_100MB_to_3_nodes_rate", [3 * 100 * MB / 1e9 / t for t in times], "GB/s")
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--runtime", choices=["rayops", "ray"], default="rayops")
    p.add_argument("--tls", choices=["on", "off"], default="off")
    p.add_argument("--trials", type=int, default=5)
    p.add_argument("--skip-1gb", action="store_true")
    p.add_argument("--stripes", type=int, default=0, help="rayops: stripes per pull (0: default)")
    args = p.parse_args(argv)
    if args.trials < 1:
        p.error(f"--trials must be >= 1, got {args.trials}")
    if args.runtime == "ray" and (args.tls == "on" or args.stripes):
        p.error("--tls on and --stripes apply to --runtime rayops only")
    if args.stripes:
        os.environ["RAYOPS_TRANSFER_STRIPES"] = str(args.stripes)  # the raylets inherit it
    rt = importlib.import_module(args.runtime)
    print(
        f"# runtime={args.runtime} {getattr(rt, '__version__', '?')} tls={args.tls} "
        f"stripes={args.stripes or 'default'} loadavg={os.getloadavg()[0]:.2f}",
        flush=True,
    )
    tcp = report("loopback_tcp_100MB", best_of(lambda: loopback_tcp(100 * MB), 5), "GB/s")
    report("memcpy_fresh_100MB", best_of(lambda: memcpy_fresh(100 * MB), 5), "GB/s")
    store = (3 if not args.skip_1gb else 1) * 1024 * MB
    nodes: Any = RayopsNodes(args.tls == "on", store) if args.runtime == "rayops" else None
    if nodes is None:
        nodes = RayNodes(store)
    try:
        rows = run_rows(rt, args.trials, args.skip_1gb)
    finally:
        nodes.close()
    tcp_after = report(
        "loopback_tcp_100MB_after", best_of(lambda: loopback_tcp(100 * MB), 5), "GB/s"
    )
    limit = (tcp + tcp_after) / 2
    print(f"{'ratio_100MB_to_loopback_tcp':<34} {rows['cross_node_get_100MB'] / limit:>9.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
