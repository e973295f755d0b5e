"""Task-event batches between their framed form (``state_messages.ReportTaskEvents``) and
protobuf (``gcs_task_pb2.TaskEventBatch``).

The raylet converts what its core workers report (``batch_to_proto``); the GCS converts
back (``batch_from_proto``) for its store. Columns go across as whole lists (repeated
fields filled and read in C), so a batch costs a few copies, not work per event.
"""

from __future__ import annotations

from rayops.protocol import gcs_task_pb2
from rayops.protocol.state_messages import ReportTaskEvents, TaskDescriptor, TaskError

__all__ = ["batch_from_proto", "batch_to_proto"]


def batch_to_proto(b: ReportTaskEvents) -> gcs_task_pb2.TaskEventBatch:
    return gcs_task_pb2.TaskEventBatch(
        task_ids=b.task_ids,
        attempts=b.attempts,
        states=b.states,
        times_ns=b.times_ns,
        descriptor=b.descriptor,
        descriptors=[
            gcs_task_pb2.TaskDescriptor(
                name=d.name,
                func_or_class_name=d.func_or_class_name,
                type=d.type,
                job_id=d.job_id,
                actor_id=d.actor_id,
                parent_task_id=d.parent_task_id,
                required_resources=d.required_resources,
            )
            for d in b.descriptors
        ],
        errors=[
            gcs_task_pb2.TaskError(index=e.index, error_type=e.error_type, message=e.message)
            for e in b.errors
        ],
        executor=b.executor,
        node_id=b.node_id,
        worker_id=b.worker_id,
        worker_pid=b.worker_pid,
        job_id=b.job_id,
        dropped=b.dropped,
    )


def batch_from_proto(m: gcs_task_pb2.TaskEventBatch) -> ReportTaskEvents:
    return ReportTaskEvents(
        task_ids=m.task_ids,
        attempts=list(m.attempts),
        states=m.states,
        times_ns=m.times_ns,
        descriptor=list(m.descriptor),
        descriptors=tuple(
            TaskDescriptor(
                d.name,
                d.func_or_class_name,
                d.type,
                d.job_id,
                d.actor_id,
                d.parent_task_id,
                dict(d.required_resources),
            )
            for d in m.descriptors
        ),
        errors=tuple(TaskError(e.index, e.error_type, e.message) for e in m.errors),
        executor=m.executor,
        node_id=m.node_id,
        worker_id=m.worker_id,
        worker_pid=m.worker_pid,
        job_id=m.job_id,
        dropped=m.dropped,
    )
