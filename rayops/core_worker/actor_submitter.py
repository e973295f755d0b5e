"""Caller side of actor method calls: per-actor ordered queues, the actor's address,
reconnects across restarts, and failing calls when the actor is dead.

Runs on the core worker's IO loop. Calls to one actor leave this process in
submission order over one connection, so a single-threaded actor runs each
caller's calls in order; a call whose arguments are not ready yet holds back the
calls behind it. The actor's address comes from the GCS (a long poll that answers
when the actor's state changes); the calls themselves never touch the GCS.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rayops import exceptions as rex
from rayops.core_worker.task_metrics import ST_ARGS, ST_SUBMITTED
from rayops.core_worker.task_spec import TaskReply, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

WATCH_TIMEOUT_MS = 10_000


@dataclass
class ActorQueue:
    actor_id: bytes
    class_name: str
    version: int = 0
    state: str = "PENDING_CREATION"
    address: tuple[str, int] | None = None
    conn: framed.Connection | None = None
    pending: deque[TaskSpec] = field(default_factory=deque)
    inflight: dict[bytes, TaskSpec] = field(default_factory=dict)
    watching: bool = False
    death: BaseException | None = None
    node_id: str = ""


class ActorSubmitter:
    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._queues: dict[bytes, ActorQueue] = {}
        # in-flight calls cut off by a broken connection, failed once the cause is known
        self._lost: dict[bytes, list[TaskSpec]] = {}

    def queue(self, actor_id: bytes, class_name: str = "") -> ActorQueue:
        q = self._queues.get(actor_id)
        if q is None:
            q = self._queues[actor_id] = ActorQueue(actor_id, class_name)
        return q

    def submit(self, spec: TaskSpec, class_name: str) -> None:
        q = self.queue(spec.actor_id, class_name)
        record = self._cw.task_record(spec.task_id)
        if record is not None:
            record.mname = f"{q.class_name}.{spec.name}"
            self._cw.task_counts.move(record, ST_ARGS)
        q.pending.append(spec)
        self._pump(q)

    # ------------------------------------------------------------------ pumping
    def _pump(self, q: ActorQueue) -> None:
        if q.death is not None:
            self._fail_all(q)
            return
        if q.conn is None or q.conn.closed:
            self._watch(q)
            return
        cw = self._cw
        while q.pending:
            spec = q.pending[0]
            resolved = cw.resolve_owned_args(spec, lambda: self._pump(q))
            if resolved is None:
                return  # waiting for an argument; the callback pumps again
            q.pending.popleft()
            if isinstance(resolved, tuple) and resolved and resolved[0] == "error":
                cw.finish_with_entry(spec, resolved[1])
                continue
            assert isinstance(resolved, TaskSpec)
            self._send(q, resolved)

    def _send(self, q: ActorQueue, spec: TaskSpec) -> None:
        conn = q.conn
        assert conn is not None
        q.inflight[spec.task_id] = spec
        self._cw.set_task_state(spec.task_id, ST_SUBMITTED)
        fut = conn.request("actor_call", spec)
        fut.add_done_callback(lambda f: self._on_done(q, spec, f))

    def _on_done(self, q: ActorQueue, spec: TaskSpec, fut: asyncio.Future[Any]) -> None:
        err = fut.exception()
        if err is None:
            q.inflight.pop(spec.task_id, None)
            reply: TaskReply = fut.result()
            self._cw.on_task_reply(spec, reply)
            return
        if not isinstance(err, ConnectionError):
            # This call alone failed (too large to send, or the actor's process could not
            # take it); the connection and the calls behind it are fine.
            q.inflight.pop(spec.task_id, None)
            self._cw.finish_with_error(spec, err)
            return
        if q.inflight.get(spec.task_id) is not spec:
            return  # handled below with the other calls its connection carried
        # The connection to the actor broke: every call in flight on it failed, and their
        # callbacks run in no particular order. Take them all now, in the order they were
        # sent, so the retried ones go back to the head of the queue in submission order
        # (one at a time, each to the front, they would run reversed after the restart).
        if q.conn is not None and q.conn.closed:
            q.conn = None
        cut_off = list(q.inflight.values())
        q.inflight.clear()
        retried: list[TaskSpec] = []
        for lost in cut_off:
            record = self._cw.task_record(lost.task_id)
            if record is not None and record.retries_left != 0 and q.death is None:
                record.retries_left -= 1
                self._cw.task_counts.retry(record)
                retried.append(lost)
            else:  # failed with the cause once it is known
                self._lost.setdefault(q.actor_id, []).append(lost)
        q.pending.extendleft(reversed(retried))  # re-sent, in order, once the actor is back
        self._watch(q)

    # ------------------------------------------------------------------ the GCS
    def _watch(self, q: ActorQueue) -> None:
        if q.watching:
            return
        q.watching = True
        self._cw.spawn(self._watch_loop(q))

    async def _watch_loop(self, q: ActorQueue) -> None:
        from rayops.gcs import calls

        cw = self._cw
        try:
            while True:
                gcs = await cw.async_gcs()
                info = await gcs.call(
                    calls.get_actor_info(q.actor_id, True, q.version, WATCH_TIMEOUT_MS),
                    timeout=WATCH_TIMEOUT_MS / 1000 + 20,
                )
                if info is None:
                    q.death = rex.ActorDiedError(
                        error_msg=f"the GCS does not know actor {q.actor_id.hex()}"
                    )
                    break
                q.version = info.version
                q.state = info.state
                if info.state == "DEAD":
                    q.death = _death_error(info)
                    break
                if info.state == "ALIVE" and info.address is not None:
                    try:
                        q.conn = await cw.peer(info.address)
                    except (TimeoutError, OSError, framed.ConnectionLost):
                        continue  # it died again; the next answer says so
                    q.address = info.address
                    q.node_id = info.node_id
                    self._fail_lost(
                        q,
                        rex.ActorDiedError(
                            actor_id=q.actor_id.hex(),
                            error_msg=(
                                f"The actor {q.class_name} died while running this call and "
                                "was restarted; the call is not retried (max_task_retries=0)."
                            ),
                        ),
                    )
                    break
        except Exception as err:  # GCS unreachable: calls cannot be delivered
            if cw.is_shut_down:
                return
            q.death = rex.ActorDiedError(error_msg=f"could not reach the GCS: {err}")
        finally:
            q.watching = False
        self._pump(q)

    def _fail_lost(self, q: ActorQueue, err: BaseException) -> None:
        for spec in self._lost.pop(q.actor_id, []):
            q.inflight.pop(spec.task_id, None)
            self._cw.finish_with_error(spec, err)

    def _fail_all(self, q: ActorQueue) -> None:
        assert q.death is not None
        self._fail_lost(q, q.death)
        for spec in list(q.inflight.values()):
            self._cw.finish_with_error(spec, q.death)
        q.inflight.clear()
        while q.pending:
            self._cw.finish_with_error(q.pending.popleft(), q.death)

    def mark_dead(self, actor_id: bytes, class_name: str, err: BaseException) -> None:
        """This process killed the actor: fail its calls now instead of racing the exit."""
        q = self.queue(actor_id, class_name)
        q.death = err
        if q.conn is not None and not q.conn.closed:
            q.conn = None
        self._fail_all(q)

    def on_nodes_dead(self, node_ids: set[str]) -> None:
        for q in self._queues.values():
            if q.node_id in node_ids and q.conn is not None:
                q.conn.close()  # in-flight calls fail over; the GCS says where it went


def _death_error(info: Any) -> BaseException:
    cause: Any = None
    if info.death_error:
        try:
            cause = pickle.loads(info.death_error)
        except Exception:
            cause = None
    msg = f"The actor {info.class_name} ({info.actor_id.hex()}) died: {info.death_cause}."
    if cause is not None:
        return rex.ActorDiedError(cause=cause, actor_id=info.actor_id.hex(), error_msg=msg)
    return rex.ActorDiedError(actor_id=info.actor_id.hex(), error_msg=msg)
