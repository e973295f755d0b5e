"""The GCS's gRPC server: the node, job, KV and pubsub services over the in-memory tables.

A thin shell: each handler converts the request (`rayops.gcs.codec`), asks a table
(`node_table`, `job_table`, `kv_store`) and converts the answer back. Decisions live in the
tables; refusals raised there (`rayops.gcs.errors`) become gRPC status codes here. Every call
passes the cluster-token interceptor first (`rayops.rpc.auth`). Process concerns (arguments,
signals, the ready pipe) belong to `rayops.gcs.__main__`, not here.
"""

from __future__ import annotations

import functools
import logging
import secrets
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
import grpc.aio

from rayops.gcs.actor_table import ActorTable
from rayops.gcs.codec import (
    demand_from_proto,
    job_to_proto,
    node_from_proto,
    node_to_proto,
    state_to_proto,
    store_stats_from_proto,
)
from rayops.gcs.errors import GcsRequestError
from rayops.gcs.job_events import JobFinished
from rayops.gcs.job_table import JobTable
from rayops.gcs.kv_store import KVStore
from rayops.gcs.node_events import (
    MarkNodeDead,
    NodeDead,
    NodeResourcesChanged,
    RegisterNode,
    ReportUsage,
)
from rayops.gcs.node_table import NodeTable, check_version_compatible, validate_node_id
from rayops.gcs.pg_table import PgTable
from rayops.gcs.pubsub import ChannelSpec, Publisher
from rayops.gcs.task_store import TaskEventStore
from rayops.gcs.types import JobInfo, NodeState, job_id_hex
from rayops.protocol import (
    common_pb2,
    gcs_job_pb2,
    gcs_job_pb2_grpc,
    gcs_kv_pb2,
    gcs_kv_pb2_grpc,
    gcs_node_pb2,
    gcs_node_pb2_grpc,
)
from rayops.rpc import tls
from rayops.rpc.auth import TokenAuthServerInterceptor
from rayops.rpc.grpc_channel import SERVER_OPTIONS, format_address

__all__ = ["GcsServer", "GcsState"]

logger = logging.getLogger(__name__)

_Reply = TypeVar("_Reply")
_Handler = Callable[[Any, Any, grpc.aio.ServicerContext], Awaitable[_Reply]]


def _wall_clock_ms() -> int:
    return time.time_ns() // 1_000_000


@dataclass
class GcsState:
    """Everything the GCS holds: its identity and its tables."""

    clock_ms: Callable[[], int] = _wall_clock_ms
    rayops_version: str = ""
    cluster_id: str = field(default_factory=lambda: secrets.token_hex(28))
    start_time_ms: int = 0
    publisher: Publisher = field(init=False)
    nodes: NodeTable = field(init=False)
    jobs: JobTable = field(init=False)
    kv: KVStore = field(init=False)
    actors: ActorTable = field(init=False)
    pgs: PgTable = field(init=False)
    # The state API's task attempts, merged from workers' task events (gcs/task_store.py).
    tasks: TaskEventStore = field(default_factory=TaskEventStore)

    def __post_init__(self) -> None:
        self.start_time_ms = self.start_time_ms or self.clock_ms()
        from rayops.gcs.pubsub import ACTORS_CHANNEL, NODES_CHANNEL

        self.publisher = Publisher()
        # Every change of the actor table goes out on the "actors" channel; callers follow
        # only the actors they call (keyed subscriptions).
        self.actors = ActorTable(sink=self.publisher.sink(ACTORS_CHANNEL))
        self.publisher.add_channel(
            ACTORS_CHANNEL,
            ChannelSpec(
                snapshot=lambda: (self.actors.version, self.actors.snapshot()),
                key=lambda e: e.actor_id,
            ),
        )
        self.publisher.enable_keys(ACTORS_CHANNEL, self.actors.current)
        # Every change of the node table goes out on the spine's "nodes" channel.
        self.nodes = NodeTable(self.clock_ms, sink=self.publisher.sink(NODES_CHANNEL))
        self.publisher.add_channel(
            NODES_CHANNEL,
            ChannelSpec(
                snapshot=lambda: (self.nodes.version, self.nodes.snapshot()),
                urgent=lambda e: not isinstance(e, NodeResourcesChanged),
                key=lambda e: e.node_id if isinstance(e, NodeResourcesChanged) else None,
            ),
        )
        # The job table, the internal KV and the placement-group table publish every change on
        # their own channels: "jobs", "kv" (keys and value sizes, never values) and
        # "placement_groups".
        from rayops.gcs import kv_events, pg_events
        from rayops.gcs.pubsub_service import JOBS_CHANNEL, KV_CHANNEL, PG_CHANNEL

        self.jobs = JobTable(self.clock_ms, sink=self.publisher.sink(JOBS_CHANNEL))
        self.publisher.add_channel(
            JOBS_CHANNEL, ChannelSpec(snapshot=lambda: (self.jobs.version, self.jobs.snapshot()))
        )
        self.kv = KVStore(sink=self.publisher.sink(KV_CHANNEL))
        self.publisher.add_channel(
            KV_CHANNEL,
            ChannelSpec(
                snapshot=lambda: (self.kv.version, self.kv.snapshot()),
                size=kv_events.event_bytes,
                log_max_bytes=kv_events.LOG_MAX_BYTES,
            ),
        )
        self.pgs = PgTable(sink=self.publisher.sink(PG_CHANNEL))
        self.publisher.add_channel(
            PG_CHANNEL,
            ChannelSpec(
                snapshot=lambda: (self.pgs.version, self.pgs.snapshot()),
                log_max_events=pg_events.LOG_MAX_EVENTS,
            ),
        )


