"""Control-plane scale rows: many raylets on this machine (rayops.testing.cluster).

    python bench/scale_benchmark.py [--nodes 50] [--joins 3] [--idle-s 10] [--tasks 2000]

Starts ``--nodes`` nodes on loopback (num_cpus=1 each; the head runs the GCS) and prints:

* ``node_join_visible_ms``: from a new node's registration (the GCS's ``start_time_ms``) until
  every raylet's cluster view holds it ALIVE (each raylet records when it first saw each
  node; read through the framed ``node_info``), over ``--joins`` extra nodes;
* ``idle_gcs_cpu_percent`` / ``idle_gcs_rss_mib``, ``idle_raylet_cpu_percent`` (mean and
  max over raylets): CPU time used over ``--idle-s`` seconds with no driver connected;
* ``idle_gcs_rpcs_per_s``: unary calls the GCS served in that window, by method (from its
  latency histograms);
* ``tasks_default`` / ``tasks_spread``: tasks/s of ``--tasks`` no-op tasks from one driver.

Prints figures; never fails (a row it cannot measure prints why).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import statistics
import tempfile
import time
from typing import Any

import psutil

import rayops
from rayops.testing.cluster import Cluster

JOIN_SPACING_S = 2.0


def row(name: str, value: float, unit: str, extra: str = "") -> None:
    print(f"{name:<36} {value:>12.2f}  {unit}  {extra}", flush=True)


def start_cluster(base: str, nodes: int) -> Cluster:
    t0 = time.monotonic()
    cluster = Cluster(base, head_cpus=1, object_store_memory=64 * 2**20)
    for _ in range(nodes - 1):
        cluster.add_node(num_cpus=1, object_store_memory=64 * 2**20)
    cluster.wait_for_nodes(nodes, timeout=120)
    print(f"# {nodes} nodes up in {time.monotonic() - t0:.1f} s", flush=True)
    return cluster


async def _seen_by_all(cluster: Cluster, node_id: str, timeout: float) -> list[int] | None:
    """Every raylet's first-seen time (ms) of `node_id`, or None past `timeout`."""
    from rayops.protocol import raylet_messages as rm
    from rayops.rpc import framed

    conns = []
    for n in cluster.nodes:
        if n.node_id == node_id:
            continue
        rec = n.started.record
        conns.append(await framed.connect(rec.node_ip, rec.raylet_port, cluster.token.encode(), {}))
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            replies = await asyncio.gather(*(c.request(rm.NodeInfo()) for c in conns))
            seen = [r.view_seen_ms.get(node_id) for r in replies]
            if all(s is not None for s in seen):
                return [int(s) for s in seen if s is not None]
            await asyncio.sleep(0.2)
        return None
    finally:
        for c in conns:
            c.close()


def measure_joins(cluster: Cluster, joins: int) -> None:
    from rayops.gcs.client import GcsClient

    lags: list[float] = []
    with GcsClient(cluster.address, cluster.token, timeout=10) as gcs:
        for _ in range(joins):
            # Space the joins: a node's agent starts 1 s after it registers and takes a few
            # hundred ms of CPU, which on one machine would land on the next join.
            time.sleep(JOIN_SPACING_S)
            node = cluster.add_node(num_cpus=1, object_store_memory=64 * 2**20)
            cluster.wait_for_nodes(len(cluster.nodes), timeout=60)
            start = next(n.start_time_ms for n in gcs.get_all_nodes() if n.node_id == node.node_id)
            seen = asyncio.run(_seen_by_all(cluster, node.node_id, 10.0))
            if seen is None:
                print("# node_join_visible_ms: not seen by every raylet within 10 s", flush=True)
                continue
            lags.append(max(seen) - start)
            later = sorted(s - start for s in seen)
            print(
                f"#   join {len(lags)}: seen by half the raylets after {later[len(later) // 2]} ms,"
                f" by 90% after {later[int(len(later) * 0.9)]} ms, by all after {later[-1]} ms",
                flush=True,
            )
    if lags:
        row(
            "node_join_visible_ms",
            statistics.median(lags),
            "ms (median; all raylets)",
            f"max {max(lags):.0f} over {len(lags)} joins at {len(cluster.nodes)} nodes",
        )


def _cpu_s(p: psutil.Process) -> float:
    t = p.cpu_times()
    return float(t.user + t.system)


def _gcs_calls(cluster: Cluster) -> dict[str, int]:
    from rayops.gcs import calls
    from rayops.gcs.client import GcsClient

    with GcsClient(cluster.address, cluster.token, timeout=10) as gcs:
        snap = gcs.call(calls.get_cluster_metrics())
    return {k: sum(h.counts) for k, h in snap.grpc_latency_ms.items()}


