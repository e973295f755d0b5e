"""The raylet's cluster view applying the GCS's node channel: snapshot, deltas, deaths, resync.

No processes: batches as the GCS's publisher makes them (from a real node table), applied to
a `ClusterView`; what the raylet does with the answers (tell core workers of dead nodes,
stop when itself is dead) is driven by what `apply` returns.
"""

from __future__ import annotations

from rayops.gcs.node_events import MarkNodeDead, RegisterNode, ReportUsage
from rayops.gcs.node_table import NodeTable
from rayops.gcs.pubsub import Batch
from rayops.gcs.types import NodeInfo
from rayops.raylet.cluster_view import ClusterView, NodeView

LOCAL = "11"


def _node(node_id: str) -> NodeInfo:
    return NodeInfo(
        node_id=node_id, node_ip="127.0.0.1", raylet_port=7000, resources_total={"CPU": 2.0}
    )


def _local() -> NodeView:
    return NodeView(LOCAL, ("127.0.0.1", 7000), {"CPU": 2.0}, {"CPU": 1.0})


class Channel:
    """The GCS side: a node table whose events are cut into batches as the publisher does."""

    def __init__(self) -> None:
        self.table = NodeTable(lambda: 1_000, sink=self._collect)
        self._pending: list[object] = []

    def _collect(self, events: object) -> None:
        self._pending.extend(events)  # type: ignore[call-overload]

    def snapshot(self) -> Batch:
        self._pending.clear()
        return Batch("nodes", "e1", self.table.version, self.table.snapshot())

    def deltas(self) -> Batch:
        events, self._pending = tuple(self._pending), []
        return Batch("nodes", "e1", self.table.version, None, events)


def _view(now_ms: int = 5_000) -> ClusterView:
    return ClusterView(LOCAL, _local, clock_ms=lambda: now_ms)


def test_snapshot_then_deltas_keep_every_other_node() -> None:
    gcs, view = Channel(), _view()
    for node_id in (LOCAL, "aa"):
        gcs.table.apply(RegisterNode(_node(node_id)))
    assert view.apply(gcs.snapshot()) == ([], False)
    assert set(view.remote) == {"aa"}
    assert (view.epoch, view.version) == ("e1", 2)
    assert view.seen_ms == {"aa": 5_000}

    gcs.table.apply(RegisterNode(_node("bb")))
    gcs.table.apply(ReportUsage("aa", {"CPU": 2.0}, {"CPU": 0.5}))
    assert view.apply(gcs.deltas()) == ([], False)
    assert set(view.remote) == {"aa", "bb"}
    assert view.remote["aa"].available == {"CPU": 0.5}
    assert view.version == 4
    # The local node always comes from the raylet's own numbers.
    assert view.get(LOCAL) == _local()
    assert [n.node_id for n in view.nodes()] == [LOCAL, "aa", "bb"]


def test_a_dead_node_is_reported_once_and_kept_as_not_alive() -> None:
    gcs, view = Channel(), _view()
    for node_id in (LOCAL, "aa"):
        gcs.table.apply(RegisterNode(_node(node_id)))
    view.apply(gcs.snapshot())
    gcs.table.apply(MarkNodeDead("aa", "missed health checks"))
    assert view.apply(gcs.deltas()) == (["aa"], False)
    assert not view.remote["aa"].alive
    # A resync by snapshot does not report the same death again.
    assert view.apply(gcs.snapshot()) == ([], False)


def test_a_node_first_seen_dead_in_a_snapshot_is_reported() -> None:
    gcs, view = Channel(), _view()
    gcs.table.apply(RegisterNode(_node("aa")))
    gcs.table.apply(MarkNodeDead("aa", "left"))
    assert view.apply(gcs.snapshot()) == (["aa"], False)
    assert "aa" not in view.seen_ms


def test_our_own_death_says_stop() -> None:
    gcs, view = Channel(), _view()
    gcs.table.apply(RegisterNode(_node(LOCAL)))
    view.apply(gcs.snapshot())
    gcs.table.apply(MarkNodeDead(LOCAL, "missed health checks"))
    assert view.apply(gcs.deltas()) == ([], True)
    # And in a snapshot (a raylet that reconnects after it was declared dead).
    assert _view().apply(gcs.snapshot()) == ([], True)


def test_a_forgotten_node_leaves_the_view() -> None:
    gcs, view = Channel(), _view()
    gcs.table = NodeTable(lambda: 1_000, max_dead_nodes=0, sink=gcs._collect)
    gcs.table.apply(RegisterNode(_node("aa")))
    view.apply(gcs.snapshot())
    gcs.table.apply(MarkNodeDead("aa", "left"))
    assert view.apply(gcs.deltas()) == (["aa"], False)
    assert "aa" not in view.remote
