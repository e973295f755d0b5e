"""The vocabulary of the lease state machine (``lease_state.py``): the lease record it keeps,
the events the shell feeds it and the instructions it returns, all plain data. No I/O and no
decisions here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rayops.protocol.task_messages import TaskReply, TaskSpec

Address = tuple[str, int]
# (resource, amount) pairs, then the scheduling strategy's key, then max_calls
Key = tuple[Any, ...]


@dataclass(eq=False, slots=True)
class Lease:
    """A worker leased from a raylet. Mutated only by ``LeaseState``; the shell reads it.

    ``raylet`` and ``conn`` are the shell's handles (the granting raylet's connection and the
    worker's); the machine stores them and never uses them.
    """

    lease_id: int
    worker_id: bytes
    address: Address
    instances: dict[str, list[tuple[int, float]]]
    node_id: str
    key: Key
    raylet: Any = None
    conn: Any = None
    inflight: dict[bytes, TaskSpec] = field(default_factory=dict)
    retiring: bool = False  # the worker exits after its in-flight tasks (max_calls)
    dead: bool = False  # returned or lost: never used again
    idle_since: float | None = None
    timer_armed: bool = False
    cancelled: int = 0  # its in-flight tasks the owner cancelled: nothing more goes onto it


@dataclass(frozen=True, slots=True)
class Grant:
    """What a raylet's grant says: the lease, its worker, the devices it holds, the node."""

    lease_id: int
    worker_id: bytes
    address: Address
    instances: dict[str, list[tuple[int, float]]]
    node_id: str


# ------------------------------------------------------------------------------ events
@dataclass(frozen=True, slots=True)
class TaskQueued:
    """A task whose arguments are ready, to run under a lease of its key."""

    spec: TaskSpec
    now: float | None = None  # the owner's loop time (None: no newer than the last event's)


@dataclass(frozen=True, slots=True)
class LeaseGranted:
    """Request ``request_id`` was granted by ``raylet``; ``conn`` is the connection to the
    leased worker, or None when the worker could not be reached."""

    request_id: int
    grant: Grant
    raylet: Any
    conn: Any
    now: float | None = None


@dataclass(frozen=True, slots=True)
class LeaseSpilled:
    """The raylet asked answered: ask the raylet of ``node_id`` at ``raylet_address``."""

    request_id: int
    node_id: str
    raylet_address: Address


@dataclass(frozen=True, slots=True)
class LeaseRefused:
    """The scheduling policy refused the request for good (``code`` from the typed refusal,
    e.g. a hard node affinity to a dead node): the key's queued tasks cannot run."""

    request_id: int
    code: str
    message: str


@dataclass(frozen=True, slots=True)
class LeaseRequestFailed:
    """The request could not be made or answered (a raylet unreachable): ask again later."""

    request_id: int
    error: str


@dataclass(frozen=True, slots=True)
class RetryDue:
    """The back-off after a failed lease request of ``key`` is over."""

    key: Key


@dataclass(frozen=True, slots=True)
class PushReplied:
    """The worker replied to task ``task_id`` at time ``now``."""

    task_id: bytes
    reply: TaskReply
    now: float


@dataclass(frozen=True, slots=True)
class WorkerLost:
    """Pushing task ``task_id`` failed (its worker's connection was lost)."""

    task_id: bytes


@dataclass(frozen=True, slots=True)
class NodesDead:
    """The GCS declared these nodes dead."""

    node_ids: frozenset[str]


@dataclass(frozen=True, slots=True)
class IdleTimerFired:
    """The idle timer of ``lease`` fired at time ``now``."""

    lease: Lease
    now: float


@dataclass(frozen=True, slots=True)
class CancelQueued:
    """Drop task ``task_id`` if it is still queued (not yet pushed)."""

    task_id: bytes


@dataclass(frozen=True, slots=True)
class CancelPushed:
    """The owner cancelled task ``task_id``, in flight: push nothing more onto its lease
    until it answers (a worker that missed the interrupt would hold it all behind it)."""

    task_id: bytes


@dataclass(frozen=True, slots=True)
class ReturnAll:
    """The core worker shuts down: give every lease back."""


Event = (
    TaskQueued
    | LeaseGranted
    | LeaseSpilled
    | LeaseRefused
    | LeaseRequestFailed
    | RetryDue
    | PushReplied
    | WorkerLost
    | NodesDead
    | IdleTimerFired
    | CancelQueued
    | CancelPushed
    | ReturnAll
)


# ------------------------------------------------------------------------ instructions
@dataclass(frozen=True, slots=True)
class RequestLease:
    """Ask a raylet for a worker: the local one (``target`` None) or, after a spillback, the
    one at ``target`` (``spilled``: it must not spill again). ``preferred``: nodes holding the
    task's large arguments."""

    request_id: int
    key: Key
    resources: dict[str, float]
    strategy: Any
    target: Address | None = None
    spilled: bool = False
    preferred: tuple[str, ...] = ()
    runtime_env: str = ""  # the wire form the leased worker must run in


@dataclass(frozen=True, slots=True)
class PushTask:
    """Send ``spec`` to the worker of ``lease``; its reply comes back as ``PushReplied``."""

    lease: Lease
    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class ReturnLease:
    """Give ``lease`` back to the raylet that granted it (``worker_ok``: the worker may be
    reused)."""

    lease: Lease
    worker_ok: bool


@dataclass(frozen=True, slots=True)
class DropConnection:
    """Close the connection to the worker of ``lease`` (its node is dead), so in-flight
    pushes fail over (``WorkerLost``)."""

    lease: Lease


@dataclass(frozen=True, slots=True)
class ArmIdleTimer:
    """Feed ``IdleTimerFired(lease, now)`` at time ``at``."""

    lease: Lease
    at: float


@dataclass(frozen=True, slots=True)
class RetryLater:
    """Feed ``RetryDue(key)`` after ``delay`` seconds."""

    key: Key
    delay: float


@dataclass(frozen=True, slots=True)
class TaskFailed:
    """``spec`` will never run: finish it with ``error``."""

    spec: TaskSpec
    error: BaseException


@dataclass(frozen=True, slots=True)
class TaskDequeued:
    """``spec`` was taken out of its queue (cancelled before it was pushed)."""

    spec: TaskSpec


Instruction = (
    RequestLease
    | PushTask
    | ReturnLease
    | DropConnection
    | ArmIdleTimer
    | RetryLater
    | TaskFailed
    | TaskDequeued
)
