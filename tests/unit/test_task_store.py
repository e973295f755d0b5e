"""The GCS's task-event store as tables: batches of rows in, merged attempts out."""

from __future__ import annotations

from array import array

import pytest

from rayops.gcs.task_store import TaskEventStore, TaskQuery
from rayops.protocol.state_messages import (
    N_STATES,
    TASK_ID_LEN,
    TASK_STATES,
    TIME_UNSET,
    ReportTaskEvents,
    TaskDescriptor,
    TaskError,
    pack_times,
)

S = {name: i for i, name in enumerate(TASK_STATES)}


def batch(
    records: list[tuple[bytes, int, dict[str, int], int]],
    *,
    executor: bool = False,
    descs: tuple[TaskDescriptor, ...] = (),
    errors: tuple[TaskError, ...] = (),
    dropped: int = 0,
    job_id: int = 1,
) -> ReportTaskEvents:
    """records: (task id, attempt, {state name: time}, descriptor index): one row each,
    its state the latest of those it entered."""
    ids: list[bytes] = []
    attempts: list[int] = []
    states = bytearray()
    times: list[int] = []
    desc: list[int] = []
    for tid, att, ts, d in records:
        ids.append(tid.ljust(TASK_ID_LEN, b"\0"))  # ids are 16 bytes; these read short
        attempts.append(att)
        states.append(max(S[name] for name in ts))
        slots = [TIME_UNSET] * N_STATES
        for name, t in ts.items():
            slots[S[name]] = t
        times.extend(slots)
        desc.append(d)
    return ReportTaskEvents(
        task_ids=b"".join(ids),
        attempts=attempts,
        states=bytes(states),
        times_ns=pack_times(array("q", times)),
        descriptor=desc,
        descriptors=descs,
        errors=errors,
        executor=executor,
        node_id="node-a" if executor else "",
        worker_id=b"w1" if executor else b"",
        worker_pid=42 if executor else 0,
        job_id=job_id,
        dropped=dropped,
    )


F = TaskDescriptor("f", "f", "NORMAL_TASK", 1, b"", b"parent", {"CPU": 1.0})
G = TaskDescriptor("g", "g", "NORMAL_TASK", 2)

OWNER = {"PENDING_NODE_ASSIGNMENT": 10, "SUBMITTED_TO_WORKER": 20, "FINISHED": 40}
EXEC = {"RUNNING": 30}


@pytest.mark.parametrize(
    ("batches", "state", "times"),
    [
        # owner then executor, and executor then owner: the same record
        ([("o", OWNER), ("e", EXEC)], "FINISHED", {"RUNNING": 30, "FINISHED": 40}),
        ([("e", EXEC), ("o", OWNER)], "FINISHED", {"RUNNING": 30, "FINISHED": 40}),
        # only running so far
        ([("e", EXEC)], "RUNNING", {"RUNNING": 30}),
        # a failure seen anywhere wins over FINISHED
        ([("o", OWNER), ("e", {"FAILED": 35})], "FAILED", {"FAILED": 35, "FINISHED": 40}),
        # the first time of a state is kept
        ([("o", {"SUBMITTED_TO_WORKER": 20}), ("o", {"SUBMITTED_TO_WORKER": 15})],
         "SUBMITTED_TO_WORKER", {"SUBMITTED_TO_WORKER": 15}),
    ],
)  # fmt: skip
def test_records_of_one_attempt_merge_in_any_order(
    batches: list[tuple[str, dict[str, int]]], state: str, times: dict[str, int]
) -> None:
    store = TaskEventStore()
    for side, ts in batches:
        if side == "e":
            store.add(batch([(b"t1", 0, ts, -1)], executor=True))
        else:
            store.add(batch([(b"t1", 0, ts, 0)], descs=(F,)))
    [rec], total = store.query(TaskQuery())
    assert total == 1
    assert rec.state_name == state
    for name, t in times.items():
        assert rec.times_ns[S[name]] == t
    if any(side == "e" for side, _ in batches):
        assert (rec.node_id, rec.worker_id, rec.worker_pid) == ("node-a", b"w1", 42)
    if any(side == "o" for side, _ in batches):
        assert rec.desc == F and rec.job_id == 1


def test_attempts_are_separate_records_and_errors_attach() -> None:
    store = TaskEventStore()
    store.add(
        batch(
            [(b"t1", 0, {"FAILED": 5}, -1), (b"t1", 1, {"RUNNING": 6}, -1)],
            executor=True,
            errors=(TaskError(0, "TASK_EXECUTION_EXCEPTION", "ValueError: boom"),),
        )
    )
    recs, total = store.query(TaskQuery(task_id=b"t1".ljust(TASK_ID_LEN, b"\0")))
    assert total == 2
    by_attempt = {r.attempt: r for r in recs}
    assert by_attempt[0].state_name == "FAILED"
    assert by_attempt[0].error_type == "TASK_EXECUTION_EXCEPTION"
    assert by_attempt[0].error_message == "ValueError: boom"
    assert by_attempt[1].state_name == "RUNNING" and by_attempt[1].error_type == ""


