"""What the dashboard page shows of the cluster, kept from the GCS's event spine. Pure: no I/O.

`ClusterState` mirrors three channels ("nodes", "actors", "placement_groups"): each batch a
follower receives is handed to `apply`, which replaces the channel's rows on a snapshot and
applies events otherwise. `UsageHistory` keeps the last `max_samples` samples of cluster and
per-node use (CPU, GPU, memory, object store) in fixed-size rings, so a 10-minute chart costs
the same at any age of the server. The payload functions (`nodes_payload`, `actors_payload`,
`groups_payload`) render JSON-ready dicts; the shell (`overview.py`) caches their encoded form
per version, so a page view never walks the tables again while nothing changed.

Nothing here talks to the GCS, reads the clock or knows HTTP.
"""

from __future__ import annotations

import dataclasses
from array import array
from collections.abc import Mapping
from typing import Any

from rayops.gcs.actor_events import ActorChanged, ActorSnapshot
from rayops.gcs.node_events import (
    NodeAdded,
    NodeDead,
    NodeRemoved,
    NodeResourcesChanged,
    NodeSnapshot,
)
from rayops.gcs.pg_events import PgAdded, PgForgotten, PgSnapshot, PgStateChanged, PgView
from rayops.gcs.pubsub import ACTORS_CHANNEL, NODES_CHANNEL, PG_CHANNEL, Batch
from rayops.gcs.types import NodeInfo, NodeState
from rayops.ids import job_id_hex

__all__ = [
    "CHANNELS",
    "METRICS",
    "ClusterState",
    "UsageHistory",
    "actors_payload",
    "groups_payload",
    "node_usage",
    "nodes_payload",
]

CHANNELS = (NODES_CHANNEL, ACTORS_CHANNEL, PG_CHANNEL)
# What the charts show, per node and for the cluster: (used, total) of each.
METRICS = ("CPU", "GPU", "memory", "object_store")


class ClusterState:
    """Nodes, actors and placement groups as the spine last told. `version` grows with every
    batch applied to a channel, so a cache keyed by it is never stale."""

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}
        self.actors: dict[bytes, ActorChanged] = {}
        self.groups: dict[bytes, PgView] = {}
        self.version: dict[str, int] = dict.fromkeys(CHANNELS, 0)
        self.synced: set[str] = set()  # channels whose first snapshot has arrived

    def apply(self, batch: Batch) -> None:
        if batch.channel == NODES_CHANNEL:
            self._apply_nodes(batch)
        elif batch.channel == ACTORS_CHANNEL:
            self._apply_actors(batch)
        elif batch.channel == PG_CHANNEL:
            self._apply_groups(batch)
        else:
            raise ValueError(f"ClusterState follows {CHANNELS}, not {batch.channel!r}")
        self.version[batch.channel] += 1
        if batch.is_snapshot:
            self.synced.add(batch.channel)

    def _apply_nodes(self, batch: Batch) -> None:
        if batch.is_snapshot:
            snap: NodeSnapshot = batch.snapshot
            self.nodes = {n.node_id: n for n in snap.nodes}
        for ev in batch.events:
            if isinstance(ev, NodeAdded):
                self.nodes[ev.node.node_id] = ev.node
            elif isinstance(ev, NodeResourcesChanged):
                old = self.nodes.get(ev.node_id)
                if old is not None:
                    self.nodes[ev.node_id] = dataclasses.replace(
                        old,
                        resources_total=ev.resources_total,
                        resources_available=ev.resources_available,
                        object_store_stats=ev.object_store_stats,
                        pending_demand=ev.pending_demand,
                    )
            elif isinstance(ev, NodeDead):
                old = self.nodes.get(ev.node_id)
                if old is not None:
                    self.nodes[ev.node_id] = dataclasses.replace(
                        old,
                        state=NodeState.DEAD,
                        death_reason=ev.death_reason,
                        end_time_ms=ev.end_time_ms,
                    )
            elif isinstance(ev, NodeRemoved):
                self.nodes.pop(ev.node_id, None)

    def _apply_actors(self, batch: Batch) -> None:
        if batch.is_snapshot:
            snap: ActorSnapshot = batch.snapshot
            self.actors = {a.actor_id: a for a in snap.actors}
        for ev in batch.events:
            if isinstance(ev, ActorChanged):
                self.actors[ev.actor_id] = ev

    def _apply_groups(self, batch: Batch) -> None:
        if batch.is_snapshot:
            snap: PgSnapshot = batch.snapshot
            self.groups = {g.pg_id: g for g in snap.groups}
        for ev in batch.events:
            if isinstance(ev, PgAdded):
                self.groups[ev.group.pg_id] = ev.group
            elif isinstance(ev, PgStateChanged):
                old = self.groups.get(ev.pg_id)
                if old is not None:
                    self.groups[ev.pg_id] = dataclasses.replace(
                        old, state=ev.state, bundle_nodes=ev.bundle_nodes
                    )
            elif isinstance(ev, PgForgotten):
                self.groups.pop(ev.pg_id, None)


