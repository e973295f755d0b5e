"""The raylet: one per node. Grants worker leases, runs the worker pool, owns the
node's object store manager, and relays worker output to drivers.

It serves the framed protocol (rayops.rpc.framed) to the core workers of its node
and talks to the GCS over gRPC. It never sees task payloads: owners push tasks
straight to leased workers.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
import itertools
import logging
import os
import signal
import socket
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rayops.envs.install_settings import InstallSettings
from rayops.exceptions import AuthenticationError
from rayops.node.log_rotation import LogRotationConfig
from rayops.objectstore import StoreClient, StoreManager
from rayops.objectstore.store_settings import StoreSettings
from rayops.protocol import node_messages as nm
from rayops.protocol import raylet_messages as rm
from rayops.protocol import state_messages as sm
from rayops.protocol import transfer_messages as xm
from rayops.protocol.bundle_resources import group_of, plain_resources, split_bundle_resource
from rayops.protocol.framed_message import Refusal, RefusalCode
from rayops.protocol.node_snapshot import (
    PLACEMENT_BOUNDS_S,
    LatencyRecorder,
    ProcessRef,
    RayletSnapshot,
)
from rayops.raylet import state_handlers
from rayops.raylet.agent_process import AgentProcess, AgentSettings
from rayops.raylet.bundles import BundleBook, BundleDevices
from rayops.raylet.cluster_view import ClusterView, follow_gcs
from rayops.raylet.gcs_link import GcsLink
from rayops.raylet.memory_monitor import GIB, Candidate, KillReport, MemoryConfig, MemoryGuard
from rayops.raylet.object_manager import ObjectManager
from rayops.raylet.resources import (
    Allocation,
    NodeResources,
    device_assignment,
    format_shape,
    normalize_shape,
)
from rayops.raylet.runtime_envs import NodeEnvs
from rayops.raylet.spilling import SpillService, SpillSettings, node_spill_dirs
from rayops.raylet.task_event_relay import TaskEventRelay
from rayops.raylet.usage_reporter import UsageReport, UsageReporter
from rayops.raylet.worker_pool import WorkerHandle, WorkerPool
from rayops.rpc import framed
from rayops.rpc.framed_settings import FramedSettings
from rayops.scheduling.labels import (
    LabelSelector,
    default_node_labels,
    format_selector,
    labels_match,
)
from rayops.scheduling.policy import NodeView, choose_node
from rayops.scheduling.strategy import split_strategy

logger = logging.getLogger(__name__)

# How often the raylet looks for workers that died starting and restarts a dead agent.
HOUSEKEEPING_PERIOD_S = 0.5
# How long after start-up the raylet starts its node agent (see `_start_agent`).
AGENT_START_DELAY_S = 1.0


class RayletStartError(RuntimeError):
    """The raylet cannot join its cluster (refused or unreachable GCS); the message says why."""


@dataclass
class RayletConfig:
    node_id: str
    node_ip: str
    port: int
    gcs_address: str
    token: bytes
    token_file: str
    session_dir: str
    shm_dir: str
    spill_dir: str
    resources: dict[str, float]
    object_store_memory: int
    is_head: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    # The node's GPU ids (its CUDA_VISIBLE_DEVICES); None: unset, GPU i is device i.
    gpu_ids: list[str] | None = None
    prestart_workers: int | None = None
    # The node agent's ports (0: pick a free one once, kept across agent restarts).
    metrics_export_port: int = 0
    agent_port: int = 0
    log_rotation: LogRotationConfig = field(default_factory=LogRotationConfig)
    framed: FramedSettings = field(default_factory=FramedSettings)
    runtime_env_install: InstallSettings = field(default_factory=InstallSettings)
    memory: MemoryConfig = field(default_factory=MemoryConfig)
    # How long the GCS may be unreachable before this raylet exits (rayops/gcs/reconnect.py).
    gcs_reconnect_timeout_s: float = 60.0
    spill: SpillSettings = field(default_factory=SpillSettings)
    store: StoreSettings = field(default_factory=StoreSettings)


@dataclass
class LeaseRequest:
    shape: dict[str, float]
    conn: framed.Connection
    future: asyncio.Future[Any]
    warned: bool = False
    strategy: Any = None
    spilled: bool = False  # sent here by another raylet's decision: never spill again
    label_selector: LabelSelector = ()
    created: float = field(default_factory=time.monotonic)
    runtime_env: str = ""  # the wire form its worker runs in
    env_hash: str = ""
    for_actor: bool = False


@dataclass
class Lease:
    lease_id: int
    worker: WorkerHandle
    alloc: Allocation
    conn: framed.Connection
    blocked: bool = False
    devices: BundleDevices | None = None  # GPUs taken from a placement-group bundle
    for_actor: bool = False  # the GCS's actor lease: kept when the GCS's connection closes
    granted: float = field(default_factory=time.monotonic)


class Raylet:
    def __init__(self, config: RayletConfig) -> None:
        self.config = config
        self.resources = NodeResources(
            config.resources, None if config.gpu_ids is None else {"GPU": config.gpu_ids}
        )
        # Ray's default labels (node id, accelerator type) under the user's.
        self.labels = {**config.labels, **default_node_labels(config.node_id, config.resources)}
        self.spill_dirs = node_spill_dirs(config.spill, config.spill_dir, config.node_id)
        self.store = StoreManager(
            config.shm_dir,
            config.spill_dir,
            config.object_store_memory,
            spill_dirs=self.spill_dirs,
            # Ray's local_fs_capacity_threshold is what keeps the disk from filling.
            min_spill_free_bytes=0,
            fs_capacity_threshold=config.spill.fs_capacity_threshold,
            background_io=True,
            # Freed objects' pages may fill what live objects leave of the capacity (as Ray's
            # plasma arena stays mapped), so a burst of puts after a burst of frees writes into
            # pages that exist; SpillService trims the pool to a quarter once the store is idle.
            max_pool_bytes=config.object_store_memory,
            huge_pages=config.store.try_huge_pages,
            quiet_fallback=not config.store.require_huge_pages,
        )
        self.pool: WorkerPool | None = None
        self.pending: deque[LeaseRequest] = deque()
        self.leases: dict[int, Lease] = {}
        self.bundles = BundleBook(self.resources)
        self._lease_ids = itertools.count(1)
        self.drivers: dict[framed.Connection, int] = {}
        self._server: framed.FramedServer | None = None
        self._gcs: Any = None
        self.gcs_lost = False  # stopped because the GCS stayed away past the window
        self._usage = UsageReporter(self._read_usage, self._send_usage)
        self.task_events = TaskEventRelay(lambda: self._gcs, self._spawn)
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self.port = config.port
        self.registered = False
        self.view = ClusterView(config.node_id, self._local_node_view)
        self.store_client = StoreClient(config.shm_dir, config.spill_dir, self.spill_dirs)
        self.spiller = SpillService(self.store, config.spill, self._usage.mark)
        self.objects = ObjectManager(
            config.node_id,
            self.store,
            self.store_client,
            self._raylet_conn,
            self._address_of,
            spiller=self.spiller,
        )
        self._raylets = framed.ConnectionPool(config.token, {}, timeout=5.0, settings=config.framed)
        self._spread_counter = 0
        self.metrics_export_port = config.metrics_export_port
        self.agent_port = config.agent_port
        self.agent: AgentProcess | None = None
        self.session_name = os.path.basename(config.session_dir.rstrip("/"))
        self.placement_time = LatencyRecorder(PLACEMENT_BOUNDS_S)
        self.memory = MemoryGuard(
            config.memory,
            self._memory_candidates,
            self._tell_owner_of_kill,
            self._kill_for_memory,
            lambda worker_id: self.pool is not None and worker_id in self.pool.workers,
            release=self.store.trim_pool,
        )
        self.envs = NodeEnvs(
            config.session_dir,
            config.node_id,
            lambda: self._gcs,
            config.runtime_env_install,
            in_use=self._envs_in_use,
            on_evicted=self._env_evicted,
        )

    # --------------------------------------------------------------- lifecycle
    async def start(self) -> int:
        if self.config.store.require_huge_pages and not self.store.huge_pages:
            raise RayletStartError(
                f"RAYOPS_OBJECT_STORE_HUGE_PAGES=on but no huge-page tmpfs could be mounted at "
                f"{self.config.shm_dir} (see the log line above; needs CAP_SYS_ADMIN)"
            )
        handlers: dict[Any, Any] = {
            rm.RegisterWorker: self._h_register_worker,
            rm.RegisterDriver: self._h_register_driver,
            rm.RequestLease: self._h_request_lease,
            rm.ReturnLease: self._h_return_lease,
            rm.ResizeLease: self._h_resize_lease,
            rm.PrepareBundles: self._h_prepare_bundles,
            rm.CommitBundles: self._h_commit_bundles,
            rm.ReleaseBundles: self._h_release_bundles,
            rm.WorkerBlocked: self._h_worker_blocked,
            rm.WorkerUnblocked: self._h_worker_unblocked,
            rm.StoreReserve: self._h_store_reserve,
            rm.StoreSeal: self._h_store_seal,
            rm.StoreEnsureLocal: self._h_store_ensure_local,
            rm.StoreDelete: self._h_store_delete,
            rm.StoreStats: self._h_store_stats,
            rm.PublishLogs: self._h_publish_logs,
            rm.ClusterInfo: self._h_cluster_info,
            rm.NodeInfo: self._h_node_info,
            nm.MetricsSnapshot: self._h_metrics_snapshot,
            nm.ObjectSize: self.objects.h_object_size,
            nm.ReadChunk: self.objects.h_read_chunk,
            xm.OpenPull: self.objects.h_open_pull,
            xm.PullDone: self.objects.h_pull_done,
            rm.Ping: lambda conn, msg: rm.Pong(),
            rm.PrepareRuntimeEnv: self._h_prepare_runtime_env,
            # The state API (raylet/task_event_relay.py, raylet/state_handlers.py).
            sm.ReportTaskEvents: self.task_events.h_report,
            sm.ListWorkers: functools.partial(state_handlers.list_workers, self),
            sm.ListStoreObjects: functools.partial(state_handlers.list_store_objects, self),
        }
        self._server = await framed.serve(
            self.config.node_ip,
            self.config.port,
            self.config.token,
            handlers,
            on_close=self._on_conn_closed,
            settings=self.config.framed,
        )
        sock = self._server.sockets[0]
        self.port = sock.getsockname()[1]
        self.objects.start(self.config.node_ip)  # the data port for object transfer
        self._choose_agent_ports()
        self.pool = WorkerPool(
            node_ip=self.config.node_ip,
            raylet_port=self.port,
            token_file=self.config.token_file,
            session_dir=self.config.session_dir,
            node_id=self.config.node_id,
            log_dir=os.path.join(self.config.session_dir, "logs"),
            log_rotation=self.config.log_rotation,
        )
        self._spawn(self.pool.enforce_log_cap(self._stopping))
        if os.environ.get("RAYOPS_WORKER_ZYGOTE", "1") != "0":
            self.pool.start_zygote(asyncio.get_running_loop())
        prestart = self.config.prestart_workers
        if prestart is None:
            prestart = max(1, int(self.config.resources.get("CPU", 1)))
        for _ in range(prestart):
            self.pool.start_worker()
        self._spawn(self._housekeeping())
        if self.config.memory.enabled:
            self._spawn(self.memory.run(self._stopping))
        await self._register_with_gcs()
        self._gcs_link = GcsLink(self.config.gcs_reconnect_timeout_s, time.monotonic())
        self._spawn(self._watch_gcs_link())
        self._spawn(self._usage.run(self._stopping))
        self._usage.mark()
        self._spawn(self._start_agent(delay=AGENT_START_DELAY_S))
        self._spawn(
            follow_gcs(
                self.view,
                lambda: self._gcs,
                self._on_nodes_dead,
                self.request_stop,
                self._schedule,
                self._stopping,
                self.config.node_id,
                on_connected=self._on_gcs_link,
            )
        )
        return self.port

    def _on_gcs_link(self, up: bool) -> None:
        if self._gcs_link.connected(up, time.monotonic()):
            # The GCS came back (maybe a new process, restored from its store): tell it the
            # node's usage again, which it does not persist.
            logger.info("the GCS at %s is reachable again", self.config.gcs_address)
            self._usage.resend()
        elif not up:
            logger.warning(
                "lost the GCS at %s; retrying for up to %g s",
                self.config.gcs_address,
                self.config.gcs_reconnect_timeout_s,
            )

    async def _watch_gcs_link(self) -> None:
        """Past the reconnect window without the GCS, stop (clearly) instead of retrying."""
        period = min(1.0, self.config.gcs_reconnect_timeout_s / 4)
        while not self._stopping.is_set():
            await asyncio.sleep(period)
            now = time.monotonic()
            if self._gcs_link.expired(now):
                logger.error(
                    "the GCS at %s has been unreachable for %.0f s (the reconnect window, "
                    "RAYOPS_GCS_RECONNECT_TIMEOUT_S=%g): this raylet exits",
                    self.config.gcs_address,
                    self._gcs_link.down_for(now),
                    self.config.gcs_reconnect_timeout_s,
                )
                self.gcs_lost = True
                self.request_stop()
                return

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _register_with_gcs(self) -> None:
        from rayops.gcs.client import AsyncGcsClient
        from rayops.gcs.types import NodeInfo
        from rayops.version import __version__

        await _wait_port_open(self.config.gcs_address, 30.0)
        self._gcs = AsyncGcsClient(self.config.gcs_address, self.config.token.decode())
        info = NodeInfo(
            node_id=self.config.node_id,
            node_ip=self.config.node_ip,
            node_name=socket.gethostname(),
            raylet_port=self.port,
            object_store_dir=self.config.shm_dir,
            session_dir=self.config.session_dir,
            resources_total=self.resources.total_dict(),
            resources_available=self.resources.available_dict(),
            labels=dict(self.labels),
            is_head_node=self.config.is_head,
            rayops_version=__version__,
            metrics_export_port=self.metrics_export_port,
            agent_port=self.agent_port,
        )
        self._node_info = info
        deadline = time.monotonic() + 30
        while True:
            try:
                await self._gcs.register_node(info)
                logger.info("registered with the GCS at %s", self.config.gcs_address)
                self.registered = True
                return
            except (ValueError, AuthenticationError) as err:
                # Refused (a version mismatch, a wrong cluster token): retrying cannot help.
                raise RayletStartError(f"the GCS refused this node: {err}") from err
            except Exception as err:
                if time.monotonic() > deadline:
                    raise RayletStartError(
                        f"could not register with the GCS at {self.config.gcs_address}: {err}"
                    ) from err
                await asyncio.sleep(0.05)

    async def _housekeeping(self) -> None:
        """Notice workers that died on start-up and an agent that died."""
        while not self._stopping.is_set():
            await asyncio.sleep(HOUSEKEEPING_PERIOD_S)
            assert self.pool is not None
            if self.agent is not None:
                self.agent.poll()
            soft_limit = max(1, int(self.config.resources.get("CPU", 1)))
            for handle in self.pool.stop_idle_env_workers(soft_limit, time.monotonic()):
                logger.info("stopped idle worker %s of env %s", handle.pid, handle.env_hash)
            self.envs.housekeep()
            for handle in self.pool.reap_exited():
                logger.error(
                    "worker pid %d exited during start-up (code %s); see %s",
                    handle.pid,
                    handle.proc.returncode if handle.proc else "?",
                    handle.log_path,
                )
                self._schedule()

    def _read_usage(self) -> UsageReport:
        stats = self.store.stats()
        return UsageReport(
            self.resources.total_dict(),
            self.resources.available_dict(),
            stats.used_bytes,
            stats.capacity,
            stats.spilled_bytes,
            self._pending_demand(),
        )

    async def _send_usage(self, report: UsageReport) -> None:
        outcome = await self._gcs.report_resource_usage(
            self.config.node_id,
            report.resources_total,
            report.resources_available,
            report.store_used,
            report.store_capacity,
            report.store_spilled,
            report.pending_demand,
        )
        if not outcome.accepted and outcome.state is None:
            # A GCS that does not know this node (restarted without its store): register
            # again with the same node id, then report.
            logger.warning("the GCS does not know this node: registering again")
            await self._gcs.register_node(
                dataclasses.replace(
                    self._node_info,
                    resources_available=report.resources_available,
                )
            )
            self._usage.resend()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    def request_stop(self) -> None:
        self._stopping.set()

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        self.envs.close()
        if self._gcs is not None:
            try:
                await asyncio.wait_for(
                    self._gcs.unregister_node(self.config.node_id, "raylet stopped"), 2
                )
            except Exception as err:
                logger.info("could not unregister from the GCS: %s", err)
            try:
                await self._gcs.close()
            except Exception:
                pass
        if self._server is not None:
            self._server.close()
        self._raylets.close_all()
        self.objects.close()
        if self.agent is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.agent.stop)
        if self.pool is not None:
            await asyncio.get_running_loop().run_in_executor(None, self.pool.shutdown)
        self.spiller.close()
        self.store.cleanup()

    # -------------------------------------------------------------- connections
    def _on_conn_closed(self, conn: framed.Connection) -> None:
        if self._stopping.is_set():
            return
        wid = conn.context.get("worker_id")
        if wid is not None:
            self._on_worker_gone(wid)
        job_id = self.drivers.pop(conn, None)
        if job_id is not None and self._gcs is not None:
            self._spawn(self._gcs.mark_job_finished(job_id))
            address = conn.context.get("address")
            if address:  # the driver's actors (not detached) die with it
                self._spawn(self._report_worker_death(b"", conn.context.get("pid", 0), address))
        # Requests and leases of a client that went away.
        self.pending = deque(r for r in self.pending if r.conn is not conn)
        for lease in [le for le in self.leases.values() if le.conn is conn]:
            if lease.for_actor:
                # An actor the GCS created: the GCS restarting must not kill it.
                continue
            # The owner died: its worker may still be running the owner's task.
            # Kill it rather than hand a busy worker to someone else.
            logger.info("owner of lease %d disconnected; killing its worker", lease.lease_id)
            assert self.pool is not None
            self.pool.kill(lease.worker)
            self._end_lease(lease, reuse_worker=False)
        self._schedule()

    def _on_worker_gone(self, worker_id: bytes) -> None:
        assert self.pool is not None
        handle = self.pool.remove(worker_id)
        if handle is None:
            return
        logger.info("worker %s pid=%d disconnected", worker_id.hex()[:12], handle.pid)
        # The GCS learns actor deaths from here, not from connections of its own.
        address = f"{handle.address[0]}:{handle.address[1]}" if handle.address else ""
        reason = handle.extra.get("death_reason")
        self._spawn(self._report_worker_death(worker_id, handle.pid, address, reason))
        if handle.lease_id is not None and handle.lease_id in self.leases:
            self._end_lease(self.leases[handle.lease_id], reuse_worker=False)
        self._schedule()

    # ------------------------------------------------------------ memory monitor
    def _memory_candidates(self) -> list[Candidate]:
        return [
            Candidate(le.worker.worker_id, le.worker.pid, le.conn, le.granted, lid, le.for_actor)
            for lid, le in self.leases.items()
        ]

    async def _tell_owner_of_kill(self, report: KillReport) -> None:
        victim, snap = report.victim, report.snapshot
        lease = self.leases.get(victim.candidate.lease_id)
        if lease is None or lease.for_actor:
            return  # an actor's callers learn the cause from the GCS (its death cause)
        await lease.conn.request(
            rm.WorkerKillNotice(
                worker_id=victim.candidate.worker_id,
                node_id=self.config.node_id,
                node_ip=self.config.node_ip,
                pid=victim.candidate.pid,
                worker_rss=report.worker_rss,
                used=snap.used,
                total=snap.total,
                threshold=self.config.memory.threshold,
                top_consumers=report.top,
                retriable=victim.retriable,
            )
        )

    def _kill_for_memory(self, report: KillReport) -> None:
        cand, snap = report.victim.candidate, report.snapshot
        lease = self.leases.get(cand.lease_id)
        if lease is None:
            return
        why = (
            f"was killed by the memory monitor: the node used {snap.used / GIB:.2f}GB of "
            f"{snap.total / GIB:.2f}GB, above the threshold {self.config.memory.threshold} "
            f"(the worker used {report.worker_rss / GIB:.2f}GB)"
        )
        logger.warning("worker pid %d %s; top memory users:\n%s", cand.pid, why, report.top)
        lease.worker.extra["death_reason"] = why
        assert self.pool is not None
        self.pool.kill(lease.worker)

    async def _report_worker_death(
        self, worker_id: bytes, pid: int, address: str, reason: str | None = None
    ) -> None:
        from rayops.gcs.calls import report_worker_death

        what = "worker" if worker_id else "driver"
        reason = f"the {what} process (pid {pid}) " + (reason or "exited or was killed")
        for attempt in range(5):  # the GCS may be restarting: a few tries, then give up
            if self._gcs is not None:
                try:
                    await self._gcs.call(
                        report_worker_death(self.config.node_id, worker_id, reason, address)
                    )
                    return
                except Exception as err:
                    logger.warning("reporting worker %s's death failed: %s", worker_id.hex(), err)
            await asyncio.sleep(0.2 * 2**attempt)

    # ----------------------------------------------------------------- handlers
    def _h_register_worker(
        self, conn: framed.Connection, msg: rm.RegisterWorker
    ) -> rm.NodeDescription:
        assert self.pool is not None
        conn.context["worker_id"] = msg.worker_id
        self.pool.on_registered(msg.worker_id, conn, (self.config.node_ip, msg.port), msg.pid)
        self._schedule()
        return self._node_view()

    async def _h_register_driver(
        self, conn: framed.Connection, msg: rm.RegisterDriver
    ) -> rm.NodeDescription:
        job_id = 0
        if self._gcs is not None:
            job_id = await self._gcs.next_job_id()
            await self._gcs.add_job(
                job_id, msg.pid, self.config.node_ip, msg.namespace, msg.entrypoint
            )
        self.drivers[conn] = job_id
        conn.context["job_id"] = job_id
        conn.context["pid"] = msg.pid
        conn.context["driver_worker_id"] = msg.worker_id
        if msg.port:
            conn.context["address"] = f"{self.config.node_ip}:{msg.port}"
        return self._node_view(job_id)

    def _node_view(self, job_id: int = 0) -> rm.NodeDescription:
        return rm.NodeDescription(
            node_id=self.config.node_id,
            node_ip=self.config.node_ip,
            raylet_port=self.port,
            shm_dir=self.config.shm_dir,
            spill_dir=self.config.spill_dir,
            spill_dirs=self.spill_dirs,
            session_dir=self.config.session_dir,
            gcs_address=self.config.gcs_address,
            metrics_export_port=self.metrics_export_port or 0,
            agent_port=self.agent_port or 0,
            job_id=job_id,
        )

    def _h_request_lease(self, conn: framed.Connection, msg: rm.RequestLease) -> Any:
        """Grant a worker here, or answer where to ask instead.

        Replies ``LeaseGranted`` once a worker is leased here, or ``LeaseSpilled`` at once
        when the policy picks another node; refuses with ``UNSCHEDULABLE`` when the policy
        can never place it.
        """
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        strategy, selector = split_strategy(msg.strategy)
        spilled = msg.spilled
        req = LeaseRequest(
            normalize_shape(msg.shape),
            conn,
            fut,
            strategy=strategy,
            spilled=spilled,
            label_selector=selector,
            runtime_env=msg.runtime_env,
            env_hash=self.envs.hash_of(msg.runtime_env) if msg.runtime_env else "",
            for_actor=msg.for_actor,
        )
        if not spilled:
            decision = self._decide(req, msg.preferred)
            if decision.kind == "spill" and decision.node is not None:
                fut.set_result(rm.LeaseSpilled(decision.node.node_id, decision.node.address))
                return fut
            if decision.kind == "fail":
                fut.set_exception(
                    framed.Refused(Refusal(RefusalCode.UNSCHEDULABLE, decision.reason))
                )
                return fut
        self.pending.append(req)
        if req.env_hash:
            self.envs.ensure(req.runtime_env, req.env_hash, self._env_setup_done)
        self._usage.mark()
        self._schedule()
        return fut

    def _h_prepare_runtime_env(self, conn: framed.Connection, msg: rm.PrepareRuntimeEnv) -> None:
        if msg.runtime_env:  # eager_install: set the job's env up before its first lease
            h = self.envs.hash_of(msg.runtime_env)
            self.envs.ensure(msg.runtime_env, h, self._env_setup_done)

    def _envs_in_use(self) -> set[str]:
        """Env hashes something on this node uses: a leased or starting worker, a waiting
        lease request. Idle workers do not hold their env (deleting it stops them)."""
        used = {req.env_hash for req in self.pending if req.env_hash}
        if self.pool is not None:
            used.update(h.env_hash for h in self.pool.starting.values() if h.env_hash)
            used.update(
                h.env_hash
                for h in self.pool.workers.values()
                if h.env_hash and h.lease_id is not None
            )
        return used

    def _env_evicted(self, env_hash: str) -> None:
        if self.pool is not None:
            for handle in self.pool.stop_idle_of_env(env_hash):
                logger.info("stopped idle worker %s of deleted env %s", handle.pid, env_hash)

    def _env_setup_done(self, env_hash: str, error: str | None) -> None:
        """An env's setup ended: start its workers, or fail the leases waiting for it."""
        if error is not None:
            refusal = Refusal(RefusalCode.RUNTIME_ENV_SETUP_FAILED, error)
            for req in self.pending:
                if req.env_hash == env_hash and not req.future.done():
                    req.future.set_exception(framed.Refused(refusal))
        if self.pool is not None:
            self._schedule()

    def _decide(self, req: LeaseRequest, preferred: tuple[str, ...] = ()) -> Any:
        self._spread_counter += 1
        return choose_node(
            req.shape,
            req.strategy,
            self.config.node_id,
            self.view.nodes(),
            spread_counter=self._spread_counter,
            preferred=preferred,
            label_selector=req.label_selector,
        )

    def _feasible_here(self, req: LeaseRequest) -> bool:
        """Could this node ever run the request (resources and labels)?"""
        return self.resources.feasible(req.shape) and labels_match(req.label_selector, self.labels)

    def _local_node_view(self) -> NodeView:
        return NodeView(
            self.config.node_id,
            (self.config.node_ip, self.port),
            self.resources.total_dict(),
            self.resources.available_dict(),
            True,
            dict(self.labels),
        )

    def _address_of(self, node_id: str) -> tuple[str, int] | None:
        n = self.view.get(node_id)
        return None if n is None or not n.alive else n.address

    async def _raylet_conn(self, address: tuple[str, int]) -> framed.Connection:
        return await self._raylets.get(address)

    def _on_nodes_dead(self, node_ids: list[str]) -> None:
        logger.warning("nodes declared dead: %s", ", ".join(n[:12] for n in node_ids))
        assert self.pool is not None
        for conn in [*self.drivers, *(h.conn for h in self.pool.workers.values())]:
            if conn is not None and not conn.closed:
                conn.notify(rm.NodesDead(list(node_ids)))
        self._schedule()

    def _h_return_lease(self, conn: framed.Connection, msg: rm.ReturnLease) -> None:
        lease = self.leases.get(msg.lease_id)
        if lease is not None:
            self._end_lease(lease, reuse_worker=msg.worker_ok)
            self._schedule()

    def _h_resize_lease(self, conn: framed.Connection, msg: rm.ResizeLease) -> None:
        """Shrink what a lease holds (an actor: 1 CPU to place it, then 0 while it runs)."""
        shape = msg.shape
        lease = self.leases.get(msg.lease_id)
        if lease is None:
            return
        self.resources.release(lease.alloc)
        # Keep the devices the worker was told it owns (its CUDA_VISIBLE_DEVICES).
        lease.alloc = self.resources.acquire(normalize_shape(shape), keep=lease.alloc.instances)
        self._usage.mark()
        self._schedule()

    # --------------------------------------------------------- placement groups
    def _h_prepare_bundles(self, conn: framed.Connection, msg: rm.PrepareBundles) -> Any:
        """Phase one of a group's reservation (from the GCS): all of its bundles here, or
        none."""
        shapes = [(i, normalize_shape(shape)) for i, shape in msg.bundles]
        if not self.bundles.prepare(msg.pg_id.hex(), shapes):
            return rm.BundlesDone(False, f"resources taken meanwhile (free: {self._free()})")
        self._usage.mark()
        return rm.BundlesDone(True)

    def _h_commit_bundles(self, conn: framed.Connection, msg: rm.CommitBundles) -> Any:
        """Phase two: the prepared bundles become the group's resources, which the leases
        waiting for them can now take."""
        if not self.bundles.commit(msg.pg_id.hex(), msg.indexes):
            return rm.BundlesDone(False, "bundles not prepared here")
        self._usage.mark()
        self._schedule()
        return rm.BundlesDone(True)

    def _h_release_bundles(self, conn: framed.Connection, msg: rm.ReleaseBundles) -> Any:
        """Give bundles of a group back; the workers leased with their resources are
        killed first (what runs in a removed group dies with it, as in Ray)."""
        pg_hex = msg.pg_id.hex()
        indexes = set(msg.indexes)
        assert self.pool is not None
        for lease in list(self.leases.values()):
            if any(
                group_of(k) == pg_hex and _index_of(k) in (-1, *indexes) for k in lease.alloc.shape
            ):
                logger.info("placement group %s removed: killing lease %d", pg_hex, lease.lease_id)
                self.pool.kill(lease.worker)
                self._end_lease(lease, reuse_worker=False)
        self.bundles.release(pg_hex, sorted(indexes))
        self._usage.mark()
        self._schedule()
        return rm.BundlesDone(True)

    def _free(self) -> str:
        return format_shape(plain_resources(self.resources.available_dict()))

    def _h_worker_blocked(self, conn: framed.Connection, msg: rm.WorkerBlocked) -> None:
        lease = self.leases.get(msg.lease_id)
        if lease is not None and not lease.blocked:
            lease.blocked = True
            cpu = {"CPU": lease.alloc.shape["CPU"]} if "CPU" in lease.alloc.shape else {}
            self.resources.release_quantities(cpu)
            self._usage.mark()
            self._schedule()

    def _h_worker_unblocked(self, conn: framed.Connection, msg: rm.WorkerUnblocked) -> None:
        lease = self.leases.get(msg.lease_id)
        if lease is not None and lease.blocked:
            lease.blocked = False
            cpu = {"CPU": lease.alloc.shape["CPU"]} if "CPU" in lease.alloc.shape else {}
            self.resources.take_quantities(cpu)
            self._usage.mark()

    async def _h_store_reserve(
        self, conn: framed.Connection, msg: rm.StoreReserve
    ) -> rm.StoreReserved:
        where: str = await self.spiller.reserve(msg.object_id, msg.size)
        self._usage.mark()
        return rm.StoreReserved(where)

    def _h_store_seal(self, conn: framed.Connection, msg: rm.StoreSeal) -> None:
        self.store.seal(msg.object_id)
        self.spiller.kick()

    async def _h_store_ensure_local(
        self, conn: framed.Connection, msg: rm.StoreEnsureLocal
    ) -> rm.StoreLocal:
        """Make the object readable here: restore it from disk, or pull it from ``node_id``."""
        return rm.StoreLocal(await self.objects.make_local(msg.object_id, msg.node_id))

    def _h_store_delete(self, conn: framed.Connection, msg: rm.StoreDelete) -> None:
        object_ids = msg.object_ids
        self.store.delete(object_ids)
        self._usage.mark()
        for node_id, oids in self.objects.forget(list(object_ids)).items():
            address = self._address_of(node_id)
            if address is not None:
                self._spawn(self._delete_copies(address, oids))

    async def _delete_copies(self, address: tuple[str, int], oids: list[bytes]) -> None:
        try:
            conn = await self._raylet_conn(address)
            conn.notify(rm.StoreDelete(oids))
        except (TimeoutError, OSError, framed.ConnectionLost) as err:
            logger.info("could not delete copies on %s: %r", address, err)

    def _h_store_stats(self, conn: framed.Connection, msg: rm.StoreStats) -> rm.StoreStatsReply:
        return rm.StoreStatsReply(dataclasses.asdict(self.store.stats()))

    def _h_publish_logs(self, conn: framed.Connection, msg: rm.PublishLogs) -> None:
        logs = rm.Logs(msg.batch)
        for driver, jid in self.drivers.items():
            if jid == msg.job_id:
                driver.notify(logs)

    async def _h_cluster_info(
        self, conn: framed.Connection, msg: rm.ClusterInfo
    ) -> rm.ClusterInfoReply:
        if self._gcs is None:
            return rm.ClusterInfoReply([self._local_node_record()])
        nodes = await self._gcs.get_all_nodes()
        out = []
        for n in nodes:
            rec = {
                "NodeID": n.node_id,
                "Alive": n.state == "ALIVE",
                "NodeManagerAddress": n.node_ip,
                "NodeManagerHostname": n.node_name,
                "NodeManagerPort": n.raylet_port,
                "ObjectStoreSocketName": n.object_store_dir,
                "Resources": dict(n.resources_total),
                "AvailableResources": dict(n.resources_available),
                "Labels": dict(n.labels),
                "IsHeadNode": n.is_head_node,
            }
            if n.node_id == self.config.node_id:
                rec["AvailableResources"] = self.resources.available_dict()
            out.append(rec)
        return rm.ClusterInfoReply(out)

    def _local_node_record(self) -> dict[str, Any]:
        return {
            "NodeID": self.config.node_id,
            "Alive": True,
            "NodeManagerAddress": self.config.node_ip,
            "NodeManagerHostname": socket.gethostname(),
            "NodeManagerPort": self.port,
            "ObjectStoreSocketName": self.config.shm_dir,
            "Resources": self.resources.total_dict(),
            "AvailableResources": self.resources.available_dict(),
            "Labels": dict(self.labels),
            "IsHeadNode": self.config.is_head,
        }

    def _h_node_info(self, conn: framed.Connection, msg: rm.NodeInfo) -> rm.NodeInfoReply:
        return rm.NodeInfoReply(
            node=self._node_view(),
            resources_total=self.resources.total_dict(),
            resources_available=self.resources.available_dict(),
            num_workers=len(self.pool.workers) if self.pool else 0,
            view_seen_ms=dict(self.view.seen_ms),
        )

    # ------------------------------------------------------------- node agent
    def _choose_agent_ports(self) -> None:
        """Pick the agent's ports once; workers learn the report address from their env."""
        from rayops.node.processes import free_port

        ip = self.config.node_ip
        if not self.metrics_export_port:
            self.metrics_export_port = free_port(ip)
        while not self.agent_port or self.agent_port == self.metrics_export_port:
            self.agent_port = free_port(ip)
        # Inherited by every worker (spawned or forked by the zygote, which inherits it).
        os.environ["RAYOPS_AGENT_ADDRESS"] = f"{ip}:{self.agent_port}"

    async def _start_agent(self, delay: float) -> None:
        # Started off the start-up path: the agent's imports cost a few hundred ms of CPU,
        # which on a small machine would compete with the first tasks (cold start); its
        # ports are already chosen and registered, so nothing waits for it.
        await asyncio.sleep(delay)
        if self._stopping.is_set():
            return
        if self._gcs is not None and not self.config.is_head:
            # The cluster's session name is the head's (Ray's SessionName label).
            try:
                nodes = await self._gcs.get_all_nodes(alive_only=True)
                head = next((n for n in nodes if n.is_head_node), None)
                if head is not None and head.session_dir:
                    self.session_name = os.path.basename(head.session_dir.rstrip("/"))
            except Exception as err:
                logger.warning("could not read the head's session name: %s", err)
        self.agent = AgentProcess(
            AgentSettings(
                node_id=self.config.node_id,
                node_ip=self.config.node_ip,
                raylet_port=self.port,
                metrics_export_port=self.metrics_export_port,
                agent_port=self.agent_port,
                gcs_address=self.config.gcs_address,
                token_file=self.config.token_file,
                session_dir=self.config.session_dir,
                session_name=self.session_name,
                temp_dir=os.path.dirname(self.config.session_dir.rstrip("/")),
                is_head=self.config.is_head,
                log_dir=os.path.join(self.config.session_dir, "logs"),
                log_rotation=self.config.log_rotation,
            )
        )
        self.agent.start()

    def _h_metrics_snapshot(
        self, conn: framed.Connection, msg: nm.MetricsSnapshot
    ) -> RayletSnapshot:
        assert self.pool is not None
        processes = [ProcessRef("raylet", os.getpid())]
        zygote = self.pool._zygote  # the fork server is one of the node's processes
        if zygote is not None and zygote.alive:
            processes.append(ProcessRef("worker_zygote", zygote.proc.pid))
        idle = leased = 0
        for h in self.pool.workers.values():
            processes.append(ProcessRef("workers", h.pid))
            if h.lease_id is None:
                idle += 1
            else:
                leased += 1
        processes.extend(
            ProcessRef("workers", h.pid) for h in self.pool.starting.values() if h.pid > 0
        )
        waiting = [r for r in self.pending if not r.future.done()]
        infeasible = sum(1 for r in waiting if not self._feasible_here(r))
        s = self.store.stats()
        return RayletSnapshot(
            node_id=self.config.node_id,
            session_name=self.session_name,
            is_head=self.config.is_head,
            processes=tuple(processes),
            workers={"STARTING": self.pool.num_starting, "IDLE": idle, "LEASED": leased},
            resources_total=self.resources.total_dict(),
            resources_available=self.resources.available_dict(),
            leases_executing=len(self.leases),
            leases_waiting=len(waiting) - infeasible,
            leases_infeasible=infeasible,
            store_capacity=s.capacity,
            store_used_bytes=s.used_bytes,
            store_num_objects=s.num_objects,
            store_spilled_bytes=s.spilled_bytes,
            store_fallback_bytes=s.fallback_bytes,
            store_spilled_count=s.spilled_count,
            store_restored_count=s.restored_count,
            placement_time_s=self.placement_time.snapshot(),
            agent_restarts=self.agent.restarts if self.agent is not None else 0,
            memory_kills=dict(self.memory.kills),
        )

    # --------------------------------------------------------------- scheduling
    def _schedule(self) -> None:
        """Grant pending lease requests, FIFO among those that fit now."""
        assert self.pool is not None
        if not self.pending:
            return
        still: deque[LeaseRequest] = deque()
        # Requests that have resources but no idle worker hold their resources
        # tentatively for the rest of this pass, so we start exactly as many
        # workers as could be used.
        tentative: list[Allocation] = []
        wanted: dict[str, int] = {}  # env hash -> workers to start for it
        for req in self.pending:
            if req.future.done():
                continue
            feasible_here = self._feasible_here(req)
            if not feasible_here or not self.resources.fits(req.shape):
                if not req.spilled and (req.strategy in (None, "DEFAULT") or not feasible_here):
                    # Queued here but another node has room now (or is the only kind that
                    # can ever run it, e.g. the one matching its labels): send it there.
                    decision = self._decide(req)
                    if (
                        decision.kind == "spill"
                        and decision.node is not None
                        and (decision.node.fits_now(req.shape) or not feasible_here)
                    ):
                        req.future.set_result(
                            rm.LeaseSpilled(decision.node.node_id, decision.node.address)
                        )
                        continue
                if not feasible_here:
                    self._warn_infeasible(req)
                still.append(req)
                continue
            if not self.envs.is_ready(req.env_hash):  # its env is being set up
                self.envs.ensure(req.runtime_env, req.env_hash, self._env_setup_done)
                still.append(req)
                continue
            worker = self.pool.pop_idle(req.env_hash)
            if worker is None:
                tentative.append(self.resources.acquire(req.shape))
                wanted[req.env_hash] = wanted.get(req.env_hash, 0) + 1
                still.append(req)
                continue
            self._grant(req, worker)
        for alloc in tentative:
            self.resources.release(alloc)
        if len(still) != len(self.pending):
            self._usage.mark()
        self.pending = still
        for env_hash, count in wanted.items():  # workers are per env: never another env's
            shortfall = count - self.pool.num_starting_for(env_hash)
            for _ in range(max(0, shortfall)):
                self.pool.start_worker(env_hash, self.envs.ready.get(env_hash))

    def _grant(self, req: LeaseRequest, worker: WorkerHandle) -> None:
        alloc = self.resources.acquire(req.shape)
        devices = self.bundles.take_devices(req.shape)
        self.placement_time.observe("Task", time.monotonic() - req.created)
        lease_id = next(self._lease_ids)
        worker.lease_id = lease_id
        self.leases[lease_id] = Lease(
            lease_id, worker, alloc, req.conn, devices=devices, for_actor=req.for_actor
        )
        instances = self.resources.assigned_ids(alloc)
        if devices is not None:  # a task in a GPU bundle is told that bundle's devices
            gpus = {"GPU": list(devices.instances)}
            instances.update(device_assignment(gpus, self.resources.device_ids))
        self._usage.mark()
        assert worker.address is not None
        req.future.set_result(
            rm.LeaseGranted(
                lease_id=lease_id,
                worker_id=worker.worker_id,
                worker_address=worker.address,
                instances=instances,
                node_id=self.config.node_id,
            )
        )

    def _end_lease(self, lease: Lease, *, reuse_worker: bool) -> None:
        self.leases.pop(lease.lease_id, None)
        if lease.blocked:
            cpu = {"CPU": lease.alloc.shape["CPU"]} if "CPU" in lease.alloc.shape else {}
            self.resources.take_quantities(cpu)
        self.resources.release(lease.alloc)
        if lease.devices is not None:
            self.bundles.give_back(lease.devices)
        self._usage.mark()
        assert self.pool is not None
        if reuse_worker and lease.worker.worker_id in self.pool.workers:
            self.pool.push_idle(lease.worker)
        else:
            lease.worker.lease_id = None

    def _pending_demand(self) -> tuple[tuple[dict[str, float], int, bool], ...]:
        """Waiting lease requests by shape, for `rayops status` and later the autoscaler."""
        counts: dict[tuple[tuple[str, float], ...], list[Any]] = {}
        for req in self.pending:
            if req.future.done():
                continue
            key = tuple(sorted(req.shape.items()))
            entry = counts.setdefault(key, [0, False])
            entry[0] += 1
            entry[1] = entry[1] or req.warned
        return tuple((dict(k), n, infeasible) for k, (n, infeasible) in sorted(counts.items()))

    def _cluster_totals(self) -> dict[str, float]:
        total: dict[str, float] = {}
        for n in self.view.nodes():
            if n.alive:
                for k, v in n.total.items():
                    if not k.startswith("node:"):
                        total[k] = total.get(k, 0.0) + v
        return total

    def _warn_infeasible(self, req: LeaseRequest) -> None:
        if req.warned:
            return
        if any(group_of(k) for k in req.shape):
            return  # waits for its placement group's bundles: pending, not infeasible
        req.warned = True
        if req.label_selector:
            msg = (
                f"No node can run a task or actor that needs {format_shape(req.shape)} on a "
                f"node matching label_selector {format_selector(req.label_selector)}: "
                f"the cluster has {format_shape(self._cluster_totals())} in total. "
                "It stays pending until a node with these labels and resources joins; "
                "change the selector or add a node that matches it."
            )
        else:
            msg = (
                f"No node can run a task or actor that needs {format_shape(req.shape)}: "
                f"the cluster has {format_shape(self._cluster_totals())} in total. "
                "It stays pending until a node with these resources joins; lower its "
                "resource request or add a node that has them."
            )
        logger.warning(msg)
        req.conn.notify(rm.ShowWarning(msg))


def _index_of(resource: str) -> int:
    """The bundle index a group resource names (-1: the group's wildcard resource)."""
    parts = split_bundle_resource(resource)
    return -1 if parts is None else parts[1]


async def _wait_port_open(address: str, timeout: float) -> None:
    """Wait until the GCS accepts TCP connections.

    Connecting gRPC before the port is open would put the channel into its
    reconnect backoff (a second or more), which start-up cannot afford.
    """
    host, _, port = address.rpartition(":")
    deadline = time.monotonic() + timeout
    while True:
        try:
            _, writer = await asyncio.open_connection(host, int(port))
            writer.close()
            return
        except OSError:
            if time.monotonic() > deadline:
                return
            await asyncio.sleep(0.01)


def install_signal_handlers(raylet: Raylet) -> None:
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, raylet.request_stop)
