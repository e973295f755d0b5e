"""Owner side of normal tasks: dependency resolution, worker leases, pushing, retries.

Runs entirely on the core worker's IO loop. Tasks are grouped by resource shape;
for each shape the submitter asks the local raylet for worker leases while tasks
are queued, pushes tasks straight to the leased workers, and gives a lease back
once it has been idle for ``LEASE_IDLE_S``. Functions measured to run fast are
pipelined a few deep per worker so round trips overlap with execution.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rayops.core_worker.task_metrics import ST_SUBMITTED
from rayops.core_worker.task_spec import TaskReply, TaskSpec
from rayops.raylet.scheduling_policy import LabelScoped, split_strategy
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

LEASE_IDLE_S = 0.05
MAX_PENDING_LEASE_REQUESTS = 4
SPREAD_PENDING_LEASE_REQUESTS = 16
PIPELINE_DEPTH = 8
FAST_TASK_S = 0.002

# (resource, amount) pairs, then the scheduling strategy's key
Key = tuple[Any, ...]


@dataclass(eq=False)
class Lease:
    lease_id: int
    worker_id: bytes
    address: tuple[str, int]
    instances: dict[str, list[tuple[int, float]]]
    node_id: str
    key: Key
    conn: framed.Connection | None = None
    raylet: framed.Connection | None = None  # the raylet that granted it
    inflight: dict[bytes, TaskSpec] = field(default_factory=dict)
    idle_timer: asyncio.TimerHandle | None = None
    dead: bool = False
    used: bool = False  # has run a task


@dataclass
class KeyState:
    shape: dict[str, float]
    strategy: Any = None
    queue: deque[TaskSpec] = field(default_factory=deque)
    leases: list[Lease] = field(default_factory=list)
    pending_requests: int = 0


class TaskSubmitter:
    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._keys: dict[Key, KeyState] = {}
        self._exec_ema: dict[bytes, float] = {}
        # task id -> the lease it was pushed on (for cancel)
        self._where: dict[bytes, Lease] = {}

    # ------------------------------------------------------------------ entry
    def submit(self, spec: TaskSpec) -> None:
        key: Key = (*sorted(spec.resources.items()), _strategy_key(spec.strategy))
        ks = self._keys.get(key)
        if ks is None:
            ks = self._keys[key] = KeyState(dict(spec.resources), spec.strategy)
        ks.queue.append(spec)
        self._pump(key, ks)

    def cancel_queued(self, task_id: bytes) -> bool:
        for ks in self._keys.values():
            for spec in ks.queue:
                if spec.task_id == task_id:
                    ks.queue.remove(spec)
                    return True
        return False

    def lease_of(self, task_id: bytes) -> Lease | None:
        return self._where.get(task_id)

    # ---------------------------------------------------------------- pumping
    def _pump(self, key: Key, ks: KeyState) -> None:
        queue = ks.queue
        # SPREAD with a label_selector attached still spreads (over the matching nodes).
        spread = split_strategy(ks.strategy)[0] == "SPREAD"
        depth = 1 if spread else (self._depth(queue[0]) if queue else 1)
        for lease in list(ks.leases):
            if lease.dead or lease.conn is None:
                continue
            if spread and lease.used and not lease.inflight:
                # SPREAD: one task per lease, so every task gets its own placement.
                lease.dead = True
                ks.leases.remove(lease)
                self._return(lease, True)
                continue
            while queue and len(lease.inflight) < depth and not (spread and lease.used):
                self._push(queue.popleft(), lease)
            if not lease.inflight and not queue:
                self._arm_idle(lease)
        cap = SPREAD_PENDING_LEASE_REQUESTS if spread else MAX_PENDING_LEASE_REQUESTS
        want = min(len(ks.queue), cap)
        while ks.pending_requests < want:
            ks.pending_requests += 1
            self._cw.spawn(self._request_lease(key, ks))

    def _depth(self, spec: TaskSpec) -> int:
        ema = self._exec_ema.get(spec.function_id)
        if ema is not None and ema < FAST_TASK_S:
            return PIPELINE_DEPTH
        return 1

    async def _request_lease(self, key: Key, ks: KeyState) -> None:
        cw = self._cw
        raylet = cw.raylet
        spilled = False
        preferred = _arg_nodes(ks.queue[0]) if ks.queue else ()
        try:
            while True:
                reply = await raylet.request(
                    "request_lease", ks.shape, ks.strategy, spilled, preferred
                )
                if reply[0] != "spill":
                    break
                # Another node should run it: ask that node's raylet, which will not spill again.
                raylet = await cw.peer(tuple(reply[2]))
                spilled = True
        except ValueError as err:  # the policy refused (e.g. hard affinity to a dead node)
            ks.pending_requests -= 1
            from rayops import exceptions as rex

            self._fail_queue(ks, rex.TaskUnschedulableError(str(err)))
            return
        except Exception as err:
            ks.pending_requests -= 1
            if cw.is_shut_down:
                return
            logger.warning("lease request for %s failed: %r; retrying", ks.shape, err)
            await asyncio.sleep(0.2)
            self._pump(key, ks)
            return
        ks.pending_requests -= 1
        _, lease_id, worker_id, address, instances, node_id = reply
        lease = Lease(lease_id, worker_id, tuple(address), instances, node_id, key, raylet=raylet)
        if not ks.queue:
            raylet.notify("return_lease", lease_id, True)
            self._pump(key, ks)
            return
        try:
            lease.conn = await cw.peer(lease.address)
        except Exception as err:
            logger.warning("could not reach leased worker at %s: %r", lease.address, err)
            raylet.notify("return_lease", lease_id, False)
            self._pump(key, ks)
            return
        ks.leases.append(lease)
        self._pump(key, ks)

    def _push(self, spec: TaskSpec, lease: Lease) -> None:
        cw = self._cw
        if lease.idle_timer is not None:
            lease.idle_timer.cancel()
            lease.idle_timer = None
        conn = lease.conn
        assert conn is not None
        sent = conn.context.setdefault("functions", set())
        fn_bytes = None
        if spec.function_id not in sent:
            fn_bytes = cw.function_bytes(spec.function_id)
            sent.add(spec.function_id)
        lease.inflight[spec.task_id] = spec
        lease.used = True
        self._where[spec.task_id] = lease
        cw.set_task_state(spec.task_id, ST_SUBMITTED)
        fut = conn.request("push_task", spec, fn_bytes, lease.instances, lease.lease_id)
        fut.add_done_callback(lambda f: self._on_done(spec, lease, f))

    def _on_done(self, spec: TaskSpec, lease: Lease, fut: asyncio.Future[Any]) -> None:
        lease.inflight.pop(spec.task_id, None)
        self._where.pop(spec.task_id, None)
        ks = self._keys[lease.key]
        err = fut.exception()
        if err is None:
            reply: TaskReply = fut.result()
            prev = self._exec_ema.get(spec.function_id)
            x = reply.exec_seconds
            self._exec_ema[spec.function_id] = x if prev is None else 0.8 * prev + 0.2 * x
            self._cw.on_task_reply(spec, reply)
        else:
            self._on_worker_lost(lease, ks)
            self._cw.on_task_worker_died(spec, err)
        self._pump(lease.key, ks)

    def _on_worker_lost(self, lease: Lease, ks: KeyState) -> None:
        if lease.dead:
            return
        lease.dead = True
        if lease in ks.leases:
            ks.leases.remove(lease)
        if lease.idle_timer is not None:
            lease.idle_timer.cancel()
        self._return(lease, False)

    def _arm_idle(self, lease: Lease) -> None:
        if lease.idle_timer is None:
            loop = asyncio.get_running_loop()
            lease.idle_timer = loop.call_later(LEASE_IDLE_S, self._return_if_idle, lease)

    def _return_if_idle(self, lease: Lease) -> None:
        lease.idle_timer = None
        ks = self._keys.get(lease.key)
        if ks is None or lease.dead or lease.inflight or ks.queue:
            return
        lease.dead = True
        ks.leases.remove(lease)
        self._return(lease, True)

    def _return(self, lease: Lease, worker_ok: bool) -> None:
        raylet = lease.raylet or self._cw.raylet
        if not raylet.closed:
            raylet.notify("return_lease", lease.lease_id, worker_ok)

    def _fail_queue(self, ks: KeyState, err: BaseException) -> None:
        while ks.queue:
            self._cw.finish_with_error(ks.queue.popleft(), err)

    def return_all_leases(self) -> None:
        for ks in self._keys.values():
            for lease in ks.leases:
                if not lease.dead:
                    lease.dead = True
                    self._return(lease, True)
            ks.leases.clear()

    def on_nodes_dead(self, node_ids: set[str]) -> None:
        """Leases on dead nodes: drop their connections so in-flight tasks fail over."""
        for ks in self._keys.values():
            for lease in list(ks.leases):
                if lease.node_id in node_ids and lease.conn is not None:
                    lease.conn.close()

    def map_inflight(self, fn: Callable[[TaskSpec], None]) -> None:
        for ks in self._keys.values():
            for lease in ks.leases:
                for spec in lease.inflight.values():
                    fn(spec)


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
