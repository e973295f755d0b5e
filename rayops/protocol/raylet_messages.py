"""Messages between a core worker (or the GCS) and a raylet, over the framed transport.

Requests (``conn.request``) name their reply class in their docstring; notifications
(``conn.notify``) have none. Field order is the wire order: see ``framed_message.py`` for
the versioning rules (append only, with defaults). Imports nothing of rayops outside
``rayops.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from rayops.protocol.framed_message import Message

Address = tuple[str, int]


# ------------------------------------------------------------------ registration
@dataclass(frozen=True, slots=True)
class NodeDescription(Message):
    """Reply to ``RegisterWorker`` / ``RegisterDriver``: where this node keeps things."""

    METHOD: ClassVar[str] = "node_description"
    node_id: str
    node_ip: str
    raylet_port: int
    shm_dir: str
    spill_dir: str
    session_dir: str
    gcs_address: str
    metrics_export_port: int
    agent_port: int
    job_id: int = 0  # a driver's job id (0 for workers)
    spill_dirs: tuple[str, ...] = ()  # several spill directories (spill_dir is the first)


@dataclass(frozen=True, slots=True)
class RegisterWorker(Message):
    """A worker the raylet started says it is up. Reply: ``NodeDescription``."""

    METHOD: ClassVar[str] = "register_worker"
    worker_id: bytes
    pid: int
    port: int  # where its core worker serves framed connections


@dataclass(frozen=True, slots=True)
class RegisterDriver(Message):
    """A driver connects; the raylet assigns its job id. Reply: ``NodeDescription``."""

    METHOD: ClassVar[str] = "register_driver"
    pid: int
    namespace: str
    entrypoint: str
    port: int = 0  # where its core worker serves (its actors die with it: raylet reports)
    worker_id: bytes = b""  # its core worker's id (the state API lists drivers with it)


# ------------------------------------------------------------------------ leases
@dataclass(frozen=True, slots=True)
class RequestLease(Message):
    """Lease a worker with ``shape``. Reply: ``LeaseGranted`` or ``LeaseSpilled``;
    refused with ``RefusalCode.UNSCHEDULABLE`` when the policy can never place it."""

    METHOD: ClassVar[str] = "request_lease"
    shape: dict[str, float]
    strategy: Any = None  # None/"DEFAULT", "SPREAD", a strategy object, or (strategy, labels)
    spilled: bool = False  # another raylet chose this node: do not send it on again
    preferred: tuple[str, ...] = ()  # node ids holding the task's arguments
    # the resolved runtime_env's wire form (canonical JSON, rayops/envs/spec.py; "" for none):
    # the leased worker runs in that env. Refused with RUNTIME_ENV_SETUP_FAILED when the
    # node cannot set it up.
    runtime_env: str = ""
    # The GCS leases a worker to host an actor: the worker is not killed when the requesting
    # connection closes (a GCS restart must not kill every actor; the worker's own exit ends
    # the lease), and the memory monitor kills task workers before actor workers.
    for_actor: bool = False


@dataclass(frozen=True, slots=True)
class PrepareRuntimeEnv(Message):
    """Set up a job's runtime_env now (``eager_install``), before its first lease asks for it.
    Notification; a failure is reported to the leases that ask for the env."""

    METHOD: ClassVar[str] = "prepare_runtime_env"
    runtime_env: str  # the wire form (rayops/envs/spec.py)


@dataclass(frozen=True, slots=True)
class LeaseGranted(Message):
    """A worker on this node is leased to the requester."""

    METHOD: ClassVar[str] = "lease_granted"
    lease_id: int
    worker_id: bytes
    worker_address: Address
    instances: dict[str, Any]  # resource -> assigned instance ids (e.g. GPU ids)
    node_id: str


@dataclass(frozen=True, slots=True)
class LeaseSpilled(Message):
    """Ask another node's raylet instead (it will not spill the request again)."""

    METHOD: ClassVar[str] = "lease_spilled"
    node_id: str
    raylet_address: Address


