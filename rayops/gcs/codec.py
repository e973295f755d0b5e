"""Conversion between the GCS's Python records (`rayops.gcs.types`) and protocol messages.

The one place that knows both shapes, so a field added to a .proto and a dataclass is wired
here and nowhere else. Used by the GCS server and by both GCS clients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rayops.gcs.actor_events import ActorChange, ActorChanged, ActorSnapshot
from rayops.gcs.job_events import JobAdded, JobEvent, JobFinished, JobSnapshot
from rayops.gcs.kv_events import KeyPut, KeysDeleted, KvEntry, KvEvent, KvSnapshot
from rayops.gcs.node_events import (
    NodeAdded,
    NodeDead,
    NodeEvent,
    NodeRemoved,
    NodeResourcesChanged,
    NodeSnapshot,
)
from rayops.gcs.pg_events import PgAdded, PgEvent, PgForgotten, PgSnapshot, PgStateChanged, PgView
from rayops.gcs.pubsub import (
    ACTORS_CHANNEL,
    JOBS_CHANNEL,
    KV_CHANNEL,
    NODES_CHANNEL,
    PG_CHANNEL,
    Batch,
    KeyMissing,
)
from rayops.gcs.types import JobInfo, NodeInfo, NodeState, ObjectStoreStats
from rayops.protocol import common_pb2, gcs_metrics_pb2, gcs_pg_pb2, gcs_pubsub_pb2
from rayops.protocol.node_snapshot import ClusterSnapshot, Histogram

__all__ = [
    "CHANNEL_CODECS",
    "ChannelCodec",
    "actor_batch_from_proto",
    "actor_event_from_proto",
    "actor_event_to_proto",
    "batch_from_proto",
    "batch_header",
    "batch_to_proto",
    "cluster_snapshot_from_proto",
    "cluster_snapshot_to_proto",
    "job_event_from_proto",
    "job_event_to_proto",
    "job_from_proto",
    "job_to_proto",
    "kv_event_from_proto",
    "kv_event_to_proto",
    "node_event_from_proto",
    "node_event_to_proto",
    "node_from_proto",
    "node_to_proto",
    "pg_event_from_proto",
    "pg_event_to_proto",
    "pg_view_from_proto",
    "pg_view_to_proto",
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
        metrics_export_port=node.metrics_export_port,
        agent_port=node.agent_port,
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
        metrics_export_port=msg.metrics_export_port,
        agent_port=msg.agent_port,
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


def histograms_to_proto(hists: Mapping[str, Histogram]) -> list[gcs_metrics_pb2.LatencyHistogram]:
    return [
        gcs_metrics_pb2.LatencyHistogram(
            key=key, bounds=list(h.bounds), counts=list(h.counts), sum=h.total
        )
        for key, h in sorted(hists.items())
    ]


def histograms_from_proto(msgs: Any) -> dict[str, Histogram]:
    return {m.key: Histogram(tuple(m.bounds), tuple(m.counts), m.sum) for m in msgs}


def cluster_snapshot_to_proto(snap: ClusterSnapshot) -> gcs_metrics_pb2.GetClusterMetricsReply:
    return gcs_metrics_pb2.GetClusterMetricsReply(
        gcs_pid=snap.gcs_pid,
        nodes=[
            gcs_metrics_pb2.NodeCount(node_type=t, state=s, count=n)
            for (t, s), n in sorted(snap.nodes.items())
        ],
        actors=[
            gcs_metrics_pb2.ActorCount(state=s, class_name=c, count=n)
            for (s, c), n in sorted(snap.actors.items())
        ],
        running_jobs=snap.running_jobs,
        finished_jobs=snap.finished_jobs,
        grpc_latency_ms=histograms_to_proto(snap.grpc_latency_ms),
        placement_time_s=histograms_to_proto(snap.placement_time_s),
    )


def cluster_snapshot_from_proto(msg: gcs_metrics_pb2.GetClusterMetricsReply) -> ClusterSnapshot:
    return ClusterSnapshot(
        gcs_pid=msg.gcs_pid,
        nodes={(m.node_type, m.state): m.count for m in msg.nodes},
        actors={(m.state, m.class_name): m.count for m in msg.actors},
        running_jobs=msg.running_jobs,
        finished_jobs=msg.finished_jobs,
        grpc_latency_ms=histograms_from_proto(msg.grpc_latency_ms),
        placement_time_s=histograms_from_proto(msg.placement_time_s),
    )


def node_event_to_proto(event: NodeEvent) -> gcs_pubsub_pb2.NodeEvent:
    if isinstance(event, NodeAdded):
        return gcs_pubsub_pb2.NodeEvent(version=event.version, added=node_to_proto(event.node))
    if isinstance(event, NodeResourcesChanged):
        usage = gcs_pubsub_pb2.NodeUsage(
            node_id=event.node_id,
            resources_total=event.resources_total,
            resources_available=event.resources_available,
            object_store_stats=store_stats_to_proto(event.object_store_stats),
            pending_demand=demand_to_proto(event.pending_demand),
        )
        return gcs_pubsub_pb2.NodeEvent(version=event.version, usage=usage)
    if isinstance(event, NodeDead):
        death = gcs_pubsub_pb2.NodeDeath(
            node_id=event.node_id, death_reason=event.death_reason, end_time_ms=event.end_time_ms
        )
        return gcs_pubsub_pb2.NodeEvent(version=event.version, dead=death)
    return gcs_pubsub_pb2.NodeEvent(version=event.version, removed_node_id=event.node_id)


def node_event_from_proto(msg: gcs_pubsub_pb2.NodeEvent) -> NodeEvent:
    kind = msg.WhichOneof("change")
    if kind == "added":
        return NodeAdded(msg.version, node_from_proto(msg.added))
    if kind == "usage":
        u = msg.usage
        return NodeResourcesChanged(
            msg.version,
            u.node_id,
            dict(u.resources_total),
            dict(u.resources_available),
            store_stats_from_proto(u.object_store_stats),
            demand_from_proto(u.pending_demand),
        )
    if kind == "dead":
        return NodeDead(msg.version, msg.dead.node_id, msg.dead.death_reason, msg.dead.end_time_ms)
    if kind == "removed_node_id":
        return NodeRemoved(msg.version, msg.removed_node_id)
    raise ValueError(f"node event {msg.version} carries no change")


def job_event_to_proto(event: JobEvent) -> gcs_pubsub_pb2.JobEvent:
    if isinstance(event, JobAdded):
        return gcs_pubsub_pb2.JobEvent(version=event.version, added=job_to_proto(event.job))
    end = gcs_pubsub_pb2.JobEnd(job_id=event.job_id, end_time_ms=event.end_time_ms)
    return gcs_pubsub_pb2.JobEvent(version=event.version, finished=end)


def job_event_from_proto(msg: gcs_pubsub_pb2.JobEvent) -> JobEvent:
    kind = msg.WhichOneof("change")
    if kind == "added":
        return JobAdded(msg.version, job_from_proto(msg.added))
    if kind == "finished":
        return JobFinished(msg.version, msg.finished.job_id, msg.finished.end_time_ms)
    raise ValueError(f"job event {msg.version} carries no change")


def kv_event_to_proto(event: KvEvent) -> gcs_pubsub_pb2.KvEvent:
    msg = gcs_pubsub_pb2.KvEvent(version=event.version, namespace=event.namespace, key=event.key)
    if isinstance(event, KeyPut):
        msg.put.value_size = event.value_size
        msg.put.created = event.created
    else:
        msg.delete.by_prefix = event.by_prefix
        msg.delete.count = event.count
    return msg


def kv_event_from_proto(msg: gcs_pubsub_pb2.KvEvent) -> KvEvent:
    kind = msg.WhichOneof("op")
    if kind == "put":
        return KeyPut(msg.version, msg.namespace, msg.key, msg.put.value_size, msg.put.created)
    if kind == "delete":
        d = msg.delete
        return KeysDeleted(msg.version, msg.namespace, msg.key, d.by_prefix, d.count)
    raise ValueError(f"kv event {msg.version} carries no operation")


def pg_view_to_proto(view: PgView) -> gcs_pg_pb2.PlacementGroupInfo:
    selectors: Any = view.bundle_label_selectors or [{} for _ in view.bundles]
    return gcs_pg_pb2.PlacementGroupInfo(
        placement_group_id=view.pg_id,
        name=view.name,
        ray_namespace=view.namespace,
        strategy=view.strategy,
        bundles=[
            gcs_pg_pb2.Bundle(resources=b, label_selector=s)
            for b, s in zip(view.bundles, selectors, strict=True)
        ],
        bundle_nodes=dict(view.bundle_nodes),
        state=view.state,
        creator_job_id=view.creator_job_id,
        is_detached=view.is_detached,
    )


def pg_view_from_proto(msg: gcs_pg_pb2.PlacementGroupInfo) -> PgView:
    selectors = tuple(dict(b.label_selector) for b in msg.bundles)
    return PgView(
        pg_id=msg.placement_group_id,
        name=msg.name,
        namespace=msg.ray_namespace,
        strategy=msg.strategy,
        bundles=tuple(dict(b.resources) for b in msg.bundles),
        bundle_label_selectors=selectors if any(selectors) else (),
        creator_job_id=msg.creator_job_id,
        is_detached=msg.is_detached,
        state=msg.state,
        bundle_nodes=dict(msg.bundle_nodes),
    )


def pg_event_to_proto(event: PgEvent) -> gcs_pubsub_pb2.PlacementGroupEvent:
    if isinstance(event, PgAdded):
        return gcs_pubsub_pb2.PlacementGroupEvent(
            version=event.version, added=pg_view_to_proto(event.group)
        )
    if isinstance(event, PgStateChanged):
        change = gcs_pubsub_pb2.PlacementGroupStateChange(
            placement_group_id=event.pg_id, state=event.state, bundle_nodes=event.bundle_nodes
        )
        return gcs_pubsub_pb2.PlacementGroupEvent(version=event.version, state_changed=change)
    return gcs_pubsub_pb2.PlacementGroupEvent(version=event.version, forgotten_id=event.pg_id)


def pg_event_from_proto(msg: gcs_pubsub_pb2.PlacementGroupEvent) -> PgEvent:
    kind = msg.WhichOneof("change")
    if kind == "added":
        return PgAdded(msg.version, pg_view_from_proto(msg.added))
    if kind == "state_changed":
        c = msg.state_changed
        return PgStateChanged(msg.version, c.placement_group_id, c.state, dict(c.bundle_nodes))
    if kind == "forgotten_id":
        return PgForgotten(msg.version, msg.forgotten_id)
    raise ValueError(f"placement-group event {msg.version} carries no change")


@dataclass(frozen=True)
class ChannelCodec:
    """How one channel's batches travel in `SubscribeBatch`: its two payload fields (the
    snapshot's items, the events) and the converters of each."""

    snapshot_field: str
    events_field: str
    event_to_proto: Callable[[Any], Any]
    event_from_proto: Callable[[Any], Any]
    snapshot_to_proto: Callable[[Any], list[Any]]
    snapshot_from_proto: Callable[[int, Any], Any]


