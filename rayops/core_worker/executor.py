"""Worker side of tasks: receive pushed tasks, run them on the main thread, reply.

The IO loop receives ``push_task`` requests and queues them; the worker's main
thread runs one task at a time (Ray's model: user code may block, call ``get``,
or submit more tasks). Results up to ``INLINE_MAX_BYTES`` go back inline in the
reply, larger ones are written to the node's shared-memory store.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import cloudpickle

from rayops import exceptions as rex
from rayops import serialization
from rayops.core_worker import output, sync_lane
from rayops.core_worker.actor_runtime import ActorExitRequest
from rayops.core_worker.call_limit import CallLimit
from rayops.core_worker.core_worker import TaskContext, resolve
from rayops.core_worker.results import Results
from rayops.core_worker.task_metrics import executor_key
from rayops.protocol import worker_messages as wm
from rayops.protocol.bundle_resources import in_group
from rayops.protocol.framed_message import Refusal, RefusalCode
from rayops.protocol.task_messages import STREAMING, TaskReply, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

Address = tuple[str, int]

# Cancels remembered for tasks not (or no longer) running here are forgotten after this
# long, looked at once this many are remembered.
CANCEL_MEMORY_S = 600.0
CANCEL_PRUNE_AT = 1024


class _ArgumentCancelled(Exception):
    """An argument of the task was cancelled (carries its TaskCancelledError)."""

    def __init__(self, error: rex.TaskCancelledError) -> None:
        super().__init__(str(error))
        self.error = error


class Executor:
    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._functions: dict[bytes, Any] = {}
        self._function_bytes: dict[bytes, bytes] = {}
        self._current: bytes | None = None
        # Task id -> when its cancel arrived. An entry is dropped when the task starts or
        # ends here; one whose call never comes (it ended before the cancel arrived, or ran
        # on an async actor's loop) is pruned after CANCEL_MEMORY_S.
        self._cancel_requested: dict[bytes, float] = {}
        self._interrupt: bytes | None = None  # the running task a SIGINT is meant for
        if threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGINT, self._on_sigint)
        self._lock = threading.Lock()
        self._replies: list[tuple[asyncio.Future[TaskReply], TaskReply]] = []
        self.actor: Any = None  # ActorRuntime once this worker hosts an actor
        self.exiting = False  # set once an actor asked to exit: no more calls run
        self._reply_scheduled = False
        self.lanes: sync_lane.LaneSet | None = None  # an actor's sync lanes, once asked for
        self.call_limit = CallLimit()  # max_calls
        self.results = Results(cw)  # packaging what tasks return

    @property
    def is_actor(self) -> bool:
        return self.actor is not None

    def handlers(self) -> dict[Any, Any]:
        from rayops.core_worker.actor_runtime import ActorRuntime

        return {
            wm.PushTask: lambda conn, m: self._h_push_task(
                conn, m.spec, m.function, m.instances, m.lease_id
            ),
            wm.CancelTask: lambda conn, m: self._h_cancel_task(
                conn, m.task_id, m.force, m.recursive
            ),
            wm.CreateActor: lambda conn, m: ActorRuntime.create(
                self, conn, m.actor_id, m.creation_spec, m.instances, m.lease_id, m.num_restarts
            ),
            wm.ActorCall: lambda conn, m: self._actor_call(conn, m.spec),
            wm.OpenSyncLane: lambda conn, m: self._open_sync_lane(conn, m.actor_id),
            wm.ExitActor: lambda conn, m: os._exit(1),
        }

    def _actor_call(self, conn: framed.Connection, spec: TaskSpec) -> Any:
        # Not a future: the reply is queued as soon as it is set, with no done-callback turn
        # of the loop in between (it has a future's setter side, all the call paths need).
        fut: Any = framed.DeferredReply()
        if self.exiting:
            return fut  # never answered: the connection closes when the worker exits
        if self.actor is None or self.actor.actor_id != spec.actor_id:
            # A stale address (this process took the port of the actor's dead one): the
            # caller asks the GCS again; nothing ran.
            why = f"worker {self._cw.worker_id.hex()} does not host actor {spec.actor_id.hex()}"
            fut.set_exception(framed.Refused(Refusal(RefusalCode.NOT_HOSTED, why)))
            return fut
        self.actor.dispatch(spec, conn, fut)
        return fut

    def enqueue(self, item: Any) -> None:
        """Run a callable (or a task tuple) on the main thread, in order."""
        self._queue.put(item)
        lanes = self.lanes
        if lanes is not None and lanes.active:
            lanes.wake()

    # ------------------------------------------------------------- sync lanes
    def _open_sync_lane(self, conn: framed.Connection, actor_id: bytes) -> bool:
        """IO thread: make ``conn`` a sync lane of the actor hosted here (see
        ``sync_lane``), if it is a plain sync actor and the connection a local one."""
        actor = self.actor
        if (
            self.exiting
            or actor is None
            or actor.actor_id != actor_id
            or actor.is_async
            or actor.threaded
            or not conn.is_local
        ):
            return False
        try:
            fd = sync_lane.take_over(conn)
        except framed.ConnectionLost:
            return False
        if self.lanes is None:
            self.lanes = sync_lane.LaneSet(
                self._run_lane_call,
                lambda c: self._cw.loop.call_soon_threadsafe(c.close),
                self._cw.framed_settings.max_frame_bytes,
                self._cw.framed_settings.sync_lane_spin_us / 1e6,
            )
        lanes = self.lanes
        self.enqueue(lambda: lanes.add(conn, fd))
        return True

    def _run_lane_call(self, conn: framed.Connection, req_id: int, msg: wm.ActorCall) -> None:
        """Main thread: a call read from a sync lane, run here at once."""
        spec = msg.spec
        fut = framed.DeferredReply.for_request(conn, req_id)
        if self.exiting:
            return  # never answered: the connection closes when the worker exits
        actor = self.actor
        if actor is None or actor.actor_id != spec.actor_id:
            why = f"worker {self._cw.worker_id.hex()} does not host actor {spec.actor_id.hex()}"
            refused = framed.Refused(Refusal(RefusalCode.NOT_HOSTED, why))
            self._cw.loop.call_soon_threadsafe(fut.set_exception, refused)
            return
        actor.run_here(spec, conn, fut)

    @staticmethod
    def show_devices(instances: dict[str, Any]) -> None:
        """Show the task (or the actor, once at its creation) the GPUs its lease holds."""
        _set_visible_devices(instances)

    # ------------------------------------------------------------- IO thread
    def _h_push_task(
        self,
        conn: framed.Connection,
        spec: TaskSpec,
        fn_bytes: bytes | None,
        instances: dict[str, Any],
        lease_id: int,
    ) -> asyncio.Future[TaskReply]:
        if fn_bytes is not None:
            self._function_bytes[spec.function_id] = fn_bytes
        fut: asyncio.Future[TaskReply] = asyncio.get_running_loop().create_future()
        self.enqueue((spec, instances, lease_id, conn, fut))
        return fut

    def _h_cancel_task(
        self, conn: framed.Connection, task_id: bytes, force: bool, recursive: bool = True
    ) -> None:
        """The owner cancelled ``task_id`` (queued or running here; its ref is resolved
        already). Children first: this process owns what the task submitted."""
        with self._lock:
            requested = self._cancel_requested
            if len(requested) >= CANCEL_PRUNE_AT:
                old = time.monotonic() - CANCEL_MEMORY_S
                for tid in [t for t, at in requested.items() if at < old]:
                    del requested[tid]
            requested[task_id] = time.monotonic()
            running = self._current == task_id
            if running and self.actor is None:
                self._interrupt = task_id
        if recursive:
            self._cw.tasks.cancel_children(task_id, force)
        if self.actor is not None:
            # Actor state must survive: a sync or threaded call sees is_canceled(); an
            # async one gets CancelledError; a queued one is skipped when its turn comes.
            self.actor.cancel(task_id)
            return
        if running:
            if force:
                logger.info("force-cancelling task %s: exiting", task_id.hex())
                os._exit(1)
            self._interrupt_main(task_id, 0.0)

    def _interrupt_main(self, task_id: bytes, delay: float) -> None:
        """SIGINT the main thread until the handler raised in ``task_id`` (or it ended): a
        signal landing after the main thread let go of the GIL but before it blocked (in
        time.sleep) waits for the call to return; the IO thread gets the GIL right then."""
        with self._lock:
            pending = self._interrupt == task_id and self._current == task_id
        if not pending:
            return
        signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)
        delay = min(max(2 * delay, 0.01), 1.0)
        self._cw.loop.call_later(delay, self._interrupt_main, task_id, delay)

    def _on_sigint(self, signum: int, frame: Any) -> None:
        # Raise only in the task the cancel was meant for: a signal delivered after that
        # task ended must not interrupt the next one. No lock: the handler runs in the main
        # thread between two bytecodes, possibly while that thread holds self._lock.
        target = self._interrupt
        if target is not None and target == self._current:
            self._interrupt = None
            raise KeyboardInterrupt

    def is_cancelled(self, task_id: bytes | None) -> bool:
        """Whether the owner cancelled ``task_id`` while it runs here (is_canceled())."""
        with self._lock:
            return task_id in self._cancel_requested

    # ------------------------------------------------------------ main thread
    def run_forever(self) -> None:
        while True:
            item: Any = None
            try:
                lanes = self.lanes
                if lanes is not None and lanes.active:
                    # Calls on sync lanes run as they come; the queue's items after the
                    # lanes are read (each caller's order: see sync_lane).
                    lanes.wait(self._queue_ready)
                item = self._queue.get()
                if item is None:
                    return
                if callable(item):
                    item()
                else:
                    self._run_one(*item)
            except KeyboardInterrupt:
                # A cancel's interrupt that landed at the edge of a task, outside its own
                # handler: answer for it (a second answer is ignored), or its lease is held
                # forever.
                if isinstance(item, tuple):
                    self._interrupted_at_edge(item[0].task_id)
                    self._reply(item[4], TaskReply("cancelled", [], [], self._cw.address, 0.0))
                continue

    def _interrupted_at_edge(self, task_id: bytes) -> None:  # what _run_one's finally missed
        with self._lock:
            if self._current == task_id:
                self._current = None
                self._interrupt = None
            self._cancel_requested.pop(task_id, None)
        self._cw.set_task_context(None)
        self._cw.metrics.executor_counts.ended(task_id)

    def _queue_ready(self) -> bool:
        return not self._queue.empty()

    def stop(self) -> None:
        self.enqueue(None)

    def _run_one(
        self,
        spec: TaskSpec,
        instances: dict[str, Any],
        lease_id: int,
        conn: framed.Connection,
        fut: asyncio.Future[TaskReply],
        fn: Any = None,
        display_name: str | None = None,
    ) -> None:
        cw = self._cw
        if self.exiting:
            return  # the actor is exiting: the caller learns it from the closed connection
        with self._lock:
            cancelled = spec.task_id in self._cancel_requested
            if cancelled:
                self._cancel_requested.pop(spec.task_id, None)
            elif self.actor is None:
                self._current = spec.task_id
        if cancelled:  # cancelled while it waited here: never runs (_reply takes the lock)
            self._reply(fut, TaskReply("cancelled", [], [], cw.address, 0.0))
            return
        metric_key = executor_key(spec.name, display_name, spec.attempt)
        ctx = TaskContext(
            task_id=spec.task_id,
            task_name=display_name or spec.name,
            job_id=spec.job_id,
            resources=dict(spec.resources),
            instances=instances,
            lease_id=lease_id,
            metric_key=metric_key,
            placement=in_group(spec.strategy) if self.actor is None else self.actor.placement,
        )
        cw.set_task_context(ctx)
        counts = cw.metrics.executor_counts
        counts.started(spec.task_id, metric_key)
        events = cw.task_events
        if events is not None:
            events.running(spec, "")
        if display_name is None:  # an actor's calls keep the devices set at its creation
            _set_visible_devices(instances)
        start = time.perf_counter()
        status = "ok"
        exiting = False
        try:
            try:
                if fn is None:
                    fn = self._function(spec.function_id)
                try:
                    args, kwargs = self._resolve_args(spec)
                except rex.TaskCancelledError as err:
                    if spec.num_returns == STREAMING:
                        raise
                    raise _ArgumentCancelled(err) from err
                if spec.num_returns == STREAMING:
                    returns, num_items = (
                        [],
                        self.results.run_generator(spec, conn, fn, args, kwargs),
                    )
                else:
                    result = fn(*args, **kwargs)
                    returns = self.results.returns(spec, result)
                    num_items = 0
            except KeyboardInterrupt:
                with self._lock:
                    cancelled = spec.task_id in self._cancel_requested
                if not cancelled:
                    raise
                status, returns, num_items = "cancelled", [], 0
            except ActorExitRequest:
                exiting = self.exiting = True
                returns, num_items = self.results.returns(spec, None), 0
            except _ArgumentCancelled as err:
                # A chain: the task's result is its argument's TaskCancelledError itself.
                status, num_items = "error", 0
                returns = [
                    self.results.package(spec, rid, err.error, serialization.META_ERROR)
                    for rid in spec.return_ids
                ]
            except Exception as err:
                status = "error"
                returns = self.results.errors(spec, err)
                if events is not None:
                    events.ended(spec, err)
                num_items = 0
                if spec.num_returns == STREAMING:
                    self.results.send_item(conn, spec, 0, returns[0])
                    returns, num_items = [], 1
        finally:
            with self._lock:
                if self._current == spec.task_id:
                    self._current = None
                    self._interrupt = None
                self._cancel_requested.pop(spec.task_id, None)
            cw.set_task_context(None)
            counts.ended(spec.task_id)
        elapsed = time.perf_counter() - start
        borrowed = self.results.settle_borrows(spec)
        _flush_output()
        spent = self.call_limit.ran(spec)  # max_calls reached: exit after this reply
        reply = TaskReply(status, returns, borrowed, cw.address, elapsed, num_items, spent)
        self._reply(fut, reply)
        if spent:
            self.exiting = True  # anything pushed meanwhile fails over when the process ends
            self.call_limit.exit_after_reply(cw)
        if exiting and self.actor is not None:
            self.actor.exit_after_reply()

    def _reply(self, fut: asyncio.Future[TaskReply], reply: TaskReply) -> None:
        if type(fut) is framed.DeferredReply and self._reply_alone():
            # An actor call's reply: this thread writes it (no loop wake-up), unless its
            # handler has not returned yet. The lock makes the first answer the only one.
            with self._lock:
                sent = fut.send_from_thread(reply)
            if sent:
                return
        # One loop wake-up for all replies made while the IO thread was busy.
        with self._lock:
            self._replies.append((fut, reply))
            if self._reply_scheduled:
                return
            self._reply_scheduled = True
        self._cw.loop.call_soon_threadsafe(self._flush_replies)

    def _reply_alone(self) -> bool:
        """Whether an actor call's reply is likely the only one for a while: then this
        thread writes it at once; else the loop writes the replies that pile up meanwhile
        as one frame (a batch of calls, a concurrent actor)."""
        actor = self.actor
        if actor is None or self._reply_scheduled:
            return False
        return bool(actor.calls_running() <= 1 and self._queue.empty())

    def _flush_replies(self) -> None:
        with self._lock:
            replies, self._replies = self._replies, []
            self._reply_scheduled = False
        # Actor calls' replies are written at once, one frame per connection, not after
        # another loop iteration.
        corked: set[framed.Connection] = set()
        try:
            for fut, reply in replies:
                if type(fut) is framed.DeferredReply:
                    conn = fut.connection
                    if conn is not None and conn not in corked:
                        conn.cork()
                        corked.add(conn)
                resolve(fut, reply)
        finally:
            for conn in corked:
                conn.uncork()

    def _function(self, function_id: bytes) -> Any:
        fn = self._functions.get(function_id)
        if fn is None:
            fn = cloudpickle.loads(self._function_bytes[function_id])
            fn = getattr(fn, "_function", fn)  # a RemoteFunction travels whole
            self._functions[function_id] = fn
        return fn

    def _resolve_args(self, spec: TaskSpec) -> tuple[list[Any], dict[str, Any]]:
        cw = self._cw
        values: list[Any] = []
        pending: dict[int, Any] = {}
        for i, a in enumerate(spec.args):
            kind = a[0]
            if kind == "v":
                meta, pickled, buffers = a[1]
                values.append(_raise_if_error(meta, serialization.deserialize(pickled, buffers)))
            elif kind == "s":
                try:
                    value, meta = cw.objects.read_from_store(a[1], a[2])
                except rex.ObjectLostError:
                    # Its node may have died: the owner rebuilds it (core_worker/recovery.py).
                    newer = cw.recovery.refetch(a[1], (spec.owner[0], spec.owner[1]), a[2])
                    if newer is None:
                        raise
                    values.append(cw.objects.materialize(a[1], newer))
                    continue
                values.append(_raise_if_error(meta, value))
            else:
                from rayops.core_worker.object_ref import ObjectRef

                pending[i] = ObjectRef(a[1], tuple(a[2]), cw, counted=False)
                values.append(None)
        if pending:
            got = cw.objects.get(list(pending.values()))
            for (i, _), v in zip(pending.items(), got, strict=True):
                values[i] = v
        nk = len(spec.kwarg_names)
        if nk:
            return values[:-nk], dict(zip(spec.kwarg_names, values[-nk:], strict=True))
        return values, {}


def _raise_if_error(meta: bytes, value: Any) -> Any:
    if meta == serialization.META_ERROR:
        if isinstance(value, rex.RayTaskError):
            raise value.as_instanceof_cause()
        raise value
    return value


# The worker's CUDA_VISIBLE_DEVICES as it started (the node's own), read at its first task.
_STARTED_WITH: dict[str, str | None] = {}


def _set_visible_devices(instances: dict[str, Any]) -> None:
    """Show a task the GPUs its lease holds (the raylet sends the node's physical ids).

    A task holding none sees the variable as the worker started with it, as in Ray, not the
    devices of an earlier task of the same worker.
    """
    started = _STARTED_WITH.setdefault(
        "CUDA_VISIBLE_DEVICES", os.environ.get("CUDA_VISIBLE_DEVICES")
    )
    gpus = instances.get("GPU")
    if gpus:
        os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(str(i) for i, _ in gpus)
    elif started is None:
        os.environ.pop("CUDA_VISIBLE_DEVICES", None)
    else:
        os.environ["CUDA_VISIBLE_DEVICES"] = started


def _flush_output() -> None:
    output.flush()
