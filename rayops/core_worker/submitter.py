"""Owner side of normal tasks: the IO shell around the lease state machine.

``lease_state.LeaseState`` decides (queues per scheduling key, lease requests and spillback,
lease reuse, pipelining, idle return, ``max_calls`` retirement, node death); this shell carries
its instructions out on the core worker's IO loop: it sends lease requests to raylets (following
spillbacks), connects to leased workers, pushes task specs, returns leases, runs the timers,
and hands each reply or push failure to the task records (``cw.tasks.on_reply`` /
``on_worker_died``). It keeps no scheduling state of its own.

Every public method runs on the IO thread (asserted in debug runs).
"""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any

from rayops.core_worker import lease_state as ls
from rayops.core_worker.lease_state import Lease, LeaseState
from rayops.core_worker.threads import any_thread, io_thread
from rayops.protocol import raylet_messages as rm
from rayops.protocol import worker_messages as wm
from rayops.protocol.task_messages import TaskReply, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

__all__ = ["Lease", "TaskSubmitter"]


class TaskSubmitter:
    """Leases and pushes for the tasks this process owns (the IO half; see module doc)."""

    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._state = LeaseState()
        self._run_instruction: dict[type, Any] = {
            ls.PushTask: self._push,
            ls.RequestLease: self._request_lease,
            ls.ReturnLease: self._return,
            ls.ArmIdleTimer: self._arm_idle,
            ls.RetryLater: self._retry_later,
            ls.TaskFailed: self._task_failed,
            ls.DropConnection: self._drop_connection,
            ls.TaskDequeued: _nothing,
        }

    # ----------------------------------------------------------------- public API
    @io_thread
    def submit(self, spec: TaskSpec) -> None:
        """Queue a task whose own arguments are ready; it runs on a lease of its key."""
        self._run(self._state.on_task_queued(spec, self._cw.loop.time()))

    @io_thread
    def cancel_queued(self, task_id: bytes) -> bool:
        """Drop ``task_id`` if it is queued here, not yet pushed; True if it was."""
        out = self._state.on_cancel_queued(task_id)
        return bool(out)

    @io_thread
    def lease_of(self, task_id: bytes) -> Lease | None:
        """The lease ``task_id`` is in flight on (its ``conn`` reaches the worker), or None."""
        return self._state.lease_of(task_id)

    @io_thread
    def cancel_pushed(self, task_id: bytes) -> Lease | None:
        """The owner cancels ``task_id``: the lease it is in flight on (send the cancel on its
        ``conn``), or None. Nothing more is pushed onto that lease until the task answers."""
        lease = self._state.lease_of(task_id)
        self._run(self._state.on_cancel_pushed(task_id))
        return lease

    @any_thread
    def table_sizes(self) -> dict[str, int]:
        """Entries in the lease machine's tables (a snapshot; exact once the IO thread is idle)."""
        return self._state.table_sizes()

    @io_thread
    def return_all_leases(self) -> None:
        """Shutdown: give every lease back to its raylet."""
        self._run(self._state.on_return_all())

    @io_thread
    def on_nodes_dead(self, node_ids: set[str]) -> None:
        """Leases on dead nodes: drop their connections so in-flight tasks fail over."""
        self._run(self._state.on_nodes_dead(frozenset(node_ids)))

    # ---------------------------------------------------------------- carrying out
    def _run(self, instructions: list[ls.Instruction]) -> None:
        run = self._run_instruction
        for ins in instructions:
            run[type(ins)](ins)

    def _push(self, ins: ls.PushTask) -> None:
        cw = self._cw
        lease, spec = ins.lease, ins.spec
        conn = lease.conn
        sent = conn.context.setdefault("functions", set())
        fn_bytes = None
        if spec.function_id not in sent:
            fn_bytes = cw.function_bytes(spec.function_id)
            sent.add(spec.function_id)
        cw.tasks.pushed(spec.task_id)
        fut = conn.request(wm.PushTask(spec, fn_bytes, lease.instances, lease.lease_id))
        fut.add_done_callback(lambda f: self._on_done(spec, f, lease.worker_id))

    def _on_done(self, spec: TaskSpec, fut: asyncio.Future[Any], worker_id: bytes) -> None:
        err = fut.exception()
        if err is None:
            reply: TaskReply = fut.result()
            out = self._state.on_push_replied(spec.task_id, reply, self._cw.loop.time())
            self._cw.tasks.on_reply(spec, reply)
        else:
            out = self._state.on_worker_lost(spec.task_id)
            oom = self._cw.kill_notices.error_for(worker_id, spec)
            if oom is None:
                self._cw.tasks.on_worker_died(spec, err)
            else:  # the node's memory monitor killed it (and said so first)
                self._cw.tasks.on_worker_died(spec, oom[0], retry=oom[1])
        self._run(out)

    def _request_lease(self, ins: ls.RequestLease) -> None:
        self._cw.spawn(self._ask_raylet(ins))

    async def _ask_raylet(self, ins: ls.RequestLease) -> None:
        cw = self._cw
        rid = ins.request_id
        try:
            raylet = cw.raylet if ins.target is None else await cw.peer(ins.target)
            reply = await raylet.request(
                rm.RequestLease(
                    ins.resources, ins.strategy, ins.spilled, ins.preferred, ins.runtime_env
                )
            )
        except framed.Refused as err:  # the policy refused (e.g. hard affinity to a dead node)
            refusal = err.refusal
            self._run(self._state.on_lease_refused(rid, refusal.code.name.lower(), refusal.message))
            return
        except Exception as err:
            if cw.is_shut_down:
                return
            logger.warning("lease request for %s failed: %r; retrying", ins.resources, err)
            self._run(self._state.on_lease_request_failed(rid, repr(err)))
            return
        if isinstance(reply, rm.LeaseSpilled):
            # Another node should run it: ask that node's raylet, which will not spill again.
            self._run(self._state.on_lease_spilled(rid, reply.node_id, reply.raylet_address))
            return
        grant = ls.Grant(
            reply.lease_id,
            reply.worker_id,
            tuple(reply.worker_address),
            reply.instances,
            reply.node_id,
        )
        try:
            conn: Any = await cw.peer(grant.address)
        except Exception as err:
            logger.warning("could not reach leased worker at %s: %r", grant.address, err)
            conn = None
        self._run(self._state.on_lease_granted(rid, grant, raylet, conn, cw.loop.time()))

    def _return(self, ins: ls.ReturnLease) -> None:
        raylet = ins.lease.raylet or self._cw.raylet
        if raylet is not None and not raylet.closed:
            raylet.notify(rm.ReturnLease(ins.lease.lease_id, ins.worker_ok))

    def _arm_idle(self, ins: ls.ArmIdleTimer) -> None:
        self._cw.loop.call_at(ins.at, self._idle_fired, ins.lease)

    def _idle_fired(self, lease: Lease) -> None:
        self._run(self._state.on_idle_timer_fired(lease, self._cw.loop.time()))

    def _retry_later(self, ins: ls.RetryLater) -> None:
        self._cw.loop.call_later(ins.delay, self._retry_due, ins.key)

    def _retry_due(self, key: ls.Key) -> None:
        if not self._cw.is_shut_down:
            self._run(self._state.on_retry_due(key))

    def _task_failed(self, ins: ls.TaskFailed) -> None:
        self._cw.tasks.fail(ins.spec, error=ins.error)

    def _drop_connection(self, ins: ls.DropConnection) -> None:
        if ins.lease.conn is not None:
            ins.lease.conn.close()


def _nothing(ins: Any) -> None:
    pass