CHANNEL_CODECS: dict[str, ChannelCodec] = {
    NODES_CHANNEL: ChannelCodec(
        "node_snapshot",
        "node_events",
        node_event_to_proto,
        node_event_from_proto,
        lambda snap: [node_to_proto(n) for n in snap.nodes],
        lambda version, msgs: NodeSnapshot(version, tuple(node_from_proto(m) for m in msgs)),
    ),
    JOBS_CHANNEL: ChannelCodec(
        "job_snapshot",
        "job_events",
        job_event_to_proto,
        job_event_from_proto,
        lambda snap: [job_to_proto(j) for j in snap.jobs],
        lambda version, msgs: JobSnapshot(version, tuple(job_from_proto(m) for m in msgs)),
    ),
    KV_CHANNEL: ChannelCodec(
        "kv_snapshot",
        "kv_events",
        kv_event_to_proto,
        kv_event_from_proto,
        lambda snap: [
            gcs_pubsub_pb2.KvKey(namespace=e.namespace, key=e.key, value_size=e.value_size)
            for e in snap.entries
        ],
        lambda version, msgs: KvSnapshot(
            version, tuple(KvEntry(m.namespace, m.key, m.value_size) for m in msgs)
        ),
    ),
    PG_CHANNEL: ChannelCodec(
        "pg_snapshot",
        "pg_events",
        pg_event_to_proto,
        pg_event_from_proto,
        lambda snap: [pg_view_to_proto(g) for g in snap.groups],
        lambda version, msgs: PgSnapshot(version, tuple(pg_view_from_proto(m) for m in msgs)),
    ),
}


