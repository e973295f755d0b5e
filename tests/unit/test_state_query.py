"""The state API's decisions as tables: query options, filters, truncation, summaries,
the timeline."""

from __future__ import annotations

from typing import Any

import pytest

from rayops.dashboard import state_query as q
from rayops.dashboard.state_schema import RESOURCES, resource

TASKS = RESOURCES["tasks"]


def task(i: int, **kw: Any) -> dict[str, Any]:
    row = {
        "task_id": f"{i:032x}", "attempt_number": 0, "name": "f", "state": "FINISHED",
        "job_id": "01000000", "actor_id": None, "type": "NORMAL_TASK",
        "func_or_class_name": "f", "parent_task_id": None, "node_id": "n1",
        "worker_id": "w1", "worker_pid": 100 + i, "error_type": None,
        "start_time_ms": 1000 + i, "end_time_ms": 1010 + i, "required_resources": {},
    }  # fmt: skip
    row.update(kw)
    return row


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ({"limit": "0"}, "limit must be at least 1"),
        ({"limit": "x"}, "limit must be an integer"),
        ({"limit": "10001"}, "exceeds the supported limit 10000"),
        ({"detail": "maybe"}, "detail must be true or false"),
        ({"timeout": "-1"}, "timeout must be at least 1"),
        ({"bogus": "1"}, "unknown query parameter 'bogus'"),
    ],
)
def test_bad_query_parameters_are_refused_naming_them(query: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        q.ListOptions.from_query(query)


def test_query_parameters_round_trip() -> None:
    opts = q.ListOptions(limit=5, timeout=7, detail=True, filters=(("state", "!=", "FAILED"),))
    pairs = opts.to_query()
    multi: dict[str, list[str]] = {}
    for k, v in pairs:
        multi.setdefault(k, []).append(v)
    back = q.ListOptions.from_query(
        {k: v[0] for k, v in multi.items()}, lambda k, default: multi.get(k, default)
    )
    assert back == opts


def test_filters_need_keys_predicates_and_values_in_step() -> None:
    multi = {"filter_keys": ["state"], "filter_predicates": [], "filter_values": ["x"]}
    with pytest.raises(ValueError, match="same number of times"):
        q.ListOptions.from_query({"filter_keys": "state"}, lambda k, d: multi.get(k, d))


@pytest.mark.parametrize(
    ("filters", "message"),
    [
        ((("bogus", "=", "1"),), "filter key 'bogus' is not supported for tasks"),
        ((("state", "~", "x"),), "filter predicate '~' is not supported"),
        ((("worker_pid", "=", "abc"),), "needs an integer value"),
        ((("required_resources", "=", "x"),), "'required_resources' is not supported"),
    ],
)
def test_unknown_filters_are_refused_naming_them(filters: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        q.apply(TASKS, [task(1)], q.ListOptions(filters=filters))


@pytest.mark.parametrize(
    ("filters", "expected"),
    [
        ((), [1, 2, 3]),
        ((("state", "=", "failed"),), [2]),  # case-insensitive, as Ray's
        ((("state", "!=", "FAILED"),), [1, 3]),
        ((("worker_pid", "=", "103"),), [3]),  # converted to the column's type
        ((("STATE", "=", "FINISHED"), ("name", "=", "g")), [3]),  # AND; keys any case
    ],
)
def test_filters_select_rows(filters: Any, expected: list[int]) -> None:
    rows = [task(1), task(2, state="FAILED"), task(3, name="g")]
    listed = q.apply(TASKS, rows, q.ListOptions(filters=filters))
    assert [int(r["task_id"], 16) for r in listed.result] == expected
    assert listed.num_filtered == len(expected) and listed.total == 3


def test_limit_truncates_and_warns_and_detail_adds_columns() -> None:
    rows = [task(i) for i in range(5)]
    listed = q.apply(TASKS, rows, q.ListOptions(limit=2))
    assert len(listed.result) == 2 and listed.num_filtered == 5
    assert listed.warnings and "5 tasks match, 2 are returned" in listed.warnings[0]
    assert "start_time_ms" not in listed.result[0]
    detailed = q.apply(TASKS, rows, q.ListOptions(detail=True))
    assert detailed.result[0]["start_time_ms"] == 1000
    assert list(detailed.result[0])[:3] == ["task_id", "attempt_number", "name"]


def test_drivers_are_excluded_unless_asked() -> None:
    rows = [task(1), task(2, type="DRIVER_TASK")]
    assert len(q.apply(TASKS, rows, q.ListOptions()).result) == 1
    assert len(q.apply(TASKS, rows, q.ListOptions(exclude_driver=False)).result) == 2


def test_response_envelope_is_rays() -> None:
    listed = q.apply(TASKS, [task(1)], q.ListOptions())
    body = q.list_response(listed.to_json())
    assert body["result"] is True and body["msg"] == ""
    data = body["data"]["result"]
    assert set(data) == {
        "total", "num_after_truncation", "num_filtered", "result",
        "partial_failure_warning", "warnings",
    }  # fmt: skip


def test_summaries_have_rays_shapes() -> None:
    rows = [
        task(1),
        task(2, state="FAILED"),
        task(3, type="ACTOR_TASK", func_or_class_name="A.m"),
        task(4, type="ACTOR_CREATION_TASK", func_or_class_name="A"),
        task(5, type="DRIVER_TASK", func_or_class_name="driver"),
    ]
    s = q.summarize_tasks(rows)
    assert s["summary"]["f"] == {
        "func_or_class_name": "f",
        "type": "NORMAL_TASK",
        "state_counts": {"FINISHED": 1, "FAILED": 1},
    }
    assert (s["total_tasks"], s["total_actor_tasks"], s["total_actor_scheduled"]) == (2, 1, 1)
    assert "driver" not in s["summary"] and s["summary_by"] == "func_name"
    a = q.summarize_actors([{"class_name": "A", "state": "ALIVE"}] * 2)
    assert a == {
        "summary": {"A": {"class_name": "A", "state_counts": {"ALIVE": 2}}},
        "total_actors": 2,
        "summary_by": "class",
    }
    objs = [
        {"object_id": "o1", "object_size": 1024**2, "pid": 1, "ip": "a",
         "reference_type": "PINNED_IN_MEMORY", "task_status": "FINISHED"},
        {"object_id": "o1", "object_size": 1024**2, "pid": 2, "ip": "a",
         "reference_type": "LOCAL_REFERENCE", "task_status": "FINISHED"},
        {"object_id": "o2", "object_size": None, "pid": 2, "ip": "b",
         "reference_type": "LOCAL_REFERENCE", "task_status": "NIL"},
    ]  # fmt: skip
    o = q.summarize_objects(objs)
    g = o["summary"]["disabled"]
    assert (o["total_objects"], o["total_size_mb"]) == (2, 1.0)
    assert (g["total_objects"], g["total_num_workers"], g["total_num_nodes"]) == (2, 2, 2)
    assert g["ref_type_counts"] == {"PINNED_IN_MEMORY": 1, "LOCAL_REFERENCE": 2}


def test_timeline_is_chrome_trace_events() -> None:
    rows = [task(1), task(2, start_time_ms=None), task(3, node_id="n2")]
    events = q.timeline(rows)
    spans = [e for e in events if e["ph"] == "X"]
    assert len(spans) == 2  # the one that never ran has no span
    assert spans[0]["ts"] == 1001 * 1000 and spans[0]["dur"] == 10 * 1000
    assert spans[0]["tid"] == 101 and spans[0]["args"]["task_id"] == task(1)["task_id"]
    names = [e["args"]["name"] for e in events if e["ph"] == "M"]
    assert names == ["Node n1", "Node n2"]


def test_resource_names() -> None:
    assert resource("placement-groups").name == "placement_groups"
    with pytest.raises(ValueError, match="unknown resource 'bogus'"):
        resource("bogus")
