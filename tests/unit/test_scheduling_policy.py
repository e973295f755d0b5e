"""The placement policy as a pure function: decisions from a request and a view, as tables.

``choose_node`` decides for the raylet (tasks' leases, from a local node) and for the GCS
(actors, with the creator's node as "local", or none): the same table holds for both.
"""

from __future__ import annotations

import pickle
from typing import Any

import pytest

from rayops import exceptions as rex
from rayops.gcs.actor_placement import (
    node_views,
    place_actor,
    strategy_from_wire,
    strategy_to_wire,
)
from rayops.gcs.actor_table import Action, ActorRecord, ActorState, ActorTable
from rayops.gcs.types import NodeInfo, NodeState
from rayops.scheduling.labels import parse_label_selector
from rayops.scheduling.policy import NodeView, choose_node
from rayops.scheduling.strategy import NodeAffinity, affinity_of
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def node(
    nid: str,
    total: dict[str, float],
    avail: dict[str, float] | None = None,
    alive: bool = True,
    labels: dict[str, str] | None = None,
) -> NodeView:
    free = total if avail is None else avail
    return NodeView(nid, ("127.0.0.1", 1), total, free, alive, labels or {})


def hard(nid: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(nid, soft=False)


def soft(nid: str) -> NodeAffinitySchedulingStrategy:
    return NodeAffinitySchedulingStrategy(nid, soft=True)


IDLE = [node("a", {"CPU": 2}), node("b", {"CPU": 8})]
A_FULL = [
    node("a", {"CPU": 2}, {"CPU": 0}),
    node("b", {"CPU": 2}, {"CPU": 1}),
    node("c", {"CPU": 4}, {"CPU": 3}),
]
ALL_FULL = [node("a", {"CPU": 2}, {"CPU": 0}), node("b", {"CPU": 2}, {"CPU": 0})]
B_ACCEL = [node("a", {"CPU": 2}), node("b", {"CPU": 2, "accel": 1})]
B_DEAD = [node("a", {"CPU": 1}, {"CPU": 0}), node("b", {"CPU": 4}, alive=False)]
LABELLED = [
    node("a", {"CPU": 2}, labels={"region": "us"}),
    node("b", {"CPU": 2}, labels={"region": "eu"}),
    node("c", {"CPU": 2}, {"CPU": 0}, labels={"region": "eu"}),
]

# (why, shape, strategy, local id, view, selector, expected kind, expected node or None)
ROWS: list[tuple[str, dict[str, float], Any, str, list[NodeView], dict[str, str], str, Any]] = [
    ("local first when it fits", {"CPU": 1}, None, "a", IDLE, {}, "local", "a"),
    ("DEFAULT is the default", {"CPU": 1}, "DEFAULT", "a", IDLE, {}, "local", "a"),
    ("spill to the node with most room", {"CPU": 1}, None, "a", A_FULL, {}, "spill", "c"),
    ("a custom resource one node has", {"accel": 1}, None, "a", B_ACCEL, {}, "spill", "b"),
    ("queue locally when busy", {"CPU": 1}, None, "a", ALL_FULL, {}, "local", "a"),
    ("infeasible everywhere", {"GPU": 1}, None, "a", IDLE, {}, "infeasible", None),
    ("dead nodes are ignored", {"CPU": 1}, None, "a", B_DEAD, {}, "local", "a"),
    ("only a dead node is big enough", {"CPU": 2}, None, "a", B_DEAD, {}, "infeasible", None),
    # the GCS: no local node, or the creator's node
    ("no local node: most room", {"CPU": 1}, None, "", IDLE, {}, "spill", "b"),
    ("no local node: queue where feasible", {"CPU": 1}, None, "", ALL_FULL, {}, "spill", "a"),
    ("the creator's node when it has room", {"CPU": 1}, None, "a", IDLE, {}, "local", "a"),
    ("an unknown creator's node", {"CPU": 1}, None, "zz", IDLE, {}, "spill", "b"),
    # node affinity
    ("hard affinity to a live node", {"CPU": 1}, hard("b"), "a", IDLE, {}, "spill", "b"),
    ("hard affinity to a busy node queues", {"CPU": 1}, hard("b"), "a", ALL_FULL, {}, "spill", "b"),
    ("hard affinity to a dead node", {"CPU": 1}, hard("b"), "a", B_DEAD, {}, "fail", None),
    ("hard affinity to an unknown node", {"CPU": 1}, hard("zz"), "a", IDLE, {}, "fail", None),
    ("hard affinity, node too small", {"CPU": 4}, hard("a"), "a", IDLE, {}, "fail", None),
    ("soft affinity to a dead node", {"CPU": 1}, soft("b"), "a", B_DEAD, {}, "local", "a"),
    ("soft affinity to an unknown node", {"CPU": 1}, soft("zz"), "", IDLE, {}, "spill", "b"),
    ("soft affinity, node too small", {"CPU": 4}, soft("a"), "a", IDLE, {}, "spill", "b"),
    ("the GCS's own affinity record", {"CPU": 1}, NodeAffinity("zz"), "", IDLE, {}, "fail", None),
    # label selectors narrow first
    ("selector narrows", {"CPU": 1}, None, "a", LABELLED, {"region": "eu"}, "spill", "b"),
    ("selector excludes local", {"CPU": 1}, None, "a", LABELLED, {"region": "!us"}, "spill", "b"),
    (
        "selector matches nothing",
        {"CPU": 1},
        None,
        "a",
        LABELLED,
        {"region": "ap"},
        "infeasible",
        None,
    ),
    (
        "hard affinity outside the selector",
        {"CPU": 1},
        hard("a"),
        "a",
        LABELLED,
        {"region": "eu"},
        "fail",
        None,
    ),
    (
        "soft affinity outside the selector",
        {"CPU": 1},
        soft("a"),
        "a",
        LABELLED,
        {"region": "eu"},
        "spill",
        "b",
    ),
]


@pytest.mark.parametrize(("why", "shape", "strategy", "local", "view", "sel", "kind", "at"), ROWS)
def test_choose_node(
    why: str,
    shape: dict[str, float],
    strategy: Any,
    local: str,
    view: list[NodeView],
    sel: dict[str, str],
    kind: str,
    at: Any,
) -> None:
    d = choose_node(shape, strategy, local, view, label_selector=parse_label_selector(sel))
    assert d.kind == kind, d
    assert (d.node.node_id if d.node else None) == at
    if kind == "fail":
        assert "soft=True" in d.reason and d.reason.startswith("NodeAffinitySchedulingStrategy")


def test_fail_reasons_say_which_case() -> None:
    def reason(
        strategy: Any, shape: dict[str, float], view: list[NodeView], sel: Any = None
    ) -> str:
        return choose_node(
            shape, strategy, "a", view, label_selector=parse_label_selector(sel)
        ).reason

    assert "is dead or unknown" in reason(hard("b"), {"CPU": 1}, B_DEAD)
    assert "is dead or unknown" in reason(hard("zz"), {"CPU": 1}, IDLE)
    assert "lacks the resources" in reason(hard("a"), {"CPU": 4}, IDLE)
    assert "does not match the label_selector {'region': 'eu'}" in reason(
        hard("a"), {"CPU": 1}, LABELLED, {"region": "eu"}
    )


SPREAD_ROWS: list[tuple[str, list[NodeView], int, list[str]]] = [
    ("rotates over every node", [node(x, {"CPU": 2}) for x in "abc"], 6, ["a", "b", "c"] * 2),
    (
        "busy nodes stay in the rotation, infeasible ones do not",
        [node("a", {"CPU": 2}, {"CPU": 0}), node("b", {"CPU": 2}), node("c", {"GPU": 1})],
        4,
        ["a", "b", "a", "b"],
    ),
    (
        "by node id, whatever the view's order",
        [node(x, {"CPU": 2}) for x in "cab"],
        3,
        ["a", "b", "c"],
    ),
]


@pytest.mark.parametrize(("why", "view", "n", "expected"), SPREAD_ROWS)
def test_spread(why: str, view: list[NodeView], n: int, expected: list[str]) -> None:
    for local in ("a", ""):  # a raylet's decision, and the GCS's
        picks = [choose_node({"CPU": 1}, "SPREAD", local, view, spread_counter=i) for i in range(n)]
        assert [p.node.node_id for p in picks if p.node] == expected


def test_spread_within_a_selector() -> None:
    eu = parse_label_selector({"region": "eu"})
    picks = [
        choose_node({"CPU": 1}, "SPREAD", "a", LABELLED, spread_counter=i, label_selector=eu)
        for i in range(4)
    ]
    assert [p.node.node_id for p in picks if p.node] == ["b", "c", "b", "c"]


def test_prefers_nodes_holding_arguments() -> None:
    view = [node("a", {"CPU": 2}), node("b", {"CPU": 2})]
    d = choose_node({"CPU": 1}, None, "a", view, preferred=["b"])
    assert d.kind == "spill" and d.node is not None and d.node.node_id == "b"


# ------------------------------------------------------------------ the GCS's actor placement
def test_affinity_is_read_from_either_form() -> None:
    assert affinity_of(hard("b")) == NodeAffinity("b", soft=False)
    assert affinity_of(soft("b")) == NodeAffinity("b", soft=True)
    assert affinity_of(NodeAffinity("b", True)) == NodeAffinity("b", True)
    for plain in (None, "DEFAULT", "SPREAD"):
        assert affinity_of(plain) is None


@pytest.mark.parametrize(
    ("strategy", "record"),
    [
        (None, None),
        ("DEFAULT", None),
        ("SPREAD", "SPREAD"),
        (hard("ab" * 28), NodeAffinity("ab" * 28, soft=False)),
        (soft("ab" * 28), NodeAffinity("ab" * 28, soft=True)),
    ],
)
def test_actor_strategy_crosses_the_wire(strategy: Any, record: Any) -> None:
    wire = {"scheduling_strategy": "", "affinity_node_id": "", "affinity_soft": False}
    wire.update(strategy_to_wire(strategy))
    kind, node_id, is_soft = (
        wire["scheduling_strategy"],
        wire["affinity_node_id"],
        wire["affinity_soft"],
    )
    assert strategy_from_wire(str(kind), str(node_id), bool(is_soft)) == record


def test_unknown_wire_strategy_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown actor scheduling strategy 'PACK'"):
        strategy_from_wire("PACK", "", False)
    with pytest.raises(ValueError, match="NODE_AFFINITY"):
        strategy_from_wire("NODE_AFFINITY", "", False)


def info(nid: str, total: dict[str, float], avail: dict[str, float], **kw: Any) -> NodeInfo:
    return NodeInfo(nid, "127.0.0.1", 1000, resources_total=total, resources_available=avail, **kw)


def record(**kw: Any) -> ActorRecord:
    fields: dict[str, Any] = {
        "actor_id": b"\x01" * 16,
        "class_name": "C",
        "job_id": 1,
        "name": "",
        "namespace": "ns",
        "is_detached": False,
        "max_restarts": 0,
        "placement_resources": {"CPU": 1.0},
        "hold_resources": {},
        "creation_spec": b"",
        "handle_meta": b"",
        "owner_address": "127.0.0.1:1",
    }
    fields.update(kw)
    return ActorRecord(**fields)


NODES = [
    info("head", {"CPU": 2}, {"CPU": 0}),
    info("w1", {"CPU": 4}, {"CPU": 4}, labels={"region": "eu"}),
    info("w2", {"CPU": 4}, {"CPU": 2}, state=NodeState.DEAD),
]


@pytest.mark.parametrize(
    ("why", "rec", "kind", "at"),
    [
        ("creator's node busy: most room", record(owner_node_id="head"), "spill", "w1"),
        ("creator's node with room", record(owner_node_id="w1"), "local", "w1"),
        (
            "hard affinity to a dead node",
            record(scheduling_strategy=NodeAffinity("w2")),
            "fail",
            None,
        ),
        (
            "hard affinity to an unknown node",
            record(scheduling_strategy=NodeAffinity("x")),
            "fail",
            None,
        ),
        (
            "soft affinity to a dead node",
            record(scheduling_strategy=NodeAffinity("w2", True)),
            "spill",
            "w1",
        ),
        (
            "hard affinity to a busy node",
            record(scheduling_strategy=NodeAffinity("head")),
            "spill",
            "head",
        ),
        ("label selector", record(label_selector={"region": "!eu"}), "spill", "head"),
        (
            "label selector matching no live node",
            record(label_selector={"region": "us"}),
            "infeasible",
            None,
        ),
        ("more than any node has", record(placement_resources={"CPU": 8.0}), "infeasible", None),
    ],
)
def test_place_actor(why: str, rec: ActorRecord, kind: str, at: Any) -> None:
    d = place_actor(rec, NODES, spread_counter=0)
    assert (d.kind, d.node.node_id if d.node else None) == (kind, at), d


def test_spread_actors_rotate_over_live_nodes() -> None:
    rec = record(scheduling_strategy="SPREAD", placement_resources={})
    picks = [place_actor(rec, NODES, spread_counter=i).node for i in range(4)]
    assert [p.node_id for p in picks if p] == ["head", "w1", "head", "w1"]


def test_node_views_of_the_node_table() -> None:
    views = node_views(NODES)
    assert [(v.node_id, v.address, v.alive) for v in views] == [
        ("head", ("127.0.0.1", 1000), True),
        ("w1", ("127.0.0.1", 1000), True),
        ("w2", ("127.0.0.1", 1000), False),
    ]
    assert views[1].labels == {"region": "eu"} and views[0].available == {"CPU": 0}


@pytest.mark.parametrize("state", [ActorState.PENDING_CREATION, ActorState.RESTARTING])
def test_unschedulable_actor_dies_with_rays_error(state: ActorState) -> None:
    table = ActorTable()
    rec, _ = table.register(record(), get_if_exists=False)
    rec.state = state
    error = pickle.dumps(rex.ActorUnschedulableError("node x is dead"))
    assert table.unschedulable(rec, "node x is dead", error) == Action.STOP_WORKER
    assert rec.state == ActorState.DEAD and rec.death_error == error
    assert rec.death_cause == "the actor cannot be scheduled: node x is dead"
    got = pickle.loads(rec.death_error)
    assert isinstance(got, rex.ActorUnschedulableError) and not isinstance(got, rex.ActorDiedError)
    assert str(got).startswith("The actor cannot be scheduled: node x is dead. Check")
    # once dead (or alive), a late decision changes nothing
    assert table.unschedulable(rec, "again", b"") == Action.NONE and rec.death_error == error
