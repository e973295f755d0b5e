"""What each GCS client method sends, and how its reply reads: shared by the sync and async clients.

Each function here builds a `GcsCall`: the service and method to call, the request message,
and a function from the reply message to the Python value the client returns. The clients only
make the call and map errors, so the two stay identical by construction.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, Literal, TypeVar

from rayops.gcs.codec import (
    demand_to_proto,
    job_from_proto,
    node_from_proto,
    node_to_proto,
    state_from_proto,
)
from rayops.gcs.types import (
    ActorInfo,
    GcsInfo,
    JobInfo,
    NodeInfo,
    ObjectStoreStats,
    UsageReportOutcome,
)
from rayops.protocol import (
    common_pb2,
    gcs_actor_pb2,
    gcs_job_pb2,
    gcs_kv_pb2,
    gcs_metrics_pb2,
    gcs_node_pb2,
    gcs_pg_pb2,
    gcs_runtime_env_pb2,
)
from rayops.protocol.node_snapshot import ClusterSnapshot

__all__ = ["GcsCall", "Service"]

R = TypeVar("R")
Service = Literal["node", "job", "kv", "actor", "metrics", "pg", "pubsub", "runtime_env", "task"]


@dataclass(frozen=True, slots=True)
class GcsCall(Generic[R]):
    """One unary call: `service`'s `method` with `request`; `parse` reads the reply."""

    service: Service
    method: str
    request: Any
    parse: Callable[[Any], R]


# Node table.


def register_node(info: NodeInfo) -> GcsCall[NodeInfo]:
    request = gcs_node_pb2.RegisterNodeRequest(node_info=node_to_proto(info))
    return GcsCall("node", "RegisterNode", request, lambda r: node_from_proto(r.node_info))


def unregister_node(node_id: str, reason: str) -> GcsCall[bool]:
    request = gcs_node_pb2.UnregisterNodeRequest(node_id=node_id, reason=reason)
    return GcsCall("node", "UnregisterNode", request, lambda r: bool(r.found))


def get_all_nodes(alive_only: bool) -> GcsCall[list[NodeInfo]]:
    request = gcs_node_pb2.GetAllNodeInfoRequest(alive_only=alive_only)
    return GcsCall(
        "node",
        "GetAllNodeInfo",
        request,
        lambda r: [node_from_proto(n) for n in r.node_info_list],
    )


def _read_usage_reply(reply: gcs_node_pb2.ReportResourceUsageReply) -> UsageReportOutcome:
    known = reply.node_state != common_pb2.NodeInfo.NODE_STATE_UNSPECIFIED
    state = state_from_proto(reply.node_state) if known else None
    return UsageReportOutcome(accepted=reply.accepted, state=state)


def report_resource_usage(
    node_id: str,
    total: Mapping[str, float],
    available: Mapping[str, float],
    store: ObjectStoreStats,
    pending_demand: Any = (),
) -> GcsCall[UsageReportOutcome]:
    request = gcs_node_pb2.ReportResourceUsageRequest(
        node_id=node_id,
        resources_total=total,
        resources_available=available,
        object_store_stats=common_pb2.ObjectStoreStats(
            used_bytes=store.used_bytes,
            capacity_bytes=store.capacity_bytes,
            spilled_bytes=store.spilled_bytes,
        ),
        pending_demand=demand_to_proto(pending_demand),
    )
    return GcsCall("node", "ReportResourceUsage", request, _read_usage_reply)


def check_alive() -> GcsCall[GcsInfo]:
    return GcsCall(
        "node",
        "CheckAlive",
        gcs_node_pb2.CheckAliveRequest(),
        lambda r: GcsInfo(r.rayops_version, r.cluster_id, r.start_time_ms),
    )


def get_cluster_metrics() -> GcsCall[ClusterSnapshot]:
    from rayops.gcs.codec import cluster_snapshot_from_proto

    return GcsCall(
        "metrics",
        "GetClusterMetrics",
        gcs_metrics_pb2.GetClusterMetricsRequest(),
        cluster_snapshot_from_proto,
    )


# Job table.


def next_job_id() -> GcsCall[int]:
    return GcsCall(
        "job", "GetNextJobId", gcs_job_pb2.GetNextJobIdRequest(), lambda r: int(r.job_id)
    )


def add_job(
    job_id: int,
    driver_pid: int,
    driver_ip: str,
    namespace: str,
    entrypoint: str,
    start_time_ms: int,
) -> GcsCall[JobInfo]:
    request = gcs_job_pb2.AddJobRequest(
        job_id=job_id,
        driver_pid=driver_pid,
        driver_ip=driver_ip,
        namespace=namespace,
        entrypoint=entrypoint,
        start_time_ms=start_time_ms,
    )
    return GcsCall("job", "AddJob", request, lambda r: job_from_proto(r.job_info))


