"""What the autoscaler reads from the GCS, turned into the decision's inputs. No I/O here.

``read_cluster`` (the one function that calls the GCS) fetches the node table, the
placement-group table and the latest ``request_resources`` record; everything else is pure:

* queued task and actor shapes: the ``pending_demand`` each raylet reports with its usage
  (``ReportResourceUsage``), summed over nodes by shape;
* pending placement groups (PENDING or RESCHEDULING) with their bundles and strategy;
* each live node's view: totals, what is free, whether its object store holds objects
  (``used_bytes`` > 0), whether a created placement group has a bundle on it, and how long it
  has been idle. Raylets report usage, not idleness, so ``IdleTracker`` derives it: a node is
  busy while anything is taken from it, it has queued work, or its store holds objects; its
  idle time counts from the last report that saw it busy (Ray's raylet keeps the same clock).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from rayops.autoscaler.types import (
    BundleDemand,
    Demand,
    NodeView,
    ResourceDemand,
    ResourceRequest,
    Shape,
)
from rayops.protocol.autoscaler_messages import ResourceRequestRecord

__all__ = ["ClusterRead", "IdleTracker", "build_demand", "node_views", "shape_key"]

# Resources every node has that say nothing about work (they are never "taken").
_IGNORED_PREFIXES = ("node:", "accelerator_type:")
_IGNORED = {"memory", "object_store_memory"}
PENDING_PG_STATES = {"PENDING", "RESCHEDULING"}


def shape_key(shape: Shape) -> tuple[tuple[str, float], ...]:
    return tuple(sorted((k, float(v)) for k, v in shape.items()))


def _plain(resources: Mapping[str, float]) -> dict[str, float]:
    """Resources without the per-node markers and without placement-group bundle names."""
    return {
        k: float(v)
        for k, v in resources.items()
        if not k.startswith(_IGNORED_PREFIXES) and "_group_" not in k
    }


@dataclass(frozen=True)
class NodeRow:
    """The fields of the GCS's NodeInfo the autoscaler uses."""

    node_id: str
    node_ip: str
    is_head: bool
    total: Mapping[str, float]
    available: Mapping[str, float]
    labels: Mapping[str, str]
    store_used_bytes: int
    pending: tuple[tuple[Mapping[str, float], int, bool], ...]


@dataclass(frozen=True)
class GroupRow:
    state: str
    strategy: str
    bundles: tuple[Mapping[str, float], ...]
    bundle_nodes: tuple[str, ...]  # node ids (hex) holding a bundle


@dataclass(frozen=True)
class ClusterRead:
    nodes: tuple[NodeRow, ...]
    groups: tuple[GroupRow, ...]
    request: ResourceRequestRecord | None


def node_row(info: Any) -> NodeRow:
    return NodeRow(
        node_id=info.node_id,
        node_ip=info.node_ip,
        is_head=bool(info.is_head_node),
        total=dict(info.resources_total),
        available=dict(info.resources_available),
        labels=dict(info.labels),
        store_used_bytes=int(info.object_store_stats.used_bytes),
        pending=tuple(info.pending_demand),
    )


def group_row(pb: Any) -> GroupRow:
    return GroupRow(
        state=str(pb.state),
        strategy=str(pb.strategy) or "PACK",
        bundles=tuple(dict(b.resources) for b in pb.bundles),
        bundle_nodes=tuple(str(n) for n in pb.bundle_nodes.values() if n),
    )


def build_demand(read: ClusterRead) -> Demand:
    """Queued shapes summed over nodes, pending groups, and the latest resource request."""
    counts: dict[tuple[tuple[str, float], ...], int] = {}
    shapes: dict[tuple[tuple[str, float], ...], Shape] = {}
    for n in read.nodes:
        for shape, count, _infeasible in n.pending:
            plain = _plain(shape)
            if not plain or count <= 0:
                continue
            key = shape_key(plain)
            shapes[key] = plain
            counts[key] = counts.get(key, 0) + int(count)
    tasks = tuple(ResourceDemand(shapes[k], c) for k, c in sorted(counts.items()))
    groups = tuple(
        BundleDemand(tuple(_plain(b) for b in g.bundles), g.strategy)
        for g in read.groups
        if g.state in PENDING_PG_STATES and g.bundles
    )
    requests = (
        (ResourceRequest(tuple(read.request.bundles)),)
        if read.request is not None and read.request.bundles
        else ()
    )
    return Demand(tasks, groups, requests)


def is_busy(n: NodeRow) -> bool:
    if n.store_used_bytes > 0 or any(c > 0 for _, c, _ in n.pending):
        return True
    total, avail = _plain(n.total), _plain(n.available)
    return any(avail.get(k, 0.0) + 1e-9 < v for k, v in total.items() if k not in _IGNORED)


class IdleTracker:
    """Seconds since each node was last seen busy (state kept across reads)."""

    def __init__(self) -> None:
        self._busy_at: dict[str, float] = {}

    def update(self, nodes: Iterable[NodeRow], now: float) -> dict[str, float]:
        idle: dict[str, float] = {}
        seen = set()
        for n in nodes:
            seen.add(n.node_id)
            if is_busy(n) or n.node_id not in self._busy_at:
                self._busy_at[n.node_id] = now
            idle[n.node_id] = 0.0 if is_busy(n) else now - self._busy_at[n.node_id]
        for gone in set(self._busy_at) - seen:
            del self._busy_at[gone]
        return idle


def node_views(
    read: ClusterRead,
    idle: Mapping[str, float],
    instance_of: Mapping[str, str],
    type_of: Mapping[str, str],
    head_type: str,
) -> tuple[NodeView, ...]:
    """One NodeView per live node. ``instance_of``/``type_of`` map a node's IP to the
    autoscaler instance that made it and its node type (nodes it did not make: None)."""
    with_bundles = {
        nid for g in read.groups if g.state not in PENDING_PG_STATES for nid in g.bundle_nodes
    }
    out = []
    for n in read.nodes:
        out.append(
            NodeView(
                node_id=n.node_id,
                instance_id=None if n.is_head else instance_of.get(n.node_ip),
                node_type=head_type if n.is_head else type_of.get(n.node_ip, ""),
                total=_plain(n.total),
                available=_plain(n.available),
                idle_s=idle.get(n.node_id, 0.0),
                holds_objects=n.store_used_bytes > 0,
                holds_bundles=n.node_id in with_bundles,
                is_head=n.is_head,
                labels=dict(n.labels),
            )
        )
    return tuple(out)


def read_cluster(gcs: Any) -> ClusterRead:
    """The node table (alive nodes), the placement groups and the resource request."""
    from rayops.gcs.calls import get_all_placement_groups
    from rayops.protocol.autoscaler_messages import AUTOSCALER_NAMESPACE, REQUESTS_KEY

    nodes = tuple(node_row(i) for i in gcs.get_all_nodes(alive_only=True))
    groups = tuple(group_row(pb) for pb in gcs.call(get_all_placement_groups()))
    raw = gcs.kv_get(REQUESTS_KEY, namespace=AUTOSCALER_NAMESPACE)
    request = ResourceRequestRecord.from_json(raw) if raw else None
    return ClusterRead(nodes, groups, request)
