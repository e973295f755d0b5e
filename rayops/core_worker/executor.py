"""Worker side of tasks: receive pushed tasks, run them on the main thread, reply.

The IO loop receives ``push_task`` requests and queues them; the worker's main
thread runs one task at a time (Ray's model: user code may block, call ``get``,
or submit more tasks). Results up to ``INLINE_MAX_BYTES`` go back inline in the
reply, larger ones are written to the node's shared-memory store.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import os
import queue
import signal
import threading
import time
from typing import TYPE_CHECKING, Any

import cloudpickle

from rayops import exceptions as rex
from rayops import ids, serialization
from rayops.actor import ActorExitRequest
from rayops.core_worker.core_worker import TaskContext, resolve
from rayops.core_worker.task_metrics import executor_key
from rayops.core_worker.task_spec import STREAMING, TaskReply, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

Address = tuple[str, int]


class _Cancelled(Exception):
    pass


class Executor:
    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._functions: dict[bytes, Any] = {}
        self._function_bytes: dict[bytes, bytes] = {}
        self._current: bytes | None = None
        self._cancel_requested: set[bytes] = set()
        self._lock = threading.Lock()
        self._replies: list[tuple[asyncio.Future[TaskReply], TaskReply]] = []
        self.actor: Any = None  # ActorRuntime once this worker hosts an actor
        self.exiting = False  # set once an actor asked to exit: no more calls run
        self._reply_scheduled = False

    @property
    def is_actor(self) -> bool:
        return self.actor is not None

    def handlers(self) -> dict[str, Any]:
        from rayops.core_worker.actor_runtime import ActorRuntime

        return {
            "push_task": self._h_push_task,
            "cancel_task": self._h_cancel_task,
            "create_actor": lambda conn, *a: ActorRuntime.create(self, conn, *a),
            "actor_call": lambda conn, spec: self._actor_call(conn, spec),
            "exit_actor": lambda conn, cause: os._exit(1),
        }

    def _actor_call(self, conn: framed.Connection, spec: TaskSpec) -> asyncio.Future[TaskReply]:
        fut: asyncio.Future[TaskReply] = asyncio.get_running_loop().create_future()
        if self.exiting:
            return fut  # never answered: the connection closes when the worker exits
        if self.actor is None:
            fut.set_exception(
                rex.RaySystemError(f"worker {self._cw.worker_id.hex()} hosts no actor")
            )
            return fut
        self.actor.dispatch(spec, conn, fut)
        return fut

    def enqueue(self, item: Any) -> None:
        """Run a callable (or a task tuple) on the main thread, in order."""
        self._queue.put(item)

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
        self._queue.put((spec, instances, lease_id, conn, fut))
        return fut

    def _h_cancel_task(self, conn: framed.Connection, task_id: bytes, force: bool) -> None:
        with self._lock:
            self._cancel_requested.add(task_id)
            running = self._current == task_id
        if running:
            if force:
                logger.info("force-cancelling task %s: exiting", task_id.hex())
                os._exit(1)
            # Interrupts a blocking call too (time.sleep, a lock wait) in the main thread.
            signal.pthread_kill(threading.main_thread().ident or 0, signal.SIGINT)

    # ------------------------------------------------------------ main thread
    def run_forever(self) -> None:
        while True:
            try:
                item = self._queue.get()
                if item is None:
                    return
                if callable(item):
                    item()
                else:
                    self._run_one(*item)
            except KeyboardInterrupt:
                continue  # a cancel that arrived between tasks

    def stop(self) -> None:
        self._queue.put(None)

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
            if spec.task_id in self._cancel_requested:
                self._cancel_requested.discard(spec.task_id)
                self._reply(fut, TaskReply("cancelled", [], [], cw.address, 0.0))
                return
            self._current = spec.task_id
        metric_key = executor_key(spec.name, display_name, spec.attempt)
        ctx = TaskContext(
            task_id=spec.task_id,
            task_name=display_name or spec.name,
            job_id=spec.job_id,
            resources=dict(spec.resources),
            instances=instances,
            lease_id=lease_id,
            metric_key=metric_key,
        )
        cw.set_task_context(ctx)
        counts = cw.metrics.executor_counts
        counts.started(spec.task_id, metric_key)
        _set_visible_devices(instances)
        start = time.perf_counter()
        status = "ok"
        exiting = False
        try:
            try:
                if fn is None:
                    fn = self._function(spec.function_id)
                args, kwargs = self._resolve_args(spec)
                if spec.num_returns == STREAMING:
                    returns, num_items = [], self._run_generator(spec, conn, fn, args, kwargs)
                else:
                    result = fn(*args, **kwargs)
                    returns = self._package_returns(spec, result)
                    num_items = 0
            except KeyboardInterrupt:
                with self._lock:
                    cancelled = spec.task_id in self._cancel_requested
                if not cancelled:
                    raise
                status, returns, num_items = "cancelled", [], 0
            except ActorExitRequest:
                exiting = self.exiting = True
                returns, num_items = self._package_returns(spec, None), 0
            except Exception as err:
                status = "error"
                returns = self._error_returns(spec, err)
                num_items = 0
                if spec.num_returns == STREAMING:
                    self._send_item(conn, spec, 0, returns[0])
                    returns, num_items = [], 1
        finally:
            with self._lock:
                self._current = None
                self._cancel_requested.discard(spec.task_id)
            cw.set_task_context(None)
            counts.ended(spec.task_id)
        elapsed = time.perf_counter() - start
        borrowed = self._settle_borrows(spec)
        _flush_output()
        self._reply(fut, TaskReply(status, returns, borrowed, cw.address, elapsed, num_items))
        if exiting and self.actor is not None:
            self.actor.exit_after_reply()

    def _reply(self, fut: asyncio.Future[TaskReply], reply: TaskReply) -> None:
        # One loop wake-up for all replies made while the IO thread was busy.
        with self._lock:
            self._replies.append((fut, reply))
            if self._reply_scheduled:
                return
            self._reply_scheduled = True
        self._cw.loop.call_soon_threadsafe(self._flush_replies)

    def _flush_replies(self) -> None:
        with self._lock:
            replies, self._replies = self._replies, []
            self._reply_scheduled = False
        for fut, reply in replies:
            resolve(fut, reply)

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
                value, meta = cw._read_from_store(a[1], a[2])
                values.append(_raise_if_error(meta, value))
            else:
                from rayops.core_worker.object_ref import ObjectRef

                pending[i] = ObjectRef(a[1], tuple(a[2]), cw, counted=False)
                values.append(None)
        if pending:
            got = cw.get(list(pending.values()))
            for (i, _), v in zip(pending.items(), got, strict=True):
                values[i] = v
        nk = len(spec.kwarg_names)
        if nk:
            return values[:-nk], dict(zip(spec.kwarg_names, values[-nk:], strict=True))
        return values, {}

    def _package_returns(self, spec: TaskSpec, result: Any) -> list[Any]:
        n = spec.num_returns
        if n == 1:
            values = [result]
        elif n == 0:
            values = []
        else:
            try:
                values = list(result)
            except TypeError as err:
                raise ValueError(
                    f"Task {spec.name} declared num_returns={n} but returned a "
                    f"non-iterable {type(result).__name__}."
                ) from err
            if len(values) != n:
                raise ValueError(
                    f"Task {spec.name} declared num_returns={n} but returned {len(values)} values."
                )
        return [self._package(spec, rid, v) for rid, v in zip(spec.return_ids, values, strict=True)]

    def _package(self, spec: TaskSpec, oid: bytes, value: Any, meta: bytes = b"") -> Any:
        cw = self._cw
        sv = serialization.serialize(value, meta)
        entry = cw.store_value(oid, sv)
        contained = self._hand_over_refs(spec, sv.contained_refs)
        return (entry, contained)

    def _hand_over_refs(self, spec: TaskSpec, refs: list[Any]) -> list[tuple[bytes, Address]]:
        """Refs inside a return value: make the task's owner a borrower of each."""
        cw = self._cw
        contained = []
        remote: list[tuple[bytes, Address, Address]] = []
        for r in refs:
            oid, owner = r.binary(), r.owner_address
            contained.append((oid, owner))
            if owner == spec.owner:
                continue  # the owner holds its own object through the return value
            if owner == cw.address:
                cw.references.add_borrower(oid, spec.owner)
            else:
                remote.append((oid, owner, spec.owner))
        cw.register_borrows_blocking(remote)
        return contained

    def _error_returns(self, spec: TaskSpec, err: BaseException) -> list[Any]:
        cw = self._cw
        task_err = rex.RayTaskError.from_exception(err, spec.name, os.getpid(), cw.node_ip)
        try:
            serialization.serialize(task_err)
        except Exception:
            task_err = rex.make_task_error_picklable(task_err)
        n = max(1, spec.num_returns) if spec.num_returns != STREAMING else 1
        ids_ = (
            spec.return_ids
            if spec.num_returns != STREAMING
            else (ids.object_id_for(spec.task_id, 2),)
        )
        return [
            self._package(spec, rid, task_err, serialization.META_ERROR) for rid in ids_[:n]
        ] or [self._package(spec, spec.return_ids[0], task_err, serialization.META_ERROR)]

    def _run_generator(
        self, spec: TaskSpec, conn: framed.Connection, fn: Any, args: Any, kwargs: Any
    ) -> int:
        gen = fn(*args, **kwargs)
        if not inspect.isgenerator(gen):
            raise TypeError(
                f"{spec.name} was called with num_returns='streaming' "
                "but is not a generator function."
            )
        index = 0
        try:
            for value in gen:
                item = self._package(spec, ids.object_id_for(spec.task_id, index + 2), value)
                self._send_item(conn, spec, index, item)
                index += 1
        except KeyboardInterrupt:
            raise
        except Exception as err:
            item = self._error_returns_at(spec, index, err)
            self._send_item(conn, spec, index, item)
            index += 1
        return index

    def _error_returns_at(self, spec: TaskSpec, index: int, err: BaseException) -> Any:
        cw = self._cw
        task_err = rex.RayTaskError.from_exception(err, spec.name, os.getpid(), cw.node_ip)
        return self._package(
            spec, ids.object_id_for(spec.task_id, index + 2), task_err, serialization.META_ERROR
        )

    def _send_item(self, conn: framed.Connection, spec: TaskSpec, index: int, item: Any) -> None:
        entry, contained = item
        self._cw.loop.call_soon_threadsafe(
            conn.notify, "generator_item", spec.task_id, index, entry, contained
        )

    def _settle_borrows(self, spec: TaskSpec) -> list[bytes]:
        """Borrowed refs we still hold after the task: tell their owners before replying."""
        cw = self._cw
        mine: list[bytes] = []
        others: list[tuple[bytes, Address, Address]] = []
        for oid, owner in cw.references.drain_new_borrows():
            if owner == spec.owner:
                mine.append(oid)
            else:
                others.append((oid, owner, cw.address))
        cw.register_borrows_blocking(others)
        return mine


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
    from rayops.core_worker import output

    output.flush()
