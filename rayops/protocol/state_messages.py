"""Framed messages of the state API: task events to the raylet, and what a node holds.

* ``ReportTaskEvents`` (notification, core worker -> its raylet): a batch of task state
  transitions as one row per task attempt, with how many events the sender dropped since its
  last batch (its buffer was full);
  the raylet forwards them to the GCS (``gcs_task.proto``).
* ``ListWorkers`` -> ``WorkersReply`` (API server -> raylet): the node's worker processes
  and drivers, from its worker pool.
* ``ListStoreObjects`` -> ``StoreObjectsReply`` (API server -> raylet): what the node's
  object store holds.
* ``ListReferences`` -> ``ReferencesReply`` (API server -> a core worker's server): the
  object references that process holds, by kind (``ray memory``'s reference types).

Field order is the wire order (append only, with defaults; see ``framed_message.py``).
Imports nothing of rayops outside ``rayops.protocol``.
"""

from __future__ import annotations

import sys
from array import array
from dataclasses import dataclass, field
from typing import ClassVar

from rayops.protocol.framed_message import Message

__all__ = [
    "N_STATES",
    "TASK_ID_LEN",
    "TASK_STATES",
    "TASK_TYPES",
    "TIME_UNSET",
    "ListReferences",
    "ListStoreObjects",
    "ListWorkers",
    "ObjectReference",
    "ReferencesReply",
    "ReportTaskEvents",
    "StoreObject",
    "StoreObjectsReply",
    "TaskDescriptor",
    "TaskError",
    "WorkerState",
    "WorkersReply",
    "pack_times",
    "unpack_times",
]

# Ray's TaskStatus names, in the order a task attempt goes through them (the order is also
# how records merge: the latest state seen wins, whatever arrived last).
TASK_STATES: tuple[str, ...] = (
    "PENDING_ARGS_AVAIL",
    "PENDING_NODE_ASSIGNMENT",
    "SUBMITTED_TO_WORKER",
    "RUNNING",
    "FINISHED",
    "FAILED",
)
N_STATES = len(TASK_STATES)
TASK_TYPES: tuple[str, ...] = ("NORMAL_TASK", "ACTOR_CREATION_TASK", "ACTOR_TASK", "DRIVER_TASK")
TASK_ID_LEN = 16  # every task id (rayops.ids.TASK_ID_LEN): batches pack them end to end
# A row's time slot for a state it did not enter (the largest int64: merging two rows of one
# attempt is then the smaller time of each slot, ``min``).
TIME_UNSET = (1 << 63) - 1


def pack_times(times: array) -> bytes:  # type: ignore[type-arg]
    """An ``array("q")`` of wall-clock ns as little-endian bytes (the wire form)."""
    if sys.byteorder == "big":
        times = array("q", times)
        times.byteswap()
    return times.tobytes()


def unpack_times(data: bytes) -> array:  # type: ignore[type-arg]
    times = array("q")
    times.frombytes(data)
    if sys.byteorder == "big":
        times.byteswap()
    return times


@dataclass(frozen=True, slots=True)
class TaskDescriptor:
    """What a task is (name, kind, job, actor, resources, parent); one per distinct value
    in a batch, which its rows point at."""

    name: str
    func_or_class_name: str
    type: str  # one of TASK_TYPES
    job_id: int
    actor_id: bytes = b""
    parent_task_id: bytes = b""
    required_resources: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TaskError:
    """Why the attempt of the batch's row ``index`` failed."""

    index: int
    error_type: str  # Ray's ErrorType name
    message: str


