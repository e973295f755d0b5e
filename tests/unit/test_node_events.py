"""The node table as a state machine: every edge of `TRANSITIONS`, its events and versions.

No processes: commands in, events out, a fake clock. One test per edge of the table (legal
ones, and the ignored or refused ones), then the properties every edge shares.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import pytest

from rayops.gcs.errors import FailedPrecondition, InvalidArgument
from rayops.gcs.node_events import (
    MarkNodeDead,
    NodeAdded,
    NodeCommand,
    NodeDead,
    NodeEvent,
    NodeRemoved,
    NodeResourcesChanged,
    RegisterNode,
    ReportUsage,
)
from rayops.gcs.node_table import TRANSITIONS, Edge, Effect, NodeTable
from rayops.gcs.types import NodeInfo, NodeState, ObjectStoreStats


class FakeClock:
    def __init__(self, start_ms: int = 1_000) -> None:
        self.now_ms = start_ms

    def __call__(self) -> int:
        return self.now_ms


def _node(node_id: str = "aa01", **changes: object) -> NodeInfo:
    base = NodeInfo(
        node_id=node_id, node_ip="127.0.0.1", raylet_port=7000, resources_total={"CPU": 4.0}
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


class Recorder:
    """The sink a table publishes to (the GCS passes its publisher)."""

    def __init__(self) -> None:
        self.events: list[NodeEvent] = []

    def __call__(self, events: Sequence[NodeEvent]) -> None:
        self.events.extend(events)


def _table(state: NodeState | None, clock: FakeClock | None = None) -> tuple[NodeTable, Recorder]:
    """A table holding node aa01 in `state` (None: not held), and the sink it publishes to."""
    sink = Recorder()
    table = NodeTable(clock or FakeClock(), sink=sink)
    if state is not None:
        table.apply(RegisterNode(_node()))
    if state is NodeState.DEAD:
        table.apply(MarkNodeDead("aa01", "gone"))
    sink.events.clear()
    return table, sink


USAGE = ReportUsage("aa01", {"CPU": 4.0}, {"CPU": 1.0}, ObjectStoreStats(10, 100, 0))


# One test per edge.


def test_unknown_register_adds_the_node_alive() -> None:
    clock = FakeClock(5_000)
    table, sink = _table(None, clock)
    applied = table.apply(RegisterNode(_node()))
    assert (applied.before, applied.after) == (None, NodeState.ALIVE)
    assert applied.node is not None
    assert applied.node.start_time_ms == 5_000
    assert applied.node.resources_available == {"CPU": 4.0}  # available defaults to total
    assert applied.events == (NodeAdded(1, applied.node),)
    assert sink.events == list(applied.events)


def test_alive_register_replaces_the_info_and_keeps_the_start_time() -> None:
    clock = FakeClock(5_000)
    table, sink = _table(NodeState.ALIVE, clock)
    clock.now_ms = 9_000
    applied = table.apply(RegisterNode(_node(raylet_port=7100)))
    assert (applied.before, applied.after) == (NodeState.ALIVE, NodeState.ALIVE)
    assert applied.node is not None
    assert (applied.node.raylet_port, applied.node.start_time_ms) == (7100, 5_000)
    assert [type(e) for e in sink.events] == [NodeAdded]


def test_dead_register_is_refused_and_changes_nothing() -> None:
    table, sink = _table(NodeState.DEAD)
    version = table.version
    with pytest.raises(FailedPrecondition, match="must register under a new node id"):
        table.apply(RegisterNode(_node()))
    node = table.get("aa01")
    assert node is not None
    assert node.state is NodeState.DEAD
    assert (table.version, sink.events) == (version, [])


def test_unknown_usage_is_ignored() -> None:
    table, sink = _table(None)
    applied = table.apply(USAGE)
    assert (applied.before, applied.after, applied.events) == (None, None, ())
    assert len(table) == 0
    assert sink.events == []


def test_alive_usage_is_stored_and_published_when_it_changed() -> None:
    clock = FakeClock(5_000)
    table, sink = _table(NodeState.ALIVE, clock)
    clock.now_ms = 6_000
    applied = table.apply(USAGE)
    assert (applied.before, applied.after) == (NodeState.ALIVE, NodeState.ALIVE)
    assert applied.events == (
        NodeResourcesChanged(2, "aa01", {"CPU": 4.0}, {"CPU": 1.0}, ObjectStoreStats(10, 100, 0)),
    )
    node = table.get("aa01")
    assert node is not None
    assert (node.resources_available, node.last_report_time_ms) == ({"CPU": 1.0}, 6_000)
    # The same usage again: stored (the report time moves) but nothing to publish.
    clock.now_ms = 7_000
    again = table.apply(USAGE)
    assert again.events == ()
    assert table.version == 2
    assert len(sink.events) == 1
    node = table.get("aa01")
    assert node is not None
    assert node.last_report_time_ms == 7_000


def test_dead_usage_is_ignored() -> None:
    table, sink = _table(NodeState.DEAD)
    applied = table.apply(USAGE)
    assert (applied.before, applied.after, applied.events) == (NodeState.DEAD, NodeState.DEAD, ())
    node = table.get("aa01")
    assert node is not None
    assert node.resources_available == {"CPU": 4.0}
    assert sink.events == []


def test_unknown_mark_dead_is_ignored() -> None:
    table, sink = _table(None)
    applied = table.apply(MarkNodeDead("aa01", "gone"))
    assert (applied.before, applied.after, applied.events) == (None, None, ())
    assert sink.events == []


def test_alive_mark_dead_records_reason_and_end_time() -> None:
    clock = FakeClock(5_000)
    table, sink = _table(NodeState.ALIVE, clock)
    clock.now_ms = 8_000
    applied = table.apply(MarkNodeDead("aa01", "missed 3 health checks"))
    assert (applied.before, applied.after) == (NodeState.ALIVE, NodeState.DEAD)
    assert applied.events == (NodeDead(2, "aa01", "missed 3 health checks", 8_000),)
    assert sink.events == list(applied.events)


def test_dead_mark_dead_keeps_the_first_reason_and_end_time() -> None:
    clock = FakeClock(5_000)
    table, sink = _table(NodeState.DEAD, clock)
    clock.now_ms = 9_000
    applied = table.apply(MarkNodeDead("aa01", "second reason"))
    assert (applied.before, applied.after, applied.events) == (NodeState.DEAD, NodeState.DEAD, ())
    node = table.get("aa01")
    assert node is not None
    assert (node.death_reason, node.end_time_ms) == ("gone", 5_000)
    assert sink.events == []


# What every edge shares.


def test_the_table_has_an_edge_for_every_state_and_command() -> None:
    states = (None, NodeState.ALIVE, NodeState.DEAD)
    commands = (RegisterNode, ReportUsage, MarkNodeDead)
    assert set(TRANSITIONS) == {(s, c) for s in states for c in commands}


_COMMANDS: dict[type, NodeCommand] = {
    RegisterNode: RegisterNode(_node()),
    ReportUsage: USAGE,
    MarkNodeDead: MarkNodeDead("aa01", "gone again"),
}


@pytest.mark.parametrize(("key", "edge"), list(TRANSITIONS.items()), ids=str)
def test_apply_follows_the_transition_table(key: tuple[NodeState | None, type], edge: Edge) -> None:
    state, command = key
    table, sink = _table(state)
    version = table.version
    cmd = _COMMANDS[command]
    if edge.effect is Effect.REFUSE:
        with pytest.raises(FailedPrecondition):
            table.apply(cmd)
        assert (table.version, sink.events) == (version, [])
        return
    applied = table.apply(cmd)
    assert (applied.before, applied.after) == (state, edge.to)
    if edge.effect is Effect.IGNORE:
        assert (applied.events, table.version) == ((), version)
    else:
        assert applied.events
    assert [e.version for e in applied.events] == list(range(version + 1, table.version + 1))


def test_versions_increase_by_one_per_event_across_nodes() -> None:
    table, sink = _table(None)
    table.apply(RegisterNode(_node("aa")))
    table.apply(RegisterNode(_node("bb")))
    table.apply(ReportUsage("bb", {"CPU": 4.0}, {"CPU": 2.0}))
    table.apply(MarkNodeDead("aa", "gone"))
    assert [e.version for e in sink.events] == [1, 2, 3, 4]
    assert [type(e) for e in sink.events] == [NodeAdded, NodeAdded, NodeResourcesChanged, NodeDead]
    snap = table.snapshot()
    assert snap.version == 4
    assert [(n.node_id, n.state) for n in snap.nodes] == [
        ("aa", NodeState.DEAD),
        ("bb", NodeState.ALIVE),
    ]


def test_forgetting_the_oldest_dead_node_is_an_event() -> None:
    sink = Recorder()
    table = NodeTable(FakeClock(), max_dead_nodes=1, sink=sink)
    for node_id in ("aa", "bb"):
        table.apply(RegisterNode(_node(node_id)))
    table.apply(MarkNodeDead("aa", "gone"))
    applied = table.apply(MarkNodeDead("bb", "gone"))
    assert applied.events == (NodeDead(4, "bb", "gone", 1_000), NodeRemoved(5, "aa"))
    assert table.get("aa") is None
    # Forgotten means unknown again: the id is no longer remembered as DEAD.
    assert table.apply(RegisterNode(_node("aa"))).after is NodeState.ALIVE


@pytest.mark.parametrize(
    "cmd",
    [
        RegisterNode(_node("NOT-HEX")),
        RegisterNode(_node(node_ip="")),
        RegisterNode(_node(raylet_port=0)),
        RegisterNode(_node(resources_total={"CPU": -1.0})),
        ReportUsage("zz", {}, {}),
        ReportUsage("aa01", {"CPU": float("nan")}, {}),
        MarkNodeDead("", "gone"),
    ],
    ids=["id", "ip", "port", "negative", "usage-id", "usage-nan", "dead-id"],
)
def test_malformed_commands_are_refused_before_any_change(cmd: NodeCommand) -> None:
    table, sink = _table(NodeState.ALIVE)
    with pytest.raises(InvalidArgument):
        table.apply(cmd)
    assert (table.version, sink.events) == (1, [])
