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
import logging
import os
import sys
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from rayops import ids, serialization
from rayops.core_worker import reference_report, threads
from rayops.core_worker.borrowing import References
from rayops.core_worker.generators import Generators
from rayops.core_worker.kill_notices import KillNotices
from rayops.core_worker.memory_store import MemoryStore
from rayops.core_worker.metrics_reporter import MetricsReporter
from rayops.core_worker.object_access import ObjectAccess
from rayops.core_worker.object_ref import ObjectRef, ObjectRefGenerator
from rayops.core_worker.recovery import LineageSettings, Recovery
from rayops.core_worker.runtime_envs import RuntimeEnvs
from rayops.core_worker.submitter import TaskSubmitter
from rayops.core_worker.task_events import FINISHED, RUNNING, TaskEventReporter, TaskEventSettings
from rayops.core_worker.tasks import Tasks
from rayops.objectstore import StoreClient
from rayops.protocol import raylet_messages as rm
from rayops.protocol import state_messages as sm
from rayops.protocol import worker_messages as wm
from rayops.protocol.framed_message import Message
from rayops.protocol.task_messages import (
    DYNAMIC,
    INLINE_MAX_BYTES,
    STREAMING,
    TaskSpec,
)
from rayops.rpc import framed
from rayops.rpc.framed_settings import FramedSettings

logger = logging.getLogger(__name__)

