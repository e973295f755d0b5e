"""Task events on the core worker's side: the bounded buffer of rows, the owner's recording
hook, the batch as columns (one row per attempt), and the settings."""

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
from rayops.protocol.state_messages import N_STATES, TIME_UNSET, unpack_times
from rayops.protocol.task_messages import TaskReply, TaskSpec


class FakeCoreWorker:
    node_id = "node-a"
    worker_id = b"w" * 16
    job_id = 3
    raylet = None


RESOURCES = {"CPU": 1.0}  # as a remote function's calls share their plan's dict


def spec(i: int, **kw: object) -> TaskSpec:
    return TaskSpec(
        bytes([i]) * 16, 3, "f", b"fn", (), (), 1, (bytes([i]) * 20,), ("127.0.0.1", 1),
        RESOURCES, **kw,  # type: ignore[arg-type]
    )  # fmt: skip


def test_a_full_buffer_drops_new_rows_and_counts_without_blocking() -> None:
    buf = TaskEventBuffer(capacity=3)
    assert [buf.add(bytes([i]), 0, RUNNING, i) for i in range(5)] == [0, 1, 2, -1, -1]
    assert buf.put(1, b"\x01", 0, FINISHED, 9) == 1  # a held row still takes its events
    assert buf.put(-1, b"\x07", 0, FINISHED, 9) == -1  # one that needs a row is dropped
    taken = buf.take()
    assert taken.task_ids == [b"\x00", b"\x01", b"\x02"] and taken.dropped == 3
    assert list(taken.states) == [RUNNING, FINISHED, RUNNING]
    assert taken.times[N_STATES + FINISHED] == 9 and taken.times[FINISHED] == TIME_UNSET
    assert len(buf) == 0 and buf.dropped == 0  # the count restarts after each take
    # rows are numbered on across batches: a number of a row already sent finds nothing
    assert buf.add(b"\x08", 0, RUNNING, 10) == 3
    assert buf.put(1, b"\x01", 0, FAILED, 11) == 4 and list(buf.states) == [RUNNING, FAILED]


def _reporter() -> TaskEventReporter:
    return TaskEventReporter(FakeCoreWorker(), TaskEventSettings())  # type: ignore[arg-type]


def test_the_owner_records_each_move_once_with_what_the_task_is_first() -> None:
    rep = _reporter()
    machine = tm.TaskManager(rep.owner_counts)
    s = spec(1)
    machine.submit(s, [], 0, False)
    machine.pushed(s.task_id)
    machine.reply(s, TaskReply("ok", [], [], ("127.0.0.1", 2), 0.0))
    (batch,) = rep.take()  # one row: the attempt's three events
    assert not batch.executor and batch.task_ids == s.task_id
    assert list(batch.states) == [FINISHED]
    times = list(unpack_times(batch.times_ns))
    assert len(times) == N_STATES and batch.attempts == [0]
    moves = [times[st] for st in (PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, FINISHED)]
    assert moves == sorted(moves) and TIME_UNSET not in moves
    assert times[RUNNING] == times[FAILED] == TIME_UNSET
    assert batch.descriptor == [0]
    (desc,) = batch.descriptors
    assert (desc.name, desc.type, desc.job_id, desc.required_resources) == (
        "f", "NORMAL_TASK", 3, {"CPU": 1.0}
    )  # fmt: skip
    assert batch.job_id == 3 and rep.take() == []


def test_calls_of_one_function_share_a_descriptor() -> None:
    rep = _reporter()
    machine = tm.TaskManager(rep.owner_counts)
    for i in range(5):
        machine.submit(spec(i), [], 0, False)
    (batch,) = rep.take()
    assert len(batch.descriptors) == 1 and batch.descriptor == [0] * 5


def test_an_actors_calls_share_a_descriptor() -> None:
    rep = _reporter()
    machine = tm.TaskManager(rep.owner_counts)
    for i in range(5):  # an empty resources dict per call, as actor calls have
        machine.submit(spec(i)._replace(resources={}, actor_id=b"a" * 16), [], 0, False)
    (batch,) = rep.take()
    assert len(batch.descriptors) == 1


def test_an_actor_call_answered_at_once_records_and_counts_as_its_three_moves() -> None:
    """``TaskManager.answered_at_once`` (a direct call whose reply came with its
    hand-over) leaves the same row, descriptor and counts as submit, pushed and reply."""
    call = spec(1)._replace(resources={}, actor_id=b"a" * 16)
    reply = TaskReply("ok", [], [], ("127.0.0.1", 2), 0.0)
    batches = []
    for at_once in (False, True):
        rep = _reporter()
        machine = tm.TaskManager(rep.owner_counts)
        if at_once:
            machine.answered_at_once(call, [], 0, False, "A")
        else:
            machine.submit(call, [], 0, False, "A")
            machine.pushed(call.task_id)
            machine.reply(call, reply)
        assert len(machine) == 0
        assert rep.owner_counts.counts == {("A.f", False): [0, 0, 0, 1, 0]}
        (batch,) = rep.take()
        batches.append(batch)
    plain, fused = batches
    assert fused.task_ids == plain.task_ids and list(fused.states) == [FINISHED]
    assert fused.descriptors == plain.descriptors and fused.descriptor == [0]
    set_in = [[t != TIME_UNSET for t in unpack_times(b.times_ns)] for b in batches]
    assert set_in[0] == set_in[1]