def test_eviction_takes_the_oldest_ended_attempt_first_and_counts_it() -> None:
    store = TaskEventStore(max_tasks=3)
    store.add(batch([(b"a", 0, {"RUNNING": 1}, -1)], executor=True))  # never ends
    store.add(batch([(b"b", 0, {"FINISHED": 2}, 0)], descs=(F,)))
    store.add(batch([(b"c", 0, {"FINISHED": 3}, 0)], descs=(G,)))
    store.add(batch([(b"d", 0, {"RUNNING": 4}, -1)], executor=True))
    ids = {r.task_id.rstrip(b"\0") for r in store.query(TaskQuery())[0]}
    assert ids == {b"a", b"c", b"d"}  # b ended first, so it went first
    assert store.num_evicted == 1 and store.evicted_by_job == {1: 1}
    store.add(batch([(b"e", 0, {"RUNNING": 5}, -1)], executor=True))
    assert {r.task_id.rstrip(b"\0") for r in store.query(TaskQuery())[0]} == {b"a", b"d", b"e"}
    # none ended: the oldest goes
    store.add(batch([(b"f", 0, {"RUNNING": 6}, -1)], executor=True))
    assert {r.task_id.rstrip(b"\0") for r in store.query(TaskQuery())[0]} == {b"d", b"e", b"f"}
    assert store.num_evicted == 3


def test_drops_are_counted_per_job() -> None:
    store = TaskEventStore()
    store.add(batch([], dropped=5, job_id=1))
    store.add(batch([], dropped=2, job_id=2))
    store.count_dropped({1: 1})
    assert store.dropped_by_job == {1: 6, 2: 2}
    assert store.num_dropped == 8


def test_query_is_newest_first_filters_by_job_and_limits_with_a_total() -> None:
    store = TaskEventStore()
    for i in range(5):
        desc = F if i % 2 == 0 else G
        store.add(batch([(bytes([i]), 0, {"FINISHED": i + 1}, 0)], descs=(desc,)))
    recs, total = store.query(TaskQuery(limit=2))
    assert total == 5 and [r.task_id.rstrip(b"\0") for r in recs] == [b"\x04", b"\x03"]
    recs, total = store.query(TaskQuery(job_id=2))
    assert total == 2 and {r.task_id.rstrip(b"\0") for r in recs} == {b"\x01", b"\x03"}
    assert store.query(TaskQuery(task_id=b"\x09".ljust(TASK_ID_LEN, b"\0")))[1] == 0


def test_max_tasks_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_tasks"):
        TaskEventStore(max_tasks=0)


ROW = pack_times(array("q", [1] * N_STATES))


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        (ReportTaskEvents(b"short", [0], bytes([1]), ROW, [-1]), "5 bytes of task ids for 1 rows"),
        (ReportTaskEvents(b"t" * 16, [0], bytes([1]), ROW[:8], [-1]), "8 bytes of times for 1"),
        (ReportTaskEvents(b"t" * 16, [], bytes([1]), ROW, [-1]), "0 attempts and 1 descriptor"),
    ],
)
def test_a_batch_whose_columns_do_not_match_its_rows_is_refused(
    bad: ReportTaskEvents, message: str
) -> None:
    store = TaskEventStore()
    with pytest.raises(ValueError, match=message):
        store.add(bad)
    assert len(store) == 0


def test_two_rows_of_one_attempt_in_one_batch_merge() -> None:
    store = TaskEventStore()
    store.add(
        batch([(b"t1", 0, {"RUNNING": 30, "FAILED": 50}, -1), (b"t1", 0, {"RUNNING": 25}, -1)])
    )
    [rec], _ = store.query(TaskQuery())
    assert rec.state_name == "FAILED" and rec.ended
    assert rec.times_ns[S["RUNNING"]] == 25 and rec.times_ns[S["FAILED"]] == 50
    assert rec.times_ns[S["FINISHED"]] == 0  # never entered


def test_one_batch_past_the_bound_evicts_what_ended_first_then_the_oldest() -> None:
    store = TaskEventStore(max_tasks=3)
    store.add(batch([(b"r", 0, {"RUNNING": 1}, -1)], executor=True))
    store.add(batch([(bytes([i]), 0, {"FINISHED": i + 2}, 0) for i in range(4)], descs=(F,)))
    ids = {r.task_id.rstrip(b"\0") for r in store.query(TaskQuery())[0]}
    assert ids == {b"r", b"\x02", b"\x03"} and store.evicted_by_job == {1: 2}
    store.add(batch([(b"s", 0, {"RUNNING": 9}, -1), (b"t", 0, {"RUNNING": 9}, -1)]))
    ids = {r.task_id.rstrip(b"\0") for r in store.query(TaskQuery())[0]}
    assert ids == {b"r", b"s", b"t"} and store.num_evicted == 4  # ended ones first
    store.add(batch([(b"u", 0, {"RUNNING": 9}, -1)]))  # none ended: the oldest, r
    assert {r.task_id.rstrip(b"\0") for r in store.query(TaskQuery())[0]} == {b"s", b"t", b"u"}