@dataclass(frozen=True, slots=True)
class ReportTaskEvents(Message):
    """The task state transitions one process recorded since its last batch, on one side
    (owner, or executor: the process named in ``node_id``/``worker_id``/``worker_pid``).
    No reply; about once a second.

    One *row* per task attempt the batch saw (not one per transition): a row holds the time
    the attempt entered each state (``N_STATES`` slots, ``TIME_UNSET`` where it did not in
    this batch) and the latest of those states. A task whose owner-side transitions all fall
    in one batch is one row, so the GCS merges it in one step instead of four. Stored as
    columns (entry ``i`` of each is row ``i``), the wide ones packed into bytes: a batch of
    thousands costs a few copies to pickle and to convert.
    """

    METHOD: ClassVar[str] = "report_task_events"
    task_ids: bytes  # TASK_ID_LEN bytes per row, end to end
    attempts: list[int]
    states: bytes  # one byte per row: the latest state (index into TASK_STATES) it entered
    times_ns: bytes  # N_STATES little-endian int64 per row, wall clock (``pack_times``)
    descriptor: list[int]  # per row, an index into ``descriptors``; -1: none with this row
    descriptors: tuple[TaskDescriptor, ...] = ()
    errors: tuple[TaskError, ...] = ()  # ``index``: the row whose attempt failed
    executor: bool = False
    node_id: str = ""
    worker_id: bytes = b""
    worker_pid: int = 0
    job_id: int = 0
    dropped: int = 0  # events this process dropped (buffer full) since its last batch

    def __len__(self) -> int:
        return len(self.states)


# ------------------------------------------------------------------------ workers
@dataclass(frozen=True, slots=True)
class WorkerState:
    """One worker process or driver of a node (Ray's WorkerState columns we can fill)."""

    worker_id: bytes
    worker_type: str  # "WORKER" or "DRIVER"
    pid: int
    ip: str
    port: int  # its core worker's framed server (0 before it registered)
    is_alive: bool
    job_id: int = 0  # drivers only (workers serve many jobs' leases)
    leased: bool = False
    log_path: str = ""
    start_time_ms: int = 0


@dataclass(frozen=True, slots=True)
class ListWorkers(Message):
    """Which workers and drivers does this node have? Reply: ``WorkersReply``."""

    METHOD: ClassVar[str] = "list_workers"


@dataclass(frozen=True, slots=True)
class WorkersReply(Message):
    METHOD: ClassVar[str] = "workers_reply"
    node_id: str
    workers: tuple[WorkerState, ...]


# ------------------------------------------------------------------------ objects
@dataclass(frozen=True, slots=True)
class StoreObject:
    """One object in a node's store."""

    object_id: bytes
    size: int
    sealed: bool
    in_memory: bool  # a file in shared memory
    spilled: bool  # a copy on the node's disk (spilled, or written there directly)


@dataclass(frozen=True, slots=True)
class ListStoreObjects(Message):
    """What does this node's object store hold? Reply: ``StoreObjectsReply``."""

    METHOD: ClassVar[str] = "list_store_objects"


@dataclass(frozen=True, slots=True)
class StoreObjectsReply(Message):
    METHOD: ClassVar[str] = "store_objects_reply"
    node_id: str
    objects: tuple[StoreObject, ...]


@dataclass(frozen=True, slots=True)
class ObjectReference:
    """One object a process references, and how (Ray's reference types)."""

    object_id: bytes
    reference_type: str  # LOCAL_REFERENCE, PINNED_IN_MEMORY, USED_BY_PENDING_TASK, ...
    size: int  # -1: unknown here (the value is elsewhere)
    owned: bool  # this process is the owner
    local_refs: int
    submitted_task_refs: int
    contained_in: int  # how many objects hold it
    borrowers: int
    task_status: str = ""  # for a task's return: the task's state at its owner


@dataclass(frozen=True, slots=True)
class ListReferences(Message):
    """Which object references does this process hold? Reply: ``ReferencesReply``."""

    METHOD: ClassVar[str] = "list_references"


@dataclass(frozen=True, slots=True)
class ReferencesReply(Message):
    METHOD: ClassVar[str] = "references_reply"
    worker_id: bytes
    pid: int
    job_id: int
    is_driver: bool
    references: tuple[ObjectReference, ...]