def mark_job_finished(job_id: int) -> GcsCall[bool]:
    request = gcs_job_pb2.MarkJobFinishedRequest(job_id=job_id)
    return GcsCall("job", "MarkJobFinished", request, lambda r: bool(r.found))


def get_all_jobs() -> GcsCall[list[JobInfo]]:
    return GcsCall(
        "job",
        "GetAllJobInfo",
        gcs_job_pb2.GetAllJobInfoRequest(),
        lambda r: [job_from_proto(j) for j in r.job_info_list],
    )


# Internal KV.


def kv_put(key: bytes, value: bytes, namespace: str, overwrite: bool) -> GcsCall[bool]:
    request = gcs_kv_pb2.InternalKVPutRequest(
        namespace=namespace, key=key, value=value, overwrite=overwrite
    )
    return GcsCall("kv", "InternalKVPut", request, lambda r: bool(r.added))


def _read_get_reply(reply: gcs_kv_pb2.InternalKVGetReply) -> bytes | None:
    return bytes(reply.value) if reply.found else None


def kv_get(key: bytes, namespace: str) -> GcsCall[bytes | None]:
    request = gcs_kv_pb2.InternalKVGetRequest(namespace=namespace, key=key)
    return GcsCall("kv", "InternalKVGet", request, _read_get_reply)


def kv_multi_get(keys: Iterable[bytes], namespace: str) -> GcsCall[dict[bytes, bytes]]:
    request = gcs_kv_pb2.InternalKVMultiGetRequest(namespace=namespace, keys=list(keys))
    return GcsCall(
        "kv",
        "InternalKVMultiGet",
        request,
        lambda r: {bytes(e.key): bytes(e.value) for e in r.entries},
    )


def kv_del(key: bytes, namespace: str, by_prefix: bool) -> GcsCall[int]:
    request = gcs_kv_pb2.InternalKVDelRequest(namespace=namespace, key=key, del_by_prefix=by_prefix)
    return GcsCall("kv", "InternalKVDel", request, lambda r: int(r.deleted_num))


def kv_keys(prefix: bytes, namespace: str) -> GcsCall[list[bytes]]:
    request = gcs_kv_pb2.InternalKVKeysRequest(namespace=namespace, prefix=prefix)
    return GcsCall("kv", "InternalKVKeys", request, lambda r: [bytes(k) for k in r.results])


def kv_exists(key: bytes, namespace: str) -> GcsCall[bool]:
    request = gcs_kv_pb2.InternalKVExistsRequest(namespace=namespace, key=key)
    return GcsCall("kv", "InternalKVExists", request, lambda r: bool(r.exists))


def add_job_package_references(job_id: int, uris: Iterable[str]) -> GcsCall[bool]:
    """Job ``job_id`` uses these runtime_env packages; the reply: whether it is running."""
    request = gcs_runtime_env_pb2.AddJobPackageReferencesRequest(job_id=job_id, uris=list(uris))
    return GcsCall("runtime_env", "AddJobPackageReferences", request, lambda r: bool(r.job_running))


def get_package_references() -> GcsCall[tuple[dict[str, list[str]], int]]:
    """({package URI: its holders}, packages deleted so far) of the GCS's package store."""
    request = gcs_runtime_env_pb2.GetPackageReferencesRequest()
    return GcsCall(
        "runtime_env",
        "GetPackageReferences",
        request,
        lambda r: ({p.uri: list(p.holders) for p in r.packages}, int(r.deleted_total)),
    )


# Actor directory.

_ACTOR_STATES = {1: "PENDING_CREATION", 2: "ALIVE", 3: "RESTARTING", 4: "DEAD"}


def actor_from_proto(a: Any) -> ActorInfo:
    return ActorInfo(
        actor_id=a.actor_id,
        class_name=a.class_name,
        state=_ACTOR_STATES.get(a.state, "UNKNOWN"),
        version=a.version,
        address=(a.address_ip, a.address_port) if a.address_port else None,
        node_id=a.node_id,
        pid=a.pid,
        num_restarts=a.num_restarts,
        max_restarts=a.max_restarts,
        death_cause=a.death_cause,
        death_error=a.death_error,
        name=a.name,
        namespace=a.ray_namespace,
        is_detached=a.is_detached,
        handle_meta=a.handle_meta,
        owner_address=a.owner_address,
        job_id=a.job_id,
    )


