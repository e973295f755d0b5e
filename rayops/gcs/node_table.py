"""The GCS node table: which nodes exist, whether they are alive, and their latest usage.

A pure state machine, no I/O: typed commands in (`rayops.gcs.node_events`: RegisterNode,
ReportUsage, MarkNodeDead), typed change events out (NodeAdded, NodeResourcesChanged,
NodeDead, NodeRemoved), each stamped with the table's next version. The GCS's handlers and
health checks call `apply` and the pubsub service streams the events (the event spine).
Time comes from an injected clock so tests control it.

A node's state is None (the table does not hold it), ALIVE or DEAD. `TRANSITIONS` below is
the one table of what each command does in each state; `apply` looks every command up there.
"""

from __future__ import annotations

import dataclasses
import enum
import re
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

from rayops.gcs.errors import FailedPrecondition, InvalidArgument
from rayops.gcs.node_events import (
    MarkNodeDead,
    NodeAdded,
    NodeCommand,
    NodeDead,
    NodeEvent,
    NodeRemoved,
    NodeResourcesChanged,
    NodeSnapshot,
    RegisterNode,
    ReportUsage,
)
from rayops.gcs.types import NodeInfo, NodeState, ObjectStoreStats, UsageReportOutcome

__all__ = [
    "DEFAULT_MAX_DEAD_NODES",
    "TRANSITIONS",
    "Applied",
    "Edge",
    "Effect",
    "NodeTable",
    "validate_node_id",
]

# DEAD nodes are kept so `rayops status` can say why they died; beyond this many the oldest
# are forgotten so a cluster with churning nodes does not grow the GCS without bound.
DEFAULT_MAX_DEAD_NODES = 1000

_HEX = re.compile(r"[0-9a-f]+")


class Effect(enum.Enum):
    """What a command does to a node in a given state."""

    APPLY = "apply"  # the node changes (or its usage is stored); events may follow
    IGNORE = "ignore"  # nothing changes; the caller is told (found=False, report refused)
    REFUSE = "refuse"  # the command is an error: FailedPrecondition to the caller


@dataclass(frozen=True, slots=True)
class Edge:
    """One row of the transition table: the state after the command, and its effect."""

    to: NodeState | None
    effect: Effect


_ALIVE, _DEAD = NodeState.ALIVE, NodeState.DEAD

# The only legal transitions: (state the table holds the node in, command) -> edge.
TRANSITIONS: dict[tuple[NodeState | None, type[NodeCommand]], Edge] = {
    # A raylet joins: NodeAdded.
    (None, RegisterNode): Edge(_ALIVE, Effect.APPLY),
    # The same raylet registers again (it lost the GCS for a while): its info is replaced,
    # its start time kept; NodeAdded again (subscribers replace what they hold).
    (_ALIVE, RegisterNode): Edge(_ALIVE, Effect.APPLY),
    # A node id is never reused: a restarted raylet gets a new id, so a late message from the
    # old one cannot resurrect it (no split brain).
    (_DEAD, RegisterNode): Edge(_DEAD, Effect.REFUSE),
    # Usage from a node the table does not hold (e.g. the GCS restarted): refused with state
    # None, so the raylet registers again.
    (None, ReportUsage): Edge(None, Effect.IGNORE),
    # Usage stored; NodeResourcesChanged when resources, store or demand differ.
    (_ALIVE, ReportUsage): Edge(_ALIVE, Effect.APPLY),
    # A late report from a DEAD node: refused with state DEAD (the raylet stops).
    (_DEAD, ReportUsage): Edge(_DEAD, Effect.IGNORE),
    # Death of a node never registered: found=False, nothing changes.
    (None, MarkNodeDead): Edge(None, Effect.IGNORE),
    # The node left or missed its health checks: NodeDead; past the dead-node cap the oldest
    # dead node is forgotten (NodeRemoved).
    (_ALIVE, MarkNodeDead): Edge(_DEAD, Effect.APPLY),
    # Idempotent: the first reason and end time are kept.
    (_DEAD, MarkNodeDead): Edge(_DEAD, Effect.IGNORE),
}


@dataclass(frozen=True, slots=True)
class Applied:
    """What one command did: the node's state before and after, its record, the events."""

    before: NodeState | None
    after: NodeState | None
    node: NodeInfo | None
    events: tuple[NodeEvent, ...]


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


def _validate_registration(info: NodeInfo) -> None:
    validate_node_id(info.node_id)
    if not info.node_ip:
        raise InvalidArgument(f"node {info.node_id}: node_ip must be set")
    if not 0 < info.raylet_port < 65536:
        raise InvalidArgument(
            f"node {info.node_id}: raylet_port must be in 1..65535, found {info.raylet_port}"
        )
    _validate_resources(info.resources_total, f"node {info.node_id} resources_total")
    _validate_resources(info.resources_available, f"node {info.node_id} resources_available")


