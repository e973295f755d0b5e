"""The actor side of a worker that hosts an actor: construct the instance, run method
calls with the actor's concurrency model, exit on request.

Concurrency models, as Ray's:
- sync, single-threaded (default): calls run one at a time on the main thread in the
  order they arrive (each caller sends its calls in order, over one connection);
- threaded (``max_concurrency > 1``): calls run in a thread pool of that size;
- async (any ``async def`` method): calls run as coroutines on one event loop in a
  dedicated thread, at most ``max_concurrency`` (default 1000) at a time;
- concurrency groups: each named group gets its own pool or limit; methods choose a
  group with ``@rayops.method(concurrency_group=...)``.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import logging
import os
import pickle
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import cloudpickle

from rayops import exceptions as rex
from rayops.core_worker.core_worker import TaskContext, resolve
from rayops.core_worker.task_metrics import executor_key
from rayops.core_worker.threads import any_thread, io_thread
from rayops.protocol import worker_messages as wm
from rayops.protocol.task_messages import STREAMING, TaskReply, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.executor import Executor

logger = logging.getLogger(__name__)


class ActorExitRequest(BaseException):
    """Raised by ``rayops.actor.exit_actor()`` inside an actor method; the worker then
    exits cleanly. Defined here, where it is caught, so that the core worker never imports
    the public API modules."""


class ActorRuntime:
    def __init__(
        self,
        executor: Executor,
        actor_id: bytes,
        spec: dict[str, Any],
        gcs_conn: framed.Connection,
        num_restarts: int,
        instances: dict[str, Any],
        lease_id: int,
    ) -> None:
        self.executor = executor
        self.actor_id = actor_id
        self.class_name: str = spec["class_name"]
        self.name: str = spec.get("name", "")
        self.methods: dict[str, dict[str, Any]] = spec["methods"]
        self.is_async: bool = spec["is_async"]
        self.max_concurrency: int = spec["max_concurrency"]
        self.groups: dict[str, int] = spec["concurrency_groups"]
        self.gcs_conn = gcs_conn
        self.num_restarts = num_restarts
        self.instances = instances
        self.placement = spec.get("placement")  # its placement group, if any
        self.lease_id = lease_id
        self.instance: Any = None
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._sems: dict[str, asyncio.Semaphore] = {}
        # async actors: the running (or waiting) coroutine of each call, to cancel it
        self._async_calls: dict[bytes, concurrent.futures.Future[None]] = {}
        self.threaded = not self.is_async and (self.max_concurrency > 1 or bool(self.groups))

    # ---------------------------------------------------------------- creation
    @staticmethod
    @io_thread
    def create(
        executor: Executor,
        conn: framed.Connection,
        actor_id: bytes,
        creation_spec: bytes,
        instances: dict[str, Any],
        lease_id: int,
        num_restarts: int,
    ) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        cw = executor._cw
        spec = pickle.loads(creation_spec)
        runtime = ActorRuntime(executor, actor_id, spec, conn, num_restarts, instances, lease_id)

        def construct() -> None:
            result: wm.ActorCreated | wm.ActorCreationFailed
            ctx = TaskContext(
                task_id=actor_id,
                task_name=runtime.class_name,
                job_id=spec["job_id"],
                instances=instances,
                lease_id=lease_id,
                actor_id=actor_id,
                placement=spec.get("placement"),
            )
            cw.set_task_context(ctx)
            executor.show_devices(instances)  # once: its calls run with the same devices
            events = cw.task_events
            creation = TaskSpec(
                task_id=actor_id,
                job_id=spec["job_id"],
                name=f"{runtime.class_name}.__init__",
                function_id=b"",
                args=(),
                kwarg_names=(),
                num_returns=0,
                return_ids=(),
                owner=tuple(spec["owner"]),
                resources={},
                attempt=num_restarts,
                actor_id=actor_id,
            )
            if events is not None:
                events.running(creation, runtime.class_name, "ACTOR_CREATION_TASK")
            try:
                cls = cloudpickle.loads(spec["class_bytes"])
                cls = getattr(cls, "_cls", cls)
                fake = TaskSpec(
                    task_id=actor_id,
                    job_id=spec["job_id"],
                    name="__init__",
                    function_id=b"",
                    args=spec["args"],
                    kwarg_names=spec["kwarg_names"],
                    num_returns=0,
                    return_ids=(),
                    owner=tuple(spec["owner"]),
                    resources={},
                )
                args, kwargs = executor._resolve_args(fake)
                if inspect.iscoroutinefunction(getattr(cls, "__init__", None)):
                    # Ray awaits an ``async def __init__`` on the actor's own event loop,
                    # before any call runs there.
                    runtime._start_concurrency()
                    assert runtime._loop is not None
                    instance = cls.__new__(cls)

                    async def init() -> None:
                        cw.set_task_context(ctx)  # the loop's thread: the constructor's context
                        try:
                            await instance.__init__(*args, **kwargs)
                        finally:
                            cw.set_task_context(None)

                    asyncio.run_coroutine_threadsafe(init(), runtime._loop).result()
                    runtime.instance = instance
                    executor.actor = runtime
                else:
                    runtime.instance = cls(*args, **kwargs)
                    executor.actor = runtime
                    runtime._start_concurrency()
                result = wm.ActorCreated(os.getpid())
                if events is not None:
                    events.ended(creation, None, creation=True)
            except BaseException as err:  # the constructor failed: report it, do not host
                if events is not None:
                    events.ended(creation, err, creation=True)
                task_err = rex.RayTaskError.from_exception(
                    err, f"{runtime.class_name}.__init__", os.getpid(), cw.node_ip
                )
                try:
                    payload = pickle.dumps(rex.make_task_error_picklable(task_err))
                except Exception:
                    payload = b""
                why = str(err) or type(err).__name__
                result = wm.ActorCreationFailed(os.getpid(), why, payload)
            finally:
                cw.set_task_context(None)
            cw.loop.call_soon_threadsafe(resolve, fut, result)

        executor.enqueue(construct)
        return fut

    def _builtin_method(self, name: str) -> Any:
        """Ray's methods every actor has: ``__ray_ready__`` (True once constructed) and
        ``__ray_call__(fn, *args)`` (runs ``fn(instance, *args)`` in the actor)."""
        if name == "__ray_ready__":
            return _ready
        if name == "__ray_call__":
            instance = self.instance
            return lambda fn, *args, **kwargs: fn(instance, *args, **kwargs)
        return None

    def _start_concurrency(self) -> None:
        if self.is_async:
            loop = framed.new_event_loop()
            self._loop = loop
            threading.Thread(target=loop.run_forever, name="rayops-actor-loop", daemon=True).start()
            return
        if self.threaded:
            self._pools[""] = ThreadPoolExecutor(
                self.max_concurrency, thread_name_prefix="rayops-actor"
            )
            for name, size in self.groups.items():
                self._pools[name] = ThreadPoolExecutor(
                    size, thread_name_prefix=f"rayops-actor-{name}"
                )

    # ------------------------------------------------------------------- calls
    @io_thread
    def dispatch(
        self, spec: TaskSpec, conn: framed.Connection, fut: asyncio.Future[TaskReply]
    ) -> None:
        name = spec.name
        if name == "__ray_terminate__":
            self.executor.enqueue(lambda: self._terminate(spec, conn, fut))
            return
        method = self._builtin_method(name) or getattr(self.instance, name, None)
        if method is None:
            fut.set_exception(AttributeError(f"actor {self.class_name} has no method {name!r}"))
            return
        group = spec.concurrency_group or self.methods.get(name, {}).get("concurrency_group", "")
        if self._loop is not None:
            call = asyncio.run_coroutine_threadsafe(
                self._run_async(spec, conn, fut, method, group), self._loop
            )
            self._async_calls[spec.task_id] = call
            call.add_done_callback(lambda c: self._async_call_done(spec.task_id, fut, c))
            return
        if self.threaded:
            pool = self._pools.get(group) or self._pools[""]
            pool.submit(self._run_sync, spec, conn, fut, method)
            return
        self.executor.enqueue(
            (spec, self.instances, self.lease_id, conn, fut, method, self.class_name)
        )

    def run_here(self, spec: TaskSpec, conn: framed.Connection, fut: framed.DeferredReply) -> None:
        """Main thread: run a plain sync actor's call read from a sync lane, now (what
        ``dispatch`` queues for this thread)."""
        name = spec.name
        if name == "__ray_terminate__":
            self._terminate(spec, conn, fut)  # type: ignore[arg-type]
            return
        method = self._builtin_method(name) or getattr(self.instance, name, None)
        if method is None:
            err = AttributeError(f"actor {self.class_name} has no method {name!r}")
            self.executor._cw.loop.call_soon_threadsafe(fut.set_exception, err)
            return
        self.executor._run_one(
            spec,
            self.instances,
            self.lease_id,
            conn,
            fut,  # type: ignore[arg-type]
            method,
            self.class_name,
        )

    def calls_running(self) -> int:
        """An async actor's calls in progress (the one replying included); 2 for a
        threaded actor, whose calls overlap by design: its replies always go through the
        loop, which gathers those that finish together into one frame."""
        if self.threaded:
            return 2
        return len(self._async_calls)

    def _run_sync(
        self, spec: TaskSpec, conn: framed.Connection, fut: asyncio.Future[TaskReply], method: Any
    ) -> None:
        self.executor._run_one(
            spec, self.instances, self.lease_id, conn, fut, method, self.class_name
        )

    async def _run_async(
        self,
        spec: TaskSpec,
        conn: framed.Connection,
        fut: asyncio.Future[TaskReply],
        method: Any,
        group: str,
    ) -> None:
        sem = self._sems.get(group)
        if sem is None:
            sem = self._sems[group] = asyncio.Semaphore(
                self.groups.get(group, self.max_concurrency)
            )
        ex = self.executor
        cw = ex._cw
        try:
            await sem.acquire()
        except asyncio.CancelledError:  # cancelled while it waited for a slot: never runs
            ex._reply(fut, TaskReply("cancelled", [], [], cw.address, 0.0))
            return
        try:
            if ex.exiting:
                return
            start = time.perf_counter()
            status = "ok"
            exiting = False
            num_items = 0
            metric_key = executor_key(spec.name, self.class_name, spec.attempt)
            ctx = TaskContext(
                task_id=spec.task_id,
                task_name=self.class_name,
                job_id=spec.job_id,
                instances=self.instances,
                lease_id=None,
                actor_id=self.actor_id,
                metric_key=metric_key,
                placement=self.placement,
            )
            cw.set_task_context(ctx)
            cw.metrics.executor_counts.started(spec.task_id, metric_key)
            events = cw.task_events
            if events is not None:
                events.running(spec, "")
            try:
                if any(a[0] == "r" for a in spec.args):
                    args, kwargs = await asyncio.to_thread(ex._resolve_args, spec)
                else:
                    args, kwargs = ex._resolve_args(spec)
                if spec.num_returns == STREAMING:
                    num_items = await self._run_async_gen(spec, conn, method, args, kwargs)
                    returns: list[Any] = []
                else:
                    result = method(*args, **kwargs)
                    if inspect.isawaitable(result):
                        result = await result
                    returns = ex.results.returns(spec, result)
            except ActorExitRequest:
                exiting = ex.exiting = True
                returns = ex.results.returns(spec, None)
            except (Exception, asyncio.CancelledError) as err:
                status, returns = "error", ex.results.errors(spec, err)
                if events is not None:
                    events.ended(spec, err)
            finally:
                cw.set_task_context(None)
                cw.metrics.executor_counts.ended(spec.task_id)
            borrowed = ex.results.settle_borrows(spec)
            ex._reply(
                fut,
                TaskReply(
                    status, returns, borrowed, cw.address, time.perf_counter() - start, num_items
                ),
            )
            if exiting:
                self.exit_after_reply()
        finally:
            sem.release()

    def _async_call_done(
        self, task_id: bytes, fut: asyncio.Future[TaskReply], call: concurrent.futures.Future[None]
    ) -> None:
        self._async_calls.pop(task_id, None)
        if call.cancelled():  # cancelled before its coroutine could answer: answer for it
            ex = self.executor
            ex._reply(fut, TaskReply("cancelled", [], [], ex._cw.address, 0.0))

    def cancel(self, task_id: bytes) -> None:
        """The owner cancelled ``task_id`` (IO thread): an async call's coroutine gets
        CancelledError; sync and threaded calls only see is_canceled() (the executor's
        flag), and a queued one is skipped when its turn comes."""
        call = self._async_calls.get(task_id)
        if call is not None:
            call.cancel()

    async def _run_async_gen(
        self, spec: TaskSpec, conn: framed.Connection, method: Any, args: Any, kwargs: Any
    ) -> int:
        from rayops import ids

        ex = self.executor
        gen = method(*args, **kwargs)
        index = 0
        try:
            if inspect.isasyncgen(gen):
                async for value in gen:
                    ex.results.send_item(
                        conn,
                        spec,
                        index,
                        ex.results.package(spec, ids.object_id_for(spec.task_id, index + 2), value),
                    )
                    index += 1
            else:
                for value in gen:
                    ex.results.send_item(
                        conn,
                        spec,
                        index,
                        ex.results.package(spec, ids.object_id_for(spec.task_id, index + 2), value),
                    )
                    index += 1
        except Exception as err:
            ex.results.send_item(conn, spec, index, ex.results.error_at(spec, index, err))
            index += 1
        return index

    # -------------------------------------------------------------------- exit
    def _terminate(
        self, spec: TaskSpec, conn: framed.Connection, fut: asyncio.Future[TaskReply]
    ) -> None:
        ex = self.executor
        ex.exiting = True
        ex._reply(fut, TaskReply("ok", ex.results.returns(spec, None), [], ex._cw.address, 0.0))
        self.exit_after_reply()

    @any_thread
    def exit_after_reply(self) -> None:
        """Tell the GCS this exit is intentional, let replies go out, then exit."""
        cw = self.executor._cw

        def bye() -> None:
            if not self.gcs_conn.closed:
                self.gcs_conn.notify(wm.ActorExiting())
            cw.loop.call_later(0.05, os._exit, 0)

        cw.loop.call_soon_threadsafe(bye)


def _ready() -> bool:
    return True