def _refusals_to_status(handler: _Handler[_Reply]) -> _Handler[_Reply]:
    """Turn a table's GcsRequestError into the matching gRPC status, with its message."""

    @functools.wraps(handler)
    async def wrapper(self: Any, request: Any, context: grpc.aio.ServicerContext) -> _Reply:
        try:
            return await handler(self, request, context)
        except GcsRequestError as err:
            logger.info("%s refused: %s", handler.__name__, err)
            await context.abort(getattr(grpc.StatusCode, err.status_name), str(err))
            raise AssertionError("context.abort returned") from err

    return wrapper


class NodeInfoService(gcs_node_pb2_grpc.NodeInfoGcsServiceServicer):
    """NodeInfoGcsService over the node table."""

    def __init__(self, state: GcsState) -> None:
        self._state = state

    @_refusals_to_status
    async def RegisterNode(
        self, request: gcs_node_pb2.RegisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> gcs_node_pb2.RegisterNodeReply:
        info = node_from_proto(request.node_info)
        check_version_compatible(self._state.rayops_version, info.rayops_version, info.node_id)
        stored = self._state.nodes.apply(RegisterNode(info)).node
        assert stored is not None
        logger.info(
            "node %s registered: %s:%d (%s), resources %s, head=%s",
            stored.node_id,
            stored.node_ip,
            stored.raylet_port,
            stored.node_name,
            dict(stored.resources_total),
            stored.is_head_node,
        )
        return gcs_node_pb2.RegisterNodeReply(node_info=node_to_proto(stored))

    @_refusals_to_status
    async def UnregisterNode(
        self, request: gcs_node_pb2.UnregisterNodeRequest, context: grpc.aio.ServicerContext
    ) -> gcs_node_pb2.UnregisterNodeReply:
        node_id = validate_node_id(request.node_id)
        found = self._state.nodes.apply(MarkNodeDead(node_id, request.reason)).before is not None
        logger.info("node %s unregistered (found=%s): %s", node_id, found, request.reason)
        return gcs_node_pb2.UnregisterNodeReply(found=found)

    @_refusals_to_status
    async def GetAllNodeInfo(
        self, request: gcs_node_pb2.GetAllNodeInfoRequest, context: grpc.aio.ServicerContext
    ) -> gcs_node_pb2.GetAllNodeInfoReply:
        nodes = self._state.nodes.all_nodes(alive_only=request.alive_only)
        return gcs_node_pb2.GetAllNodeInfoReply(node_info_list=[node_to_proto(n) for n in nodes])

    @_refusals_to_status
    async def ReportResourceUsage(
        self, request: gcs_node_pb2.ReportResourceUsageRequest, context: grpc.aio.ServicerContext
    ) -> gcs_node_pb2.ReportResourceUsageReply:
        applied = self._state.nodes.apply(
            ReportUsage(
                validate_node_id(request.node_id),
                dict(request.resources_total),
                dict(request.resources_available),
                store_stats_from_proto(request.object_store_stats),
                demand_from_proto(request.pending_demand),
            )
        )
        accepted = applied.before is NodeState.ALIVE
        if not accepted:
            logger.info(
                "usage report from node %s ignored: node is %s",
                request.node_id,
                applied.before or "unknown",
            )
        state = (
            common_pb2.NodeInfo.NODE_STATE_UNSPECIFIED
            if applied.before is None
            else state_to_proto(applied.before)
        )
        return gcs_node_pb2.ReportResourceUsageReply(accepted=accepted, node_state=state)

    async def CheckAlive(
        self, request: gcs_node_pb2.CheckAliveRequest, context: grpc.aio.ServicerContext
    ) -> gcs_node_pb2.CheckAliveReply:
        return gcs_node_pb2.CheckAliveReply(
            rayops_version=self._state.rayops_version,
            cluster_id=self._state.cluster_id,
            start_time_ms=self._state.start_time_ms,
        )


class JobInfoService(gcs_job_pb2_grpc.JobInfoGcsServiceServicer):
    """JobInfoGcsService over the job table."""

    def __init__(self, state: GcsState) -> None:
        self._state = state

    @_refusals_to_status
    async def GetNextJobId(
        self, request: gcs_job_pb2.GetNextJobIdRequest, context: grpc.aio.ServicerContext
    ) -> gcs_job_pb2.GetNextJobIdReply:
        job_id = self._state.jobs.next_job_id()
        return gcs_job_pb2.GetNextJobIdReply(job_id=job_id, job_id_hex=job_id_hex(job_id))

    @_refusals_to_status
    async def AddJob(
        self, request: gcs_job_pb2.AddJobRequest, context: grpc.aio.ServicerContext
    ) -> gcs_job_pb2.AddJobReply:
        stored = self._state.jobs.add(
            JobInfo(
                job_id=request.job_id,
                driver_pid=request.driver_pid,
                driver_ip=request.driver_ip,
                namespace=request.namespace,
                entrypoint=request.entrypoint,
                start_time_ms=request.start_time_ms,
            )
        )
        logger.info(
            "job %s added: driver pid %d on %s, namespace %r",
            stored.job_id_hex,
            stored.driver_pid,
            stored.driver_ip,
            stored.namespace,
        )
        return gcs_job_pb2.AddJobReply(job_info=job_to_proto(stored))

    @_refusals_to_status
    async def MarkJobFinished(
        self, request: gcs_job_pb2.MarkJobFinishedRequest, context: grpc.aio.ServicerContext
    ) -> gcs_job_pb2.MarkJobFinishedReply:
        found = self._state.jobs.mark_finished(request.job_id)
        logger.info("job %s finished (found=%s)", job_id_hex(request.job_id), found)
        return gcs_job_pb2.MarkJobFinishedReply(found=found)

    async def GetAllJobInfo(
        self, request: gcs_job_pb2.GetAllJobInfoRequest, context: grpc.aio.ServicerContext
    ) -> gcs_job_pb2.GetAllJobInfoReply:
        jobs = self._state.jobs.all_jobs()
        return gcs_job_pb2.GetAllJobInfoReply(job_info_list=[job_to_proto(j) for j in jobs])


class InternalKVService(gcs_kv_pb2_grpc.InternalKVGcsServiceServicer):
    """InternalKVGcsService over the KV store."""

    def __init__(self, state: GcsState) -> None:
        self._kv = state.kv

    @_refusals_to_status
    async def InternalKVPut(
        self, request: gcs_kv_pb2.InternalKVPutRequest, context: grpc.aio.ServicerContext
    ) -> gcs_kv_pb2.InternalKVPutReply:
        added = self._kv.put(
            request.namespace, request.key, request.value, overwrite=request.overwrite
        )
        return gcs_kv_pb2.InternalKVPutReply(added=added)

    @_refusals_to_status
    async def InternalKVGet(
        self, request: gcs_kv_pb2.InternalKVGetRequest, context: grpc.aio.ServicerContext
    ) -> gcs_kv_pb2.InternalKVGetReply:
        value = self._kv.get(request.namespace, request.key)
        if value is None:
            return gcs_kv_pb2.InternalKVGetReply(found=False)
        return gcs_kv_pb2.InternalKVGetReply(found=True, value=value)

    @_refusals_to_status
    async def InternalKVMultiGet(
        self, request: gcs_kv_pb2.InternalKVMultiGetRequest, context: grpc.aio.ServicerContext
    ) -> gcs_kv_pb2.InternalKVMultiGetReply:
        found = self._kv.multi_get(request.namespace, request.keys)
        entries = [gcs_kv_pb2.KVEntry(key=k, value=v) for k, v in found.items()]
        return gcs_kv_pb2.InternalKVMultiGetReply(entries=entries)

    @_refusals_to_status
    async def InternalKVDel(
        self, request: gcs_kv_pb2.InternalKVDelRequest, context: grpc.aio.ServicerContext
    ) -> gcs_kv_pb2.InternalKVDelReply:
        deleted = self._kv.delete(request.namespace, request.key, by_prefix=request.del_by_prefix)
        return gcs_kv_pb2.InternalKVDelReply(deleted_num=deleted)

    async def InternalKVKeys(
        self, request: gcs_kv_pb2.InternalKVKeysRequest, context: grpc.aio.ServicerContext
    ) -> gcs_kv_pb2.InternalKVKeysReply:
        keys = self._kv.keys(request.namespace, request.prefix)
        return gcs_kv_pb2.InternalKVKeysReply(results=keys)

    @_refusals_to_status
    async def InternalKVExists(
        self, request: gcs_kv_pb2.InternalKVExistsRequest, context: grpc.aio.ServicerContext
    ) -> gcs_kv_pb2.InternalKVExistsReply:
        return gcs_kv_pb2.InternalKVExistsReply(
            exists=self._kv.exists(request.namespace, request.key)
        )


class GcsServer:
    """The GCS services on one grpc.aio server, behind the token interceptor."""

    def __init__(
        self,
        state: GcsState,
        token: str,
        health: Any = None,
        packages: Any = None,
        persistence: Any = None,
    ) -> None:
        from rayops.gcs.actor_manager import ActorManager
        from rayops.gcs.health import HealthSettings

        self._health_settings = health or HealthSettings()
        self._health_task: Any = None
        from rayops.gcs.actor_service import ActorInfoService
        from rayops.gcs.metrics_service import LatencyInterceptor, MetricsService
        from rayops.gcs.pg_manager import PgManager
        from rayops.gcs.pg_service import PlacementGroupService
        from rayops.gcs.pubsub_service import JOBS_CHANNEL, NODES_CHANNEL, PubSubService
        from rayops.protocol import (
            gcs_actor_pb2_grpc,
            gcs_metrics_pb2_grpc,
            gcs_pg_pb2_grpc,
            gcs_pubsub_pb2_grpc,
        )

        self.state = state
        self.actors = ActorManager(state.actors, state.nodes, token.encode())
        self.pgs = PgManager(
            state.pgs, state.nodes, self.actors.raylet_pool, on_removed=self.actors.on_pg_removed
        )
        state.publisher.listen(NODES_CHANNEL, self._on_node_events)
        state.publisher.listen(JOBS_CHANNEL, self._on_job_events)
        from rayops.gcs.package_refs_service import PackageReferences, RuntimeEnvService
        from rayops.protocol import gcs_runtime_env_pb2_grpc

        self.packages = PackageReferences(state, packages)
        latency = LatencyInterceptor()  # after the token check: refused calls are not timed
        interceptors: list[Any] = [TokenAuthServerInterceptor(token), latency]
        # With a store (gcs/persistence.py): a reply waits for the records of its changes.
        self.persistence = persistence
        if persistence is not None:
            from rayops.gcs.persistence import DurableRepliesInterceptor

            persistence.attach()
            interceptors.append(DurableRepliesInterceptor(persistence))
        self._server = grpc.aio.server(interceptors=interceptors, options=list(SERVER_OPTIONS))
        gcs_metrics_pb2_grpc.add_MetricsGcsServiceServicer_to_server(
            MetricsService(state, latency.recorder, self.actors.placement_time), self._server
        )
        gcs_node_pb2_grpc.add_NodeInfoGcsServiceServicer_to_server(
            NodeInfoService(state), self._server
        )
        gcs_job_pb2_grpc.add_JobInfoGcsServiceServicer_to_server(
            JobInfoService(state), self._server
        )
        gcs_kv_pb2_grpc.add_InternalKVGcsServiceServicer_to_server(
            InternalKVService(state), self._server
        )
        gcs_actor_pb2_grpc.add_ActorInfoGcsServiceServicer_to_server(
            ActorInfoService(state.actors, self.actors), self._server
        )
        gcs_pg_pb2_grpc.add_PlacementGroupInfoGcsServiceServicer_to_server(
            PlacementGroupService(self.pgs), self._server
        )
        gcs_pubsub_pb2_grpc.add_PubSubGcsServiceServicer_to_server(
            PubSubService(state.publisher), self._server
        )
        gcs_runtime_env_pb2_grpc.add_RuntimeEnvGcsServiceServicer_to_server(
            RuntimeEnvService(self.packages), self._server
        )
        from rayops.gcs.task_service import TaskInfoService
        from rayops.protocol import gcs_task_pb2_grpc

        gcs_task_pb2_grpc.add_TaskInfoGcsServiceServicer_to_server(
            TaskInfoService(state.tasks, state.actors), self._server
        )

    def _on_node_events(self, events: Sequence[Any]) -> None:
        """The node channel of the spine, in process: a node that died loses its bundles;
        any join, death or freed resources may let a waiting group in."""
        for event in events:
            if isinstance(event, NodeDead):
                self.pgs.node_dead(event.node_id)
        self.pgs.nodes_changed()

    def _on_job_events(self, events: Sequence[Any]) -> None:
        """The jobs channel, in process: a finished job's placement groups go with it."""
        for event in events:
            if isinstance(event, JobFinished):
                self.pgs.job_ended(event.job_id)

    async def start(self, host: str, port: int) -> int:
        """Bind exactly `host` (port 0 picks a free one), start serving, return the port."""
        address = format_address(host, port)
        try:
            material = tls.current()
            if material is not None:
                creds = material.grpc_server_credentials()
                bound = self._server.add_secure_port(address, creds)
            else:
                bound = self._server.add_insecure_port(address)
        except RuntimeError as err:
            raise OSError(f"the GCS could not listen on {address}: {err}") from err
        if bound == 0:
            raise OSError(f"the GCS could not listen on {address} (address in use?)")
        if self.persistence is not None:
            self.persistence.start()
            self._resume_restored()
        await self._server.start()
        self._start_health_checks()
        self.packages.start()
        logger.info(
            "GCS serving on %s (cluster %s)", format_address(host, bound), self.state.cluster_id
        )
        return bound

    async def stop(self, grace: float | None) -> None:
        """Stop accepting calls; let running ones finish for up to `grace` seconds."""
        if self._health_task is not None:
            self._health_task.cancel()
        await self.packages.stop()
        await self.pgs.shutdown()
        await self.actors.shutdown()
        self.state.publisher.close()
        await self._server.stop(grace)
        if self.persistence is not None:
            await self.persistence.close()

    def _resume_restored(self) -> None:
        """After a restart: actors read back go on (ALIVE ones keep their workers), and
        placement groups still to place are placed."""
        for rec in self.state.actors.all():
            self.actors.adopt(rec)
        self.pgs.nodes_changed()

    def _start_health_checks(self) -> None:
        import asyncio

        from rayops.gcs.health import health_loop

        def declare_dead(node: Any, reason: str) -> None:
            logger.warning(
                "node %s (%s:%d) is dead: %s",
                node.node_id[:12],
                node.node_ip,
                node.raylet_port,
                reason,
            )
            self.state.nodes.apply(MarkNodeDead(node.node_id, reason))
            self.actors.on_node_dead(node)

        self._health_task = asyncio.ensure_future(
            health_loop(
                self._health_settings,
                lambda: self.state.nodes.all_nodes(alive_only=True),
                self.actors.ping,
                declare_dead,
            )
        )
