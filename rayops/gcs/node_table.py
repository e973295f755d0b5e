"""The GCS node table: which nodes exist, whether they are alive, and their latest usage.

Pure state and decisions, no I/O: the server calls these methods and sends the results. Time
comes from an injected clock so tests control it.

Node state transitions (the only legal ones):

    (unknown) --register--> ALIVE     a raylet joins
    ALIVE --register--> ALIVE         the same raylet registers again (e.g. it reconnected);
                                      its info is replaced, its start time kept
    ALIVE --unregister--> DEAD        the raylet left or was declared dead; reason recorded
    DEAD --unregister--> DEAD         idempotent; the first reason and end time are kept
    DEAD --register--> refused        a node id is never reused: a restarted raylet gets a
                                      new id, so a late message from the old one cannot
                                      resurrect it
"""

from __future__ import annotations

import dataclasses
import re
from collections import deque
from collections.abc import Callable, Mapping

from rayops.gcs.errors import FailedPrecondition, InvalidArgument
from rayops.gcs.types import NodeInfo, NodeState, ObjectStoreStats, UsageReportOutcome

__all__ = ["DEFAULT_MAX_DEAD_NODES", "NodeTable", "validate_node_id"]

# DEAD nodes are kept so `rayops status` can say why they died; beyond this many the oldest
# are forgotten so a cluster with churning nodes does not grow the GCS without bound.
DEFAULT_MAX_DEAD_NODES = 1000

_HEX = re.compile(r"[0-9a-f]+")


def validate_node_id(node_id: str) -> str:
    """`node_id` if it is lowercase hex; InvalidArgument otherwise."""
    if not _HEX.fullmatch(node_id):
        raise InvalidArgument(f"node id must be non-empty lowercase hex, found {node_id!r}")
    return node_id


def _validate_resources(resources: Mapping[str, float], what: str) -> None:
    for name, amount in resources.items():
        if not name:
            raise InvalidArgument(f"{what}: resource names must be non-empty")
        if not amount >= 0:  # also refuses NaN
            raise InvalidArgument(f"{what}: resource {name!r} must be >= 0, found {amount}")


class NodeTable:
    """Every node the GCS knows, in registration order."""

    def __init__(
        self, clock_ms: Callable[[], int], *, max_dead_nodes: int = DEFAULT_MAX_DEAD_NODES
    ) -> None:
        self._clock_ms = clock_ms
        self._max_dead_nodes = max_dead_nodes
        self._nodes: dict[str, NodeInfo] = {}
        self._dead_order: deque[str] = deque()

    def __len__(self) -> int:
        return len(self._nodes)

    def get(self, node_id: str) -> NodeInfo | None:
        return self._nodes.get(node_id)

    def register(self, info: NodeInfo) -> NodeInfo:
        """Add or refresh an ALIVE node; return it as stored."""
        validate_node_id(info.node_id)
        if not info.node_ip:
            raise InvalidArgument(f"node {info.node_id}: node_ip must be set")
        if not 0 < info.raylet_port < 65536:
            raise InvalidArgument(
                f"node {info.node_id}: raylet_port must be in 1..65535, found {info.raylet_port}"
            )
        _validate_resources(info.resources_total, f"node {info.node_id} resources_total")
        _validate_resources(info.resources_available, f"node {info.node_id} resources_available")
        previous = self._nodes.get(info.node_id)
        if previous is not None and previous.state is NodeState.DEAD:
            raise FailedPrecondition(
                f"node {info.node_id} is DEAD ({previous.death_reason}); a restarted raylet "
                "must register under a new node id"
            )
        now = self._clock_ms()
        # A re-registration keeps the node's original start time.
        start = previous.start_time_ms if previous is not None else (info.start_time_ms or now)
        stored = dataclasses.replace(
            info,
            state=NodeState.ALIVE,
            death_reason="",
            start_time_ms=start,
            end_time_ms=0,
            resources_available=info.resources_available or info.resources_total,
            last_report_time_ms=now,
        )
        self._nodes[info.node_id] = stored
        return stored

    def unregister(self, node_id: str, reason: str) -> bool:
        """Mark the node DEAD now with `reason`; False if the node was never registered."""
        node = self._nodes.get(node_id)
        if node is None:
            return False
        if node.state is NodeState.DEAD:
            return True
        self._nodes[node_id] = dataclasses.replace(
            node,
            state=NodeState.DEAD,
            death_reason=reason or "unregistered without a reason",
            end_time_ms=self._clock_ms(),
        )
        self._dead_order.append(node_id)
        self._forget_oldest_dead()
        return True

    def _forget_oldest_dead(self) -> None:
        while len(self._dead_order) > self._max_dead_nodes:
            del self._nodes[self._dead_order.popleft()]

    def report_usage(
        self,
        node_id: str,
        resources_total: Mapping[str, float],
        resources_available: Mapping[str, float],
        store: ObjectStoreStats,
        pending_demand: tuple[tuple[Mapping[str, float], int, bool], ...] = (),
    ) -> UsageReportOutcome:
        """Apply a raylet's usage report to an ALIVE node; refuse it for unknown or DEAD ones."""
        _validate_resources(resources_total, f"node {node_id} resources_total")
        _validate_resources(resources_available, f"node {node_id} resources_available")
        node = self._nodes.get(node_id)
        if node is None:
            return UsageReportOutcome(accepted=False, state=None)
        if node.state is NodeState.DEAD:
            return UsageReportOutcome(accepted=False, state=NodeState.DEAD)
        self._nodes[node_id] = dataclasses.replace(
            node,
            resources_total=resources_total,
            resources_available=resources_available,
            object_store_stats=store,
            last_report_time_ms=self._clock_ms(),
            pending_demand=pending_demand,
        )
        return UsageReportOutcome(accepted=True, state=NodeState.ALIVE)

    def all_nodes(self, *, alive_only: bool = False) -> list[NodeInfo]:
        """Nodes in registration order."""
        if alive_only:
            return [n for n in self._nodes.values() if n.state is NodeState.ALIVE]
        return list(self._nodes.values())


def check_version_compatible(gcs_version: str, node_version: str, node_id: str) -> None:
    """All nodes run the same major.minor as the GCS (patch releases may differ)."""
    from rayops.gcs.errors import FailedPrecondition

    def major_minor(v: str) -> tuple[str, ...]:
        return tuple(v.split(".")[:2])

    if not gcs_version or not node_version:
        return
    if major_minor(gcs_version) != major_minor(node_version):
        raise FailedPrecondition(
            f"node {node_id[:12]} runs rayops {node_version} but the cluster's GCS runs "
            f"{gcs_version}: major.minor versions must match (patch versions may differ). "
            f"Install rayops {'.'.join(major_minor(gcs_version))}.x on that node."
        )