def register_actor(**fields: Any) -> GcsCall[tuple[ActorInfo, bool]]:
    request = gcs_actor_pb2.RegisterActorRequest(**fields)
    return GcsCall(
        "actor", "RegisterActor", request, lambda r: (actor_from_proto(r.actor_info), r.existed)
    )


def get_actor_info(actor_id: bytes) -> GcsCall[ActorInfo | None]:
    """The actor's info now (None if the GCS never knew it)."""
    request = gcs_actor_pb2.GetActorInfoRequest(actor_id=actor_id)
    return GcsCall(
        "actor",
        "GetActorInfo",
        request,
        lambda r: actor_from_proto(r.actor_info) if r.found else None,
    )


def get_named_actor(name: str, namespace: str) -> GcsCall[ActorInfo]:
    request = gcs_actor_pb2.GetNamedActorRequest(name=name, ray_namespace=namespace)
    return GcsCall("actor", "GetNamedActor", request, lambda r: actor_from_proto(r.actor_info))


def list_named_actors(all_namespaces: bool, namespace: str) -> GcsCall[list[tuple[str, str]]]:
    request = gcs_actor_pb2.ListNamedActorsRequest(
        all_namespaces=all_namespaces, ray_namespace=namespace
    )
    return GcsCall(
        "actor",
        "ListNamedActors",
        request,
        lambda r: [(a.ray_namespace, a.name) for a in r.actors],
    )


def kill_actor(actor_id: bytes, no_restart: bool) -> GcsCall[bool]:
    request = gcs_actor_pb2.KillActorRequest(actor_id=actor_id, no_restart=no_restart)
    return GcsCall("actor", "KillActor", request, lambda r: bool(r.found))


def report_worker_death(
    node_id: str, worker_id: bytes, reason: str, worker_address: str
) -> GcsCall[None]:
    """A raylet's report that one of its worker (or driver) processes is gone."""
    request = gcs_actor_pb2.ReportWorkerDeathRequest(
        node_id=node_id, worker_id=worker_id, reason=reason, worker_address=worker_address
    )
    return GcsCall("actor", "ReportWorkerDeath", request, lambda r: None)


def report_actor_out_of_scope(actor_id: bytes) -> GcsCall[None]:
    request = gcs_actor_pb2.ReportActorOutOfScopeRequest(actor_id=actor_id)
    return GcsCall("actor", "ReportActorOutOfScope", request, lambda r: None)


# Placement groups (replies are gcs_pg_pb2 messages: rayops.util.placement_group reads them).


def create_placement_group(spec: gcs_pg_pb2.PlacementGroupInfo) -> GcsCall[None]:
    """Create one group (refused with ALREADY_EXISTS if its name is taken)."""
    request = gcs_pg_pb2.CreatePlacementGroupRequest(spec=spec)
    return GcsCall("pg", "CreatePlacementGroup", request, lambda r: None)


def create_placement_groups(
    specs: list[gcs_pg_pb2.PlacementGroupInfo], wait_ms: int
) -> GcsCall[gcs_pg_pb2.CreatePlacementGroupsReply]:
    """Create a batch of groups; the reply (their states, in order) comes once every one is
    created or removed, or after ``wait_ms``."""
    request = gcs_pg_pb2.CreatePlacementGroupsRequest(specs=specs, wait_ms=wait_ms)
    return GcsCall("pg", "CreatePlacementGroups", request, lambda r: r)


def remove_placement_groups(pg_ids: list[bytes]) -> GcsCall[None]:
    request = gcs_pg_pb2.RemovePlacementGroupsRequest(placement_group_ids=pg_ids)
    return GcsCall("pg", "RemovePlacementGroups", request, lambda r: None)


def get_placement_group(
    pg_id: bytes, name: str, namespace: str
) -> GcsCall[gcs_pg_pb2.PlacementGroupInfo | None]:
    request = gcs_pg_pb2.GetPlacementGroupRequest(
        placement_group_id=pg_id, name=name, ray_namespace=namespace
    )
    return GcsCall("pg", "GetPlacementGroup", request, lambda r: r.info if r.found else None)


def get_all_placement_groups() -> GcsCall[list[gcs_pg_pb2.PlacementGroupInfo]]:
    request = gcs_pg_pb2.GetAllPlacementGroupRequest()
    return GcsCall("pg", "GetAllPlacementGroup", request, lambda r: list(r.groups))


def wait_placement_group(
    pg_id: bytes, timeout_ms: int
) -> GcsCall[gcs_pg_pb2.WaitPlacementGroupReply]:
    request = gcs_pg_pb2.WaitPlacementGroupRequest(placement_group_id=pg_id, timeout_ms=timeout_ms)
    return GcsCall("pg", "WaitPlacementGroupUntilReady", request, lambda r: r)