def measure_idle(cluster: Cluster, idle_s: float) -> None:
    gcs = psutil.Process(cluster.gcs_pid())
    raylets = [psutil.Process(n.raylet_pid) for n in cluster.nodes]
    time.sleep(3.0)  # agents start ~1 s after their raylet; let the joins settle
    calls0 = _gcs_calls(cluster)
    g0, r0, t0 = _cpu_s(gcs), [_cpu_s(p) for p in raylets], time.monotonic()
    time.sleep(idle_s)
    g1, r1, t1 = _cpu_s(gcs), [_cpu_s(p) for p in raylets], time.monotonic()
    calls1 = _gcs_calls(cluster)
    wall = t1 - t0
    n = len(raylets)
    row("idle_gcs_cpu_percent", 100 * (g1 - g0) / wall, "% of a core", f"{n} nodes")
    row("idle_gcs_rss_mib", gcs.memory_info().rss / 2**20, "MiB", f"{n} nodes")
    per = [100 * (b - a) / wall for a, b in zip(r0, r1, strict=True)]
    row("idle_raylet_cpu_percent", statistics.mean(per), "% of a core", f"max {max(per):.2f}")
    # The metrics scrape itself is one GetClusterMetrics; leave it out.
    rates = {
        k: (calls1.get(k, 0) - calls0.get(k, 0)) / wall
        for k in calls1
        if "GetClusterMetrics" not in k and calls1.get(k, 0) != calls0.get(k, 0)
    }
    row("idle_gcs_rpcs_per_s", sum(rates.values()), "calls/s", str(sorted(rates.items())))


def measure_tasks(cluster: Cluster, tasks: int, repeat: int) -> None:
    @rayops.remote
    def noop() -> int:
        return 0

    @rayops.remote
    def where() -> str:
        return rayops.get_runtime_context().get_node_id()

    gcs = psutil.Process(cluster.gcs_pid())
    for name, opts in (("tasks_default", {}), ("tasks_spread", {"scheduling_strategy": "SPREAD"})):
        f: Any = noop.options(**opts)
        rayops.get([f.remote() for _ in range(200)])  # warm-up (leases, workers, functions)
        rates = []
        calls0, cpu0, t0 = _gcs_calls(cluster), _cpu_s(gcs), time.monotonic()
        for _ in range(repeat):
            start = time.perf_counter()
            rayops.get([f.remote() for _ in range(tasks)])
            rates.append(tasks / (time.perf_counter() - start))
        wall = time.monotonic() - t0
        cpu = 100 * (_cpu_s(gcs) - cpu0) / wall
        reports = (
            _gcs_calls(cluster).get("ReportResourceUsage", 0) - calls0.get("ReportResourceUsage", 0)
        ) / wall
        row(name, statistics.mean(rates), "tasks/s", f"+- {statistics.pstdev(rates):.0f}")
        print(
            f"#   during {name}: GCS {cpu:.0f}% of a core, {reports:.0f} usage reports/s",
            flush=True,
        )
    # Where one batch of SPREAD tasks ran: every node should get a share.
    counts = collections.Counter(
        rayops.get([where.options(scheduling_strategy="SPREAD").remote() for _ in range(tasks)])
    )
    print(
        f"#   one batch of {tasks} SPREAD tasks reached {len(counts)} of {len(cluster.nodes)}"
        f" nodes, {min(counts.values())}-{max(counts.values())} tasks per node",
        flush=True,
    )


def message_sizes(cluster: Cluster) -> None:
    """Bytes on the wire per event kind, for extrapolating the spine's traffic."""
    from rayops.gcs.client import GcsClient
    from rayops.gcs.codec import node_to_proto

    with GcsClient(cluster.address, cluster.token, timeout=10) as gcs:
        nodes = gcs.get_all_nodes()
    try:
        from rayops.gcs.codec import node_event_to_proto
        from rayops.gcs.node_events import NodeAdded, NodeResourcesChanged
    except ImportError:  # the code before the spine: what a poll carries
        size = sum(node_to_proto(n).ByteSize() for n in nodes)
        print(f"# bytes: one node-list poll {size} ({len(nodes)} nodes)", flush=True)
        return
    n = nodes[-1]
    added = node_event_to_proto(NodeAdded(1, n)).ByteSize()
    usage = node_event_to_proto(
        NodeResourcesChanged(1, n.node_id, n.resources_total, n.resources_available)
    ).ByteSize()
    snap = sum(node_to_proto(m).ByteSize() for m in nodes)
    print(f"# bytes: NodeAdded {added}, usage event {usage}, snapshot {snap} ({len(nodes)} nodes)")


def memory_line(cluster: Cluster) -> None:
    total = 0
    for n in cluster.nodes:
        try:
            p = psutil.Process(n.raylet_pid)
            total += p.memory_info().rss
            total += sum(c.memory_info().rss for c in p.children(recursive=True))
        except psutil.Error:
            pass
    print(f"# RSS of all raylets and their children: {total / 2**30:.2f} GiB", flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--nodes", type=int, default=50)
    p.add_argument("--joins", type=int, default=3)
    p.add_argument("--idle-s", type=float, default=10.0)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as base:
        cluster = start_cluster(base, args.nodes)
        try:
            measure_idle(cluster, args.idle_s)
            measure_joins(cluster, args.joins)
            memory_line(cluster)
            message_sizes(cluster)
            cluster.connect()
            try:
                measure_tasks(cluster, args.tasks, args.repeat)
            finally:
                rayops.shutdown()
        finally:
            cluster.shutdown()


if __name__ == "__main__":
    main()
