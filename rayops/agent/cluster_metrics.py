"""Cluster metrics, exported by the head's agent only: the GCS's counts of nodes, actors and
jobs, and its latency histograms, as Prometheus families with Ray's names.

Pure: `cluster_families` turns a `ClusterSnapshot` (read from the GCS by `node_agent`) into
metric families. Nothing here does I/O.
"""

from __future__ import annotations

from prometheus_client.core import GaugeMetricFamily, Metric

from rayops.agent.node_metrics import BASE_LABELS, histogram_family
from rayops.protocol.node_snapshot import ClusterSnapshot

__all__ = ["ACTOR_STATES", "cluster_families", "gcs_reachable_family"]

# Every state is exported, with 0 when no actor is in it, so alerts on a state have data.
ACTOR_STATES = ("DEPENDENCIES_UNREADY", "PENDING_CREATION", "ALIVE", "RESTARTING", "DEAD")


def cluster_families(snap: ClusterSnapshot, base: tuple[str, str]) -> list[Metric]:
    b = list(BASE_LABELS)
    out: list[Metric] = []
    active = GaugeMetricFamily(
        "ray_cluster_active_nodes", "Alive nodes of the cluster", labels=[*b, "node_type"]
    )
    failed = GaugeMetricFamily(
        "ray_cluster_failed_nodes",
        "Dead nodes the GCS still remembers",
        labels=[*b, "node_type"],
    )
    for node_type in ("head", "worker"):
        active.add_metric([*base, node_type], snap.nodes.get((node_type, "ALIVE"), 0))
        failed.add_metric([*base, node_type], snap.nodes.get((node_type, "DEAD"), 0))
    out += [active, failed]
    actors = GaugeMetricFamily(
        "ray_actors", "Actors by state and class", labels=[*b, "State", "Name", "Source"]
    )
    classes = sorted({name for _, name in snap.actors})
    for name in classes:
        for state in ACTOR_STATES:
            actors.add_metric([*base, state, name, "gcs"], snap.actors.get((state, name), 0))
    if not classes:
        for state in ACTOR_STATES:
            actors.add_metric([*base, state, "", "gcs"], 0)
    out.append(actors)
    running = GaugeMetricFamily("ray_running_jobs", "Jobs whose driver is running", labels=b)
    running.add_metric(list(base), snap.running_jobs)
    finished = GaugeMetricFamily("ray_finished_jobs", "Jobs that finished", labels=b)
    finished.add_metric(list(base), snap.finished_jobs)
    out += [running, finished]
    if snap.grpc_latency_ms:
        out.append(
            histogram_family(
                "ray_grpc_server_req_process_time_ms",
                "Time the GCS took to handle a gRPC request (ms)",
                [*b, "Method"],
                [([*base, k], h) for k, h in sorted(snap.grpc_latency_ms.items())],
            )
        )
    if snap.placement_time_s:
        out.append(
            histogram_family(
                "ray_scheduler_placement_time_s",
                "Time from an actor's registration to ALIVE (s)",
                [*b, "WorkloadType"],
                [([*base, k], h) for k, h in sorted(snap.placement_time_s.items())],
            )
        )
    return out


def gcs_reachable_family(reachable: bool, base: tuple[str, str]) -> Metric:
    """``ray_gcs_reachable`` (rayops only): 1 while the head's agent gets answers from the GCS:
    its stream of the GCS's node table (the event spine) is connected and the GCS answered
    (a batch on that stream, or the cluster-metrics read every 2 s) in the last few seconds.

    Exported from the head's agent rather than the GCS, so it still reads 0 when the GCS is
    down or hung (a hung GCS keeps the stream's connection open, hence the answer too); the
    cluster families above keep their last known values meanwhile."""
    fam = GaugeMetricFamily(
        "ray_gcs_reachable",
        "1 if the head agent's node stream from the GCS is connected and the GCS answered "
        "it in the last few seconds, else 0",
        labels=list(BASE_LABELS),
    )
    fam.add_metric(list(base), 1.0 if reachable else 0.0)
    return fam
