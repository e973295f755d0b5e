"""The core worker: the runtime inside every driver and worker process.

Owns: the IO thread and its event loop, the connection to the local raylet, the
process's own server (owners answer borrowers and workers there), the objects
this process owns (reference table, memory store, shared-memory writes), and the
task records of the tasks it submitted. Task submission details live in
``submitter``; execution of pushed tasks in ``executor``.

Threads: user code (the driver's threads, a worker's main thread) calls the
public methods; everything touching connections runs on the IO loop thread.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import functools
import itertools
import logging
import operator
import os
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rayops import exceptions as rex
from rayops import ids, serialization
from rayops.core_worker.memory_store import Entry, MemoryStore
from rayops.core_worker.metrics_reporter import MetricsReporter
from rayops.core_worker.object_ref import ObjectRef, ObjectRefGenerator
from rayops.core_worker.references import RefEntry, ReferenceTable
from rayops.core_worker.submitter import TaskSubmitter
from rayops.core_worker.task_metrics import (
    ST_ARGS,
    ST_FAILED,
    ST_FINISHED,
    ST_NODE,
    UNCOUNTED,
)
from rayops.core_worker.task_spec import INLINE_MAX_BYTES, STREAMING, TaskReply, TaskSpec
from rayops.objectstore import StoreClient
from rayops.protocol import metrics as mx
from rayops.rpc import framed
from rayops.rpc.framed_settings import FramedSettings

logger = logging.getLogger(__name__)

Address = tuple[str, int]


@dataclass
class TaskRecord:
    spec: TaskSpec
    retries_left: int
    retry_exceptions: Any
    deps: list[bytes]
    cancelled: bool = False
    force_cancelled: bool = False
    # ray_tasks bookkeeping (task_metrics.OwnerTaskCounts): state, name ("" = spec.name), retry
    mstate: int = UNCOUNTED
    mname: str = ""
    is_retry: bool = False
    mrow: list[int] | None = None


@dataclass
class GeneratorState:
    items: int = 0
    done: bool = False
    released_from: int | None = None
    consumed: set[int] = field(default_factory=set)


@dataclass
class TaskContext:
    """What ``get_runtime_context()`` reports inside a task."""

    task_id: bytes | None = None
    task_name: str = ""
    job_id: int = 0
    resources: dict[str, float] = field(default_factory=dict)
    instances: dict[str, list[tuple[int, float]]] = field(default_factory=dict)
    lease_id: int | None = None
    put_index: int = 0
    actor_id: bytes | None = None
    metric_key: tuple[str, bool] | None = None  # (name, is_retry) while a task runs


class CoreWorker:
    def __init__(
        self,
        *,
        mode: str,
        raylet_address: Address,
        token: bytes,
        node_ip: str,
        worker_id: bytes | None = None,
        namespace: str = "",
        log_to_driver: bool = True,
        entrypoint: str = "",
        agent_address: Address | None = None,
        framed_settings: FramedSettings | None = None,
    ) -> None:
        assert mode in ("driver", "worker")
        self.mode = mode
        # Parsed by the process's entry point (init() / worker_main); defaults otherwise.
        self.framed_settings = framed_settings or FramedSettings()
        self.raylet_address = raylet_address
        self.token = token
        self.node_ip = node_ip
        self.worker_id = worker_id or ids.random_id(16)
        self.namespace = namespace
        self.log_to_driver = log_to_driver
        self.entrypoint = entrypoint
        self.loop = framed.new_event_loop()
        self.memory_store = MemoryStore()
        self.references = ReferenceTable(self._on_free)
        self.submitter = TaskSubmitter(self)
        self.address: Address = (node_ip, 0)
        self.node_id = ""
        self.job_id = 0
        self.session_dir = ""
        self.gcs_address = ""
        self.store: StoreClient | None = None
        self.raylet: framed.Connection = None  # type: ignore[assignment]
        self._server: asyncio.AbstractServer | None = None
        self._thread: threading.Thread | None = None
        self._peers: framed.ConnectionPool | None = None  # made once handlers are known
        self._functions: dict[bytes, bytes] = {}
        self._tasks: dict[bytes, TaskRecord] = {}
        self._generators: dict[bytes, GeneratorState] = {}
        self._gen_cond = threading.Condition()
        self._fetching: set[bytes] = set()
        self._submit_q: list[TaskSpec] = []
        self._submit_scheduled = False
        self._actor_q: list[tuple[TaskSpec, str]] = []
        self._pending_lock = threading.Lock()
        # actor id -> calls submitted from this process and not finished (max_pending_calls)
        self.pending_actor_calls: collections.Counter[bytes] = collections.Counter()
        self._actor_scheduled = False
        self._delete_q: list[bytes] = []
        self._delete_scheduled = False
        self._driver_ctx = TaskContext(task_id=ids.new_task_id())
        self._tls = threading.local()
        self._shutdown = False
        self._background: set[asyncio.Future[Any]] = set()
        self.executor: Any = None  # set in worker mode (rayops.core_worker.executor.Executor)
        from rayops.core_worker.actor_submitter import ActorSubmitter

        self.actor_submitter = ActorSubmitter(self)
        self._gcs_sync: Any = None
        self._gcs_async: Any = None
        self.on_raylet_lost: Any = None
        self.metrics = MetricsReporter(self, agent_address)
        self.task_counts = self.metrics.owner_counts

    # ============================================================== lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run_loop, name="rayops-io", daemon=True)
        self._thread.start()
        view = self.run(self._astart(), timeout=30)
        self.node_id = view["node_id"]
        self.session_dir = view["session_dir"]
        self.gcs_address = view["gcs_address"]
        self.job_id = view.get("job_id", 0)
        self._driver_ctx.job_id = self.job_id
        self.store = StoreClient(view["shm_dir"], view["spill_dir"])

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _astart(self) -> dict[str, Any]:
        handlers = self._handlers()
        self._server = await framed.serve(
            self.node_ip,
            0,
            self.token,
            handlers,
            on_close=self._on_peer_closed,
            settings=self.framed_settings,
        )
        self.address = (self.node_ip, self._server.sockets[0].getsockname()[1])
        raylet_handlers: dict[str, Any] = {
            "logs": self._h_logs,
            "warning": self._h_warning,
            "node_dead": self._h_node_dead,
        }
        host, port = self.raylet_address
        self.raylet = await framed.connect(
            host,
            port,
            self.token,
            raylet_handlers,
            on_close=self._on_raylet_closed,
            settings=self.framed_settings,
        )
        if self.mode == "driver":
            view: dict[str, Any] = await self.raylet.request(
                "register_driver", os.getpid(), self.namespace, self.entrypoint
            )
        else:
            view = await self.raylet.request(
                "register_worker", self.worker_id, os.getpid(), self.address[1]
            )
        self.spawn(self.metrics.run())
        return view

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the IO loop from a user thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_raylet(self, method: str, *args: Any, timeout: float | None = 60) -> Any:
        """A request to the local raylet from a user thread; waits for the reply."""

        async def req() -> Any:
            return await self.raylet.request(method, *args)

        return self.run(req(), timeout)

    def spawn(self, coro: Any) -> asyncio.Future[Any]:
        """Run a background coroutine on the IO loop, owned by this core worker."""
        task = asyncio.ensure_future(coro)
        self._background.add(task)
        task.add_done_callback(self._background.discard)
        return task

    def gcs(self) -> Any:
        """A synchronous GCS client for user threads (created on first use)."""
        if self._gcs_sync is None:
            from rayops.gcs.client import GcsClient

            self._gcs_sync = GcsClient(self.gcs_address, self.token.decode())
        return self._gcs_sync

    async def async_gcs(self) -> Any:
        """An asyncio GCS client for the IO loop (created on first use)."""
        if self._gcs_async is None:
            from rayops.gcs.client import AsyncGcsClient

            self._gcs_async = AsyncGcsClient(self.gcs_address, self.token.decode())
        return self._gcs_async

    @property
    def is_shut_down(self) -> bool:
        return self._shutdown

    def shutdown(self) -> None:
        if self._shutdown:
            return
        self._shutdown = True

        async def close() -> None:
            await self.metrics.flush()
            for task in list(self._background):
                task.cancel()
            self.metrics.close()
            self.submitter.return_all_leases()
            await asyncio.sleep(0)
            if self._peers is not None:
                self._peers.close_all()
            if self._gcs_async is not None:
                try:
                    await self._gcs_async.close()
                except Exception:
                    pass
            if self.raylet is not None:
                self.raylet.close()
            if self._server is not None:
                self._server.close()

        try:
            self.run(close(), timeout=5)
        except Exception as err:
            logger.debug("error while closing connections: %r", err)
        self.loop.call_soon_threadsafe(self.loop.stop)
        if self._gcs_sync is not None:
            self._gcs_sync.close()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=5)

    def _on_raylet_closed(self, conn: framed.Connection) -> None:
        if self._shutdown:
            return
        logger.error("lost the connection to the local raylet")
        if self.on_raylet_lost is not None:
            self.on_raylet_lost()

    def _on_peer_closed(self, conn: framed.Connection) -> None:
        addr = conn.context.get("peer_address")
        if addr is not None:
            self.references.remove_borrower_everywhere(addr)

    async def peer(self, address: Address) -> framed.Connection:
        """A (cached) connection to another core worker or a raylet."""
        if self._peers is None:
            self._peers = framed.ConnectionPool(
                self.token, self._handlers(), settings=self.framed_settings
            )
        return await self._peers.get(address)

    def _handlers(self) -> dict[str, Any]:
        h: dict[str, Any] = {
            "get_object": self._h_get_object,
            "add_borrower": self._h_add_borrower,
            "remove_borrower": self._h_remove_borrower,
            "generator_item": self._h_generator_item,
            "hello": self._h_hello,
            "warning": self._h_warning,
            "node_dead": self._h_node_dead,
        }
        if self.executor is not None:
            h.update(self.executor.handlers())
        return h

    # ============================================================== context
    def task_context(self) -> TaskContext:
        ctx = getattr(self._tls, "ctx", None)
        return ctx if ctx is not None else self._driver_ctx

    def set_task_context(self, ctx: TaskContext | None) -> None:
        self._tls.ctx = ctx

    # ============================================================== functions
    def register_function(self, function_id: bytes, pickled: bytes) -> None:
        self._functions.setdefault(function_id, pickled)

    def function_bytes(self, function_id: bytes) -> bytes:
        return self._functions[function_id]

    # ============================================================== put / get
    def put(self, value: Any) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError(
                "Calling put() on an ObjectRef is not allowed: pass the ref itself, or "
                "put a container that holds it (e.g. put([ref]))."
            )
        ctx = self.task_context()
        ctx.put_index += 1
        parent = ctx.task_id or b"\0" * ids.TASK_ID_LEN
        oid = ids.object_id_for(parent, ids.PUT_INDEX_BASE + ctx.put_index)
        sv = serialization.serialize(value)
        return self._own_value(oid, sv)

    def _own_value(
        self, oid: bytes, sv: serialization.SerializedValue, *, local: int = 1
    ) -> ObjectRef:
        entry = self.store_value(oid, sv)
        contained = [r.binary() for r in sv.contained_refs]
        self.references.add_owned(oid, self.address, local=local, contains=contained)
        self.memory_store.put(oid, entry)
        if self.mode == "driver" and contained:
            self._register_new_borrows_async()
        return ObjectRef(oid, self.address, self, counted=local > 0)

    def store_value(self, oid: bytes, sv: serialization.SerializedValue) -> Entry:
        """Inline for small values, the shared-memory store for large ones."""
        if sv.total_bytes <= INLINE_MAX_BYTES:
            return ("v", sv.to_wire())
        assert self.store is not None
        size = StoreClient.encoded_size(
            sv.metadata, len(sv.pickled), [memoryview(b).nbytes for b in sv.buffers]
        )
        where = self.call_raylet("store_reserve", oid, size)
        self.store.write(oid, sv.metadata, sv.pickled, sv.buffers, location=where)
        self.loop.call_soon_threadsafe(self.raylet.notify, "store_seal", oid)
        return ("s", self.node_id, size)

    def get(self, refs: Sequence[ObjectRef], timeout: float | None = None) -> list[Any]:
        oids = [r.binary() for r in refs]
        ms = self.memory_store
        missing = [r for r in refs if not ms.contains(r.binary())]
        if missing:
            self._fetch_missing(missing)
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._blocked():
                ready = ms.wait(oids, len(oids), deadline)
            if not all(ready):
                not_ready = [r for r, ok in zip(refs, ready, strict=True) if not ok]
                raise rex.GetTimeoutError(
                    f"get() timed out after {timeout} s waiting for {len(not_ready)} of "
                    f"{len(refs)} objects (first: {not_ready[0].hex()})."
                )
        values = [self._materialize(oid, ms.get(oid)) for oid in oids]
        if self.mode == "driver" and self.references._new_borrows:
            self._register_new_borrows_async()
        return values

    def _blocked(self, state: str = mx.RUNNING_IN_RAY_GET) -> _Blocked:
        """Tell the raylet while a task's worker waits, so its CPU can run other tasks."""
        return _Blocked(self, state)

    def _materialize(self, oid: bytes, entry: Entry | None) -> Any:
        if entry is None:
            raise rex.ObjectLostError(oid.hex())
        if entry[0] == "v":
            meta, pickled, buffers = entry[1]
            value = serialization.deserialize(pickled, buffers)
        else:
            value, meta = self._read_from_store(oid, entry[1])
        if meta == serialization.META_ERROR:
            if isinstance(value, rex.RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    def _read_from_store(self, oid: bytes, node_id: str = "") -> tuple[Any, bytes]:
        assert self.store is not None
        stored = self.store.read(oid)
        if stored is None:
            found = self.call_raylet("store_ensure_local", oid, node_id)
            stored = self.store.read(oid) if found else None
        if stored is None:
            raise rex.ObjectLostError(
                oid.hex(),
            )
        value = serialization.deserialize(stored.pickled, stored.buffers)
        return value, bytes(stored.metadata)

    def _fetch_missing(self, refs: Sequence[ObjectRef]) -> None:
        """Ask owners for refs we do not own; their answers land in the memory store."""
        todo = []
        for r in refs:
            oid = r.binary()
            if oid in self._fetching or self.references.is_owned(oid):
                continue
            if r.owner_address == self.address:
                # Ours but no longer tracked: the value is gone.
                self.memory_store.put(oid, self._error_entry(rex.ObjectLostError(oid.hex())))
                continue
            self._fetching.add(oid)
            todo.append((oid, r.owner_address))
        if todo:
            self.loop.call_soon_threadsafe(self._start_fetches, todo)

    def _start_fetches(self, todo: list[tuple[bytes, Address]]) -> None:
        for oid, owner in todo:
            self.spawn(self._fetch_one(oid, owner))

    async def _fetch_one(self, oid: bytes, owner: Address) -> None:
        try:
            conn = await self.peer(owner)
            entry = await conn.request("get_object", oid)
        except (TimeoutError, OSError, framed.ConnectionLost) as err:
            entry = self._error_entry(
                rex.OwnerDiedError(oid.hex(), owner_address=f"{owner[0]}:{owner[1]}")
            )
            logger.debug("owner %s of %s unreachable: %r", owner, oid.hex(), err)
        finally:
            self._fetching.discard(oid)
        if oid in self.references:
            self.memory_store.put(oid, entry)

    def _error_entry(self, err: BaseException) -> Entry:
        sv = serialization.serialize(err, serialization.META_ERROR)
        return ("v", sv.to_wire())

    async def get_value_async(self, ref: ObjectRef) -> Any:
        oid = ref.binary()
        if not self.memory_store.contains(oid):
            self._fetch_missing([ref])
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            loop = asyncio.get_running_loop()

            def ready(_oid: bytes, _e: Entry) -> None:
                loop.call_soon_threadsafe(resolve, fut, None)

            self.memory_store.on_ready(oid, ready)
            await fut
        return self._materialize(oid, self.memory_store.get(oid))

    def get_async(self, ref: ObjectRef) -> Any:
        return self.get_value_async(ref)

    def get_future(self, ref: ObjectRef) -> concurrent.futures.Future[Any]:
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()
        oid = ref.binary()
        self._fetch_missing([ref])

        def ready(_oid: bytes, entry: Entry) -> None:
            try:
                out.set_result(self._materialize(oid, entry))
            except BaseException as err:
                out.set_exception(err)

        # Keep the object alive until the future resolves.
        out.add_done_callback(functools.partial(_keep_alive, ref))
        self.memory_store.on_ready(oid, ready)
        return out

    def wait(
        self,
        refs: list[ObjectRef],
        oids: list[bytes],
        num_returns: int,
        timeout: float | None,
    ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        ms = self.memory_store
        flags = ms.present(oids)
        if flags.count(True) < num_returns:
            self._fetch_missing(list(itertools.compress(refs, map(operator.not_, flags))))
            deadline = None if timeout is None else time.monotonic() + timeout
            with self._blocked(mx.RUNNING_IN_RAY_WAIT):
                flags = ms.wait(oids, num_returns, deadline)
        # Ray's order: the first num_returns ready refs in list order; the rest stay in order.
        positions = list(itertools.compress(range(len(flags)), flags))
        if len(positions) > num_returns:
            cut = positions[num_returns - 1] + 1
            head_refs, head_flags = refs[:cut], flags[:cut]
            ready = list(itertools.compress(head_refs, head_flags))
            not_ready = list(itertools.compress(head_refs, map(operator.not_, head_flags)))
            not_ready.extend(refs[cut:])
            return ready, not_ready
        ready = list(itertools.compress(refs, flags))
        not_ready = list(itertools.compress(refs, map(operator.not_, flags)))
        return ready, not_ready

    # ============================================================== freeing
    def _on_free(self, oid: bytes, entry: RefEntry) -> None:
        if entry.owned and ids.index_of(oid) == ids.ACTOR_HANDLE_INDEX:
            self._actor_out_of_scope(ids.task_id_of(oid))
            return
        stored = self.memory_store.delete(oid)
        if entry.owned:
            if stored is not None and stored[0] == "s":
                self._queue_delete(oid)
        elif entry.registered and not self._shutdown:
            owner = entry.owner
            self.loop.call_soon_threadsafe(self._send_remove_borrower, oid, owner)

    def _actor_out_of_scope(self, actor_id: bytes) -> None:
        if self._shutdown:
            return

        async def report() -> None:
            from rayops.gcs import calls

            try:
                gcs = await self.async_gcs()
                await gcs.call(calls.report_actor_out_of_scope(actor_id))
            except Exception as err:
                logger.debug("could not report actor %s out of scope: %r", actor_id.hex(), err)

        try:
            self.loop.call_soon_threadsafe(self.spawn, report())
        except RuntimeError:
            pass

    def _queue_delete(self, oid: bytes) -> None:
        self._delete_q.append(oid)
        if not self._delete_scheduled and not self._shutdown:
            self._delete_scheduled = True
            try:
                self.loop.call_soon_threadsafe(self._flush_deletes)
            except RuntimeError:  # loop closed at shutdown
                pass

    def _flush_deletes(self) -> None:
        self._delete_scheduled = False
        batch, self._delete_q = self._delete_q, []
        if batch and not self.raylet.closed:
            self.raylet.notify("store_delete", batch)

    def _send_remove_borrower(self, oid: bytes, owner: Address) -> None:
        async def send() -> None:
            try:
                conn = await self.peer(owner)
                conn.notify("remove_borrower", oid, self.address)
            except Exception:
                pass  # owner gone: nothing to release

        self.spawn(send())

    def _register_new_borrows_async(self) -> None:
        new = self.references.drain_new_borrows()
        if not new:
            return

        def go() -> None:
            for oid, owner in new:
                self.spawn(self._register_borrow(oid, owner, self.address))

        self.loop.call_soon_threadsafe(go)

    async def _register_borrow(self, oid: bytes, owner: Address, borrower: Address) -> None:
        try:
            conn = await self.peer(owner)
            await conn.request("add_borrower", oid, borrower)
        except Exception as err:
            logger.debug("could not register borrow of %s with %s: %r", oid.hex(), owner, err)

    def register_borrows_blocking(self, pairs: list[tuple[bytes, Address, Address]]) -> None:
        """Tell owners (other than the task's submitter) about borrowers, and wait for them."""
        if not pairs:
            return

        async def all_of() -> None:
            await asyncio.gather(*(self._register_borrow(o, w, b) for o, w, b in pairs))

        self.run(all_of(), timeout=30)

    # ============================================================== owner handlers
    def _h_hello(self, conn: framed.Connection, address: Address) -> None:
        conn.context["peer_address"] = tuple(address)

    def _h_get_object(self, conn: framed.Connection, oid: bytes) -> Any:
        entry = self.memory_store.get(oid)
        if entry is not None:
            return entry
        if oid not in self.references:
            return self._error_entry(rex.ObjectLostError(oid.hex()))
        fut: asyncio.Future[Entry] = self.loop.create_future()

        def ready(_oid: bytes, e: Entry) -> None:
            self.loop.call_soon_threadsafe(resolve, fut, e)

        self.memory_store.on_ready(oid, ready)
        return fut

    def _h_add_borrower(self, conn: framed.Connection, oid: bytes, who: Address) -> bool:
        return self.references.add_borrower(oid, tuple(who))  # type: ignore[arg-type]

    def _h_remove_borrower(self, conn: framed.Connection, oid: bytes, who: Address) -> None:
        self.references.remove_borrower(oid, tuple(who))  # type: ignore[arg-type]

    # ============================================================== driver output
    def _h_logs(self, conn: framed.Connection, batch: list[Any]) -> None:
        if not self.log_to_driver:
            return
        for pid, ip, name, is_err, text in batch:
            stream = sys.stderr if is_err else sys.stdout
            prefix = f"({name} pid={pid}, ip={ip}) "
            lines = text.splitlines()
            try:
                stream.write("".join(prefix + line + "\n" for line in lines))
                stream.flush()
            except Exception:
                pass

    def _h_node_dead(self, conn: framed.Connection, node_ids: list[str]) -> None:
        """Nodes the GCS declared dead: stop waiting on connections into them."""
        dead = set(node_ids)
        self.submitter.on_nodes_dead(dead)
        self.actor_submitter.on_nodes_dead(dead)

    def _h_warning(self, conn: framed.Connection, message: str) -> None:
        logger.warning(message)
        try:
            sys.stderr.write(f"rayops: warning: {message}\n")
            sys.stderr.flush()
        except Exception:
            pass

    # ============================================================== submitting
    def submit_task(
        self,
        *,
        function_id: bytes,
        name: str,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        num_returns: int,
        resources: dict[str, float],
        max_retries: int,
        retry_exceptions: Any,
        strategy: Any = None,
    ) -> list[ObjectRef] | ObjectRefGenerator:
        spec, deps = self.build_spec(
            name=name,
            function_id=function_id,
            args=args,
            kwargs=kwargs,
            num_returns=num_returns,
            resources=resources,
            strategy=strategy,
        )
        return self.track_submission(spec, deps, max_retries, retry_exceptions, self._enqueue)

    def build_spec(
        self,
        *,
        name: str,
        function_id: bytes,
        args: Sequence[Any],
        kwargs: dict[str, Any],
        num_returns: int,
        resources: dict[str, float],
        **extra: Any,
    ) -> tuple[TaskSpec, list[bytes]]:
        """A task (or actor call) spec with its serialized arguments, and the refs it pins."""
        ctx = self.task_context()
        task_id = ids.new_task_id()
        arg_entries, deps = self._prepare_args(args, kwargs)
        n = 1 if num_returns == STREAMING else num_returns
        spec = TaskSpec(
            task_id=task_id,
            job_id=ctx.job_id or self.job_id,
            name=name,
            function_id=function_id,
            args=tuple(arg_entries),
            kwarg_names=tuple(kwargs),
            num_returns=num_returns,
            return_ids=tuple(ids.object_id_for(task_id, i + 1) for i in range(n)),
            owner=self.address,
            resources=resources,
            parent_task_id=ctx.task_id or b"",
            **extra,
        )
        return spec, deps

    def track_submission(
        self,
        spec: TaskSpec,
        deps: list[bytes],
        retries: int,
        retry_exceptions: Any,
        enqueue: Any,
    ) -> list[ObjectRef] | ObjectRefGenerator:
        """Own the returns, pin the arguments, record the task, hand it to ``enqueue``."""
        self.references.pin_submitted(deps)
        self._tasks[spec.task_id] = TaskRecord(spec, retries, retry_exceptions, deps)
        if spec.num_returns == STREAMING:
            self._generators[spec.task_id] = GeneratorState()
            # Return index 1 is the "completed" object, pinned by the generator.
            self.references.add_owned(spec.return_ids[0], self.address, local=0)
            self.references.pin_submitted([spec.return_ids[0]])
            enqueue(spec)
            return ObjectRefGenerator(spec.task_id, self.address, self)
        for rid in spec.return_ids:
            self.references.add_owned(rid, self.address, local=1)
        refs = [ObjectRef(rid, self.address, self, counted=True) for rid in spec.return_ids]
        enqueue(spec)
        return refs

    def _prepare_args(
        self, args: Sequence[Any], kwargs: dict[str, Any]
    ) -> tuple[list[Any], list[bytes]]:
        entries: list[Any] = []
        deps: list[bytes] = []
        for i, value in enumerate((*args, *kwargs.values())):
            if isinstance(value, ObjectRef):
                entries.append(("r", value.binary(), value.owner_address))
                deps.append(value.binary())
                continue
            what = (
                f"argument {i}"
                if i < len(args)
                else f"keyword argument {list(kwargs)[i - len(args)]!r}"
            )
            sv = serialization.check_serializable(what, value)
            for r in sv.contained_refs:
                deps.append(r.binary())
            if sv.total_bytes <= INLINE_MAX_BYTES:
                entries.append(("v", sv.to_wire()))
            else:
                ref = self._own_value(
                    ids.object_id_for(ids.new_task_id(), ids.PUT_INDEX_BASE), sv, local=0
                )
                entries.append(("r", ref.binary(), self.address))
                deps.append(ref.binary())
                # The submitted pin below keeps it alive; this handle is not counted.
                ref._cw = None
        return entries, deps

    def enqueue_actor_call(self, spec: TaskSpec, class_name: str) -> None:
        with self._pending_lock:
            self.pending_actor_calls[spec.actor_id] += 1
        self._actor_q.append((spec, class_name))
        if not self._actor_scheduled:
            self._actor_scheduled = True
            self.loop.call_soon_threadsafe(self._drain_actor_calls)

    def _drain_actor_calls(self) -> None:
        self._actor_scheduled = False
        q, self._actor_q = self._actor_q, []
        for spec, class_name in q:
            self.actor_submitter.submit(spec, class_name)

    def _enqueue(self, spec: TaskSpec) -> None:
        self._submit_q.append(spec)
        if not self._submit_scheduled:
            self._submit_scheduled = True
            self.loop.call_soon_threadsafe(self._drain_submits)

    def _drain_submits(self) -> None:
        self._submit_scheduled = False
        q, self._submit_q = self._submit_q, []
        for spec in q:
            self._resolve_and_submit(spec)

    def _resolve_and_submit(self, spec: TaskSpec) -> None:
        """Wait for our own pending arguments, inline the small ones, then submit."""
        record = self._tasks.get(spec.task_id)
        if record is None:
            return  # cancelled meanwhile
        if not spec.args:
            self.task_counts.move(record, ST_NODE)
            self.submitter.submit(spec)
            return
        resolved = self.resolve_owned_args(spec, lambda: self._resolve_and_submit(spec))
        if resolved is None:
            self.task_counts.move(record, ST_ARGS)
            return
        if isinstance(resolved, tuple) and resolved and resolved[0] == "error":
            self.finish_with_entry(spec, resolved[1])
            return
        assert isinstance(resolved, TaskSpec)
        self.task_counts.move(record, ST_NODE)
        self.submitter.submit(resolved)

    def resolve_owned_args(self, spec: TaskSpec, retry: Any) -> Any:
        """Inline our own ready arguments.

        Returns the updated spec; None if an argument we own is still pending (``retry``
        is called on the IO loop once all are ready); or ``("error", entry)`` when an
        argument holds an error, which the task then returns without running.
        """
        me = self.address
        ms = self.memory_store
        pending = [a[1] for a in spec.args if a[0] == "r" and a[2] == me and not ms.contains(a[1])]
        if pending:
            remaining = {"n": len(pending)}

            def one_ready(_oid: bytes, _e: Entry) -> None:
                remaining["n"] -= 1
                if remaining["n"] == 0:
                    self.loop.call_soon_threadsafe(retry)

            for oid in pending:
                ms.on_ready(oid, one_ready)
            return None
        args: list[tuple[Any, ...]] = []
        for a in spec.args:
            if a[0] == "r" and a[2] == me:
                entry = ms.get(a[1])
                assert entry is not None
                if entry[0] == "v":
                    if entry[1][0] == serialization.META_ERROR:
                        return ("error", entry)
                    args.append(("v", entry[1]))
                else:
                    args.append(("s", a[1], entry[1]))
            else:
                args.append(a)
        return spec._replace(args=tuple(args))

    # ============================================================== completion
    def on_task_reply(self, spec: TaskSpec, reply: TaskReply) -> None:
        record = self._tasks.get(spec.task_id)
        for oid in reply.borrowed:
            self.references.add_borrower(oid, tuple(reply.worker_address))  # type: ignore[arg-type]
        if record is None:
            return
        if reply.status == "cancelled" or record.cancelled:
            self.finish_with_error(spec, rex.TaskCancelledError(spec.task_id.hex()))
            return
        if (
            reply.status == "error"
            and record.retries_left != 0
            and self._should_retry(record, reply)
        ):
            record.retries_left -= 1
            logger.info("retrying task %s after an application error", spec.name)
            self._resubmit(record)
            return
        if spec.num_returns == STREAMING:
            self._generator_finished(spec, reply.num_items)
        else:
            for rid, (entry, contained) in zip(spec.return_ids, reply.returns, strict=False):
                self._store_return(rid, entry, contained)
        self._task_done(record, failed=reply.status == "error")

    def _should_retry(self, record: TaskRecord, reply: TaskReply) -> bool:
        rx = record.retry_exceptions
        if not rx:
            return False
        if rx is True:
            return True
        entry = reply.returns[0][0] if reply.returns else None
        if entry is None or entry[0] != "v":
            return False
        try:
            err = serialization.deserialize(entry[1][1], entry[1][2])
        except Exception:
            return False
        cause = getattr(err, "cause", err)
        return isinstance(cause, tuple(rx))

    def _store_return(
        self, rid: bytes, entry: Entry, contained: list[tuple[bytes, Address]]
    ) -> None:
        if rid not in self.references:
            # Nobody holds the result any more: drop it (and its store copy).
            if entry[0] == "s":
                self._queue_delete(rid)
            for inner, owner in contained:
                if owner == self.address:
                    continue
                self._send_remove_borrower(inner, owner)
            return
        if contained:
            self.references.set_contains(rid, contained)
        self.memory_store.put(rid, entry)

    def _task_done(self, record: TaskRecord, failed: bool) -> None:
        if self._tasks.pop(record.spec.task_id, None) is not None:
            self.task_counts.move(record, ST_FAILED if failed else ST_FINISHED)
            if record.spec.actor_id:
                aid = record.spec.actor_id
                with self._pending_lock:
                    self.pending_actor_calls[aid] -= 1
                    if self.pending_actor_calls[aid] <= 0:
                        # No key per actor ever called: a Counter reads a missing key as 0.
                        del self.pending_actor_calls[aid]
        self.references.unpin_submitted(record.deps)

    def set_task_state(self, task_id: bytes, state: int) -> None:
        """Count a task in ``state`` (a task_metrics.ST_* index) for ray_tasks (IO loop)."""
        record = self._tasks.get(task_id)
        if record is not None:
            self.task_counts.move(record, state)

    def _resubmit(self, record: TaskRecord) -> None:
        spec = record.spec._replace(attempt=record.spec.attempt + 1)
        record.spec = spec
        self.task_counts.retry(record)
        if spec.actor_id:
            # An actor call retried after an application error (retry_exceptions) goes
            # back to its actor's queue; it has no function to lease a worker for.
            self.actor_submitter.submit(spec, "")
            return
        self._resolve_and_submit(spec)

    def on_task_worker_died(self, spec: TaskSpec, err: BaseException, retry: bool = True) -> None:
        record = self._tasks.get(spec.task_id)
        if record is None:
            return
        if record.cancelled:
            self.finish_with_error(spec, rex.TaskCancelledError(spec.task_id.hex()))
            return
        if retry and record.retries_left != 0:
            record.retries_left -= 1
            logger.warning(
                "worker running task %s died (%s); retrying (%s retries left)",
                spec.name,
                err,
                "infinite" if record.retries_left < 0 else record.retries_left,
            )
            self._resubmit(record)
            return
        self.finish_with_error(
            spec,
            rex.WorkerCrashedError(
                f"The worker running task {spec.name} died unexpectedly ({err}). "
                "It was retried the maximum number of times (max_retries); check the "
                "worker logs in the session directory for the cause."
            ),
        )

    def task_record(self, task_id: bytes) -> TaskRecord | None:
        return self._tasks.get(task_id)

    def finish_with_error(self, spec: TaskSpec, err: BaseException) -> None:
        """The task ends with ``err`` at get(), without running (again)."""
        self.finish_with_entry(spec, self._error_entry(err))

    def finish_with_entry(self, spec: TaskSpec, entry: Entry) -> None:
        record = self._tasks.get(spec.task_id)
        if spec.num_returns == STREAMING:
            state = self._generators.get(spec.task_id)
            if state is not None:
                idx = state.items
                self._h_generator_item(None, spec.task_id, idx, entry, [])
                self._generator_finished(spec, idx + 1)
        else:
            for rid in spec.return_ids:
                self._store_return(rid, entry, [])
        if record is not None:
            self._task_done(record, failed=True)

    # ============================================================== cancel
    def cancel(self, ref: ObjectRef, force: bool) -> None:
        task_id = ref.task_id()

        def on_loop() -> None:
            record = self._tasks.get(task_id)
            if record is None:
                return
            record.cancelled = True
            record.force_cancelled = force
            if self.submitter.cancel_queued(task_id):
                self.finish_with_error(record.spec, rex.TaskCancelledError(task_id.hex()))
                return
            lease = self.submitter.lease_of(task_id)
            if lease is not None and lease.conn is not None:
                lease.conn.notify("cancel_task", task_id, force)
            else:
                # Still waiting for its arguments: fail it now (the resolver then finds
                # the record gone and drops the task).
                self.finish_with_error(record.spec, rex.TaskCancelledError(task_id.hex()))

        self.loop.call_soon_threadsafe(on_loop)

    # ============================================================== generators
    def _h_generator_item(
        self,
        conn: Any,
        task_id: bytes,
        index: int,
        entry: Entry,
        contained: list[tuple[bytes, Address]],
    ) -> None:
        state = self._generators.get(task_id)
        if state is None:
            return
        oid = ids.object_id_for(task_id, index + 2)
        if index < state.items:
            return  # a retried attempt re-yielded an item we already have
        if state.released_from is not None:
            if entry[0] == "s":
                self._queue_delete(oid)
            with self._gen_cond:
                state.items = index + 1
            return
        self.references.add_owned_pinned(oid, self.address)
        if contained:
            self.references.set_contains(oid, contained)
        self.memory_store.put(oid, entry)
        with self._gen_cond:
            state.items = index + 1
            self._gen_cond.notify_all()

    def _generator_finished(self, spec: TaskSpec, num_items: int) -> None:
        state = self._generators.get(spec.task_id)
        rid = spec.return_ids[0]
        if rid in self.references:  # else the generator was dropped: nobody can read it
            self.memory_store.put(rid, ("v", serialization.serialize(None).to_wire()))
        if state is None:
            return
        with self._gen_cond:
            state.items = max(state.items, num_items)
            state.done = True
            released = state.released_from is not None
            self._gen_cond.notify_all()
        if released:  # dropped before it finished: generator_release left the state to us
            self._generators.pop(spec.task_id, None)

    def generator_next(self, task_id: bytes, index: int, timeout: float | None) -> ObjectRef | None:
        state = self._generators.get(task_id)
        if state is None:
            return None
        with self._gen_cond:
            while index >= state.items and not state.done:
                self._gen_cond.wait(timeout)
            if index >= state.items:
                return None
        oid = ids.object_id_for(task_id, index + 2)
        ref = ObjectRef(oid, self.address, self, counted=False)
        if index not in state.consumed:
            state.consumed.add(index)
            self.references.release_nested(oid)
        return ref

    def generator_next_future(self, task_id: bytes, index: int) -> concurrent.futures.Future[Any]:
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()

        def run() -> None:
            try:
                out.set_result(self.generator_next(task_id, index, None))
            except BaseException as err:
                out.set_exception(err)

        threading.Thread(target=run, daemon=True).start()
        return out

    def generator_completed_ref(self, task_id: bytes) -> ObjectRef:
        return ObjectRef(ids.object_id_for(task_id, 1), self.address, self, counted=False)

    def generator_release(self, task_id: bytes, consumed_upto: int) -> None:
        state = self._generators.get(task_id)
        if state is None or self._shutdown:
            return
        with self._gen_cond:
            state.released_from = consumed_upto
            items = state.items
            done = state.done  # read under the lock: else _generator_finished pops the state
        for index in range(items):
            if index not in state.consumed:
                state.consumed.add(index)
                self.references.release_nested(ids.object_id_for(task_id, index + 2))
        self.references.unpin_submitted([ids.object_id_for(task_id, 1)])
        if done:
            self._generators.pop(task_id, None)

    # ============================================================== cluster info
    def cluster_info(self) -> list[dict[str, Any]]:
        nodes: list[dict[str, Any]] = self.call_raylet("cluster_info", timeout=30)
        return nodes


class _Blocked:
    __slots__ = ("cw", "key", "lease", "state")

    def __init__(self, cw: CoreWorker, state: str) -> None:
        self.cw = cw
        self.state = state  # RUNNING_IN_RAY_GET or RUNNING_IN_RAY_WAIT, for ray_tasks
        self.lease: int | None = None
        self.key: tuple[str, bool] | None = None

    def __enter__(self) -> None:
        cw = self.cw
        if cw.mode == "worker":
            ctx = cw.task_context()
            self.lease = ctx.lease_id
            if self.lease is not None:
                cw.loop.call_soon_threadsafe(cw.raylet.notify, "worker_blocked", self.lease)
            self.key = ctx.metric_key
            if self.key is not None:
                cw.metrics.executor_counts.blocked(self.key, self.state, 1)

    def __exit__(self, *exc: object) -> None:
        cw = self.cw
        if self.lease is not None:
            cw.loop.call_soon_threadsafe(cw.raylet.notify, "worker_unblocked", self.lease)
        if self.key is not None:
            cw.metrics.executor_counts.blocked(self.key, self.state, -1)


def resolve(fut: asyncio.Future[Any], value: Any) -> None:
    """Set a future's result unless it is already done (a callback for call_soon_threadsafe)."""
    if not fut.done():
        fut.set_result(value)


def _keep_alive(ref: ObjectRef, _fut: object) -> None:
    """A done-callback whose only job is to hold ``ref`` until the future resolves."""
