"""The placement-group state machine (gcs/pg_table.py), without processes: one test per edge
of its transition table, per ignored command, and per multi-step story (abort and retry, node
loss, job end)."""

from __future__ import annotations

import pytest

from rayops.gcs import pg_table as pt
from rayops.gcs.pg_table import PgState

PG = b"p" * 18


def _record(**kw: object) -> pt.PgRecord:
    base: dict[str, object] = dict(
        pg_id=PG,
        name="",
        namespace="ns",
        strategy="PACK",
        bundles=[{"CPU": 1.0}, {"CPU": 1.0}],
        creator_job_id=1,
        is_detached=False,
    )
    base.update(kw)
    return pt.PgRecord(**base)  # type: ignore[arg-type]


def _in_state(state: PgState, **kw: object) -> tuple[pt.PgTable, pt.PgRecord]:
    """A table holding one group driven (through commands only) into ``state``."""
    table = pt.PgTable()
    rec = _record(**kw)
    assert table.handle(pt.Create(rec)) == [pt.Schedule(PG)]
    if state == PgState.PENDING:
        return table, rec
    table.handle(pt.Placed(PG, {0: "a", 1: "b"}))
    table.handle(pt.Prepared(PG, rec.attempt))
    if state == PgState.PREPARED:
        return table, rec
    table.handle(pt.Committed(PG, rec.attempt, now=1.0))
    if state == PgState.CREATED:
        return table, rec
    if state == PgState.RESCHEDULING:
        table.handle(pt.NodeLost("b"))
        return table, rec
    table.handle(pt.Removed(PG))
    assert rec.state == state == PgState.REMOVED
    return table, rec


def test_create_schedules_and_names_are_unique_among_live_groups() -> None:
    table, rec = _in_state(PgState.PENDING, name="g")
    assert rec.state == PgState.PENDING and rec.scheduling_state == "QUEUED"
    with pytest.raises(pt.PgNameTaken, match="'g'"):
        table.handle(pt.Create(_record(pg_id=b"q" * 18, name="g")))
    # another namespace, or once the first is removed: allowed
    assert table.handle(pt.Create(_record(pg_id=b"r" * 18, name="g", namespace="other")))
    table.handle(pt.Removed(PG))
    assert table.handle(pt.Create(_record(pg_id=b"s" * 18, name="g")))
    assert table.by_name("g", "ns") is not None and table.by_name("g", "ns").pg_id == b"s" * 18


# ------------------------------------------------------------------- one test per edge
def test_edge_pending_prepared() -> None:
    table, rec = _in_state(PgState.PENDING)
    assert table.handle(pt.Placed(PG, {0: "a", 1: "a"})) == [
        pt.SendPrepare(PG, 1, {0: "a", 1: "a"})
    ]
    assert rec.scheduling_state == "SCHEDULING_STARTED"
    assert table.handle(pt.Prepared(PG, 1)) == [pt.SendCommit(PG, 1, {0: "a", 1: "a"})]
    assert rec.state == PgState.PREPARED


def test_edge_prepared_created() -> None:
    table, rec = _in_state(PgState.PREPARED)
    assert table.handle(pt.Committed(PG, rec.attempt, now=2.5)) == [
        pt.StateChanged(PG, PgState.CREATED)
    ]
    assert rec.state == PgState.CREATED and rec.bundle_nodes == {0: "a", 1: "b"}
    assert rec.scheduling_state == "FINISHED" and rec.created_after_s == 2.5


@pytest.mark.parametrize("phase", ["prepare", "commit"])
def test_edge_aborted_releases_what_was_prepared_and_retries(phase: str) -> None:
    table, rec = _in_state(PgState.PENDING)
    table.handle(pt.Placed(PG, {0: "a", 1: "b"}))
    if phase == "commit":
        table.handle(pt.Prepared(PG, 1))
    actions = table.handle(pt.Aborted(PG, 1, "raylet b died"))
    assert actions[0] == pt.ReleaseBundles(PG, {0: "a", 1: "b"})
    assert isinstance(actions[1], pt.Schedule) and actions[1].delay_s > 0
    assert rec.state == PgState.PENDING and rec.scheduling_state == "FAILED_TO_COMMIT_RESOURCES"
    assert rec.bundle_nodes == {} and rec.attempt_nodes == {}
    assert table.waiting() == [rec]
    # the next attempt is a new number; the old attempt's late answers are ignored
    table.handle(pt.Placed(PG, {0: "a", 1: "c"}))
    assert rec.attempt == 2
    assert table.handle(pt.Prepared(PG, 1)) == [] and rec.state == PgState.PENDING
    assert table.handle(pt.Prepared(PG, 2)) == [pt.SendCommit(PG, 2, {0: "a", 1: "c"})]


def test_edge_created_rescheduling_keeps_the_surviving_bundles() -> None:
    table, rec = _in_state(PgState.CREATED)
    actions = table.handle(pt.NodeLost("b"))
    assert actions == [pt.StateChanged(PG, PgState.RESCHEDULING), pt.Schedule(PG)]
    assert rec.bundle_nodes == {0: "a"} and rec.unplaced() == [1]
    # only the lost bundle is placed again, then committed
    assert table.handle(pt.Placed(PG, {1: "c"})) == [pt.SendPrepare(PG, 2, {1: "c"})]
    table.handle(pt.Prepared(PG, 2))
    table.handle(pt.Committed(PG, 2, now=9.0))
    assert rec.state == PgState.CREATED and rec.bundle_nodes == {0: "a", 1: "c"}
    assert rec.created_after_s == 1.0  # the first creation's latency stays