def node_usage(node: NodeInfo) -> dict[str, tuple[float, float]]:
    """(used, total) of each chart metric on one node; a dead node uses and offers nothing."""
    if node.state is not NodeState.ALIVE:
        return {m: (0.0, 0.0) for m in METRICS}
    out: dict[str, tuple[float, float]] = {}
    for name in ("CPU", "GPU", "memory"):
        total = float(node.resources_total.get(name, 0.0))
        free = float(node.resources_available.get(name, total))
        out[name] = (max(0.0, total - free), total)
    stats = node.object_store_stats
    out["object_store"] = (float(stats.used_bytes), float(stats.capacity_bytes))
    return out


def _resources(values: Mapping[str, float]) -> dict[str, float]:
    return {k: round(float(v), 4) for k, v in sorted(values.items())}


def nodes_payload(state: ClusterState) -> dict[str, Any]:
    """The nodes panel: every node with its resources used/total and its object store, and the
    cluster's totals over the alive nodes."""
    rows = []
    cluster_total: dict[str, float] = {}
    cluster_used: dict[str, float] = {}
    store_used = store_capacity = spilled = 0
    alive = 0
    for node in sorted(state.nodes.values(), key=lambda n: (not n.is_head_node, n.node_id)):
        total = _resources(node.resources_total)
        available = _resources(node.resources_available)
        used = {k: round(v - available.get(k, v), 4) for k, v in total.items()}
        stats = node.object_store_stats
        is_alive = node.state is NodeState.ALIVE
        if is_alive:
            alive += 1
            for k, v in total.items():
                cluster_total[k] = cluster_total.get(k, 0.0) + v
                cluster_used[k] = cluster_used.get(k, 0.0) + used[k]
            store_used += stats.used_bytes
            store_capacity += stats.capacity_bytes
            spilled += stats.spilled_bytes
        rows.append(
            {
                "node_id": node.node_id,
                "node_ip": node.node_ip,
                "node_name": node.node_name,
                "state": str(node.state),
                "is_head_node": node.is_head_node,
                "raylet_port": node.raylet_port,
                "resources_total": total,
                "resources_used": used,
                "labels": dict(node.labels),
                "object_store": {
                    "used_bytes": stats.used_bytes,
                    "capacity_bytes": stats.capacity_bytes,
                    "spilled_bytes": stats.spilled_bytes,
                },
                "start_time_ms": node.start_time_ms,
                "death_reason": node.death_reason,
            }
        )
    return {
        "nodes": rows,
        "alive": alive,
        "dead": len(rows) - alive,
        "cluster": {
            "resources_total": {k: round(v, 4) for k, v in sorted(cluster_total.items())},
            "resources_used": {k: round(v, 4) for k, v in sorted(cluster_used.items())},
            "object_store": {
                "used_bytes": store_used,
                "capacity_bytes": store_capacity,
                "spilled_bytes": spilled,
            },
        },
    }


def actors_payload(state: ClusterState) -> dict[str, Any]:
    """The actors panel: every actor the GCS holds (Ray's `list actors` fields) and the counts
    by state."""
    by_state: dict[str, int] = {}
    rows = []
    for a in state.actors.values():
        by_state[a.state] = by_state.get(a.state, 0) + 1
        rows.append(
            {
                "actor_id": a.actor_id.hex(),
                "state": a.state,
                "class_name": a.class_name,
                "name": a.name,
                "namespace": a.namespace,
                "node_id": a.node_id,
                "pid": a.pid,
                "ip": a.address_ip,
                "job_id": job_id_hex(a.job_id),
                "num_restarts": a.num_restarts,
                "death_cause": a.death_cause,
            }
        )
    return {"total": len(rows), "by_state": dict(sorted(by_state.items())), "actors": rows}


