"""Node metrics: what psutil says about the machine and the node's processes, and what the
raylet's snapshot says about workers, resources, the scheduler and the object store.

`NodeSampler` does the I/O (psutil; run it off the event loop). `node_families` is a pure
function from a `NodeFacts` and a `RayletSnapshot` to Prometheus metric families with Ray's
names and labels (docs/metrics.md lists them).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)

from rayops.protocol.node_snapshot import Histogram, ProcessRef, RayletSnapshot

__all__ = ["NodeFacts", "NodeSampler", "base_labels", "histogram_family", "node_families"]

# Ray's standard labels, carried by every series rayops exports.
BASE_LABELS = ("SessionName", "NodeAddress")
# Ray's extra labels on its ray_node_* gauges.
NODE_LABELS = ("ip", "RayNodeType", "IsHeadNode")


@dataclass(frozen=True)
class ComponentUsage:
    rss_bytes: int
    cpu_percent: float


@dataclass(frozen=True)
class NodeFacts:
    """One psutil sample of the machine and of the node's processes."""

    cpu_percent: float
    cpu_count: int
    mem_total: int
    mem_available: int
    mem_used: int
    disk_total: int
    disk_used: int
    disk_free: int
    net_sent: int
    net_received: int
    net_send_speed: float
    net_receive_speed: float
    components: Mapping[str, ComponentUsage] = field(default_factory=dict)


def base_labels(session_name: str, node_address: str) -> tuple[str, str]:
    return (session_name, node_address)


class NodeSampler:
    """Samples the machine and a set of processes. Keeps psutil handles between samples
    so CPU percentages cover the time since the previous sample."""

    SLICE = 64  # processes sampled between two yields to the event loop

    def __init__(self, disk_path: str) -> None:
        import psutil

        self._psutil = psutil
        self._disk_path = disk_path
        self._procs: dict[int, psutil.Process] = {}
        self._last_net: tuple[float, int, int] | None = None
        psutil.cpu_percent(None)  # primes the system-wide counter

    async def sample(self, processes: Sequence[ProcessRef]) -> NodeFacts:
        """Sample on the event loop, yielding every `SLICE` processes: a scrape waits for
        one slice at most, and no thread competes with it for the GIL."""
        ps = self._psutil
        mem = ps.virtual_memory()
        try:
            disk = ps.disk_usage(self._disk_path)
            disk_total, disk_used, disk_free = disk.total, disk.used, disk.free
        except OSError:
            disk_total = disk_used = disk_free = 0
        net = ps.net_io_counters()
        now = time.monotonic()
        sent, recv = (net.bytes_sent, net.bytes_recv) if net is not None else (0, 0)
        send_speed = recv_speed = 0.0
        if self._last_net is not None and now > self._last_net[0]:
            dt = now - self._last_net[0]
            send_speed = max(0.0, (sent - self._last_net[1]) / dt)
            recv_speed = max(0.0, (recv - self._last_net[2]) / dt)
        self._last_net = (now, sent, recv)
        cpu_percent = ps.cpu_percent(None)
        rss: dict[str, int] = {}
        cpu: dict[str, float] = {}
        seen: set[int] = set()
        for i in range(0, len(processes), self.SLICE):
            if i:
                await asyncio.sleep(0)
            self._sample_processes(processes[i : i + self.SLICE], seen, rss, cpu)
        for pid in [p for p in self._procs if p not in seen]:
            del self._procs[pid]
        return NodeFacts(
            cpu_percent=cpu_percent,
            cpu_count=ps.cpu_count() or 1,
            mem_total=mem.total,
            mem_available=mem.available,
            mem_used=mem.total - mem.available,
            disk_total=disk_total,
            disk_used=disk_used,
            disk_free=disk_free,
            net_sent=sent,
            net_received=recv,
            net_send_speed=send_speed,
            net_receive_speed=recv_speed,
            components={k: ComponentUsage(rss[k], cpu[k]) for k in rss},
        )

    def _sample_processes(
        self,
        processes: Sequence[ProcessRef],
        seen: set[int],
        rss: dict[str, int],
        cpu: dict[str, float],
    ) -> None:
        ps = self._psutil
        for ref in processes:
            if ref.pid <= 0 or ref.pid in seen:
                continue
            seen.add(ref.pid)
            proc = self._procs.get(ref.pid)
            try:
                if proc is None:
                    proc = self._procs[ref.pid] = ps.Process(ref.pid)
                    proc.cpu_percent(None)  # first call: baseline only
                with proc.oneshot():
                    r = proc.memory_info().rss
                    c = proc.cpu_percent(None)
            except (ps.NoSuchProcess, ps.AccessDenied, ps.ZombieProcess):
                self._procs.pop(ref.pid, None)
                continue
            rss[ref.component] = rss.get(ref.component, 0) + r
            cpu[ref.component] = cpu.get(ref.component, 0.0) + c


