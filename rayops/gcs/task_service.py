"""TaskInfoGcsService: the gRPC face of the task-event store, and the state API's actor list.

A thin shell: protobuf batches become ``state_messages.ReportTaskEvents`` for ``task_store``, its
records become ``TaskAttempt`` messages. No decisions here.
"""

from __future__ import annotations

import logging

import grpc.aio

from rayops.gcs.actor_service import actor_to_proto
from rayops.gcs.actor_table import ActorTable
from rayops.gcs.task_codec import batch_from_proto
from rayops.gcs.task_store import TaskAttempt, TaskEventStore, TaskQuery
from rayops.protocol import gcs_task_pb2, gcs_task_pb2_grpc
from rayops.protocol.state_messages import TASK_STATES

__all__ = ["TaskInfoService", "attempt_to_proto"]

logger = logging.getLogger(__name__)


def attempt_to_proto(r: TaskAttempt) -> gcs_task_pb2.TaskAttempt:
    msg = gcs_task_pb2.TaskAttempt(
        task_id=r.task_id,
        attempt=r.attempt,
        state=r.state_name,
        node_id=r.node_id,
        worker_id=r.worker_id,
        worker_pid=r.worker_pid,
        error_type=r.error_type,
        error_message=r.error_message,
        state_ts_ms={TASK_STATES[s]: t // 1_000_000 for s, t in enumerate(r.times_ns) if t},
    )
    d = r.desc
    if d is not None:
        msg.name = d.name
        msg.func_or_class_name = d.func_or_class_name
        msg.type = d.type
        msg.job_id = d.job_id
        msg.actor_id = d.actor_id
        msg.parent_task_id = d.parent_task_id
        msg.required_resources.update(d.required_resources)
    return msg


class TaskInfoService(gcs_task_pb2_grpc.TaskInfoGcsServiceServicer):
    def __init__(self, store: TaskEventStore, actors: ActorTable) -> None:
        self._store = store
        self._actors = actors

    async def AddTaskEventData(
        self, request: gcs_task_pb2.AddTaskEventDataRequest, context: grpc.aio.ServicerContext
    ) -> gcs_task_pb2.AddTaskEventDataReply:
        for batch in request.batches:
            try:
                self._store.add(batch_from_proto(batch))
            except ValueError as err:  # a malformed batch: refused, the others still count
                logger.warning("task events refused from a raylet: %s", err)
        self._store.count_dropped({d.job_id: d.dropped for d in request.dropped})
        return gcs_task_pb2.AddTaskEventDataReply()

    async def GetTaskEvents(
        self, request: gcs_task_pb2.GetTaskEventsRequest, context: grpc.aio.ServicerContext
    ) -> gcs_task_pb2.GetTaskEventsReply:
        store = self._store
        records, total = store.query(
            TaskQuery(
                job_id=request.job_id if request.has_job_id else None,
                task_id=request.task_id,
                limit=request.limit,
            )
        )
        return gcs_task_pb2.GetTaskEventsReply(
            tasks=[attempt_to_proto(r) for r in records],
            total=total,
            num_evicted=store.num_evicted,
            num_dropped=store.num_dropped,
            dropped_by_job=[
                gcs_task_pb2.JobDrops(job_id=j, dropped=n)
                for j, n in sorted(store.dropped_by_job.items())
            ],
        )

    async def ListActors(
        self, request: gcs_task_pb2.ListActorsRequest, context: grpc.aio.ServicerContext
    ) -> gcs_task_pb2.ListActorsReply:
        return gcs_task_pb2.ListActorsReply(actors=[actor_to_proto(a) for a in self._actors.all()])
