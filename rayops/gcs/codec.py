"""Conversion between the GCS's Python records (`rayops.gcs.types`) and protocol messages.

The one place that knows both shapes, so a field added to a .proto and a dataclass is wired
here and nowhere else. Used by the GCS server and by both GCS clients.
"""

from __future__ import annotations

from typing import Any

from rayops.gcs.types import JobInfo, NodeInfo, NodeState, ObjectStoreStats
from rayops.protocol import common_pb2

__all__ = [
    "job_from_proto",
    "job_to_proto",
    "node_from_proto",
    "node_to_proto",
    "state_from_proto",
    "state_to_proto",
    "store_stats_from_proto",
    "store_stats_to_proto",
]

_STATE_TO_PROTO = {
    NodeState.ALIVE: common_pb2.NodeInfo.ALIVE,
    NodeState.DEAD: common_pb2.NodeInfo.DEAD,
}


def state_to_proto(state: NodeState) -> common_pb2.NodeInfo.NodeState:
    return _STATE_TO_PROTO[state]


def state_from_proto(state: int) -> NodeState:
    # UNSPECIFIED only appears in requests (the GCS decides the state), so read it as ALIVE.
    return NodeState.DEAD if state == common_pb2.NodeInfo.DEAD else NodeState.ALIVE


def store_stats_to_proto(stats: ObjectStoreStats) -> common_pb2.ObjectStoreStats:
    return common_pb2.ObjectStoreStats(
        used_bytes=stats.used_bytes,
        capacity_bytes=stats.capacity_bytes,
        spilled_bytes=stats.spilled_bytes,
    )


def store_stats_from_proto(msg: common_pb2.ObjectStoreStats) -> ObjectStoreStats:
    return ObjectStoreStats(
        used_bytes=msg.used_bytes,
        capacity_bytes=msg.capacity_bytes,
        spilled_bytes=msg.spilled_bytes,
    )


def demand_to_proto(demand: Any) -> list[common_pb2.ResourceDemand]:
    return [
        common_pb2.ResourceDemand(shape=dict(shape), count=count, infeasible=infeasible)
        for shape, count, infeasible in demand
    ]


def demand_from_proto(msgs: Any) -> tuple[tuple[dict[str, float], int, bool], ...]:
    return tuple((dict(m.shape), m.count, m.infeasible) for m in msgs)


def node_to_proto(node: NodeInfo) -> common_pb2.NodeInfo:
    return common_pb2.NodeInfo(
        node_id=node.node_id,
        node_ip=node.node_ip,
        node_name=node.node_name,
        raylet_port=node.raylet_port,
        object_store_dir=node.object_store_dir,
        session_dir=node.session_dir,
        resources_total=node.resources_total,
        resources_available=node.resources_available,
        labels=node.labels,
        state=state_to_proto(node.state),
        death_reason=node.death_reason,
        start_time_ms=node.start_time_ms,
        end_time_ms=node.end_time_ms,
        is_head_node=node.is_head_node,
        rayops_version=node.rayops_version,
        object_store_stats=store_stats_to_proto(node.object_store_stats),
        last_report_time_ms=node.last_report_time_ms,
        pending_demand=demand_to_proto(node.pending_demand),
    )


def node_from_proto(msg: common_pb2.NodeInfo) -> NodeInfo:
    return NodeInfo(
        node_id=msg.node_id,
        node_ip=msg.node_ip,
        node_name=msg.node_name,
        raylet_port=msg.raylet_port,
        object_store_dir=msg.object_store_dir,
        session_dir=msg.session_dir,
        resources_total=dict(msg.resources_total),
        resources_available=dict(msg.resources_available),
        labels=dict(msg.labels),
        state=state_from_proto(msg.state),
        death_reason=msg.death_reason,
        start_time_ms=msg.start_time_ms,
        end_time_ms=msg.end_time_ms,
        is_head_node=msg.is_head_node,
        rayops_version=msg.rayops_version,
        object_store_stats=store_stats_from_proto(msg.object_store_stats),
        last_report_time_ms=msg.last_report_time_ms,
        pending_demand=demand_from_proto(msg.pending_demand),
    )


def job_to_proto(job: JobInfo) -> common_pb2.JobInfo:
    return common_pb2.JobInfo(
        job_id=job.job_id,
        job_id_hex=job.job_id_hex,
        driver_pid=job.driver_pid,
        driver_ip=job.driver_ip,
        namespace=job.namespace,
        entrypoint=job.entrypoint,
        start_time_ms=job.start_time_ms,
        end_time_ms=job.end_time_ms,
        is_dead=job.is_dead,
    )


def job_from_proto(msg: common_pb2.JobInfo) -> JobInfo:
    return JobInfo(
        job_id=msg.job_id,
        driver_pid=msg.driver_pid,
        driver_ip=msg.driver_ip,
        namespace=msg.namespace,
        entrypoint=msg.entrypoint,
        start_time_ms=msg.start_time_ms,
        end_time_ms=msg.end_time_ms,
        is_dead=msg.is_dead,
    )
