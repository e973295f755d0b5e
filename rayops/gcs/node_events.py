"""The node table's commands (what may change it) and change events (what did change).

Commands come in from the GCS's handlers (a raylet registers, reports its usage, leaves; the
health checks declare a node dead); `rayops.gcs.node_table.NodeTable.apply` decides and
returns the events, each stamped with the table's next version. The events are the event
spine's node channel: the pubsub service (`rayops.gcs.pubsub`) streams them to raylets, and
later to anything else that follows the node table (dashboard, autoscaler, persistence).

Plain frozen dataclasses with no I/O. They live here rather than in `rayops/protocol/`
because they carry `NodeInfo` (a GCS record, `rayops.gcs.types`); what crosses processes is
their protobuf form (`NodeEvent` in `protocol/gcs_pubsub.proto`), converted in
`rayops.gcs.codec` only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from rayops.gcs.types import NodeInfo, ObjectStoreStats

__all__ = [
    "MarkNodeDead",
    "NodeAdded",
    "NodeCommand",
    "NodeDead",
    "NodeEvent",
    "NodeRemoved",
    "NodeResourcesChanged",
    "NodeSnapshot",
    "RegisterNode",
    "ReportUsage",
]

Demand = tuple[tuple[Mapping[str, float], int, bool], ...]


# Commands.


@dataclass(frozen=True, slots=True)
class RegisterNode:
    """A raylet joins (or joins again after losing the GCS) with its identity and resources."""

    info: NodeInfo


@dataclass(frozen=True, slots=True)
class ReportUsage:
    """A raylet's resources, object store and waiting lease shapes changed."""

    node_id: str
    resources_total: Mapping[str, float]
    resources_available: Mapping[str, float]
    object_store_stats: ObjectStoreStats = field(default_factory=ObjectStoreStats)
    pending_demand: Demand = ()


@dataclass(frozen=True, slots=True)
class MarkNodeDead:
    """The node left (its raylet unregistered) or missed its health checks."""

    node_id: str
    reason: str


NodeCommand = RegisterNode | ReportUsage | MarkNodeDead


# Events. `version` is the table's version right after the change: strictly increasing,
# one per event, so a subscriber that saw version v needs exactly the events after v.


@dataclass(frozen=True, slots=True)
class NodeAdded:
    """A node is ALIVE with this info (a join, or a re-registration replacing the info)."""

    version: int
    node: NodeInfo


@dataclass(frozen=True, slots=True)
class NodeResourcesChanged:
    """An ALIVE node's latest usage (what its raylet reported, when it differs)."""

    version: int
    node_id: str
    resources_total: Mapping[str, float]
    resources_available: Mapping[str, float]
    object_store_stats: ObjectStoreStats = field(default_factory=ObjectStoreStats)
    pending_demand: Demand = ()


@dataclass(frozen=True, slots=True)
class NodeDead:
    """A node turned DEAD; its id can never register again."""

    version: int
    node_id: str
    death_reason: str
    end_time_ms: int


@dataclass(frozen=True, slots=True)
class NodeRemoved:
    """A DEAD node was forgotten (the table keeps only the newest dead nodes)."""

    version: int
    node_id: str


NodeEvent = NodeAdded | NodeResourcesChanged | NodeDead | NodeRemoved


@dataclass(frozen=True, slots=True)
class NodeSnapshot:
    """Every node the table holds, as of `version` (what a new subscriber starts from)."""

    version: int
    nodes: tuple[NodeInfo, ...]
