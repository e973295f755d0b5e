"""Metric families built from snapshots (rayops/agent/node_metrics.py, cluster_metrics.py):
Ray's names and labels, with no processes involved."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from rayops.agent.cluster_metrics import cluster_families, gcs_reachable_family
from rayops.agent.families import SnapshotCollector
from rayops.agent.node_metrics import ComponentUsage, NodeFacts, node_families
from rayops.protocol.node_snapshot import (
    ClusterSnapshot,
    LatencyRecorder,
    ProcessRef,
    RayletSnapshot,
)

BASE = ("session_test", "10.1.2.3")


def _facts() -> NodeFacts:
    return NodeFacts(
        cpu_percent=12.5,
        cpu_count=4,
        mem_total=8 << 30,
        mem_available=6 << 30,
        mem_used=2 << 30,
        disk_total=100,
        disk_used=25,
        disk_free=75,
        net_sent=10,
        net_received=20,
        net_send_speed=1.0,
        net_receive_speed=2.0,
        components={
            "raylet": ComponentUsage(50 << 20, 3.0),
            "workers": ComponentUsage(300 << 20, 150.0),
        },
    )


def _snapshot() -> RayletSnapshot:
    rec = LatencyRecorder((0.001, 0.01, 0.1))
    rec.observe("Task", 0.0005)
    rec.observe("Task", 0.05)
    rec.observe("Task", 5.0)
    return RayletSnapshot(
        node_id="ab" * 28,
        session_name="session_test",
        is_head=False,
        processes=(ProcessRef("raylet", 1),),
        workers={"STARTING": 1, "IDLE": 2, "LEASED": 3},
        resources_total={"CPU": 4.0, "memory": 1000.0, "node:10.1.2.3": 1.0},
        resources_available={"CPU": 1.0, "memory": 1000.0, "node:10.1.2.3": 1.0},
        leases_executing=3,
        leases_waiting=2,
        leases_infeasible=1,
        store_capacity=1000,
        store_used_bytes=400,
        store_num_objects=7,
        store_spilled_bytes=300,
        store_fallback_bytes=50,
        store_spilled_count=9,
        store_restored_count=4,
        placement_time_s=rec.snapshot(),
        agent_restarts=2,
        memory_kills={"task": 3, "actor": 1},
    )


def _scrape(build: object) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(build))  # type: ignore[arg-type]
    text = generate_latest(registry).decode()
    out: dict[str, list[tuple[str, dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((s.name, dict(s.labels), s.value))
    return out


def _value(samples: dict, name: str, **labels: str) -> float:
    hits = [v for _, lab, v in samples[name] if all(lab.get(k) == x for k, x in labels.items())]
    assert len(hits) == 1, (name, labels, samples.get(name))
    return float(hits[0])


def test_node_families_use_rays_names_and_labels() -> None:
    got = _scrape(lambda: node_families(_facts(), _snapshot(), BASE, is_head=False))
    for name, samples in got.items():
        for _, labels, _ in samples:
            assert labels["SessionName"] == "session_test", name
            assert labels["NodeAddress"] == "10.1.2.3", name
    cpu = got["ray_node_cpu_utilization"][0][1]
    assert cpu["ip"] == "10.1.2.3" and cpu["RayNodeType"] == "worker"
    assert _value(got, "ray_node_cpu_utilization") == 12.5
    assert _value(got, "ray_node_mem_total") == 8 << 30
    assert _value(got, "ray_node_disk_utilization_percentage") == 25.0
    assert _value(got, "ray_object_store_memory", Location="MMAP_SHM") == 400
    assert _value(got, "ray_object_store_memory", Location="SPILLED") == 300
    assert _value(got, "ray_object_store_available_memory") == 600
    assert _value(got, "ray_spill_manager_request_total", Type="Spilled") == 9
    assert _value(got, "ray_spill_manager_request_total", Type="Restored") == 4
    assert _value(got, "ray_resources", Name="CPU", State="USED") == 3.0
    assert _value(got, "ray_resources", Name="CPU", State="AVAILABLE") == 1.0
    assert not [s for s in got["ray_resources"] if s[1]["Name"].startswith("node:")]
    assert _value(got, "ray_workers", State="LEASED") == 3
    assert _value(got, "ray_scheduler_tasks", State="Infeasible") == 1
    assert _value(got, "ray_scheduler_unscheduleable_tasks", Reason="Infeasible") == 1
    assert _value(got, "ray_component_rss_mb", Component="workers") == 300.0
    assert _value(got, "ray_component_cpu_percentage", Component="raylet") == 3.0
    assert _value(got, "ray_agent_restarts_total") == 2
    kills = {
        labels["Type"]: value
        for name, labels, value in got["ray_memory_manager_worker_eviction_total"]
    }
    assert kills == {"MemoryManager.TaskEviction.Total": 3, "MemoryManager.ActorEviction.Total": 1}


def test_placement_histogram_is_cumulative() -> None:
    got = _scrape(lambda: node_families(None, _snapshot(), BASE, is_head=False))
    buckets = {
        lab["le"]: v
        for _, lab, v in got["ray_scheduler_placement_time_s_bucket"]
        if lab["WorkloadType"] == "Task"
    }
    assert buckets == {"0.001": 1.0, "0.01": 1.0, "0.1": 2.0, "+Inf": 3.0}
    assert _value(got, "ray_scheduler_placement_time_s_count", WorkloadType="Task") == 3
    total = _value(got, "ray_scheduler_placement_time_s_sum", WorkloadType="Task")
    assert abs(total - 5.0505) < 1e-9


def test_nothing_sampled_yet_still_scrapes() -> None:
    got = _scrape(lambda: node_families(None, None, BASE, is_head=True))
    assert _value(got, "ray_agent_refused_scrapes_total") == 0


def _cluster() -> ClusterSnapshot:
    grpc = LatencyRecorder((1.0, 10.0))
    grpc.observe("GetAllNodeInfo", 0.5)
    actor = LatencyRecorder((0.1, 1.0))
    actor.observe("Actor", 0.2)
    return ClusterSnapshot(
        gcs_pid=1,
        nodes={("head", "ALIVE"): 1, ("worker", "ALIVE"): 2, ("worker", "DEAD"): 1},
        actors={("ALIVE", "Counter"): 1000, ("DEAD", "Counter"): 3, ("RESTARTING", "Other"): 1},
        running_jobs=1,
        finished_jobs=4,
        grpc_latency_ms=grpc.snapshot(),
        placement_time_s=actor.snapshot(),
    )


def test_cluster_families() -> None:
    got = _scrape(lambda: cluster_families(_cluster(), BASE))
    assert _value(got, "ray_cluster_active_nodes", node_type="worker") == 2
    assert _value(got, "ray_cluster_failed_nodes", node_type="worker") == 1
    assert _value(got, "ray_actors", State="ALIVE", Name="Counter", Source="gcs") == 1000
    assert _value(got, "ray_actors", State="ALIVE", Name="Other") == 0
    assert _value(got, "ray_running_jobs") == 1
    assert _value(got, "ray_finished_jobs") == 4
    assert _value(got, "ray_grpc_server_req_process_time_ms_count", Method="GetAllNodeInfo") == 1


def test_head_merges_placement_histograms_into_one_family() -> None:
    def build() -> list:
        return [
            *node_families(None, _snapshot(), BASE, is_head=True),
            *cluster_families(_cluster(), BASE),
        ]

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(build))
    text = generate_latest(registry).decode()
    assert text.count("# TYPE ray_scheduler_placement_time_s histogram") == 1
    got = _scrape(build)
    kinds = {lab["WorkloadType"] for _, lab, _ in got["ray_scheduler_placement_time_s_count"]}
    assert kinds == {"Task", "Actor"}


def test_gcs_reachable_is_one_or_zero_with_the_base_labels() -> None:
    for reachable, value in ((True, 1.0), (False, 0.0)):
        fam = gcs_reachable_family(reachable, BASE)
        assert fam.name == "ray_gcs_reachable"
        [sample] = fam.samples
        assert sample.value == value
        assert sample.labels == {"SessionName": BASE[0], "NodeAddress": BASE[1]}