@dataclass(frozen=True, slots=True)
class ReturnLease(Message):
    """Notification: the lease is over; ``worker_ok`` False means do not reuse the worker."""

    METHOD: ClassVar[str] = "return_lease"
    lease_id: int
    worker_ok: bool = True


@dataclass(frozen=True, slots=True)
class ResizeLease(Message):
    """Notification: the lease now holds ``shape`` (an actor placed with 1 CPU, run with 0)."""

    METHOD: ClassVar[str] = "resize_lease"
    lease_id: int
    shape: dict[str, float]


@dataclass(frozen=True, slots=True)
class WorkerBlocked(Message):
    """Notification: the leased worker waits in ``get``; lend its CPU out meanwhile."""

    METHOD: ClassVar[str] = "worker_blocked"
    lease_id: int


@dataclass(frozen=True, slots=True)
class WorkerUnblocked(Message):
    """Notification: the leased worker runs again; take its CPU back."""

    METHOD: ClassVar[str] = "worker_unblocked"
    lease_id: int


# ------------------------------------------------------------ placement groups
@dataclass(frozen=True, slots=True)
class PrepareBundles(Message):
    """From the GCS, phase one: reserve these bundles of a group, all or none.
    Reply: ``BundlesDone``."""

    METHOD: ClassVar[str] = "prepare_bundles"
    pg_id: bytes
    bundles: list[tuple[int, dict[str, float]]]  # (bundle index, resources)


@dataclass(frozen=True, slots=True)
class CommitBundles(Message):
    """From the GCS, phase two: turn prepared bundles into the group's resources.
    Reply: ``BundlesDone`` (not ok if one was never prepared here)."""

    METHOD: ClassVar[str] = "commit_bundles"
    pg_id: bytes
    indexes: list[int]


@dataclass(frozen=True, slots=True)
class ReleaseBundles(Message):
    """From the GCS: give bundles of a group back (prepared or committed), ending the leases
    that hold their resources. Reply: ``BundlesDone``."""

    METHOD: ClassVar[str] = "release_bundles"
    pg_id: bytes
    indexes: list[int]


@dataclass(frozen=True, slots=True)
class BundlesDone(Message):
    METHOD: ClassVar[str] = "bundles_done"
    ok: bool
    reason: str = ""


# ------------------------------------------------------------------- the store
@dataclass(frozen=True, slots=True)
class StoreReserve(Message):
    """Reserve ``size`` bytes for an object. Reply: ``StoreReserved``."""

    METHOD: ClassVar[str] = "store_reserve"
    object_id: bytes
    size: int


@dataclass(frozen=True, slots=True)
class StoreReserved(Message):
    """Where to write the reserved object (a store location the StoreClient understands)."""

    METHOD: ClassVar[str] = "store_reserved"
    where: str


@dataclass(frozen=True, slots=True)
class StoreSeal(Message):
    """Notification: the object is written; readers may map it."""

    METHOD: ClassVar[str] = "store_seal"
    object_id: bytes


@dataclass(frozen=True, slots=True)
class StoreEnsureLocal(Message):
    """Make the object readable here (restore it, or pull it from ``node_id``).
    Reply: ``StoreLocal``."""

    METHOD: ClassVar[str] = "store_ensure_local"
    object_id: bytes
    node_id: str = ""


@dataclass(frozen=True, slots=True)
class StoreLocal(Message):
    """Whether the object is now readable on this node."""

    METHOD: ClassVar[str] = "store_local"
    found: bool


@dataclass(frozen=True, slots=True)
class StoreDelete(Message):
    """Notification: delete these objects (and, from a raylet, the copies it handed out)."""

    METHOD: ClassVar[str] = "store_delete"
    object_ids: list[bytes]


@dataclass(frozen=True, slots=True)
class StoreStats(Message):
    """The store's usage. Reply: ``StoreStatsReply``."""

    METHOD: ClassVar[str] = "store_stats"


