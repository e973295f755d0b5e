"""Task events between their framed form (``state_messages.TaskEvent``) and protobuf.

The raylet converts what its core workers report (``event_to_proto``); the GCS converts
back (``event_from_proto``) for its store. Imports only the protocol.
"""

from __future__ import annotations

from rayops.protocol import gcs_task_pb2
from rayops.protocol.state_messages import TaskEvent, TaskInfo

__all__ = ["event_from_proto", "event_to_proto"]


def event_to_proto(e: TaskEvent) -> gcs_task_pb2.TaskStateEvent:
    msg = gcs_task_pb2.TaskStateEvent(
        task_id=e.task_id,
        attempt=e.attempt,
        states=e.states,
        times_ns=e.times_ns,
        node_id=e.node_id,
        worker_id=e.worker_id,
        worker_pid=e.worker_pid,
        error_type=e.error_type,
        error_message=e.error_message,
    )
    info = e.info
    if info is not None:
        msg.has_info = True
        msg.name = info.name
        msg.func_or_class_name = info.func_or_class_name
        msg.type = info.type
        msg.job_id = info.job_id
        msg.actor_id = info.actor_id
        msg.parent_task_id = info.parent_task_id
        msg.required_resources.update(info.required_resources)
    return msg


def event_from_proto(m: gcs_task_pb2.TaskStateEvent) -> TaskEvent:
    info = None
    if m.has_info:
        info = TaskInfo(
            m.name,
            m.func_or_class_name,
            m.type,
            m.job_id,
            m.actor_id,
            m.parent_task_id,
            dict(m.required_resources),
        )
    return TaskEvent(
        m.task_id,
        m.attempt,
        tuple(m.states),
        tuple(m.times_ns),
        info,
        m.node_id,
        m.worker_id,
        m.worker_pid,
        m.error_type,
        m.error_message,
    )
