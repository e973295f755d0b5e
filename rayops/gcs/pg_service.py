"""PlacementGroupInfoGcsService: the gRPC face of the placement-group table and manager."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio

from rayops.gcs.pg_manager import PgManager
from rayops.gcs.pg_table import PgNameTaken, PgRecord
from rayops.protocol import gcs_pg_pb2, gcs_pg_pb2_grpc
from rayops.protocol.bundle_resources import PG_ID_BYTES
from rayops.scheduling.bundles import STRATEGIES

MAX_WAIT_MS = 60_000


def pg_to_proto(rec: PgRecord) -> gcs_pg_pb2.PlacementGroupInfo:
    selectors = rec.bundle_label_selectors or [{} for _ in rec.bundles]
    return gcs_pg_pb2.PlacementGroupInfo(
        placement_group_id=rec.pg_id,
        name=rec.name,
        ray_namespace=rec.namespace,
        strategy=rec.strategy,
        bundles=[
            gcs_pg_pb2.Bundle(resources=b, label_selector=s)
            for b, s in zip(rec.bundles, selectors, strict=True)
        ],
        bundle_nodes=dict(rec.bundle_nodes),
        state=str(rec.state),
        creator_job_id=rec.creator_job_id,
        is_detached=rec.is_detached,
        scheduling_state=rec.scheduling_state,
        scheduling_attempts=rec.scheduling_attempts,
        creation_latency_ms=rec.created_after_s * 1000.0,
    )


class PlacementGroupService(gcs_pg_pb2_grpc.PlacementGroupInfoGcsServiceServicer):
    def __init__(self, manager: PgManager) -> None:
        self._manager = manager

    async def CreatePlacementGroup(
        self,
        request: gcs_pg_pb2.CreatePlacementGroupRequest,
        context: grpc.aio.ServicerContext,
    ) -> gcs_pg_pb2.CreatePlacementGroupReply:
        spec = request.spec
        problem = _check(spec)
        if problem:
            await context.abort(grpc.StatusCode.INVALID_ARGUMENT, problem)
        rec = _record(spec)
        try:
            self._manager.create(rec)
        except PgNameTaken as err:
            await context.abort(grpc.StatusCode.ALREADY_EXISTS, str(err))
        return gcs_pg_pb2.CreatePlacementGroupReply()

    async def CreatePlacementGroups(
        self,
        request: gcs_pg_pb2.CreatePlacementGroupsRequest,
        context: grpc.aio.ServicerContext,
    ) -> gcs_pg_pb2.CreatePlacementGroupsReply:
        ids: list[bytes | None] = []
        errors: list[str] = []
        for spec in request.specs:
            problem = _check(spec)
            if not problem:
                try:
                    self._manager.create(_record(spec))
                except PgNameTaken as err:
                    problem = str(err)
            ids.append(None if problem else spec.placement_group_id)
            errors.append(problem)
        wait_s = min(request.wait_ms, MAX_WAIT_MS) / 1000.0
        states = await asyncio.gather(*(self._state_after(pg_id, wait_s) for pg_id in ids))
        return gcs_pg_pb2.CreatePlacementGroupsReply(states=states, errors=errors)

    async def _state_after(self, pg_id: bytes | None, wait_s: float) -> str:
        if pg_id is None:
            return ""
        return await self._manager.wait_ready(pg_id, wait_s)

    async def RemovePlacementGroups(
        self,
        request: gcs_pg_pb2.RemovePlacementGroupsRequest,
        context: grpc.aio.ServicerContext,
    ) -> gcs_pg_pb2.RemovePlacementGroupsReply:
        for pg_id in request.placement_group_ids:
            self._manager.remove(pg_id)
        return gcs_pg_pb2.RemovePlacementGroupsReply()

    async def GetPlacementGroup(
        self, request: gcs_pg_pb2.GetPlacementGroupRequest, context: grpc.aio.ServicerContext
    ) -> gcs_pg_pb2.GetPlacementGroupReply:
        table = self._manager.table
        if request.placement_group_id:
            rec = table.get(request.placement_group_id)
        else:
            rec = table.by_name(request.name, request.ray_namespace)
        if rec is None:
            return gcs_pg_pb2.GetPlacementGroupReply(found=False)
        return gcs_pg_pb2.GetPlacementGroupReply(found=True, info=pg_to_proto(rec))

    async def GetAllPlacementGroup(
        self, request: gcs_pg_pb2.GetAllPlacementGroupRequest, context: grpc.aio.ServicerContext
    ) -> gcs_pg_pb2.GetAllPlacementGroupReply:
        return gcs_pg_pb2.GetAllPlacementGroupReply(
            groups=[pg_to_proto(r) for r in self._manager.table.all()]
        )

    async def WaitPlacementGroupUntilReady(
        self, request: gcs_pg_pb2.WaitPlacementGroupRequest, context: grpc.aio.ServicerContext
    ) -> gcs_pg_pb2.WaitPlacementGroupReply:
        timeout = min(request.timeout_ms, MAX_WAIT_MS) / 1000.0
        state = await self._manager.wait_ready(request.placement_group_id, timeout)
        return gcs_pg_pb2.WaitPlacementGroupReply(state=state)


def _record(spec: gcs_pg_pb2.PlacementGroupInfo) -> PgRecord:
    return PgRecord(
        pg_id=spec.placement_group_id,
        name=spec.name,
        namespace=spec.ray_namespace,
        strategy=spec.strategy,
        bundles=[dict(b.resources) for b in spec.bundles],
        creator_job_id=spec.creator_job_id,
        is_detached=spec.is_detached,
        bundle_label_selectors=[dict(b.label_selector) for b in spec.bundles],
    )


def _check(spec: gcs_pg_pb2.PlacementGroupInfo) -> str:
    """What is wrong with a group a client sent ("" if nothing): the client library checks
    the same first, so this only refuses other clients' mistakes."""
    if len(spec.placement_group_id) != PG_ID_BYTES:
        return f"placement_group_id must be {PG_ID_BYTES} bytes"
    if spec.strategy not in STRATEGIES:
        return f"unknown strategy {spec.strategy!r}; expected one of {', '.join(STRATEGIES)}"
    if not spec.bundles:
        return "a placement group needs at least one bundle"
    for i, b in enumerate(spec.bundles):
        if not any(v > 0 for v in b.resources.values()):
            return f"bundle {i} asks for no resources"
        if any(v < 0 for v in b.resources.values()):
            return f"bundle {i} has a negative amount"
    return ""