def test_an_answered_call_in_a_full_buffer_counts_its_three_events_dropped() -> None:
    rep = TaskEventReporter(FakeCoreWorker(), TaskEventSettings(buffer_size=1))  # type: ignore[arg-type]
    machine = tm.TaskManager(rep.owner_counts)
    machine.submit(spec(1), [], 0, False)  # takes the one row
    machine.answered_at_once(spec(2)._replace(actor_id=b"a" * 16), [], 0, False, "A")
    (batch,) = rep.take()
    assert batch.dropped == 3 and rep.owner_counts.counts[("A.f", False)][3] == 1


def test_a_retry_fails_the_attempt_before_and_starts_the_next() -> None:
    rep = _reporter()
    machine = tm.TaskManager(rep.owner_counts)
    s = spec(2)
    machine.submit(s, [], 1, False)
    machine.pushed(s.task_id)
    machine.worker_died(s, ConnectionError("gone"))  # retried: attempt 1
    machine.worker_died(s._replace(attempt=1), ConnectionError("gone"))  # none left
    (batch,) = rep.take()
    failed = [a for a, st in zip(batch.attempts, batch.states, strict=True) if st == FAILED]
    assert failed == [0, 1]  # a row per attempt, each ended FAILED
    (err,) = batch.errors
    assert err.error_type == "WORKER_DIED" and batch.attempts[err.index] == 1


def test_moves_after_a_report_go_in_a_new_row_without_the_descriptor() -> None:
    rep = _reporter()
    machine = tm.TaskManager(rep.owner_counts)
    s = spec(6)
    machine.submit(s, [], 0, False)
    (first,) = rep.take()
    machine.pushed(s.task_id)
    machine.reply(s, TaskReply("ok", [], [], ("127.0.0.1", 2), 0.0))
    (second,) = rep.take()
    assert first.descriptor == [0] and second.descriptor == [-1]
    assert list(first.states) == [PENDING_NODE_ASSIGNMENT] and list(second.states) == [FINISHED]
    assert second.task_ids == s.task_id and len(second.descriptors) == 0


def test_executor_records_carry_the_process_and_the_error() -> None:
    rep = _reporter()
    s = spec(3)
    rep.running(s, "")
    rep.ended(s, ValueError("boom"))
    rep.ended(spec(4), None)  # a plain success is the owner's to record: nothing here
    (batch,) = rep.take()
    assert batch.executor and batch.task_ids == s.task_id  # one row: RUNNING, then FAILED
    assert list(batch.states) == [FAILED]
    times = unpack_times(batch.times_ns)
    assert TIME_UNSET != times[RUNNING] <= times[FAILED] != TIME_UNSET
    assert (batch.node_id, batch.worker_id) == ("node-a", b"w" * 16)
    (err,) = batch.errors
    assert (err.index, err.error_type, err.message) == (
        0, "TASK_EXECUTION_EXCEPTION", "ValueError: boom"
    )  # fmt: skip


def test_an_executor_error_after_a_report_makes_a_row_of_its_own() -> None:
    rep = _reporter()
    s, other = spec(7), spec(8)
    rep.running(s, "")
    rep.take()
    rep.running(other, "")
    rep.ended(s, RuntimeError("late"))
    (batch,) = rep.take()
    assert batch.task_ids == other.task_id + s.task_id
    assert list(batch.states) == [RUNNING, FAILED]
    (err,) = batch.errors
    assert err.index == 1 and err.message == "RuntimeError: late"


def test_a_batch_round_trips_through_the_gcs_codec_and_store() -> None:
    from rayops.gcs.task_codec import batch_from_proto, batch_to_proto
    from rayops.gcs.task_store import TaskEventStore, TaskQuery

    rep = _reporter()
    machine = tm.TaskManager(rep.owner_counts)
    s = spec(5)
    machine.submit(s, [], 0, False)
    machine.pushed(s.task_id)
    rep.running(s, "")
    rep.ended(s, KeyError("k"))
    machine.reply(s, TaskReply("error", [], [], ("127.0.0.1", 2), 0.0))
    store = TaskEventStore()
    for batch in rep.take():
        back = batch_from_proto(batch_to_proto(batch))
        assert back == batch
        store.add(back)
    [rec], _ = store.query(TaskQuery())
    assert rec.state_name == "FAILED" and rec.error_type == "TASK_EXECUTION_EXCEPTION"
    assert rec.desc is not None and rec.desc.name == "f" and rec.node_id == "node-a"
    assert all(rec.times_ns[st] for st in (1, 2, 3, 5))


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
