"""The GCS's numbers for monitoring: gRPC handling time, and MetricsGcsService.

`LatencyInterceptor` times every unary call the GCS serves (after the token check, so refused
calls are not counted) into a per-method histogram. `cluster_snapshot` counts the tables
(no I/O); `MetricsService` serves it to the head's agent (rayops/agent), which turns it into
Prometheus metrics. Nothing here knows Prometheus.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import grpc.aio

from rayops.gcs.codec import cluster_snapshot_to_proto
from rayops.protocol import gcs_metrics_pb2, gcs_metrics_pb2_grpc
from rayops.protocol.node_snapshot import GRPC_LATENCY_BOUNDS_MS, ClusterSnapshot, LatencyRecorder

__all__ = ["LatencyInterceptor", "MetricsService", "cluster_snapshot"]


class LatencyInterceptor(grpc.aio.ServerInterceptor):
    """Records each unary-unary call's handling time (ms) under its method name (streams,
    such as the event spine's subscriptions, are not timed)."""

    def __init__(self) -> None:
        self.recorder = LatencyRecorder(GRPC_LATENCY_BOUNDS_MS)

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        method = handler_call_details.method.rsplit("/", 1)[-1]  # type: ignore[attr-defined]
        recorder = self.recorder

        async def timed(request: Any, context: grpc.aio.ServicerContext) -> Any:
            start = time.perf_counter()
            try:
                return await inner(request, context)
            finally:
                recorder.observe(method, (time.perf_counter() - start) * 1000.0)

        return grpc.unary_unary_rpc_method_handler(
            timed,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )


def cluster_snapshot(
    state: Any, grpc_latency: LatencyRecorder, placement: LatencyRecorder, pid: int
) -> ClusterSnapshot:
    """Count nodes, actors and jobs of the GCS's tables (`state` is a GcsState)."""
    nodes: Counter[tuple[str, str]] = Counter(
        ("head" if n.is_head_node else "worker", str(n.state)) for n in state.nodes.all_nodes()
    )
    actors: Counter[tuple[str, str]] = Counter(
        (str(a.state), a.class_name) for a in state.actors.all()
    )
    jobs = state.jobs.all_jobs()
    finished = sum(1 for j in jobs if j.is_dead)
    return ClusterSnapshot(
        gcs_pid=pid,
        nodes=dict(nodes),
        actors=dict(actors),
        running_jobs=len(jobs) - finished,
        finished_jobs=finished,
        grpc_latency_ms=grpc_latency.snapshot(),
        placement_time_s=placement.snapshot(),
    )


class MetricsService(gcs_metrics_pb2_grpc.MetricsGcsServiceServicer):
    """MetricsGcsService over the GCS's tables and latency recorders."""

    def __init__(self, state: Any, grpc_latency: LatencyRecorder, placement: LatencyRecorder):
        self._state = state
        self._grpc_latency = grpc_latency
        self._placement = placement

    async def GetClusterMetrics(
        self, request: gcs_metrics_pb2.GetClusterMetricsRequest, context: grpc.aio.ServicerContext
    ) -> gcs_metrics_pb2.GetClusterMetricsReply:
        snap = cluster_snapshot(self._state, self._grpc_latency, self._placement, os.getpid())
        return cluster_snapshot_to_proto(snap)