Address = tuple[str, int]


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
    # the placement group it was scheduled in (protocol.bundle_resources.InPlacementGroup)
    placement: Any = None


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
        runtime_env: str = "",
        task_event_settings: TaskEventSettings | None = None,
        lineage_settings: LineageSettings | None = None,
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
        # Calls written through an actor's direct lane are taken on the IO thread late
        # (threads.new_io_loop); any other hand-off makes it catch up first.
        self.loop = threads.new_io_loop(lambda: self.tasks.drain_pending())
        self.memory_store = MemoryStore()
        # A worker's env (its raylet's --runtime-env); a driver's is set by init().
        self.runtime_envs = RuntimeEnvs(self, runtime_env)
        self.references = References(self)
        self.objects = ObjectAccess(self)
        self.submitter = TaskSubmitter(self)
        self.address: Address = (node_ip, 0)
        self.node_id = ""
        self.job_id = 0
        self.session_dir = ""
        self.gcs_address = ""
        self.store: StoreClient | None = None
        self.raylet: framed.Connection = None  # type: ignore[assignment]
        self._server: framed.FramedServer | None = None
        self._thread: threading.Thread | None = None
        self._peers: framed.ConnectionPool | None = None  # made once handlers are known
        self._functions: dict[bytes, bytes] = {}
        self.generators = Generators(self)
        self.kill_notices = KillNotices()
        self._fetching: set[bytes] = set()
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
        # Task events (the state API): None when turned off; else its counts replace the
        # metrics' owner counts, recording each move they count.
        self.task_events: TaskEventReporter | None = None
        settings = task_event_settings or TaskEventSettings()
        if settings.enabled:
            self.task_events = TaskEventReporter(self, settings)
            self.metrics.owner_counts = self.task_events.owner_counts
        self.task_counts = self.metrics.owner_counts
        self.tasks = Tasks(self, self.task_counts)
        self.recovery = Recovery(self, lineage_settings)

    # ============================================================== lifecycle
    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run_loop, name=threads.IO_THREAD_NAME, daemon=True
        )
        self._thread.start()
        view: rm.NodeDescription = self.run(self._astart(), timeout=30)
        self.node_id = view.node_id
        self.session_dir = view.session_dir
        self.gcs_address = view.gcs_address
        self.job_id = view.job_id
        self._driver_ctx.job_id = self.job_id
        self.store = StoreClient(view.shm_dir, view.spill_dir, view.spill_dirs)

    def _run_loop(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    async def _astart(self) -> rm.NodeDescription:
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
        raylet_handlers: dict[Any, Any] = {
            rm.Logs: lambda conn, m: self._h_logs(conn, m.batch),
            rm.ShowWarning: lambda conn, m: self._h_warning(conn, m.message),
            rm.NodesDead: lambda conn, m: self._h_node_dead(conn, m.node_ids),
            rm.WorkerKillNotice: self.kill_notices.on_notice,
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
            view: rm.NodeDescription = await self.raylet.request(
                rm.RegisterDriver(
                    os.getpid(), self.namespace, self.entrypoint, self.address[1], self.worker_id
                )
            )
        else:
            view = await self.raylet.request(
                rm.RegisterWorker(self.worker_id, os.getpid(), self.address[1])
            )
        self.spawn(self.metrics.run())
        if self.task_events is not None:
            if self.mode == "driver":
                self.job_id = view.job_id
                self.task_events.driver_task(self._driver_ctx.task_id or b"", RUNNING)
            self.spawn(self.task_events.run())
        return view

    def run(self, coro: Any, timeout: float | None = None) -> Any:
        """Run a coroutine on the IO loop from a user thread and wait for it."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def call_raylet(self, msg: Message, timeout: float | None = 60) -> Any:
        """A request to the local raylet from a user thread; waits for the reply."""

        async def req() -> Any:
            return await self.raylet.request(msg)

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
            if self.task_events is not None:
                if self.mode == "driver":
                    self.task_events.driver_task(self._driver_ctx.task_id or b"", FINISHED)
                self.task_events.flush()
            for task in list(self._background):
                task.cancel()
            self.metrics.close()
            self.submitter.return_all_leases()
            await asyncio.sleep(0)
            self.actor_submitter.close_lanes()
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

    def _handlers(self) -> dict[Any, Any]:
        h: dict[Any, Any] = {
            wm.GetObject: lambda conn, m: framed.map_reply(
                self._h_get_object(conn, m.object_id), wm.ObjectEntry
            ),
            wm.AddBorrower: lambda conn, m: wm.BorrowerAdded(
                self._h_add_borrower(conn, m.object_id, m.borrower)
            ),
            wm.RemoveBorrower: lambda conn, m: self._h_remove_borrower(
                conn, m.object_id, m.borrower
            ),
            wm.GeneratorItem: lambda conn, m: self.generators.on_item_message(
                conn, m.task_id, m.index, m.entry, m.contained
            ),
            wm.Hello: lambda conn, m: self._h_hello(conn, m.address),
            rm.ShowWarning: lambda conn, m: self._h_warning(conn, m.message),
            rm.NodesDead: lambda conn, m: self._h_node_dead(conn, m.node_ids),
            rm.WorkerKillNotice: self.kill_notices.on_notice,
            wm.CancelOwnedTask: lambda conn, m: framed.map_reply(
                self.tasks.h_cancel_owned_task(conn, m.task_id, m.force, m.recursive),
                lambda _none: wm.CancelAccepted(),
            ),
        }
        # The state API asks what this process references (core_worker/reference_report.py).
        h[sm.ListReferences] = lambda conn, m: reference_report.list_references(self)
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
    # Object values: ``cw.objects`` (object_access.ObjectAccess). Reference counts, frees
    # and borrower messages: ``cw.references`` (borrowing.References).
    def _own_value(
        self, oid: bytes, sv: serialization.SerializedValue, *, local: int = 1
    ) -> ObjectRef:
        return self.objects.own_value(oid, sv, local=local)

    # ============================================================== owner handlers
    def _h_hello(self, conn: framed.Connection, address: Address) -> None:
        self.references.h_hello(conn, address)

    def _h_get_object(self, conn: framed.Connection, oid: bytes) -> Any:
        return self.references.h_get_object(conn, oid)

    def _h_add_borrower(self, conn: framed.Connection, oid: bytes, who: Address) -> bool:
        return self.references.h_add_borrower(conn, oid, who)

    def _h_remove_borrower(self, conn: framed.Connection, oid: bytes, who: Address) -> None:
        self.references.h_remove_borrower(conn, oid, who)

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
        self.recovery.on_nodes_dead(dead)

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
        max_calls: int = 0,
        runtime_env: str = "",
    ) -> list[ObjectRef] | ObjectRefGenerator:
        spec, deps = self.build_spec(
            name=name,
            function_id=function_id,
            args=args,
            kwargs=kwargs,
            num_returns=num_returns,
            resources=resources,
            strategy=strategy,
            max_calls=max_calls,
            runtime_env=runtime_env,
        )
        return self.tasks.submit(spec, deps, max_retries, retry_exceptions)

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
        entries: tuple[Any, ...] = ()
        deps: list[bytes] = []
        if args or kwargs:
            arg_entries, deps = self._prepare_args(args, kwargs)
            entries = tuple(arg_entries)
        n = 1 if num_returns in (STREAMING, DYNAMIC) else num_returns
        spec = TaskSpec(
            task_id=task_id,
            job_id=ctx.job_id or self.job_id,
            name=name,
            function_id=function_id,
            args=entries,
            kwarg_names=tuple(kwargs),
            num_returns=num_returns,
            return_ids=(
                (ids.object_id_for(task_id, 1),)
                if n == 1
                else tuple(ids.object_id_for(task_id, i + 1) for i in range(n))
            ),
            owner=self.address,
            resources=resources,
            parent_task_id=ctx.task_id or b"",
            **extra,
        )
        return spec, deps

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

    # ============================================================== cluster info
    def cluster_info(self) -> list[dict[str, Any]]:
        reply: rm.ClusterInfoReply = self.call_raylet(rm.ClusterInfo(), timeout=30)
        return reply.nodes


def resolve(fut: asyncio.Future[Any], value: Any) -> None:
    """Set a future's result unless it is already done (a callback for call_soon_threadsafe)."""
    if not fut.done():
        fut.set_result(value)