class NodeTable:
    """Every node the GCS knows, in registration order, and the version of the last change.

    `sink`, when given, receives the events of every command as it is applied (the GCS
    passes its publisher, so no change can bypass the spine); `apply` returns them too.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int],
        *,
        max_dead_nodes: int = DEFAULT_MAX_DEAD_NODES,
        sink: Callable[[Sequence[NodeEvent]], None] | None = None,
    ) -> None:
        self._clock_ms = clock_ms
        self._max_dead_nodes = max_dead_nodes
        self._nodes: dict[str, NodeInfo] = {}
        self._dead_order: deque[str] = deque()
        self._sink = sink
        self.version = 0

    def __len__(self) -> int:
        return len(self._nodes)

    def restore(self, nodes: Iterable[NodeInfo]) -> None:
        """Load the nodes a restarted GCS read back from its store (no events: a restarted
        GCS has a new epoch, so every follower takes a snapshot anyway)."""
        for info in nodes:
            self._nodes[info.node_id] = info
            if info.state is NodeState.DEAD:
                self._dead_order.append(info.node_id)

    def get(self, node_id: str) -> NodeInfo | None:
        return self._nodes.get(node_id)

    def snapshot(self) -> NodeSnapshot:
        """Every node as of the current version."""
        return NodeSnapshot(self.version, tuple(self._nodes.values()))

    def apply(self, cmd: NodeCommand) -> Applied:
        """Validate `cmd`, look up its edge in TRANSITIONS, carry it out; return what changed."""
        if isinstance(cmd, RegisterNode):
            _validate_registration(cmd.info)
            node_id = cmd.info.node_id
        else:
            node_id = validate_node_id(cmd.node_id)
        if isinstance(cmd, ReportUsage):
            _validate_resources(cmd.resources_total, f"node {node_id} resources_total")
            _validate_resources(cmd.resources_available, f"node {node_id} resources_available")
        current = self._nodes.get(node_id)
        before = None if current is None else current.state
        edge = TRANSITIONS[(before, type(cmd))]
        if edge.effect is Effect.REFUSE:
            assert current is not None
            raise FailedPrecondition(
                f"node {node_id} is DEAD ({current.death_reason}); a restarted raylet "
                "must register under a new node id"
            )
        if edge.effect is Effect.IGNORE:
            return Applied(before, before, current, ())
        if isinstance(cmd, RegisterNode):
            events = self._register(cmd.info, current)
        elif isinstance(cmd, ReportUsage):
            assert current is not None
            events = self._report(cmd, current)
        else:
            assert current is not None
            events = self._mark_dead(current, cmd.reason)
        stored = self._nodes.get(node_id)
        after = None if stored is None else stored.state
        assert after is edge.to or (after is None and isinstance(events[-1], NodeRemoved))
        if events and self._sink is not None:
            self._sink(events)
        return Applied(before, after, stored, events)

    def _stamp(self) -> int:
        self.version += 1
        return self.version

    def _register(self, info: NodeInfo, previous: NodeInfo | None) -> tuple[NodeEvent, ...]:
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
        return (NodeAdded(self._stamp(), stored),)

    def _report(self, cmd: ReportUsage, node: NodeInfo) -> tuple[NodeEvent, ...]:
        changed = (
            dict(cmd.resources_total) != node.resources_total
            or dict(cmd.resources_available) != node.resources_available
            or cmd.object_store_stats != node.object_store_stats
            or cmd.pending_demand != node.pending_demand
        )
        self._nodes[node.node_id] = dataclasses.replace(
            node,
            resources_total=cmd.resources_total,
            resources_available=cmd.resources_available,
            object_store_stats=cmd.object_store_stats,
            last_report_time_ms=self._clock_ms(),
            pending_demand=cmd.pending_demand,
        )
        if not changed:
            return ()
        return (
            NodeResourcesChanged(
                self._stamp(),
                node.node_id,
                dict(cmd.resources_total),
                dict(cmd.resources_available),
                cmd.object_store_stats,
                cmd.pending_demand,
            ),
        )

    def _mark_dead(self, node: NodeInfo, reason: str) -> tuple[NodeEvent, ...]:
        dead = dataclasses.replace(
            node,
            state=NodeState.DEAD,
            death_reason=reason or "unregistered without a reason",
            end_time_ms=self._clock_ms(),
        )
        self._nodes[node.node_id] = dead
        events: list[NodeEvent] = [
            NodeDead(self._stamp(), node.node_id, dead.death_reason, dead.end_time_ms)
        ]
        self._dead_order.append(node.node_id)
        while len(self._dead_order) > self._max_dead_nodes:
            oldest = self._dead_order.popleft()
            del self._nodes[oldest]
            events.append(NodeRemoved(self._stamp(), oldest))
        return tuple(events)

    # The table's original calls, kept for its callers: each is one command.

    def register(self, info: NodeInfo) -> NodeInfo:
        """Add or refresh an ALIVE node; return it as stored."""
        node = self.apply(RegisterNode(info)).node
        assert node is not None
        return node

    def unregister(self, node_id: str, reason: str) -> bool:
        """Mark the node DEAD now with `reason`; False if the node was never registered."""
        return self.apply(MarkNodeDead(node_id, reason)).before is not None

    def report_usage(
        self,
        node_id: str,
        resources_total: Mapping[str, float],
        resources_available: Mapping[str, float],
        store: ObjectStoreStats,
        pending_demand: tuple[tuple[Mapping[str, float], int, bool], ...] = (),
    ) -> UsageReportOutcome:
        """Apply a raylet's usage report to an ALIVE node; refuse it for unknown or DEAD ones."""
        applied = self.apply(
            ReportUsage(node_id, resources_total, resources_available, store, pending_demand)
        )
        return UsageReportOutcome(accepted=applied.before is NodeState.ALIVE, state=applied.before)

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