def histogram_family(
    name: str,
    doc: str,
    label_names: Sequence[str],
    series: Iterable[tuple[Sequence[str], Histogram]],
) -> HistogramMetricFamily:
    """A Prometheus histogram family from rayops' non-cumulative bucket counts."""
    fam = HistogramMetricFamily(name, doc, labels=list(label_names))
    for labels, h in series:
        buckets: list[tuple[str, float]] = []
        running = 0
        for bound, n in zip(h.bounds, h.counts, strict=False):
            running += n
            buckets.append((_le(bound), float(running)))
        buckets.append(("+Inf", float(h.count)))
        fam.add_metric(list(labels), buckets, h.total)
    return fam


def _le(bound: float) -> str:
    return repr(float(bound))


def node_families(
    facts: NodeFacts | None,
    snap: RayletSnapshot | None,
    base: tuple[str, str],
    *,
    is_head: bool,
    extra_components: Mapping[str, ComponentUsage] | None = None,
    refused_scrapes: int = 0,
) -> list[Metric]:
    """Ray's node metrics from the latest samples (either may be missing at start-up)."""
    out: list[Metric] = []
    b = list(BASE_LABELS)
    node_type = "head" if is_head else "worker"
    node_vals = [*base, base[1], node_type, "true" if is_head else "false"]

    def gauge(name: str, doc: str, value: float) -> None:
        fam = GaugeMetricFamily(name, doc, labels=[*b, *NODE_LABELS])
        fam.add_metric(node_vals, value)
        out.append(fam)

    if facts is not None:
        gauge(
            "ray_node_cpu_utilization", "Total CPU usage on the node (percent)", facts.cpu_percent
        )
        gauge("ray_node_cpu_count", "CPUs of the node", facts.cpu_count)
        gauge("ray_node_mem_used", "Memory used on the node (bytes)", facts.mem_used)
        gauge("ray_node_mem_available", "Memory available on the node (bytes)", facts.mem_available)
        gauge("ray_node_mem_total", "Memory of the node (bytes)", facts.mem_total)
        gauge("ray_node_mem_used_host", "Memory used on the host (bytes)", facts.mem_used)
        gauge("ray_node_mem_total_host", "Memory of the host (bytes)", facts.mem_total)
        gauge(
            "ray_node_disk_usage", "Disk used where the node's temp dir is (bytes)", facts.disk_used
        )
        gauge(
            "ray_node_disk_free", "Disk free where the node's temp dir is (bytes)", facts.disk_free
        )
        pct = 100.0 * facts.disk_used / facts.disk_total if facts.disk_total else 0.0
        gauge("ray_node_disk_utilization_percentage", "Disk utilization (percent)", pct)
        gauge("ray_node_network_sent", "Bytes sent by the node since boot", facts.net_sent)
        gauge(
            "ray_node_network_received", "Bytes received by the node since boot", facts.net_received
        )
        gauge("ray_node_network_send_speed", "Network send speed (bytes/s)", facts.net_send_speed)
        gauge(
            "ray_node_network_receive_speed",
            "Network receive speed (bytes/s)",
            facts.net_receive_speed,
        )
    components = dict(facts.components) if facts is not None else {}
    components.update(extra_components or {})
    if components:
        rss = GaugeMetricFamily(
            "ray_component_rss_mb", "RSS of the node's components (MB)", labels=[*b, "Component"]
        )
        cpu = GaugeMetricFamily(
            "ray_component_cpu_percentage",
            "CPU usage of the node's components (percent of one CPU)",
            labels=[*b, "Component"],
        )
        for name, usage in sorted(components.items()):
            rss.add_metric([*base, name], usage.rss_bytes / 2**20)
            cpu.add_metric([*base, name], usage.cpu_percent)
        out += [rss, cpu]
    refused = CounterMetricFamily(
        "ray_agent_refused_scrapes",
        "Requests to the agent's HTTP endpoints refused for a missing or wrong token",
        labels=b,
    )
    refused.add_metric(list(base), refused_scrapes)
    out.append(refused)
    if snap is not None:
        out += _raylet_families(snap, base)
    return out


