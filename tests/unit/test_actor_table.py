"""The GCS actor table as a state machine (gcs/actor_table.py), without processes: one test
per edge of its `TRANSITIONS`, the changes it ignores, and the events it hands its sink
(the event spine's "actors" channel)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rayops.gcs.actor_events import ActorChange, ActorChanged
from rayops.gcs.actor_table import (
    TRANSITIONS,
    Action,
    ActorRecord,
    ActorState,
    ActorTable,
)

AID = b"a" * 16
P, A, R, D = (
    ActorState.PENDING_CREATION,
    ActorState.ALIVE,
    ActorState.RESTARTING,
    ActorState.DEAD,
)


class Sink:
    """What the table publishes (the GCS passes its publisher)."""

    def __init__(self) -> None:
        self.events: list[ActorChanged] = []

    def __call__(self, events: Sequence[ActorChanged]) -> None:
        self.events.extend(events)


def _record(**kw: object) -> ActorRecord:
    base: dict[str, object] = dict(
        actor_id=AID,
        class_name="Counter",
        job_id=3,
        name="c",
        namespace="ns",
        is_detached=False,
        max_restarts=1,
        placement_resources={"CPU": 1.0},
        hold_resources={},
        creation_spec=b"",
        handle_meta=b"",
        owner_address="127.0.0.1:9",
    )
    base.update(kw)
    return ActorRecord(**base)  # type: ignore[arg-type]


def _create(table: ActorTable, rec: ActorRecord, port: int = 7001) -> Action:
    return table.created(rec, ip="127.0.0.1", port=port, node_id="n1", pid=42, worker_id=b"w")


def _in_state(state: ActorState, **kw: object) -> tuple[ActorTable, ActorRecord, Sink]:
    """A table holding one actor driven (through its calls only) into ``state``; the sink
    is emptied."""
    sink = Sink()
    table = ActorTable(sink=sink)
    rec, existed = table.register(_record(**kw), get_if_exists=False)
    assert not existed
    if state in (A, R):
        assert _create(table, rec) is Action.NONE
    if state is R:
        assert table.worker_died(rec, "crash") is Action.SCHEDULE
    if state is D:
        table.exited(rec)
    assert rec.state is state
    sink.events.clear()
    return table, rec, sink


def _one_event(table: ActorTable, rec: ActorRecord, sink: Sink, change: ActorChange) -> None:
    """The last call published exactly one event: this change, the table's next version."""
    (event,) = sink.events
    assert event.change is change
    assert event.version == table.version == rec.version
    assert event.state == rec.state.value
    assert event.actor_id == AID and event.class_name == "Counter" and event.job_id == 3
    assert (event.name, event.namespace) == ("c", "ns")
    assert table.current(AID) == event


# ------------------------------------------------------------------- one test per edge
def test_edge_register_pending() -> None:
    sink = Sink()
    table = ActorTable(sink=sink)
    rec, _ = table.register(_record(), get_if_exists=False)
    assert rec.state is P
    _one_event(table, rec, sink, ActorChange.REGISTERED)
    assert sink.events[0].version == 1


@pytest.mark.parametrize("state", [P, R])
def test_edge_created_alive(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert _create(table, rec, port=7002) is Action.NONE
    assert rec.state is A
    _one_event(table, rec, sink, ActorChange.CREATED)
    event = sink.events[0]
    assert event.address == ("127.0.0.1", 7002)
    assert (event.node_id, event.pid, event.worker_id) == ("n1", 42, b"w")


@pytest.mark.parametrize("state", [P, R])
def test_edge_creation_failed_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert table.creation_failed(rec, "boom", b"pickled") is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.CREATION_FAILED)
    assert "constructor failed: boom" in sink.events[0].death_cause
    assert sink.events[0].death_error == b"pickled"
    assert table.by_name("c", "ns") is None  # the name is free again


@pytest.mark.parametrize("state", [P, A, R])
def test_edge_worker_died_restarting(state: ActorState) -> None:
    table, rec, sink = _in_state(state, max_restarts=-1)
    restarts = rec.num_restarts
    assert table.worker_died(rec, "crash") is Action.SCHEDULE
    assert rec.state is R and rec.num_restarts == restarts + 1
    _one_event(table, rec, sink, ActorChange.WORKER_DIED)
    assert sink.events[0].address is None and sink.events[0].num_restarts == restarts + 1


@pytest.mark.parametrize("state", [P, A, R])
def test_edge_worker_died_final_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state, max_restarts=0 if state is not R else 1)
    assert table.worker_died(rec, "killed -9") is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.WORKER_DIED_FINAL)
    assert "worker process died: killed -9" in sink.events[0].death_cause


@pytest.mark.parametrize("state", [P, R])
def test_edge_unschedulable_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert table.unschedulable(rec, "node gone", b"err") is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.UNSCHEDULABLE)
    assert sink.events[0].death_error == b"err"


@pytest.mark.parametrize("state", [P, A, R])
def test_edge_killed_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert table.killed(rec, no_restart=True) is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.KILLED)
    assert "killed with rayops.kill()" in sink.events[0].death_cause


@pytest.mark.parametrize("state", [P, A, R])
def test_edge_exited_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert table.exited(rec) is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.EXITED)


@pytest.mark.parametrize("state", [P, A, R])
def test_edge_owner_died_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert table.owner_died(rec) is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.OWNER_DIED)
    assert "owner (127.0.0.1:9) died" in sink.events[0].death_cause


