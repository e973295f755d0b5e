"""ActorInfoGcsService: the gRPC face of the actor table and manager."""

from __future__ import annotations

import grpc
import grpc.aio

from rayops.gcs.actor_manager import ActorManager
from rayops.gcs.actor_placement import strategy_from_wire
from rayops.gcs.actor_table import ActorNameTaken, ActorRecord, ActorState, ActorTable
from rayops.protocol import gcs_actor_pb2, gcs_actor_pb2_grpc

_STATE_TO_PROTO = {
    ActorState.PENDING_CREATION: gcs_actor_pb2.ActorInfo.PENDING_CREATION,
    ActorState.ALIVE: gcs_actor_pb2.ActorInfo.ALIVE,
    ActorState.RESTARTING: gcs_actor_pb2.ActorInfo.RESTARTING,
    ActorState.DEAD: gcs_actor_pb2.ActorInfo.DEAD,
}


def actor_to_proto(rec: ActorRecord) -> gcs_actor_pb2.ActorInfo:
    return gcs_actor_pb2.ActorInfo(
        actor_id=rec.actor_id,
        class_name=rec.class_name,
        job_id=rec.job_id,
        address_ip=rec.address_ip,
        address_port=rec.address_port,
        node_id=rec.node_id,
        pid=rec.pid,
        worker_id=rec.worker_id,
        state=_STATE_TO_PROTO[rec.state],
        version=rec.version,
        num_restarts=rec.num_restarts,
        max_restarts=rec.max_restarts,
        death_cause=rec.death_cause,
        death_error=rec.death_error,
        name=rec.name,
        ray_namespace=rec.namespace,
        is_detached=rec.is_detached,
        handle_meta=rec.handle_meta,
        owner_address=rec.owner_address,
    )


class ActorInfoService(gcs_actor_pb2_grpc.ActorInfoGcsServiceServicer):
    def __init__(self, table: ActorTable, manager: ActorManager) -> None:
        self._table = table
        self._manager = manager

    async def RegisterActor(
        self, request: gcs_actor_pb2.RegisterActorRequest, context: grpc.aio.ServicerContext
    ) -> gcs_actor_pb2.RegisterActorReply:
        if len(request.actor_id) != 16:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "actor_id must be 16 bytes")
        rec = ActorRecord(
            actor_id=request.actor_id,
            class_name=request.class_name,
            job_id=request.job_id,
            name=request.name,
            namespace=request.ray_namespace,
            is_detached=request.is_detached,
            max_restarts=request.max_restarts,
            placement_resources=dict(request.placement_resources),
            hold_resources=dict(request.hold_resources),
            creation_spec=request.creation_spec,
            handle_meta=request.handle_meta,
            owner_address=request.owner_address,
            label_selector=dict(request.label_selector),
            owner_node_id=request.owner_node_id,
            runtime_env=request.runtime_env,
        )
        try:
            rec.scheduling_strategy = strategy_from_wire(
                request.scheduling_strategy, request.affinity_node_id, request.affinity_soft
            )
        except ValueError as err:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, str(err))
            raise AssertionError("abort returned") from err
        try:
            stored, existed = self._table.register(rec, get_if_exists=request.get_if_exists)
        except ActorNameTaken as err:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
            raise AssertionError("abort returned") from err
        if not existed:
            self._manager.on_registered(stored)
        return gcs_actor_pb2.RegisterActorReply(actor_info=actor_to_proto(stored), existed=existed)

    async def GetActorInfo(
        self, request: gcs_actor_pb2.GetActorInfoRequest, context: grpc.aio.ServicerContext
    ) -> gcs_actor_pb2.GetActorInfoReply:
        rec = self._table.get(request.actor_id)
        if rec is None:
            return gcs_actor_pb2.GetActorInfoReply(found=False)
        return gcs_actor_pb2.GetActorInfoReply(found=True, actor_info=actor_to_proto(rec))

    async def GetNamedActor(
        self, request: gcs_actor_pb2.GetNamedActorRequest, context: grpc.aio.ServicerContext
    ) -> gcs_actor_pb2.GetNamedActorReply:
        rec = self._table.by_name(request.name, request.ray_namespace)
        if rec is None:
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no live actor named {request.name!r} in namespace {request.ray_namespace!r}",
            )
            raise AssertionError("abort returned")
        return gcs_actor_pb2.GetNamedActorReply(actor_info=actor_to_proto(rec))

    async def ListNamedActors(
        self, request: gcs_actor_pb2.ListNamedActorsRequest, context: grpc.aio.ServicerContext
    ) -> gcs_actor_pb2.ListNamedActorsReply:
        ns = None if request.all_namespaces else request.ray_namespace
        return gcs_actor_pb2.ListNamedActorsReply(
            actors=[
                gcs_actor_pb2.NamedActor(name=name, ray_namespace=space)
                for space, name in self._table.names(ns)
            ]
        )

    async def KillActor(
        self, request: gcs_actor_pb2.KillActorRequest, context: grpc.aio.ServicerContext
    ) -> gcs_actor_pb2.KillActorReply:
        rec = self._table.get(request.actor_id)
        if rec is None:
            return gcs_actor_pb2.KillActorReply(found=False)
        self._manager.kill(rec, request.no_restart)
        return gcs_actor_pb2.KillActorReply(found=True)

    async def ReportActorOutOfScope(
        self,
        request: gcs_actor_pb2.ReportActorOutOfScopeRequest,
        context: grpc.aio.ServicerContext,
    ) -> gcs_actor_pb2.ReportActorOutOfScopeReply:
        rec = self._table.get(request.actor_id)
        if rec is not None:
            self._manager.out_of_scope(rec)
        return gcs_actor_pb2.ReportActorOutOfScopeReply()

    async def ReportWorkerDeath(
        self,
        request: gcs_actor_pb2.ReportWorkerDeathRequest,
        context: grpc.aio.ServicerContext,
    ) -> gcs_actor_pb2.ReportWorkerDeathReply:
        if request.worker_id:
            self._manager.on_worker_dead(request.worker_id, request.reason)
        if request.worker_address:
            self._manager.on_owner_dead(request.worker_address)
        return gcs_actor_pb2.ReportWorkerDeathReply()