def _raylet_families(snap: RayletSnapshot, base: tuple[str, str]) -> list[Metric]:
    b = list(BASE_LABELS)
    out: list[Metric] = []

    def single(name: str, doc: str, value: float) -> None:
        fam = GaugeMetricFamily(name, doc, labels=b)
        fam.add_metric(list(base), value)
        out.append(fam)

    store = GaugeMetricFamily(
        "ray_object_store_memory", "Object store bytes by location", labels=[*b, "Location"]
    )
    store.add_metric([*base, "MMAP_SHM"], snap.store_used_bytes)
    store.add_metric([*base, "MMAP_DISK"], snap.store_fallback_bytes)
    store.add_metric([*base, "SPILLED"], snap.store_spilled_bytes)
    out.append(store)
    single(
        "ray_object_store_used_memory",
        "Object store shared memory used (bytes)",
        snap.store_used_bytes,
    )
    single(
        "ray_object_store_available_memory",
        "Object store shared memory free (bytes)",
        max(0, snap.store_capacity - snap.store_used_bytes),
    )
    single(
        "ray_object_store_fallback_memory",
        "Objects written straight to disk (bytes)",
        snap.store_fallback_bytes,
    )
    single(
        "ray_object_store_num_local_objects",
        "Objects in the node's shared memory",
        snap.store_num_objects,
    )
    spill = CounterMetricFamily(
        "ray_spill_manager_request", "Objects spilled to / restored from disk", labels=[*b, "Type"]
    )
    spill.add_metric([*base, "Spilled"], snap.store_spilled_count)
    spill.add_metric([*base, "Restored"], snap.store_restored_count)
    out.append(spill)
    res = GaugeMetricFamily(
        "ray_resources", "Logical resources by state", labels=[*b, "Name", "State"]
    )
    for name, total in sorted(snap.resources_total.items()):
        if name.startswith("node:"):
            continue
        avail = snap.resources_available.get(name, 0.0)
        res.add_metric([*base, name, "AVAILABLE"], avail)
        res.add_metric([*base, name, "USED"], max(0.0, total - avail))
    out.append(res)
    workers = GaugeMetricFamily("ray_workers", "Worker processes by state", labels=[*b, "State"])
    for state in ("STARTING", "IDLE", "LEASED"):
        workers.add_metric([*base, state], snap.workers.get(state, 0))
    out.append(workers)
    sched = GaugeMetricFamily(
        "ray_scheduler_tasks", "Lease requests by scheduling state", labels=[*b, "State"]
    )
    sched.add_metric([*base, "Executing"], snap.leases_executing)
    sched.add_metric([*base, "Waiting"], snap.leases_waiting)
    sched.add_metric([*base, "Infeasible"], snap.leases_infeasible)
    out.append(sched)
    unsched = GaugeMetricFamily(
        "ray_scheduler_unscheduleable_tasks",
        "Lease requests that cannot be granted now, by reason",
        labels=[*b, "Reason"],
    )
    unsched.add_metric([*base, "Infeasible"], snap.leases_infeasible)
    unsched.add_metric([*base, "WaitingForResources"], snap.leases_waiting)
    out.append(unsched)
    if snap.placement_time_s:
        out.append(
            histogram_family(
                "ray_scheduler_placement_time_s",
                "Time from a lease request to its grant (s)",
                [*b, "WorkloadType"],
                [([*base, k], h) for k, h in sorted(snap.placement_time_s.items())],
            )
        )
    restarts = CounterMetricFamily(
        "ray_agent_restarts", "Times the raylet restarted this node's agent", labels=b
    )
    restarts.add_metric(list(base), snap.agent_restarts)
    out.append(restarts)
    # Ray's name and Type label values for workers its memory monitor killed.
    kills = CounterMetricFamily(
        "ray_memory_manager_worker_eviction",
        "Workers the memory monitor killed to relieve memory pressure",
        labels=[*b, "Type"],
    )
    for kind, label in (("task", "TaskEviction"), ("actor", "ActorEviction")):
        kills.add_metric([*base, f"MemoryManager.{label}.Total"], snap.memory_kills.get(kind, 0))
    out.append(kills)
    return out
