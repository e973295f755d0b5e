"""What a node's agent reads from its raylet and from the GCS to build its metrics.

The raylet answers the framed request ``"metrics_snapshot"`` with a `RayletSnapshot`; the
GCS's ``MetricsGcsService.GetClusterMetrics`` (``gcs_metrics.proto``) is read into a
`ClusterSnapshot` by ``rayops.gcs.codec``. Both are plain values: counts and fixed-bucket
histograms, never one entry per task or actor, so a snapshot stays small however busy the
node is.

`LatencyRecorder` is the one mutable thing here: the fixed-bucket accumulator that the raylet
and the GCS update on their hot paths (one bisect and two additions per observation) and
turn into a `Histogram` when asked.

This module imports nothing of rayops: it is the contract between the daemons and the agent.
"""

from __future__ import annotations

import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

__all__ = [
    "GRPC_LATENCY_BOUNDS_MS",
    "PLACEMENT_BOUNDS_S",
    "ClusterSnapshot",
    "Histogram",
    "LatencyRecorder",
    "ProcessRef",
    "RayletSnapshot",
]

# Bucket upper bounds. Ray's gRPC latency histogram is in milliseconds, its placement time
# histogram in seconds; rayops keeps the units so dashboards' PromQL keeps working.
GRPC_LATENCY_BOUNDS_MS: tuple[float, ...] = (
    0.1, 0.25, 0.5, 1, 2.5, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000,
)  # fmt: skip
PLACEMENT_BOUNDS_S: tuple[float, ...] = (
    0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60,
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Histogram:
    """Cumulative-free bucket counts: ``counts[i]`` observations fell in
    ``(bounds[i-1], bounds[i]]``; ``counts[-1]`` (one more than ``bounds``) is above the last
    bound. ``total`` is the sum of the observed values."""

    bounds: tuple[float, ...]
    counts: tuple[int, ...]
    total: float

    @property
    def count(self) -> int:
        return sum(self.counts)


class LatencyRecorder:
    """Fixed-bucket histograms keyed by a label value (a method name, a workload type)."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self._bounds = tuple(bounds)
        self._counts: dict[str, list[int]] = {}
        self._totals: dict[str, float] = {}

    def observe(self, key: str, value: float) -> None:
        counts = self._counts.get(key)
        if counts is None:
            counts = self._counts[key] = [0] * (len(self._bounds) + 1)
            self._totals[key] = 0.0
        counts[bisect.bisect_left(self._bounds, value)] += 1
        self._totals[key] += value

    def snapshot(self) -> dict[str, Histogram]:
        return {
            key: Histogram(self._bounds, tuple(counts), self._totals[key])
            for key, counts in self._counts.items()
        }


@dataclass(frozen=True, slots=True)
class ProcessRef:
    """A process of the node that the agent samples (RSS, CPU) under a component name."""

    component: str
    pid: int


@dataclass(frozen=True, slots=True)
class RayletSnapshot:
    """One raylet's state for metrics, taken on its event loop in one go."""

    node_id: str
    session_name: str
    is_head: bool
    # The raylet, its zygote and its workers (component "workers" for every worker).
    processes: tuple[ProcessRef, ...]
    # Workers by state: "STARTING", "IDLE", "LEASED".
    workers: Mapping[str, int]
    resources_total: Mapping[str, float]
    resources_available: Mapping[str, float]
    # Leases granted and running now; lease requests queued (feasible) and infeasible ones.
    leases_executing: int
    leases_waiting: int
    leases_infeasible: int
    # Object store (see rayops.objectstore.manager.StoreStats).
    store_capacity: int
    store_used_bytes: int
    store_num_objects: int
    store_spilled_bytes: int
    store_fallback_bytes: int
    store_spilled_count: int
    store_restored_count: int
    # Lease request -> grant, by workload type ("Task").
    placement_time_s: Mapping[str, Histogram] = field(default_factory=dict)
    agent_restarts: int = 0
    # Workers the memory monitor killed, by kind ("task", "actor").
    memory_kills: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ClusterSnapshot:
    """The cluster as the GCS sees it: counts and latency histograms only."""

    gcs_pid: int
    # (node_type "head"|"worker", state "ALIVE"|"DEAD") -> number of nodes
    nodes: Mapping[tuple[str, str], int]
    # (state, class name) -> number of actors
    actors: Mapping[tuple[str, str], int]
    running_jobs: int
    finished_jobs: int
    # gRPC method name -> handling time in ms
    grpc_latency_ms: Mapping[str, Histogram] = field(default_factory=dict)
    # Actor registration -> ALIVE, by workload type ("Actor")
    placement_time_s: Mapping[str, Histogram] = field(default_factory=dict)