def groups_payload(state: ClusterState) -> dict[str, Any]:
    """The placement groups panel (Ray's `list placement-groups` fields)."""
    rows = []
    by_state: dict[str, int] = {}
    for g in state.groups.values():
        by_state[g.state] = by_state.get(g.state, 0) + 1
        rows.append(
            {
                "placement_group_id": g.pg_id.hex(),
                "name": g.name,
                "namespace": g.namespace,
                "strategy": g.strategy,
                "state": g.state,
                "is_detached": g.is_detached,
                "creator_job_id": job_id_hex(g.creator_job_id),
                "bundles": [
                    {
                        "bundle_index": i,
                        "unit_resources": _resources(b),
                        "node_id": g.bundle_nodes.get(i, ""),
                    }
                    for i, b in enumerate(g.bundles)
                ],
            }
        )
    return {"total": len(rows), "by_state": dict(sorted(by_state.items())), "groups": rows}


class _Ring:
    """A fixed-size ring of floats (C doubles: 8 bytes a sample, not a Python float each)."""

    __slots__ = ("_data",)

    def __init__(self, size: int, fill: float = 0.0) -> None:
        self._data = array("d", [fill]) * size

    def set(self, index: int, value: float) -> None:
        self._data[index] = value

    def ordered(self, head: int, count: int) -> list[float]:
        size = len(self._data)
        start = (head - count) % size
        if start + count <= size:
            part = self._data[start : start + count]
        else:
            part = self._data[start:] + self._data[: (start + count) - size]
        return [round(v, 4) for v in part]


class UsageHistory:
    """The last `max_samples` samples of use, for the cluster and for each alive node.

    `record(t, state)` takes one sample at time `t` (the caller's clock, seconds). A node
    first seen in a sample has zeros before it; a node gone from the table is dropped with its
    rings. Memory: (1 + nodes) x 2 x 4 rings of `max_samples` doubles (300 samples: ~19 KB a
    node).
    """

    def __init__(self, max_samples: int) -> None:
        if max_samples < 2:
            raise ValueError(f"max_samples must be at least 2, got {max_samples}")
        self.max_samples = max_samples
        self._times = _Ring(max_samples)
        self._head = 0  # next slot to write
        self._count = 0
        self._series: dict[str, dict[str, tuple[_Ring, _Ring]]] = {}

    def _rings(self, key: str) -> dict[str, tuple[_Ring, _Ring]]:
        rings = self._series.get(key)
        if rings is None:
            rings = {m: (_Ring(self.max_samples), _Ring(self.max_samples)) for m in METRICS}
            self._series[key] = rings
        return rings

    def record(self, t: float, state: ClusterState) -> None:
        i = self._head
        self._times.set(i, t)
        cluster = {m: [0.0, 0.0] for m in METRICS}
        seen = {"cluster"}
        for node in state.nodes.values():
            if node.state is not NodeState.ALIVE:
                continue
            seen.add(node.node_id)
            rings = self._rings(node.node_id)
            for m, (used, total) in node_usage(node).items():
                rings[m][0].set(i, used)
                rings[m][1].set(i, total)
                cluster[m][0] += used
                cluster[m][1] += total
        for m, (used_ring, total_ring) in self._rings("cluster").items():
            used_ring.set(i, cluster[m][0])
            total_ring.set(i, cluster[m][1])
        for key in list(self._series):
            if key not in seen:
                del self._series[key]
        self._head = (i + 1) % self.max_samples
        self._count = min(self._count + 1, self.max_samples)

    def payload(self) -> dict[str, Any]:
        """Oldest first: ``times`` and, per series ("cluster" and each node id), per metric
        ``used`` and ``total`` lists as long as ``times``."""
        n = self._count
        return {
            "times": self._times.ordered(self._head, n),
            "series": {
                key: {
                    m: {
                        "used": used.ordered(self._head, n),
                        "total": total.ordered(self._head, n),
                    }
                    for m, (used, total) in rings.items()
                }
                for key, rings in self._series.items()
            },
        }