def test_edge_aborted_while_rescheduling_stays_rescheduling() -> None:
    table, rec = _in_state(PgState.RESCHEDULING)
    table.handle(pt.Placed(PG, {1: "c"}))
    table.handle(pt.Prepared(PG, rec.attempt))
    actions = table.handle(pt.Aborted(PG, rec.attempt, "commit refused"))
    assert actions[0] == pt.ReleaseBundles(PG, {1: "c"})  # not bundle 0 on "a"
    assert rec.state == PgState.RESCHEDULING and rec.bundle_nodes == {0: "a"}


@pytest.mark.parametrize(
    "state", [PgState.PENDING, PgState.PREPARED, PgState.CREATED, PgState.RESCHEDULING]
)
def test_edge_removed_from_every_live_state(state: PgState) -> None:
    table, rec = _in_state(state)
    held = {**rec.bundle_nodes, **rec.attempt_nodes}
    actions = table.handle(pt.Removed(PG))
    assert actions[-1] == pt.StateChanged(PG, PgState.REMOVED)
    if held:
        assert actions[0] == pt.ReleaseBundles(PG, held)
    else:
        assert len(actions) == 1
    assert rec.state == PgState.REMOVED and rec.scheduling_state == "REMOVED"
    assert table.waiting() == []


# --------------------------------------------------------------- commands that do nothing
@pytest.mark.parametrize(
    ("state", "cmd"),
    [
        (PgState.PENDING, pt.Committed(PG, 0, now=0.0)),  # nothing prepared
        (PgState.CREATED, pt.Prepared(PG, 1)),
        (PgState.CREATED, pt.Aborted(PG, 1, "late")),
        (PgState.CREATED, pt.Placed(PG, {0: "x"})),
        (PgState.PREPARED, pt.Placed(PG, {0: "x"})),  # an attempt is under way
        (PgState.REMOVED, pt.Removed(PG)),
        (PgState.REMOVED, pt.Placed(PG, {0: "x"})),
        (PgState.REMOVED, pt.NotPlaced(PG, True, "too big")),
    ],
)
def test_illegal_commands_change_nothing(state: PgState, cmd: pt.Command) -> None:
    table, rec = _in_state(state)
    version = rec.version
    assert table.handle(cmd) == []
    assert rec.state == state and rec.version == version


def test_every_table_edge_is_exercised_above() -> None:
    # A new edge must come with a test: this list is the edges the tests above drive.
    tested = {
        (PgState.PENDING, pt.Prepared),
        (PgState.RESCHEDULING, pt.Prepared),
        (PgState.PREPARED, pt.Committed),
        (PgState.PENDING, pt.Aborted),
        (PgState.RESCHEDULING, pt.Aborted),
        (PgState.PREPARED, pt.Aborted),
        (PgState.CREATED, pt.NodeLost),
        (PgState.PENDING, pt.Removed),
        (PgState.PREPARED, pt.Removed),
        (PgState.CREATED, pt.Removed),
        (PgState.RESCHEDULING, pt.Removed),
    }
    assert set(pt.TRANSITIONS) == tested


# ------------------------------------------------------------------------ stories
def test_not_placed_warns_once_when_infeasible_and_records_why() -> None:
    table, rec = _in_state(PgState.PENDING)
    assert table.handle(pt.NotPlaced(PG, False, "busy")) == []
    assert rec.scheduling_state == "NO_RESOURCES"
    assert table.handle(pt.NotPlaced(PG, True, "bundle 0 {CPU: 64} fits no node")) == [
        pt.Warn(PG, "bundle 0 {CPU: 64} fits no node")
    ]
    assert table.handle(pt.NotPlaced(PG, True, "again")) == []
    assert rec.scheduling_state == "INFEASIBLE" and rec.state == PgState.PENDING


def test_a_node_dying_mid_attempt_aborts_it() -> None:
    table, rec = _in_state(PgState.PENDING)
    table.handle(pt.Placed(PG, {0: "a", 1: "b"}))
    actions = table.handle(pt.NodeLost("b"))
    assert actions[0] == pt.ReleaseBundles(PG, {0: "a", 1: "b"})
    assert isinstance(actions[1], pt.Schedule)
    assert rec.state == PgState.PENDING and rec.attempt_nodes == {}


def test_job_end_removes_its_groups_but_not_detached_ones() -> None:
    table = pt.PgTable()
    mine = _record(pg_id=b"1" * 18)
    detached = _record(pg_id=b"2" * 18, is_detached=True)
    other_job = _record(pg_id=b"3" * 18, creator_job_id=2)
    for r in (mine, detached, other_job):
        table.handle(pt.Create(r))
    actions = table.handle(pt.JobEnded(1))
    assert actions == [pt.StateChanged(b"1" * 18, PgState.REMOVED)]
    assert (mine.state, detached.state, other_job.state) == (
        PgState.REMOVED,
        PgState.PENDING,
        PgState.PENDING,
    )


def test_removed_groups_are_forgotten_oldest_first_past_the_cap() -> None:
    table = pt.PgTable(max_removed_kept=2)
    ids = [bytes([i]) * 18 for i in range(4)]
    for pg_id in ids:
        table.handle(pt.Create(_record(pg_id=pg_id, name=f"g{pg_id[0]}")))
        table.handle(pt.Removed(pg_id))
    assert [r.pg_id for r in table.all()] == ids[2:]
    assert table.live() == 0
    # a removed group's name is free at once
    assert table.handle(pt.Create(_record(pg_id=b"z" * 18, name="g0")))
    assert table.live() == 1
