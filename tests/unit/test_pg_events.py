"""The placement-group table's change events (gcs/pg_events.py): what the
"placement_groups" channel carries, without processes. One test per edge of
`pg_table.TRANSITIONS` (the event it publishes, or none when the state stays), then versions,
batching per command, forgetting, and a follower's replay matching the snapshot.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rayops.gcs import pg_table as pt
from rayops.gcs.pg_events import PgAdded, PgEvent, PgForgotten, PgStateChanged, PgView
from rayops.gcs.pg_table import PgState

PG = b"p" * 18


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[PgEvent, ...]] = []

    def __call__(self, events: Sequence[PgEvent]) -> None:
        self.calls.append(tuple(events))

    @property
    def events(self) -> list[PgEvent]:
        return [e for call in self.calls for e in call]


def _record(pg_id: bytes = PG, **kw: object) -> pt.PgRecord:
    base: dict[str, object] = dict(
        pg_id=pg_id,
        name="",
        namespace="ns",
        strategy="PACK",
        bundles=[{"CPU": 1.0}, {"CPU": 1.0}],
        creator_job_id=1,
        is_detached=False,
    )
    base.update(kw)
    return pt.PgRecord(**base)  # type: ignore[arg-type]


def _in_state(state: PgState, **kw: object) -> tuple[pt.PgTable, pt.PgRecord, Recorder]:
    """A table holding one group driven into ``state``; the sink is emptied after."""
    sink = Recorder()
    table = pt.PgTable(sink=sink, **kw)  # type: ignore[arg-type]
    rec = _record()
    table.handle(pt.Create(rec))
    if state == PgState.PENDING:
        sink.calls.clear()
        return table, rec, sink
    table.handle(pt.Placed(PG, {0: "a", 1: "b"}))
    table.handle(pt.Prepared(PG, rec.attempt))
    if state != PgState.PREPARED:
        table.handle(pt.Committed(PG, rec.attempt, now=1.0))
    if state == PgState.RESCHEDULING:
        table.handle(pt.NodeLost("b"))
    assert rec.state == state
    sink.calls.clear()
    return table, rec, sink


def _one_state_change(sink: Recorder) -> PgStateChanged:
    (call,) = sink.calls
    (event,) = call
    assert isinstance(event, PgStateChanged)
    return event


def test_create_publishes_the_group_as_added() -> None:
    sink = Recorder()
    table = pt.PgTable(sink=sink)
    rec = _record(name="g", bundle_label_selectors=[{"zone": "a"}, {}])
    table.handle(pt.Create(rec))
    assert sink.calls == [
        (
            PgAdded(
                1,
                PgView(
                    PG,
                    "g",
                    "ns",
                    "PACK",
                    ({"CPU": 1.0}, {"CPU": 1.0}),
                    ({"zone": "a"}, {}),
                    1,
                    False,
                    "PENDING",
                    {},
                ),
            ),
        )
    ]
    # The same id again changes nothing and publishes nothing.
    table.handle(pt.Create(_record()))
    assert len(sink.calls) == 1 and table.version == 1


# One test per edge.


def test_edge_pending_prepared() -> None:
    table, rec, sink = _in_state(PgState.PENDING)
    table.handle(pt.Placed(PG, {0: "a", 1: "b"}))
    assert sink.calls == []  # a placement starts an attempt; the state stays PENDING
    table.handle(pt.Prepared(PG, rec.attempt))
    assert _one_state_change(sink) == PgStateChanged(2, PG, "PREPARED", {})


def test_edge_rescheduling_prepared() -> None:
    table, rec, sink = _in_state(PgState.RESCHEDULING)
    table.handle(pt.Placed(PG, {1: "c"}))
    table.handle(pt.Prepared(PG, rec.attempt))
    assert _one_state_change(sink).state == "PREPARED"


def test_edge_prepared_created_names_the_nodes() -> None:
    table, rec, sink = _in_state(PgState.PREPARED)
    table.handle(pt.Committed(PG, rec.attempt, now=1.0))
    assert _one_state_change(sink) == PgStateChanged(3, PG, "CREATED", {0: "a", 1: "b"})


def test_edge_pending_aborted_stays_pending_and_publishes_nothing() -> None:
    table, rec, sink = _in_state(PgState.PENDING)
    table.handle(pt.Placed(PG, {0: "a", 1: "b"}))
    table.handle(pt.Aborted(PG, rec.attempt, "refused"))
    assert rec.state == PgState.PENDING and sink.calls == []


def test_edge_rescheduling_aborted_stays_rescheduling_and_publishes_nothing() -> None:
    table, rec, sink = _in_state(PgState.RESCHEDULING)
    table.handle(pt.Placed(PG, {1: "c"}))
    table.handle(pt.Aborted(PG, rec.attempt, "refused"))
    assert rec.state == PgState.RESCHEDULING and sink.calls == []


@pytest.mark.parametrize(("created", "back_to"), [(False, "PENDING"), (True, "RESCHEDULING")])
def test_edge_prepared_aborted(created: bool, back_to: str) -> None:
    if created:
        table, rec, sink = _in_state(PgState.RESCHEDULING)
        table.handle(pt.Placed(PG, {1: "c"}))
        table.handle(pt.Prepared(PG, rec.attempt))
        sink.calls.clear()
    else:
        table, rec, sink = _in_state(PgState.PREPARED)
    table.handle(pt.Aborted(PG, rec.attempt, "a raylet died"))
    event = _one_state_change(sink)
    assert event.state == back_to
    assert event.bundle_nodes == ({0: "a"} if created else {})


def test_edge_created_rescheduling_keeps_the_surviving_bundles() -> None:
    table, _rec, sink = _in_state(PgState.CREATED)
    table.handle(pt.NodeLost("b"))
    assert _one_state_change(sink) == PgStateChanged(4, PG, "RESCHEDULING", {0: "a"})


@pytest.mark.parametrize(
    "state", [PgState.PENDING, PgState.PREPARED, PgState.CREATED, PgState.RESCHEDULING]
)
def test_edge_removed_from_every_live_state(state: PgState) -> None:
    table, _rec, sink = _in_state(state)
    table.handle(pt.Removed(PG))
    event = _one_state_change(sink)
    assert (event.state, event.bundle_nodes, event.version) == ("REMOVED", {}, table.version)
    # Removing again is not an edge: nothing is published.
    table.handle(pt.Removed(PG))
    assert len(sink.calls) == 1


def test_every_table_edge_is_exercised_above() -> None:
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


# Versions, batching, forgetting, replay.


def test_a_group_s_life_is_versioned_events_in_order() -> None:
    sink = Recorder()
    table = pt.PgTable(sink=sink)
    rec = _record()
    table.handle(pt.Create(rec))
    table.handle(pt.Placed(PG, {0: "a", 1: "a"}))
    table.handle(pt.Prepared(PG, rec.attempt))
    table.handle(pt.Committed(PG, rec.attempt, now=1.0))
    table.handle(pt.Removed(PG))
    assert [(type(e).__name__, getattr(e, "state", "")) for e in sink.events] == [
        ("PgAdded", ""),
        ("PgStateChanged", "PREPARED"),
        ("PgStateChanged", "CREATED"),
        ("PgStateChanged", "REMOVED"),
    ]
    assert [e.version for e in sink.events] == [1, 2, 3, 4] and table.version == 4


def test_a_job_end_publishes_all_its_removals_in_one_call() -> None:
    sink = Recorder()
    table = pt.PgTable(sink=sink)
    for pg_id, detached in ((b"a" * 18, False), (b"b" * 18, False), (b"c" * 18, True)):
        table.handle(pt.Create(_record(pg_id, is_detached=detached)))
    sink.calls.clear()
    table.handle(pt.JobEnded(1))
    (call,) = sink.calls
    assert [(e.pg_id, e.state) for e in call if isinstance(e, PgStateChanged)] == [
        (b"a" * 18, "REMOVED"),
        (b"b" * 18, "REMOVED"),
    ]


def test_forgetting_the_oldest_removed_group_is_an_event() -> None:
    sink = Recorder()
    table = pt.PgTable(max_removed_kept=1, sink=sink)
    for pg_id in (b"a" * 18, b"b" * 18):
        table.handle(pt.Create(_record(pg_id)))
    table.handle(pt.Removed(b"a" * 18))
    sink.calls.clear()
    table.handle(pt.Removed(b"b" * 18))
    assert sink.calls == [
        (PgStateChanged(4, b"b" * 18, "REMOVED", {}), PgForgotten(5, b"a" * 18)),
    ]
    assert [g.pg_id for g in table.snapshot().groups] == [b"b" * 18]


def test_a_follower_replaying_events_on_a_snapshot_holds_the_table() -> None:
    table, rec, sink = _in_state(PgState.PENDING)
    held = {g.pg_id: g for g in table.snapshot().groups}
    table.handle(pt.Create(_record(b"q" * 18)))
    table.handle(pt.Placed(PG, {0: "a", 1: "b"}))
    table.handle(pt.Prepared(PG, rec.attempt))
    table.handle(pt.Committed(PG, rec.attempt, now=2.0))
    table.handle(pt.NodeLost("a"))
    table.handle(pt.Removed(b"q" * 18))
    for event in sink.events:
        if isinstance(event, PgAdded):
            held[event.group.pg_id] = event.group
        elif isinstance(event, PgStateChanged):
            old = held[event.pg_id]
            held[event.pg_id] = PgView(
                *(getattr(old, f) for f in PgView.__slots__[:-2]),  # type: ignore[arg-type]
                state=event.state,
                bundle_nodes=event.bundle_nodes,
            )
        else:
            held.pop(event.pg_id)
    snap = table.snapshot()
    assert snap.version == table.version
    assert held == {g.pg_id: g for g in snap.groups}
