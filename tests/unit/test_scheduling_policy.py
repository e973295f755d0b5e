"""The scheduling policy as a pure function: decisions from a request and a view."""

from __future__ import annotations

from rayops.scheduling.policy import NodeView, choose_node
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def node(
    nid: str, total: dict[str, float], avail: dict[str, float] | None = None, alive: bool = True
) -> NodeView:
    return NodeView(nid, ("127.0.0.1", 1), total, total if avail is None else avail, alive)


def test_local_first_when_it_fits() -> None:
    view = [node("a", {"CPU": 2}), node("b", {"CPU": 8})]
    assert choose_node({"CPU": 1}, None, "a", view).kind == "local"


def test_spill_to_the_node_with_room() -> None:
    view = [
        node("a", {"CPU": 2}, {"CPU": 0}),
        node("b", {"CPU": 2}, {"CPU": 1}),
        node("c", {"CPU": 4}, {"CPU": 3}),
    ]
    d = choose_node({"CPU": 1}, None, "a", view)
    assert d.kind == "spill" and d.node is not None and d.node.node_id == "c"


def test_custom_resource_only_one_node_has() -> None:
    view = [node("a", {"CPU": 2}), node("b", {"CPU": 2, "accel": 1})]
    d = choose_node({"accel": 1}, None, "a", view)
    assert d.kind == "spill" and d.node is not None and d.node.node_id == "b"


def test_queue_locally_when_busy_but_feasible() -> None:
    view = [node("a", {"CPU": 2}, {"CPU": 0}), node("b", {"CPU": 2}, {"CPU": 0})]
    assert choose_node({"CPU": 1}, None, "a", view).kind == "local"


def test_infeasible_everywhere() -> None:
    view = [node("a", {"CPU": 2}), node("b", {"CPU": 2})]
    assert choose_node({"GPU": 1}, None, "a", view).kind == "infeasible"


def test_dead_nodes_are_ignored() -> None:
    view = [node("a", {"CPU": 1}, {"CPU": 0}), node("b", {"CPU": 4}, alive=False)]
    assert choose_node({"CPU": 1}, None, "a", view).kind == "local"
    assert choose_node({"CPU": 2}, None, "a", view).kind == "infeasible"


def test_spread_rotates() -> None:
    view = [node("a", {"CPU": 2}), node("b", {"CPU": 2}), node("c", {"CPU": 2})]
    picks = [choose_node({"CPU": 1}, "SPREAD", "a", view, spread_counter=i).node for i in range(6)]
    assert [p.node_id for p in picks if p] == ["a", "b", "c", "a", "b", "c"]
    busy = [node("a", {"CPU": 2}, {"CPU": 0}), node("b", {"CPU": 2}), node("c", {"GPU": 1})]
    picks = [choose_node({"CPU": 1}, "SPREAD", "a", busy, spread_counter=i).node for i in range(4)]
    assert [p.node_id for p in picks if p] == ["a", "b", "a", "b"]


def test_node_affinity_hard_and_soft() -> None:
    view = [node("a", {"CPU": 2}), node("b", {"CPU": 2})]
    d = choose_node({"CPU": 1}, NodeAffinitySchedulingStrategy("b", soft=False), "a", view)
    assert d.kind == "spill" and d.node is not None and d.node.node_id == "b"
    dead = [node("a", {"CPU": 2}), node("b", {"CPU": 2}, alive=False)]
    d = choose_node({"CPU": 1}, NodeAffinitySchedulingStrategy("b", soft=False), "a", dead)
    assert d.kind == "fail" and "soft=True" in d.reason
    d = choose_node({"CPU": 1}, NodeAffinitySchedulingStrategy("b", soft=True), "a", dead)
    assert d.kind == "local"


def test_prefers_nodes_holding_arguments() -> None:
    view = [node("a", {"CPU": 2}), node("b", {"CPU": 2})]
    d = choose_node({"CPU": 1}, None, "a", view, preferred=["b"])
    assert d.kind == "spill" and d.node is not None and d.node.node_id == "b"
