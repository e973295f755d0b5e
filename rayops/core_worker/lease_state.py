"""Worker leases for an owner's normal tasks: a state machine with no I/O.

What it owns: the queue of tasks per *scheduling key* (resource shape, scheduling strategy with
its label selector, and ``max_calls``), the lease requests outstanding per key (with their
spillback hops), the leases held, which task is in flight on which lease, and when a lease goes
back to its raylet. Tasks of one key reuse its leases while any are queued; a lease idle for
``LEASE_IDLE_S`` is returned; functions measured to run under ``FAST_TASK_S`` are pipelined
``PIPELINE_DEPTH`` deep per lease, but never onto a lease whose in-flight task was cancelled
(until that task answers); a worker that says it exits after a reply (``max_calls`` reached)
gets nothing more and its lease goes back with ``worker_ok=False``.

``SPREAD`` keys bind tasks to lease requests, so reuse cannot starve a node: each request
(up to ``SPREAD_PENDING_LEASE_REQUESTS`` outstanding) takes the next queued task with it,
and the raylets' SPREAD rotation places each request on another node; the lease a request
gets runs its own task first. The tasks not bound to a request are dealt out round robin
over the key's leases, one per lease per round (pipelined as ``DEFAULT``'s). A lease with
nothing left to do takes (*steals*) a task bound to a request still waiting *on its own
node* (spilled there, or never spilled and older than ``SPREAD_STEAL_S``, i.e. queued by the
owner's own raylet, which answers a spill at once): the task runs where the rotation put it,
without waiting for the request, whose lease is returned at once when granted with nothing to do.

What it must not do: any I/O. No sockets, no asyncio, no clock (time comes in on events), no
threads; the shell (``submitter.TaskSubmitter``) feeds events in on the IO thread and carries
out the instructions. Tasks' records, retries and results are not its business: the shell
hands replies and push failures to the task records. Threads: only the shell's ``@io_thread``
methods call it, so it carries no thread declaration of its own (tests drive it from any).

Every state change goes through one ``on_*`` method (or ``handle(event)``, which dispatches the
same events, frozen dataclasses in ``lease_events.py``; the shell calls the methods directly on
the hot path). Each returns a list of instructions, in the order they are to be carried out.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from rayops import exceptions as rex
from rayops.core_worker.lease_events import (
    Address,
    ArmIdleTimer,
    CancelPushed,
    CancelQueued,
    DropConnection,
    Event,
    Grant,
    IdleTimerFired,
    Instruction,
    Key,
    Lease,
    LeaseGranted,
    LeaseRefused,
    LeaseRequestFailed,
    LeaseSpilled,
    NodesDead,
    PushReplied,
    PushTask,
    RequestLease,
    RetryDue,
    RetryLater,
    ReturnAll,
    ReturnLease,
    TaskDequeued,
    TaskFailed,
    TaskQueued,
    WorkerLost,
)
from rayops.protocol.task_messages import TaskReply, TaskSpec
from rayops.scheduling.strategy import LabelScoped, split_strategy

LEASE_IDLE_S = 0.05
MAX_PENDING_LEASE_REQUESTS = 4
SPREAD_PENDING_LEASE_REQUESTS = 16
# A SPREAD request the owner's raylet has not spilled after this long is queued there.
SPREAD_STEAL_S = 0.02
PIPELINE_DEPTH = 8
FAST_TASK_S = 0.002
LEASE_RETRY_S = 0.2  # after a lease request failed (raylet unreachable, ...)
_EMA_WEIGHT = 0.2
_SLACK = 0.001  # a loop timer may fire this much before the time it was set for

__all__ = [
    "FAST_TASK_S",
    "LEASE_IDLE_S",
    "LEASE_RETRY_S",
    "MAX_PENDING_LEASE_REQUESTS",
    "PIPELINE_DEPTH",
    "SPREAD_PENDING_LEASE_REQUESTS",
    "SPREAD_STEAL_S",
    "Address",
    "ArmIdleTimer",
    "CancelPushed",
    "CancelQueued",
    "DropConnection",
    "Event",
    "Grant",
    "IdleTimerFired",
    "Instruction",
    "Key",
    "Lease",
    "LeaseGranted",
    "LeaseRefused",
    "LeaseRequestFailed",
    "LeaseSpilled",
    "LeaseState",
    "NodesDead",
    "PushReplied",
    "PushTask",
    "RequestLease",
    "RetryDue",
    "RetryLater",
    "ReturnAll",
    "ReturnLease",
    "TaskDequeued",
    "TaskFailed",
    "TaskQueued",
    "WorkerLost",
    "key_of",
]


@dataclass(slots=True)
class _Request:
    """A SPREAD key's outstanding lease request: the task bound to it (None once stolen or
    cancelled), the node it waits on (None: the owner's raylet has not spilled it) and when
    it was made."""

    spec: TaskSpec | None
    since: float
    node: str | None = None


@dataclass(slots=True)
class _KeyState:
    shape: dict[str, float]
    strategy: Any
    spread: bool
    max_calls: int
    runtime_env: str
    queue: deque[TaskSpec] = field(default_factory=deque)
    leases: list[Lease] = field(default_factory=list)
    pending_requests: int = 0
    backing_off: bool = False
    # SPREAD only: outstanding requests by id, in the order made.
    bound: dict[int, _Request] = field(default_factory=dict)


class LeaseState:
    """The owner's queues, lease requests and leases (see the module docstring)."""

    def __init__(self) -> None:
        self._keys: dict[Key, _KeyState] = {}
        self._requests: dict[int, Key] = {}  # outstanding lease request -> its key
        self._next_request = 0
        # Live leases. Not by lease id: each raylet numbers its own leases.
        self._leases: set[Lease] = set()
        self._where: dict[bytes, Lease] = {}  # task id -> the lease it was pushed on
        self._cancelled: set[bytes] = set()  # in-flight tasks the owner cancelled
        self._exec_ema: dict[bytes, float] = {}  # function id -> smoothed run time
        self._now = 0.0  # the latest time an event brought
        self._local_node: str | None = None  # the owner's raylet's node, once it granted

    # ---------------------------------------------------------------------- queries
    def lease_of(self, task_id: bytes) -> Lease | None:
        """The lease ``task_id`` was pushed on and has not replied on yet."""
        return self._where.get(task_id)

    def is_queued(self, task_id: bytes) -> bool:
        return any(s.task_id == task_id for ks in self._keys.values() for s in _waiting(ks))

    def leases(self) -> Iterator[Lease]:
        """Live leases."""
        return iter(list(self._leases))

    def inflight(self) -> Iterator[TaskSpec]:
        """Tasks pushed and not yet replied to."""
        return iter([spec for lease in self._where.values() for spec in lease.inflight.values()])

    def table_sizes(self) -> dict[str, int]:
        """How many entries each of the machine's tables holds (for leak checks)."""
        return {
            "pushed": len(self._where),
            "queued": sum(len(ks.queue) + _bound_count(ks) for ks in self._keys.values()),
            "keys": len(self._keys),
            "requests": len(self._requests),
            "leases": len(self._leases),
            "cancelled": len(self._cancelled),
        }

    def pending_requests(self, key: Key) -> int:
        ks = self._keys.get(key)
        return 0 if ks is None else ks.pending_requests

    # ----------------------------------------------------------------------- events
    def handle(self, event: Event) -> list[Instruction]:
        """Any event, as a frozen dataclass (the typed methods below do the work)."""
        return _DISPATCH[type(event)](self, event)

    def on_task_queued(self, spec: TaskSpec, now: float | None = None) -> list[Instruction]:
        if now is not None:
            self._now = now
        key = key_of(spec)
        ks = self._keys.get(key)
        if ks is None:
            plain, _ = split_strategy(spec.strategy)
            ks = self._keys[key] = _KeyState(
                dict(spec.resources), spec.strategy, plain == "SPREAD", key[-1], spec.runtime_env
            )
        ks.queue.append(spec)
        out: list[Instruction] = []
        self._pump(key, ks, out)
        return out

    def on_lease_granted(
        self, request_id: int, grant: Grant, raylet: Any, conn: Any, now: float | None = None
    ) -> list[Instruction]:
        if now is not None:
            self._now = now
        key = self._requests.pop(request_id)
        ks = self._keys[key]
        ks.pending_requests -= 1
        own: TaskSpec | None = None  # the task bound to the request (SPREAD)
        if ks.spread:
            req = ks.bound.pop(request_id)
            own = req.spec
            if req.node is None:
                self._local_node = grant.node_id  # granted by the owner's own raylet
        lease = Lease(
            grant.lease_id,
            grant.worker_id,
            grant.address,
            grant.instances,
            grant.node_id,
            key,
            raylet=raylet,
            conn=conn,
        )
        out: list[Instruction] = []
        if conn is None:  # the leased worker could not be reached
            lease.dead = True
            out.append(ReturnLease(lease, False))
            if own is not None:
                ks.queue.appendleft(own)
        else:
            if own is None and not ks.queue and ks.bound:
                own = self._steal(ks, grant.node_id)
            if own is None and not ks.queue:
                # Nothing left to run (ran on other leases, or cancelled).
                lease.dead = True
                out.append(ReturnLease(lease, True))
                if self._forget_if_unused(key, ks):
                    return out
            else:
                ks.leases.append(lease)
                self._leases.add(lease)
                if own is not None:
                    self._push(lease, own, out)
        self._pump(key, ks, out)
        return out

    def on_lease_spilled(
        self, request_id: int, node_id: str, raylet_address: Address
    ) -> list[Instruction]:
        key = self._requests[request_id]
        ks = self._keys[key]
        preferred = _arg_nodes(ks.queue[0]) if ks.queue else ()
        if ks.spread:
            req = ks.bound[request_id]
            req.node = node_id
            preferred = _arg_nodes(req.spec) if req.spec is not None else ()
        return [
            RequestLease(
                request_id,
                key,
                ks.shape,
                ks.strategy,
                raylet_address,
                True,
                preferred,
                ks.runtime_env,
            )
        ]

    def on_lease_refused(self, request_id: int, code: str, message: str) -> list[Instruction]:
        key = self._requests.pop(request_id)
        ks = self._keys[key]
        ks.pending_requests -= 1
        out: list[Instruction] = []
        refused = ks.bound.pop(request_id, None)

        def error() -> rex.RayError:
            if code == "runtime_env_setup_failed":  # the env failed on that node: not retried
                return rex.RuntimeEnvSetupError(message)
            return rex.TaskUnschedulableError(message)

        # The key's other requests would be refused too.
        for req in (refused, *ks.bound.values()) if refused is not None else ():
            if req.spec is not None:
                out.append(TaskFailed(req.spec, error()))
                req.spec = None
        while ks.queue:
            spec = ks.queue.popleft()
            out.append(TaskFailed(spec, error()))
        return out

    def on_lease_request_failed(self, request_id: int, error: str) -> list[Instruction]:
        key = self._requests.pop(request_id)
        ks = self._keys[key]
        ks.pending_requests -= 1
        if ks.spread:
            req = ks.bound.pop(request_id)
            if req.spec is not None:
                ks.queue.appendleft(req.spec)
        if ks.backing_off:
            return []
        ks.backing_off = True
        return [RetryLater(key, LEASE_RETRY_S)]

    def on_retry_due(self, key: Key) -> list[Instruction]:
        ks = self._keys.get(key)
        out: list[Instruction] = []
        if ks is not None:
            ks.backing_off = False
            self._pump(key, ks, out)
        return out

    def on_push_replied(self, task_id: bytes, reply: TaskReply, now: float) -> list[Instruction]:
        self._now = now
        lease = self._where.pop(task_id, None)
        if lease is None:
            return []
        if self._cancelled:
            self._answered(task_id, lease)
        spec = lease.inflight.pop(task_id)
        if reply.status != "cancelled":  # a cancelled attempt says nothing of its run time
            fid = spec.function_id
            prev = self._exec_ema.get(fid)
            x = reply.exec_seconds
            self._exec_ema[fid] = x if prev is None else (1 - _EMA_WEIGHT) * prev + _EMA_WEIGHT * x
        if reply.worker_exiting:
            lease.retiring = True
        out: list[Instruction] = []
        ks = self._keys.get(lease.key)
        if ks is not None:
            self._pump(lease.key, ks, out)
        return out

    def on_worker_lost(self, task_id: bytes) -> list[Instruction]:
        lease = self._where.pop(task_id, None)
        if lease is None:
            return []
        if self._cancelled:
            self._answered(task_id, lease)
        lease.inflight.pop(task_id, None)
        out: list[Instruction] = []
        ks = self._keys.get(lease.key)
        if not lease.dead:
            assert ks is not None  # a live lease keeps its key
            self._drop(lease, ks)
            out.append(ReturnLease(lease, False))
        if ks is not None:
            self._pump(lease.key, ks, out)
        return out

    def on_nodes_dead(self, node_ids: frozenset[str] | set[str]) -> list[Instruction]:
        out: list[Instruction] = []
        keys: set[Key] = set()
        for lease in list(self._leases):
            if lease.node_id in node_ids:
                self._drop(lease, self._keys[lease.key])
                out.append(ReturnLease(lease, False))
                out.append(DropConnection(lease))
                keys.add(lease.key)
        for key in keys:
            self._pump(key, self._keys[key], out)
        return out

    def on_idle_timer_fired(self, lease: Lease, now: float) -> list[Instruction]:
        self._now = now
        if lease.dead:
            return []
        lease.timer_armed = False
        if lease.idle_since is None:
            return []  # busy again; re-armed when it next goes idle
        ks = self._keys[lease.key]
        out: list[Instruction] = []
        if ks.bound:
            spec = self._steal(ks, lease.node_id)
            if spec is not None:
                self._push(lease, spec, out)
                return out
        if now < lease.idle_since + LEASE_IDLE_S:
            self._arm(ks, lease, out)
            return out
        self._drop(lease, ks)
        self._forget_if_unused(lease.key, ks)
        return [ReturnLease(lease, True)]

    def on_cancel_queued(self, task_id: bytes) -> list[Instruction]:
        for ks in self._keys.values():
            for spec in ks.queue:
                if spec.task_id == task_id:
                    ks.queue.remove(spec)
                    return [TaskDequeued(spec)]
            for req in ks.bound.values():
                if req.spec is not None and req.spec.task_id == task_id:
                    spec, req.spec = req.spec, None  # its request's lease is returned unused
                    return [TaskDequeued(spec)]
        return []

    def on_cancel_pushed(self, task_id: bytes) -> list[Instruction]:
        """``task_id`` is in flight and the owner cancelled it: its lease takes no more tasks
        until it answers. Its worker may miss the interrupt and run on (a 60 s sleep); what
        is queued goes to other leases instead of waiting behind it."""
        lease = self._where.get(task_id)
        if lease is not None and task_id not in self._cancelled:
            self._cancelled.add(task_id)
            lease.cancelled += 1
        return []

    def _answered(self, task_id: bytes, lease: Lease) -> None:
        if task_id in self._cancelled:
            self._cancelled.discard(task_id)
            lease.cancelled -= 1

    def on_return_all(self) -> list[Instruction]:
        out: list[Instruction] = []
        for lease in list(self._leases):
            self._drop(lease, self._keys[lease.key])
            out.append(ReturnLease(lease, True))
        return out

    # ---------------------------------------------------------------------- pumping
    def _pump(self, key: Key, ks: _KeyState, out: list[Instruction]) -> None:
        """Push queued tasks onto the key's leases, return spent ones, request more."""
        queue = ks.queue
        spread = ks.spread
        depth = 1 if ks.max_calls or not queue else self._depth(queue[0])
        spent: list[tuple[Lease, bool]] | None = None
        usable: list[Lease] = []
        for lease in ks.leases:
            if lease.retiring:
                # A worker exiting after max_calls.
                if not lease.inflight:
                    spent = spent or []
                    spent.append((lease, False))
                continue
            if lease.cancelled:
                continue  # a cancelled task in flight on it: nothing behind it (see above)
            usable.append(lease)
        if spread:  # one task per lease per round: the tasks spread as the leases do
            pushed = True
            while queue and pushed:
                pushed = False
                for lease in usable:
                    if queue and len(lease.inflight) < depth:
                        self._push(lease, queue.popleft(), out)
                        pushed = True
        else:
            for lease in usable:
                while queue and len(lease.inflight) < depth:
                    self._push(lease, queue.popleft(), out)
        for lease in usable:
            if lease.inflight:
                continue
            if ks.bound:
                spec = self._steal(ks, lease.node_id)
                if spec is not None:
                    self._push(lease, spec, out)
                    continue
            if lease.idle_since is None:
                lease.idle_since = self._now
            if not lease.timer_armed:
                self._arm(ks, lease, out)
        for lease, worker_ok in spent or ():
            self._drop(lease, ks)
            out.append(ReturnLease(lease, worker_ok))
        if ks.backing_off:
            return
        if spread:  # each request takes the next queued task with it
            while queue and ks.pending_requests < SPREAD_PENDING_LEASE_REQUESTS:
                spec = queue.popleft()
                request_id = self._new_request(key, ks)
                ks.bound[request_id] = _Request(spec, self._now)
                out.append(
                    RequestLease(
                        request_id,
                        key,
                        ks.shape,
                        ks.strategy,
                        preferred=_arg_nodes(spec),
                        runtime_env=ks.runtime_env,
                    )
                )
            return
        want = min(len(queue), MAX_PENDING_LEASE_REQUESTS)
        while ks.pending_requests < want:
            request_id = self._new_request(key, ks)
            out.append(
                RequestLease(
                    request_id,
                    key,
                    ks.shape,
                    ks.strategy,
                    preferred=_arg_nodes(queue[0]),
                    runtime_env=ks.runtime_env,
                )
            )

    def _new_request(self, key: Key, ks: _KeyState) -> int:
        ks.pending_requests += 1
        request_id = self._next_request = self._next_request + 1
        self._requests[request_id] = key
        return request_id

    def _push(self, lease: Lease, spec: TaskSpec, out: list[Instruction]) -> None:
        lease.inflight[spec.task_id] = spec
        self._where[spec.task_id] = lease
        lease.idle_since = None
        out.append(PushTask(lease, spec))

    def _steal(self, ks: _KeyState, node_id: str) -> TaskSpec | None:
        """A task bound to a request of ``ks`` that waits on ``node_id`` (see the module
        docstring), taken from its request; the oldest first. None if there is none."""
        local = node_id == self._local_node
        for req in ks.bound.values():
            spec = req.spec
            if spec is None:
                continue
            if req.node == node_id or (
                local and req.node is None and req.since + SPREAD_STEAL_S <= self._now + _SLACK
            ):
                req.spec = None
                return spec
        return None

    def _arm(self, ks: _KeyState, lease: Lease, out: list[Instruction]) -> None:
        """Arm an idle lease's timer: when it is due back, or sooner when a task bound to a
        request on the owner's raylet becomes its to steal."""
        assert lease.idle_since is not None
        at = lease.idle_since + LEASE_IDLE_S
        if ks.bound and lease.node_id == self._local_node:
            for req in ks.bound.values():
                if req.spec is not None and req.node is None:
                    at = min(at, req.since + SPREAD_STEAL_S)
                    break
        lease.timer_armed = True
        out.append(ArmIdleTimer(lease, at))

    def _depth(self, spec: TaskSpec) -> int:
        ema = self._exec_ema.get(spec.function_id)
        return PIPELINE_DEPTH if ema is not None and ema < FAST_TASK_S else 1

    def _forget_if_unused(self, key: Key, ks: _KeyState) -> bool:
        """Drop a shape's entry once nothing of it is left (else one entry per shape ever run)."""
        if ks.queue or ks.leases or ks.pending_requests or ks.backing_off:
            return False
        if any(lease.key == key for lease in self._where.values()):
            return False
        del self._keys[key]
        return True

    def _drop(self, lease: Lease, ks: _KeyState) -> None:
        lease.dead = True
        self._leases.discard(lease)
        if lease in ks.leases:
            ks.leases.remove(lease)


_DISPATCH: dict[type, Any] = {
    TaskQueued: lambda m, e: m.on_task_queued(e.spec, e.now),
    LeaseGranted: lambda m, e: m.on_lease_granted(e.request_id, e.grant, e.raylet, e.conn, e.now),
    LeaseSpilled: lambda m, e: m.on_lease_spilled(e.request_id, e.node_id, e.raylet_address),
    LeaseRefused: lambda m, e: m.on_lease_refused(e.request_id, e.code, e.message),
    LeaseRequestFailed: lambda m, e: m.on_lease_request_failed(e.request_id, e.error),
    RetryDue: lambda m, e: m.on_retry_due(e.key),
    PushReplied: lambda m, e: m.on_push_replied(e.task_id, e.reply, e.now),
    WorkerLost: lambda m, e: m.on_worker_lost(e.task_id),
    NodesDead: lambda m, e: m.on_nodes_dead(e.node_ids),
    IdleTimerFired: lambda m, e: m.on_idle_timer_fired(e.lease, e.now),
    CancelQueued: lambda m, e: m.on_cancel_queued(e.task_id),
    CancelPushed: lambda m, e: m.on_cancel_pushed(e.task_id),
    ReturnAll: lambda m, e: m.on_return_all(),
}


def key_of(spec: TaskSpec) -> Key:
    """The scheduling key: tasks sharing it may run on one another's leases."""
    return (
        *sorted(spec.resources.items()),
        _strategy_key(spec.strategy),
        spec.runtime_env,  # a worker serves one env: leases never cross envs
        spec.max_calls,
    )


def _strategy_key(strategy: Any) -> Any:
    if isinstance(strategy, LabelScoped):  # a label_selector: never share leases across them
        return (_strategy_key(strategy.strategy), strategy.label_selector)
    if strategy is None or strategy == "DEFAULT":
        return None
    if isinstance(strategy, str):
        return strategy
    return (
        type(strategy).__name__,
        getattr(strategy, "node_id", None),
        getattr(strategy, "soft", None),
    )


def _arg_nodes(spec: TaskSpec) -> tuple[str, ...]:
    """Nodes holding the task's arguments that live in a store (large ones)."""
    return tuple(a[2] for a in spec.args if a[0] == "s")


def _waiting(ks: _KeyState) -> Iterator[TaskSpec]:
    """A key's tasks not pushed yet: queued, or bound to a lease request (SPREAD)."""
    yield from ks.queue
    for req in ks.bound.values():
        if req.spec is not None:
            yield req.spec


def _bound_count(ks: _KeyState) -> int:
    return sum(1 for req in ks.bound.values() if req.spec is not None)