@dataclass(frozen=True, slots=True)
class StoreStatsReply(Message):
    METHOD: ClassVar[str] = "store_stats_reply"
    stats: dict[str, Any]  # the store manager's statistics by name


# ------------------------------------------------------------ logs and cluster
@dataclass(frozen=True, slots=True)
class PublishLogs(Message):
    """Notification from a worker: lines to relay to the drivers of ``job_id``."""

    METHOD: ClassVar[str] = "publish_logs"
    job_id: int
    batch: list[Any]  # (pid, ip, name, is_err, text) per record


@dataclass(frozen=True, slots=True)
class Logs(Message):
    """Notification to a driver: workers' output lines, as in ``PublishLogs.batch``."""

    METHOD: ClassVar[str] = "logs"
    batch: list[Any]


@dataclass(frozen=True, slots=True)
class ShowWarning(Message):
    """Notification to a driver or owner: a warning to show its user (e.g. infeasible)."""

    METHOD: ClassVar[str] = "warning"
    message: str


@dataclass(frozen=True, slots=True)
class WorkerKillNotice(Message):
    """From a raylet to a lease's owner, just before the memory monitor kills the leased
    worker (``rayops/raylet/memory_monitor.py``): the owner fails the worker's tasks with
    ``OutOfMemoryError`` (retried only when ``retriable``) instead of a bare crash. Reply:
    ``True`` once noted; the raylet kills the worker after the reply or a short timeout."""

    METHOD: ClassVar[str] = "worker_kill_notice"
    worker_id: bytes
    node_id: str
    node_ip: str
    pid: int
    worker_rss: int  # bytes
    used: int  # the node's memory in use, bytes
    total: int
    threshold: float
    top_consumers: str  # a table of the node's biggest processes
    retriable: bool


@dataclass(frozen=True, slots=True)
class NodesDead(Message):
    """Notification: the GCS declared these nodes dead."""

    METHOD: ClassVar[str] = "node_dead"
    node_ids: list[str]


@dataclass(frozen=True, slots=True)
class ClusterInfo(Message):
    """Every node, in ``ray.nodes()``'s format. Reply: ``ClusterInfoReply``."""

    METHOD: ClassVar[str] = "cluster_info"


@dataclass(frozen=True, slots=True)
class ClusterInfoReply(Message):
    METHOD: ClassVar[str] = "cluster_info_reply"
    nodes: list[dict[str, Any]]


@dataclass(frozen=True, slots=True)
class NodeInfo(Message):
    """This node's description and resources. Reply: ``NodeInfoReply``."""

    METHOD: ClassVar[str] = "node_info"


@dataclass(frozen=True, slots=True)
class NodeInfoReply(Message):
    METHOD: ClassVar[str] = "node_info_reply"
    node: NodeDescription
    resources_total: dict[str, float]
    resources_available: dict[str, float]
    num_workers: int
    # When (wall-clock ms) this raylet's cluster view first held each other node ALIVE:
    # how fast a join spreads (bench/scale_benchmark.py reads it).
    view_seen_ms: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ping(Message):
    """Is the peer alive and serving? Reply: ``Pong``."""

    METHOD: ClassVar[str] = "ping"


@dataclass(frozen=True, slots=True)
class Pong(Message):
    METHOD: ClassVar[str] = "pong"


__all__ = [
    "ClusterInfo",
    "ClusterInfoReply",
    "LeaseGranted",
    "LeaseSpilled",
    "Logs",
    "NodeDescription",
    "NodeInfo",
    "NodeInfoReply",
    "NodesDead",
    "Ping",
    "Pong",
    "PublishLogs",
    "RegisterDriver",
    "RegisterWorker",
    "RequestLease",
    "ResizeLease",
    "ReturnLease",
    "ShowWarning",
    "StoreDelete",
    "StoreEnsureLocal",
    "StoreLocal",
    "StoreReserve",
    "StoreReserved",
    "StoreSeal",
    "StoreStats",
    "StoreStatsReply",
    "WorkerBlocked",
    "WorkerKillNotice",
    "WorkerUnblocked",
]