def batch_header(batch: Batch) -> gcs_pubsub_pb2.SubscribeBatch:
    """A batch's stream message without its events (channel, epoch, version, kind)."""
    return gcs_pubsub_pb2.SubscribeBatch(
        channel=batch.channel,
        epoch=batch.epoch,
        version=batch.version,
        is_snapshot=batch.is_snapshot,
    )


def batch_to_proto(batch: Batch) -> gcs_pubsub_pb2.SubscribeBatch:
    """A pubsub batch of any channel as its stream message."""
    codec = CHANNEL_CODECS[batch.channel]
    msg = batch_header(batch)
    if batch.is_snapshot:
        getattr(msg, codec.snapshot_field).extend(codec.snapshot_to_proto(batch.snapshot))
    else:
        getattr(msg, codec.events_field).extend(codec.event_to_proto(e) for e in batch.events)
    return msg


def batch_from_proto(msg: gcs_pubsub_pb2.SubscribeBatch) -> Batch:
    """A stream message as the pubsub batch it carries (ValueError for an unknown channel)."""
    codec = CHANNEL_CODECS.get(msg.channel)
    if codec is None:
        raise ValueError(f"a batch of unknown channel {msg.channel!r}")
    if msg.is_snapshot:
        snapshot = codec.snapshot_from_proto(msg.version, getattr(msg, codec.snapshot_field))
        return Batch(msg.channel, msg.epoch, msg.version, snapshot)
    events = tuple(codec.event_from_proto(e) for e in getattr(msg, codec.events_field))
    return Batch(msg.channel, msg.epoch, msg.version, None, events)


