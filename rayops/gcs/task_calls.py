"""What the task service's client calls send and read (``client.call(task_calls.x(...))``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from rayops.gcs.calls import GcsCall
from rayops.protocol import gcs_actor_pb2, gcs_task_pb2

__all__ = ["add_task_event_data", "get_task_events", "list_actors"]


def add_task_event_data(
    batches: Sequence[gcs_task_pb2.TaskEventBatch], dropped: Mapping[int, int]
) -> GcsCall[None]:
    request = gcs_task_pb2.AddTaskEventDataRequest(
        batches=batches,
        dropped=[gcs_task_pb2.JobDrops(job_id=j, dropped=n) for j, n in dropped.items()],
    )
    return GcsCall("task", "AddTaskEventData", request, lambda r: None)


def get_task_events(
    job_id: int | None = None, task_id: bytes = b"", limit: int = 0
) -> GcsCall[gcs_task_pb2.GetTaskEventsReply]:
    request = gcs_task_pb2.GetTaskEventsRequest(
        has_job_id=job_id is not None, job_id=job_id or 0, task_id=task_id, limit=limit
    )
    return GcsCall("task", "GetTaskEvents", request, lambda r: r)


def list_actors() -> GcsCall[list[gcs_actor_pb2.ActorInfo]]:
    request = gcs_task_pb2.ListActorsRequest()
    return GcsCall("task", "ListActors", request, lambda r: list(r.actors))
