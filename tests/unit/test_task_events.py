"""Task events on the core worker's side: the bounded buffer, the owner's recording hook,
the batch as columns, and the settings."""

from __future__ import annotations

import pytest

from rayops.core_worker import task_manager as tm
from rayops.core_worker.task_events import (
    FAILED,
    FINISHED,
    PENDING_NODE_ASSIGNMENT,
    RUNNING,
    SUBMITTED_TO_WORKER,
    TaskEventBuffer,
    TaskEventReporter,
    TaskEventSettings,
)
from rayops.protocol.state_messages import TASK_STATES
from rayops.protocol.task_messages import TaskReply, TaskSpec

N = len(TASK_STATES)


class FakeCoreWorker:
    node_id = "node-a"
    worker_id = b"w" * 16
    job_id = 3
    raylet = None


def spec(i: int, **kw: object) -> TaskSpec:
    return TaskSpec(
        bytes([i]) * 16, 3, "f", b"fn", (), (), 1, (bytes([i]) * 20,), ("127.0.0.1", 1),
        {"CPU": 1.0}, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_full_buffer_drops_and_counts_without_blocking() -> None:
    buf = TaskEventBuffer(capacity=3)
    for i in range(5):
        buf.add((i,))
    items, dropped = buf.drain()
    assert items == [(0,), (1,), (2,)] and dropped == 2
    assert buf.drain() == ([], 0)  # the count restarts after each drain


def test_the_owner_records_each_move_once_with_what_the_task_is_first() -> None:
    rep = TaskEventReporter(FakeCoreWorker(), TaskEventSettings())  # type: ignore[arg-type]
    machine = tm.TaskManager(rep.owner_counts)
    s = spec(1)
    machine.submit(s, [], 0, False)
    machine.pushed(s.task_id)
    machine.reply(s, TaskReply("ok", [], [], ("127.0.0.1", 2), 0.0))
    items, _ = rep.buffer.drain()
    assert [i[1] for i in items] == [PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, FINISHED]
    assert items[0][3] is not None and all(i[3] is None for i in items[1:])
    batch = rep.merge(items)
    assert batch.task_ids == [s.task_id] and batch.attempts == [0]
    assert batch.executor == b"\x00"
    row = batch.times_ns[:N]
    assert [bool(t) for t in row] == [False, True, True, False, True, False]
    (desc,) = batch.descriptors
    assert (desc.name, desc.type, desc.job_id, desc.required_resources) == (
        "f", "NORMAL_TASK", 3, {"CPU": 1.0}
    )  # fmt: skip
    assert batch.descriptor == [0] and batch.job_id == 3


def test_a_retry_fails_the_attempt_before_and_starts_the_next() -> None:
    rep = TaskEventReporter(FakeCoreWorker(), TaskEventSettings())  # type: ignore[arg-type]
    machine = tm.TaskManager(rep.owner_counts)
    s = spec(2)
    machine.submit(s, [], 1, False)
    machine.pushed(s.task_id)
    machine.worker_died(s, ConnectionError("gone"))  # retried: attempt 1
    machine.worker_died(s._replace(attempt=1), ConnectionError("gone"))  # none left
    batch = rep.merge(rep.buffer.drain()[0])
    by_attempt = {a: batch.times_ns[i * N : (i + 1) * N] for i, a in enumerate(batch.attempts)}
    assert by_attempt[0][FAILED] and by_attempt[1][FAILED]
    assert [e.error_type for e in batch.errors] == ["WORKER_DIED"]
    assert batch.attempts[batch.errors[0].index] == 1


def test_executor_records_carry_the_process_and_the_error() -> None:
    rep = TaskEventReporter(FakeCoreWorker(), TaskEventSettings())  # type: ignore[arg-type]
    s = spec(3)
    rep.running(s, "")
    rep.ended(s, ValueError("boom"))
    rep.ended(spec(4), None)  # a plain success is the owner's to record: nothing here
    batch = rep.merge(rep.buffer.drain()[0])
    assert batch.task_ids == [s.task_id] and batch.executor == b"\x01"
    assert batch.times_ns[RUNNING] and batch.times_ns[FAILED]
    assert (batch.node_id, batch.worker_id) == ("node-a", b"w" * 16)
    (err,) = batch.errors
    assert (err.index, err.error_type, err.message) == (
        0, "TASK_EXECUTION_EXCEPTION", "ValueError: boom"
    )  # fmt: skip


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, TaskEventSettings(1000, 100_000)),
        ({"RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS": "0"}, TaskEventSettings(0, 100_000)),
        ({"RAYOPS_TASK_EVENTS_MAX_BUFFER_SIZE": "10"}, TaskEventSettings(1000, 10)),
    ],
)
def test_settings_from_the_environment(env: dict[str, str], expected: TaskEventSettings) -> None:
    assert TaskEventSettings.from_env(env) == expected
    assert expected.enabled == (expected.report_interval_ms > 0)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS": "-1"}, "REPORT_INTERVAL_MS must be an integer"),
        ({"RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS": "soon"}, "got 'soon'"),
        ({"RAYOPS_TASK_EVENTS_MAX_BUFFER_SIZE": "0"}, "MAX_BUFFER_SIZE must be an integer >= 1"),
    ],
)
def test_bad_settings_are_refused_naming_the_variable(env: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TaskEventSettings.from_env(env)