@pytest.mark.parametrize("state", [P, A, R])
def test_edge_out_of_scope_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert table.out_of_scope(rec) is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.OUT_OF_SCOPE)


@pytest.mark.parametrize("state", [P, A, R])
def test_edge_pg_removed_dead(state: ActorState) -> None:
    table, rec, sink = _in_state(state)
    assert table.pg_removed(rec) is Action.STOP_WORKER
    assert rec.state is D
    _one_event(table, rec, sink, ActorChange.PG_REMOVED)


def test_every_table_edge_is_exercised_above() -> None:
    # A new edge must come with a test: these are the edges the tests above drive.
    for_good = (
        ActorChange.KILLED,
        ActorChange.EXITED,
        ActorChange.OWNER_DIED,
        ActorChange.OUT_OF_SCOPE,
        ActorChange.PG_REMOVED,
    )
    tested = {
        (None, ActorChange.REGISTERED),
        (P, ActorChange.CREATED),
        (R, ActorChange.CREATED),
        (P, ActorChange.CREATION_FAILED),
        (R, ActorChange.CREATION_FAILED),
        (P, ActorChange.WORKER_DIED),
        (A, ActorChange.WORKER_DIED),
        (R, ActorChange.WORKER_DIED),
        (P, ActorChange.WORKER_DIED_FINAL),
        (A, ActorChange.WORKER_DIED_FINAL),
        (R, ActorChange.WORKER_DIED_FINAL),
        (P, ActorChange.UNSCHEDULABLE),
        (R, ActorChange.UNSCHEDULABLE),
        *((s, c) for s in (P, A, R) for c in for_good),
    }
    assert set(TRANSITIONS) == tested
    # Nothing leaves DEAD, and DEAD is where every for-good change leads.
    assert not any(state is D for state, _ in TRANSITIONS)
    assert all(TRANSITIONS[(s, c)] is D for s in (P, A, R) for c in for_good)


# ------------------------------------------------------- changes the table ignores
def test_created_after_a_kill_stops_the_new_worker_and_changes_nothing() -> None:
    table, rec, sink = _in_state(D)
    assert _create(table, rec) is Action.STOP_WORKER
    assert rec.state is D and sink.events == []


def test_created_while_alive_is_not_an_edge() -> None:
    table, rec, sink = _in_state(A)
    assert _create(table, rec, port=7009) is Action.STOP_WORKER
    assert rec.address_port == 7001 and sink.events == []


@pytest.mark.parametrize(
    "call",
    [
        lambda t, r: t.worker_died(r, "late"),
        lambda t, r: t.creation_failed(r, "late", b""),
        lambda t, r: t.unschedulable(r, "late", b""),
        lambda t, r: t.killed(r, no_restart=True),
        lambda t, r: t.exited(r),
        lambda t, r: t.owner_died(r),
        lambda t, r: t.out_of_scope(r),
        lambda t, r: t.pg_removed(r),
    ],
)
def test_nothing_changes_a_dead_actor(call: object) -> None:
    table, rec, sink = _in_state(D)
    version = table.version
    assert call(table, rec) is Action.NONE  # type: ignore[operator]
    assert rec.state is D and table.version == version and sink.events == []


def test_unschedulable_is_no_edge_from_alive() -> None:
    table, rec, sink = _in_state(A)
    assert table.unschedulable(rec, "late", b"") is Action.NONE
    assert rec.state is A and sink.events == []


def test_kill_with_restarts_left_stops_the_worker_and_waits_for_its_death() -> None:
    table, rec, sink = _in_state(A, max_restarts=1)
    assert table.killed(rec, no_restart=False) is Action.STOP_WORKER
    assert rec.state is A and sink.events == []  # its death then restarts it
    assert table.worker_died(rec, "stopped") is Action.SCHEDULE
    assert rec.state is R


@pytest.mark.parametrize("state", [P, A, R])
def test_a_detached_actor_outlives_its_owner_and_its_handles(state: ActorState) -> None:
    table, rec, sink = _in_state(state, is_detached=True)
    assert table.owner_died(rec) is Action.NONE
    assert table.out_of_scope(rec) is Action.NONE
    assert rec.state is state and sink.events == []


# --------------------------------------------------------------------- the events
def test_versions_are_the_tables_one_per_change_across_actors() -> None:
    sink = Sink()
    table = ActorTable(sink=sink)
    a, _ = table.register(_record(), get_if_exists=False)
    b, _ = table.register(_record(actor_id=b"b" * 16, name=""), get_if_exists=False)
    _create(table, a)
    _create(table, b)
    table.worker_died(a, "crash")
    assert [e.version for e in sink.events] == [1, 2, 3, 4, 5]
    assert [(e.actor_id[:1], e.change) for e in sink.events] == [
        (b"a", ActorChange.REGISTERED),
        (b"b", ActorChange.REGISTERED),
        (b"a", ActorChange.CREATED),
        (b"b", ActorChange.CREATED),
        (b"a", ActorChange.WORKER_DIED),
    ]
    assert (a.version, b.version, table.version) == (5, 4, 5)
    snap = table.snapshot()
    assert snap.version == 5 and [e.version for e in snap.actors] == [5, 4]


def test_a_name_taken_or_an_existing_id_publishes_nothing() -> None:
    table, rec, sink = _in_state(P)
    assert table.register(_record(), get_if_exists=False) == (rec, True)
    other = _record(actor_id=b"z" * 16)
    assert table.register(other, get_if_exists=True) == (rec, True)
    assert sink.events == [] and table.current(b"z" * 16) is None
