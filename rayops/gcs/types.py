"""The GCS's records as plain Python values: nodes, object-store stats, jobs.

These frozen dataclasses are what GCS clients return and what the GCS tables store. They know
nothing of protobuf or gRPC: `rayops.gcs.codec` is the one place that converts them to and from
the wire messages. Mappings inside a record are private copies; treat them as read-only.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, field

from rayops.ids import job_id_hex

__all__ = [
    "GcsInfo",
    "JobInfo",
    "NodeInfo",
    "NodeState",
    "ObjectStoreStats",
    "UsageReportOutcome",
    "job_id_hex",
]

MAX_JOB_ID = 2**32 - 1


class NodeState(enum.StrEnum):
    """A node's lifecycle; compares equal to the plain strings "ALIVE" and "DEAD"."""

    ALIVE = "ALIVE"
    DEAD = "DEAD"


@dataclass(frozen=True)
class ObjectStoreStats:
    """A node's object store as last reported by its raylet."""

    used_bytes: int = 0
    capacity_bytes: int = 0
    spilled_bytes: int = 0


@dataclass(frozen=True)
class NodeInfo:
    """One node of the cluster.

    A raylet fills in identity, address, directories, resources, labels and role, and
    registers it; the GCS sets `state`, the times, `death_reason` and the usage fields.
    """

    node_id: str
    node_ip: str
    raylet_port: int
    node_name: str = ""
    object_store_dir: str = ""
    session_dir: str = ""
    resources_total: Mapping[str, float] = field(default_factory=dict)
    resources_available: Mapping[str, float] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    state: NodeState = NodeState.ALIVE
    death_reason: str = ""
    start_time_ms: int = 0
    end_time_ms: int = 0
    is_head_node: bool = False
    rayops_version: str = ""
    object_store_stats: ObjectStoreStats = field(default_factory=ObjectStoreStats)
    # (shape, count, infeasible) of lease requests waiting on the node (latest report)
    pending_demand: tuple[tuple[Mapping[str, float], int, bool], ...] = ()
    last_report_time_ms: int = 0
    # The node's agent: Prometheus HTTP port and framed report port (0: no agent).
    metrics_export_port: int = 0
    agent_port: int = 0

    def __post_init__(self) -> None:
        # Copy so a caller's later edits to its own dicts do not show through a frozen record.
        object.__setattr__(self, "resources_total", dict(self.resources_total))
        object.__setattr__(self, "resources_available", dict(self.resources_available))
        object.__setattr__(self, "labels", dict(self.labels))
        object.__setattr__(self, "state", NodeState(self.state))

    @property
    def is_alive(self) -> bool:
        return self.state is NodeState.ALIVE


@dataclass(frozen=True)
class JobInfo:
    """One job (one driver) of the cluster."""

    job_id: int
    driver_pid: int
    driver_ip: str
    namespace: str = ""
    entrypoint: str = ""
    start_time_ms: int = 0
    end_time_ms: int = 0
    is_dead: bool = False

    @property
    def job_id_hex(self) -> str:
        """Ray's text form of the id: 4 little-endian bytes in hex (1 -> "01000000")."""
        return job_id_hex(self.job_id)


@dataclass(frozen=True)
class UsageReportOutcome:
    """The GCS's answer to a usage report.

    `accepted` is False when the GCS does not know the node (`state` None: register again,
    e.g. after a GCS restart) or holds it DEAD (`state` DEAD: the raylet should stop).
    """

    accepted: bool
    state: NodeState | None


@dataclass(frozen=True)
class GcsInfo:
    """Who answered a CheckAlive: the GCS's version, its cluster's id, when it started."""

    rayops_version: str
    cluster_id: str
    start_time_ms: int


@dataclass(frozen=True)
class ActorInfo:
    """An actor as the GCS knows it (see rayops/gcs/actor_table.py for the states)."""

    actor_id: bytes
    class_name: str
    state: str
    version: int
    address: tuple[str, int] | None
    node_id: str
    pid: int
    num_restarts: int
    max_restarts: int
    death_cause: str
    death_error: bytes
    name: str
    namespace: str
    is_detached: bool
    handle_meta: bytes
    owner_address: str
    job_id: int = 0