# The "actors" channel.

_ACTOR_STATE_TO_PROTO = {
    "PENDING_CREATION": gcs_pubsub_pb2.ActorEvent.PENDING_CREATION,
    "ALIVE": gcs_pubsub_pb2.ActorEvent.ALIVE,
    "RESTARTING": gcs_pubsub_pb2.ActorEvent.RESTARTING,
    "DEAD": gcs_pubsub_pb2.ActorEvent.DEAD,
}
_ACTOR_STATE_FROM_PROTO = {v: k for k, v in _ACTOR_STATE_TO_PROTO.items()}


def actor_event_to_proto(event: ActorChanged) -> gcs_pubsub_pb2.ActorEvent:
    return gcs_pubsub_pb2.ActorEvent(
        version=event.version,
        change=event.change.value,
        actor_id=event.actor_id,
        state=_ACTOR_STATE_TO_PROTO[event.state],
        address_ip=event.address_ip,
        address_port=event.address_port,
        node_id=event.node_id,
        worker_id=event.worker_id,
        pid=event.pid,
        num_restarts=event.num_restarts,
        max_restarts=event.max_restarts,
        death_cause=event.death_cause,
        death_error=event.death_error,
        name=event.name,
        ray_namespace=event.namespace,
        class_name=event.class_name,
        job_id=event.job_id,
    )


def actor_event_from_proto(msg: gcs_pubsub_pb2.ActorEvent) -> ActorChanged:
    return ActorChanged(
        version=msg.version,
        change=ActorChange(msg.change),
        actor_id=msg.actor_id,
        state=_ACTOR_STATE_FROM_PROTO.get(msg.state, "UNKNOWN"),
        address_ip=msg.address_ip,
        address_port=msg.address_port,
        node_id=msg.node_id,
        worker_id=msg.worker_id,
        pid=msg.pid,
        num_restarts=msg.num_restarts,
        max_restarts=msg.max_restarts,
        death_cause=msg.death_cause,
        death_error=msg.death_error,
        name=msg.name,
        namespace=msg.ray_namespace,
        class_name=msg.class_name,
        job_id=msg.job_id,
    )


def actor_batch_from_proto(msg: gcs_pubsub_pb2.SubscribeBatch) -> Batch:
    """A batch of the "actors" channel: a snapshot (every actor), or events, where a key a
    keyed subscription added and the table does not hold is a `KeyMissing`."""
    events = tuple(actor_event_from_proto(e) for e in msg.actor_events)
    if msg.is_snapshot:
        return Batch(msg.channel, msg.epoch, msg.version, ActorSnapshot(msg.version, events))
    missing = tuple(KeyMissing(bytes(k)) for k in msg.not_found_keys)
    return Batch(msg.channel, msg.epoch, msg.version, None, events + missing)


CHANNEL_CODECS[ACTORS_CHANNEL] = ChannelCodec(
    "actor_events",
    "actor_events",
    actor_event_to_proto,
    actor_event_from_proto,
    lambda snap: [actor_event_to_proto(e) for e in snap.actors],
    lambda version, msgs: ActorSnapshot(version, tuple(actor_event_from_proto(m) for m in msgs)),
)
