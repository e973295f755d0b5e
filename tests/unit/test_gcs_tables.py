"""The GCS's decision logic without processes: node table, job table, KV store, codec."""

from __future__ import annotations

import dataclasses

import pytest

from rayops.gcs.codec import job_from_proto, job_to_proto, node_from_proto, node_to_proto
from rayops.gcs.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from rayops.gcs.job_table import JobTable
from rayops.gcs.kv_store import KVStore
from rayops.gcs.node_table import NodeTable
from rayops.gcs.types import (
    JobInfo,
    NodeInfo,
    NodeState,
    ObjectStoreStats,
    UsageReportOutcome,
)


class FakeClock:
    """Milliseconds that move only when a test moves them."""

    def __init__(self, start_ms: int = 1_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms


def _node(node_id: str = "aa01", **changes: object) -> NodeInfo:
    base = NodeInfo(
        node_id=node_id,
        node_ip="127.0.0.1",
        raylet_port=7000,
        resources_total={"CPU": 4.0},
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# Node table.


def test_register_sets_alive_start_time_and_available_from_total() -> None:
    clock = FakeClock(5_000)
    table = NodeTable(clock)
    stored = table.register(_node())
    assert stored.state is NodeState.ALIVE
    assert stored.state == "ALIVE"
    assert stored.start_time_ms == 5_000
    assert stored.end_time_ms == 0
    assert stored.resources_available == {"CPU": 4.0}


def test_reregistering_an_alive_node_replaces_info_and_keeps_start_time() -> None:
    clock = FakeClock(5_000)
    table = NodeTable(clock)
    table.register(_node())
    clock.now_ms = 9_000
    again = table.register(_node(raylet_port=7001))
    assert again.raylet_port == 7001
    assert again.start_time_ms == 5_000
    assert len(table) == 1


def test_unregister_marks_dead_once_with_the_first_reason() -> None:
    clock = FakeClock(5_000)
    table = NodeTable(clock)
    table.register(_node())
    clock.now_ms = 6_000
    assert table.unregister("aa01", "raylet stopped")
    clock.now_ms = 7_000
    assert table.unregister("aa01", "second reason")
    dead = table.get("aa01")
    assert dead is not None
    assert (dead.state, dead.death_reason, dead.end_time_ms) == (
        NodeState.DEAD,
        "raylet stopped",
        6_000,
    )
    assert not table.unregister("ffff", "never registered")


def test_a_dead_node_id_cannot_come_back() -> None:
    table = NodeTable(FakeClock())
    table.register(_node())
    table.unregister("aa01", "killed")
    with pytest.raises(FailedPrecondition, match="aa01 is DEAD"):
        table.register(_node())


@pytest.mark.parametrize(
    ("node", "message"),
    [
        (_node(node_id="AA01"), "lowercase hex"),
        (_node(node_id=""), "lowercase hex"),
        (_node(node_id="zz"), "lowercase hex"),
        (_node(node_ip=""), "node_ip"),
        (_node(raylet_port=0), "raylet_port"),
        (_node(resources_total={"CPU": -1.0}), "CPU"),
        (_node(resources_total={"CPU": float("nan")}), "CPU"),
    ],
)
def test_register_refuses_malformed_nodes(node: NodeInfo, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        NodeTable(FakeClock()).register(node)


def test_usage_reports_update_alive_nodes_only() -> None:
    clock = FakeClock(5_000)
    table = NodeTable(clock)
    table.register(_node())
    clock.now_ms = 6_000
    stats = ObjectStoreStats(used_bytes=10, capacity_bytes=100, spilled_bytes=1)
    outcome = table.report_usage("aa01", {"CPU": 4.0}, {"CPU": 1.5}, stats)
    assert outcome == UsageReportOutcome(accepted=True, state=NodeState.ALIVE)
    node = table.get("aa01")
    assert node is not None
    assert node.resources_available == {"CPU": 1.5}
    assert node.object_store_stats == stats
    assert node.last_report_time_ms == 6_000

    assert table.report_usage("bb02", {}, {}, stats) == UsageReportOutcome(False, None)
    table.unregister("aa01", "gone")
    assert table.report_usage("aa01", {}, {}, stats) == UsageReportOutcome(False, NodeState.DEAD)


def test_all_nodes_in_registration_order_and_alive_filter() -> None:
    table = NodeTable(FakeClock())
    for node_id in ("cc", "aa", "bb"):
        table.register(_node(node_id))
    table.unregister("aa", "gone")
    assert [n.node_id for n in table.all_nodes()] == ["cc", "aa", "bb"]
    assert [n.node_id for n in table.all_nodes(alive_only=True)] == ["cc", "bb"]


def test_oldest_dead_nodes_are_forgotten_past_the_cap() -> None:
    table = NodeTable(FakeClock(), max_dead_nodes=2)
    for node_id in ("01", "02", "03", "04"):
        table.register(_node(node_id))
    for node_id in ("01", "02", "03"):
        table.unregister(node_id, "gone")
    assert [n.node_id for n in table.all_nodes()] == ["02", "03", "04"]


def test_node_info_copies_mappings() -> None:
    resources = {"CPU": 1.0}
    node = _node(resources_total=resources)
    resources["CPU"] = 99.0
    assert node.resources_total == {"CPU": 1.0}


# Job table.


def test_job_ids_are_monotonic_and_never_reused() -> None:
    table = JobTable(FakeClock())
    assert [table.next_job_id() for _ in range(3)] == [1, 2, 3]
    table.add(JobInfo(job_id=10, driver_pid=1, driver_ip="127.0.0.1"))
    assert table.next_job_id() == 11


def test_add_and_finish_jobs() -> None:
    clock = FakeClock(5_000)
    table = JobTable(clock)
    job_id = table.next_job_id()
    stored = table.add(JobInfo(job_id, 42, "127.0.0.1", "ns", "python train.py"))
    assert (stored.start_time_ms, stored.is_dead, stored.job_id_hex) == (5_000, False, "01000000")
    with pytest.raises(AlreadyExists, match="01000000"):
        table.add(JobInfo(job_id, 43, "127.0.0.1"))
    clock.now_ms = 8_000
    assert table.mark_finished(job_id)
    clock.now_ms = 9_000
    assert table.mark_finished(job_id)
    finished = table.get(job_id)
    assert finished is not None
    assert (finished.is_dead, finished.end_time_ms) == (True, 8_000)
    assert not table.mark_finished(999)


def test_add_refuses_out_of_range_job_ids() -> None:
    table = JobTable(FakeClock())
    for bad in (0, 2**32):
        with pytest.raises(InvalidArgument, match="job id"):
            table.add(JobInfo(bad, 1, "127.0.0.1"))


def test_all_jobs_in_id_order() -> None:
    table = JobTable(FakeClock())
    for job_id in (3, 1, 2):
        table.add(JobInfo(job_id, job_id, "127.0.0.1"))
    assert [j.job_id for j in table.all_jobs()] == [1, 2, 3]


# KV store.


def test_kv_put_reports_new_keys_and_respects_overwrite() -> None:
    kv = KVStore()
    assert kv.put("", b"k", b"1", overwrite=True)
    assert not kv.put("", b"k", b"2", overwrite=False)
    assert kv.get("", b"k") == b"1"
    assert not kv.put("", b"k", b"3", overwrite=True)
    assert kv.get("", b"k") == b"3"


def test_kv_namespaces_are_separate() -> None:
    kv = KVStore()
    kv.put("a", b"k", b"in-a", overwrite=True)
    assert kv.get("b", b"k") is None
    assert not kv.exists("b", b"k")
    assert kv.exists("a", b"k")


def test_kv_multi_get_keys_and_delete_by_prefix() -> None:
    kv = KVStore()
    for key in (b"fn:2", b"fn:1", b"pkg:1"):
        kv.put("", key, key.upper(), overwrite=True)
    found = kv.multi_get("", [b"pkg:1", b"missing", b"fn:1"])
    assert found == {b"pkg:1": b"PKG:1", b"fn:1": b"FN:1"}
    assert kv.keys("", b"fn:") == [b"fn:1", b"fn:2"]
    assert kv.keys("", b"") == [b"fn:1", b"fn:2", b"pkg:1"]
    assert kv.delete("", b"fn:", by_prefix=True) == 2
    assert kv.delete("", b"pkg:1") == 1
    assert kv.delete("", b"pkg:1") == 0
    assert kv.keys("", b"") == []


def test_kv_refuses_empty_keys() -> None:
    kv = KVStore()
    with pytest.raises(InvalidArgument, match="non-empty"):
        kv.put("", b"", b"v", overwrite=True)
    with pytest.raises(InvalidArgument, match="non-empty"):
        kv.get("", b"")


# Codec.


def test_node_round_trips_through_the_protocol() -> None:
    node = NodeInfo(
        node_id="ab" * 28,
        node_ip="10.1.2.3",
        raylet_port=7000,
        node_name="host-1",
        object_store_dir="/dev/shm/x",
        session_dir="/tmp/s",
        resources_total={"CPU": 8.0, "GPU": 1.0},
        resources_available={"CPU": 2.5},
        labels={"zone": "a"},
        state=NodeState.DEAD,
        death_reason="killed",
        start_time_ms=1,
        end_time_ms=2,
        is_head_node=True,
        rayops_version="0.1.0",
        object_store_stats=ObjectStoreStats(1, 2, 3),
        last_report_time_ms=4,
    )
    assert node_from_proto(node_to_proto(node)) == node


def test_job_round_trips_through_the_protocol() -> None:
    job = JobInfo(7, 123, "10.0.0.1", "ns", "python x.py", 5, 6, True)
    msg = job_to_proto(job)
    assert msg.job_id_hex == "07000000"
    assert job_from_proto(msg) == job
