"""The job table as a state machine: every edge of `TRANSITIONS`, its events and versions.

No processes: commands in, events out, a fake clock. One test per edge of the table (legal
ones, and the ignored or refused ones), a check that the tested edges are exactly the
table's, then the properties every edge shares.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rayops.gcs.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from rayops.gcs.job_events import (
    AddJob,
    FinishJob,
    JobAdded,
    JobCommand,
    JobEvent,
    JobFinished,
    JobSnapshot,
)
from rayops.gcs.job_table import TRANSITIONS, Edge, Effect, JobState, JobTable
from rayops.gcs.types import JobInfo


class FakeClock:
    def __init__(self, start_ms: int = 1_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms


class Recorder:
    """The sink the table publishes to (the GCS passes its publisher)."""

    def __init__(self) -> None:
        self.calls: list[tuple[JobEvent, ...]] = []

    def __call__(self, events: Sequence[JobEvent]) -> None:
        self.calls.append(tuple(events))

    @property
    def events(self) -> list[JobEvent]:
        return [e for call in self.calls for e in call]


JOB = JobInfo(job_id=7, driver_pid=42, driver_ip="127.0.0.1", namespace="ns", entrypoint="x.py")


def _table(
    state: JobState | None, clock: FakeClock | None = None
) -> tuple[JobTable, Recorder, FakeClock]:
    """A table holding job 7 in `state` (None: not held), its sink (emptied) and clock."""
    clock = clock or FakeClock()
    sink = Recorder()
    table = JobTable(clock, sink=sink)
    if state is not None:
        table.apply(AddJob(JOB))
    if state is JobState.FINISHED:
        clock.now_ms += 500
        table.apply(FinishJob(7))
    sink.calls.clear()
    return table, sink, clock


# One test per edge.


def test_unknown_add_records_the_job_running_with_a_start_time() -> None:
    table, sink, _clock = _table(None)
    applied = table.apply(AddJob(JOB))
    assert (applied.before, applied.after) == (None, JobState.RUNNING)
    stored = table.get(7)
    assert stored is not None
    assert (stored.start_time_ms, stored.is_dead, stored.end_time_ms) == (1_000, False, 0)
    assert sink.calls == [(JobAdded(1, stored),)] and applied.events == (JobAdded(1, stored),)
    # A start time the driver gave is kept; the counter moves past the id.
    table.apply(AddJob(JobInfo(job_id=9, driver_pid=1, driver_ip="h", start_time_ms=55)))
    assert table.get(9) is not None and table.get(9).start_time_ms == 55  # type: ignore[union-attr]
    assert table.next_job_id() == 10


def test_running_add_is_refused_and_changes_nothing() -> None:
    table, sink, _ = _table(JobState.RUNNING)
    with pytest.raises(AlreadyExists, match="07000000"):
        table.apply(AddJob(JobInfo(job_id=7, driver_pid=99, driver_ip="other")))
    assert table.get(7) is not None and table.get(7).driver_pid == 42  # type: ignore[union-attr]
    assert (table.version, sink.calls) == (1, [])


def test_finished_add_is_refused_a_job_never_runs_again() -> None:
    table, sink, _ = _table(JobState.FINISHED)
    with pytest.raises(AlreadyExists):
        table.apply(AddJob(JOB))
    assert table.get(7) is not None and table.get(7).is_dead  # type: ignore[union-attr]
    assert (table.version, sink.calls) == (2, [])


def test_unknown_finish_is_ignored_not_found() -> None:
    table, sink, _ = _table(None)
    applied = table.apply(FinishJob(7))
    assert (applied.before, applied.after, applied.job, applied.events) == (None, None, None, ())
    assert not table.mark_finished(7)
    assert (table.version, sink.calls) == (0, [])


def test_running_finish_records_the_end_time_and_publishes_it() -> None:
    table, sink, clock = _table(JobState.RUNNING)
    clock.now_ms = 8_000
    applied = table.apply(FinishJob(7))
    assert (applied.before, applied.after) == (JobState.RUNNING, JobState.FINISHED)
    stored = table.get(7)
    assert stored is not None and (stored.is_dead, stored.end_time_ms) == (True, 8_000)
    assert sink.calls == [(JobFinished(2, 7, 8_000),)]


def test_finished_finish_is_idempotent_and_keeps_the_first_end_time() -> None:
    table, sink, clock = _table(JobState.FINISHED)
    clock.now_ms = 99_000
    applied = table.apply(FinishJob(7))
    assert (applied.before, applied.after, applied.events) == (
        JobState.FINISHED,
        JobState.FINISHED,
        (),
    )
    assert table.mark_finished(7)  # found, as before
    assert table.get(7).end_time_ms == 1_500  # type: ignore[union-attr]
    assert (table.version, sink.calls) == (2, [])


def test_every_table_edge_is_exercised_above() -> None:
    # A new edge must come with a test: this list is the edges the tests above drive.
    tested = {
        (None, AddJob),
        (JobState.RUNNING, AddJob),
        (JobState.FINISHED, AddJob),
        (None, FinishJob),
        (JobState.RUNNING, FinishJob),
        (JobState.FINISHED, FinishJob),
    }
    assert set(TRANSITIONS) == tested


# What every edge shares.

_COMMANDS: dict[type, JobCommand] = {AddJob: AddJob(JOB), FinishJob: FinishJob(7)}


@pytest.mark.parametrize(("key", "edge"), list(TRANSITIONS.items()), ids=str)
def test_apply_follows_the_transition_table(key: tuple[JobState | None, type], edge: Edge) -> None:
    state, command = key
    table, sink, _ = _table(state)
    version = table.version
    cmd = _COMMANDS[command]
    if edge.effect is Effect.REFUSE:
        with pytest.raises(AlreadyExists):
            table.apply(cmd)
        assert (table.version, sink.calls) == (version, [])
        return
    applied = table.apply(cmd)
    assert (applied.before, applied.after) == (state, edge.to)
    if edge.effect is Effect.IGNORE:
        assert (applied.events, table.version, sink.calls) == ((), version, [])
    else:
        assert [e.version for e in applied.events] == [version + 1] == [table.version]
        assert sink.calls == [applied.events]


def test_versions_increase_by_one_per_event_and_the_snapshot_matches() -> None:
    table, sink, _ = _table(None)
    for job_id in (3, 1, 2):
        table.apply(AddJob(JobInfo(job_id=job_id, driver_pid=job_id, driver_ip="h")))
    table.apply(FinishJob(1))
    assert [e.version for e in sink.events] == [1, 2, 3, 4]
    assert [type(e) for e in sink.events] == [JobAdded, JobAdded, JobAdded, JobFinished]
    snap = table.snapshot()
    assert isinstance(snap, JobSnapshot) and snap.version == 4
    assert [(j.job_id, j.is_dead) for j in snap.jobs] == [(1, True), (2, False), (3, False)]


def test_next_job_id_hands_out_numbers_without_events() -> None:
    table, sink, _ = _table(None)
    assert [table.next_job_id() for _ in range(3)] == [1, 2, 3]
    assert (table.version, sink.calls) == (0, [])


def test_malformed_commands_are_refused_before_any_change() -> None:
    table, sink, _ = _table(None)
    for bad in (0, 2**32):
        with pytest.raises(InvalidArgument, match="job id"):
            table.apply(AddJob(JobInfo(job_id=bad, driver_pid=1, driver_ip="h")))
    assert (table.version, sink.calls) == (0, [])


def test_the_job_id_space_runs_out_with_a_clear_error() -> None:
    table, _, _ = _table(None)
    table.apply(AddJob(JobInfo(job_id=2**32 - 1, driver_pid=1, driver_ip="h")))
    with pytest.raises(FailedPrecondition, match="used all"):
        table.next_job_id()
