"""Placement groups' bundle placement as a pure function: tables of (bundles, strategy, view)
and the node ids, or pending/infeasible, expected. No process."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from rayops.scheduling.bundles import BundlePlacement, place_bundles, validate_bundles
from rayops.scheduling.labels import LabelSelector, parse_label_selector
from rayops.scheduling.policy import NodeView


def node(
    nid: str,
    total: dict[str, float],
    avail: dict[str, float] | None = None,
    *,
    alive: bool = True,
    labels: Mapping[str, str] | None = None,
) -> NodeView:
    free = total if avail is None else avail
    return NodeView(nid, ("127.0.0.1", 1), total, free, alive, dict(labels or {}))


# Three nodes: two with 4 CPUs, a small one in another region with a GPU.
A, B, C = "a", "b", "c"
IDLE = [
    node(A, {"CPU": 4}, labels={"region": "us"}),
    node(B, {"CPU": 4}, labels={"region": "us"}),
    node(C, {"CPU": 2, "GPU": 1}, labels={"region": "eu"}),
]
A_BUSY = [node(A, {"CPU": 4}, {"CPU": 0}), *IDLE[1:]]
A_ONE_FREE = [node(A, {"CPU": 4}, {"CPU": 1}), *IDLE[1:]]
C_BUSY = [*IDLE[:2], node(C, {"CPU": 2, "GPU": 1}, {"CPU": 0, "GPU": 1}, labels={"region": "eu"})]
B_DEAD = [IDLE[0], node(B, {"CPU": 4}, alive=False), IDLE[2]]
# b already holds one committed bundle of the group (its CPU is out of `available`)
B_HOLDS_ONE = [IDLE[0], node(B, {"CPU": 4}, {"CPU": 3}), IDLE[2]]
C_HOLDS_ONE = [*IDLE[:2], node(C, {"CPU": 2, "GPU": 1}, {"CPU": 1, "GPU": 1})]
C_FULL = [*IDLE[:2], node(C, {"CPU": 2, "GPU": 1}, {"CPU": 0, "GPU": 1})]

ONE = {"CPU": 1}
TWO = {"CPU": 2}
THREE = {"CPU": 3}

Row = tuple[str, list[dict[str, float]], list[NodeView], dict[int, str], Any]


def check(
    bundles: list[dict[str, float]],
    strategy: str,
    view: list[NodeView],
    fixed: dict[int, str],
    expected: Any,
    selectors: list[LabelSelector] | None = None,
) -> BundlePlacement:
    got = place_bundles(
        bundles, strategy, view, bundle_label_selectors=selectors or (), fixed=fixed
    )
    if isinstance(expected, dict):
        assert got == BundlePlacement("placed", expected), got
    else:
        assert got.kind == expected and got.nodes == {} and got.reason, got
    return got


PACK: list[Row] = [
    ("all on the first node with room", [ONE] * 3, IDLE, {}, {0: A, 1: A, 2: A}),
    ("spills to one more node", [TWO] * 3, IDLE, {}, {0: A, 1: A, 2: B}),
    ("skips a busy node", [ONE] * 3, A_BUSY, {}, {0: B, 1: B, 2: B}),
    ("opens the node that takes the most", [ONE] * 3, A_ONE_FREE, {}, {0: B, 1: B, 2: B}),
    ("dead nodes take nothing", [THREE] * 2, B_DEAD, {}, "pending"),
    ("room later", [THREE] * 3, IDLE, {}, "pending"),
    ("bigger than any node", [{"CPU": 5}], IDLE, {}, "infeasible"),
    ("a resource no node has", [ONE, {"TPU": 1}], IDLE, {}, "infeasible"),
    ("next to the committed bundle", [ONE] * 3, B_HOLDS_ONE, {0: B}, {0: B, 1: B, 2: B}),
]

SPREAD: list[Row] = [
    ("one per node", [ONE] * 3, IDLE, {}, {0: A, 1: B, 2: C}),
    ("wraps around past the nodes", [ONE] * 4, IDLE, {}, {0: A, 1: B, 2: C, 3: A}),
    ("best effort: reuses a node", [ONE] * 3, C_BUSY, {}, {0: A, 1: B, 2: A}),
    ("away from the committed bundle", [ONE] * 3, IDLE, {0: A}, {0: A, 1: B, 2: C}),
    ("room later", [THREE] * 3, IDLE, {}, "pending"),
    ("a GPU only c has", [ONE, {"GPU": 1}], IDLE, {}, {0: A, 1: C}),
    ("two GPUs nobody has", [{"GPU": 2}], IDLE, {}, "infeasible"),
]

STRICT_PACK: list[Row] = [
    ("all on one node", [ONE] * 3, IDLE, {}, {0: A, 1: A, 2: A}),
    ("the first node with room for all", [ONE] * 2, A_ONE_FREE, {}, {0: B, 1: B}),
    ("never split", [TWO] * 3, IDLE, {}, "pending"),
    ("fits together only when freed", [TWO, TWO], A_BUSY[:1] + C_BUSY[2:], {}, "pending"),
    ("stays with the committed bundle", [ONE] * 2, C_HOLDS_ONE, {0: C}, {0: C, 1: C}),
    ("waits for the committed bundle's node", [ONE] * 2, C_FULL, {0: C}, "pending"),
    ("one bundle fits nowhere", [ONE, {"GPU": 2}], IDLE, {}, "infeasible"),
]

STRICT_SPREAD: list[Row] = [
    ("one per node", [ONE] * 3, IDLE, {}, {0: A, 1: B, 2: C}),
    ("more bundles than nodes: waits for nodes", [ONE] * 4, IDLE, {}, "pending"),
    ("big bundles take the big nodes", [ONE, THREE, THREE], IDLE, {}, {0: C, 1: B, 2: A}),
    ("only two nodes big enough", [THREE] * 3, IDLE, {}, "pending"),
    ("a busy node is not shared", [ONE] * 3, A_BUSY, {}, "pending"),
    ("a dead node does not count", [ONE] * 3, B_DEAD, {}, "pending"),
    ("not on the committed bundle's node", [ONE] * 3, IDLE, {1: B}, {0: A, 1: B, 2: C}),
    ("bigger than any node", [ONE, {"CPU": 8}], IDLE, {}, "infeasible"),
]


@pytest.mark.parametrize(("why", "bundles", "view", "fixed", "expected"), PACK)
def test_pack(
    why: str,
    bundles: list[dict[str, float]],
    view: list[NodeView],
    fixed: dict[int, str],
    expected: Any,
) -> None:
    check(bundles, "PACK", view, fixed, expected)


@pytest.mark.parametrize(("why", "bundles", "view", "fixed", "expected"), SPREAD)
def test_spread(
    why: str,
    bundles: list[dict[str, float]],
    view: list[NodeView],
    fixed: dict[int, str],
    expected: Any,
) -> None:
    check(bundles, "SPREAD", view, fixed, expected)


@pytest.mark.parametrize(("why", "bundles", "view", "fixed", "expected"), STRICT_PACK)
def test_strict_pack(
    why: str,
    bundles: list[dict[str, float]],
    view: list[NodeView],
    fixed: dict[int, str],
    expected: Any,
) -> None:
    check(bundles, "STRICT_PACK", view, fixed, expected)


@pytest.mark.parametrize(("why", "bundles", "view", "fixed", "expected"), STRICT_SPREAD)
def test_strict_spread(
    why: str,
    bundles: list[dict[str, float]],
    view: list[NodeView],
    fixed: dict[int, str],
    expected: Any,
) -> None:
    check(bundles, "STRICT_SPREAD", view, fixed, expected)


EU = parse_label_selector({"region": "eu"})
US = parse_label_selector({"region": "us"})
NOT_A = parse_label_selector({"ray.io/node-id": "!a"})
MARS = parse_label_selector({"region": "mars"})

LABELLED: list[tuple[str, str, list[dict[str, float]], list[LabelSelector], Any]] = [
    ("PACK", "the eu bundle apart", [ONE] * 3, [(), (), EU], {0: A, 1: A, 2: C}),
    ("SPREAD", "eu first, then the rest", [ONE] * 3, [EU, (), ()], {0: C, 1: A, 2: B}),
    ("SPREAD", "two on the one eu node", [ONE] * 2, [EU, EU], {0: C, 1: C}),
    ("STRICT_PACK", "on the node every selector allows", [ONE] * 2, [EU, ()], {0: C, 1: C}),
    ("STRICT_PACK", "no node suits both", [ONE] * 2, [EU, US], "pending"),
    ("STRICT_SPREAD", "one eu node for two eu bundles", [ONE] * 2, [EU, EU], "pending"),
    ("STRICT_SPREAD", "us bundles on us nodes", [ONE] * 3, [US, US, ()], {0: A, 1: B, 2: C}),
    ("PACK", "a node-id label", [ONE], [NOT_A], {0: B}),
    ("PACK", "no node matches", [ONE], [MARS], "infeasible"),
    ("STRICT_SPREAD", "no node matches", [ONE, ONE], [(), MARS], "infeasible"),
]


def _with_id_labels(view: list[NodeView]) -> list[NodeView]:
    return [
        NodeView(
            n.node_id,
            n.address,
            n.total,
            n.available,
            n.alive,
            {**n.labels, "ray.io/node-id": n.node_id},
        )
        for n in view
    ]


@pytest.mark.parametrize(("strategy", "why", "bundles", "selectors", "expected"), LABELLED)
def test_bundle_label_selectors(
    strategy: str,
    why: str,
    bundles: list[dict[str, float]],
    selectors: list[LabelSelector],
    expected: Any,
) -> None:
    got = check(bundles, strategy, _with_id_labels(IDLE), {}, expected, selectors)
    if expected == "infeasible":
        assert "region" in got.reason and "mars" in got.reason


def test_reasons_say_what_to_wait_for() -> None:
    more_nodes = place_bundles([ONE] * 4, "STRICT_SPREAD", IDLE)
    assert "more nodes" in more_nodes.reason
    one_node = place_bundles([TWO] * 3, "STRICT_PACK", IDLE)
    assert "{CPU: 6}" in one_node.reason
    too_big = place_bundles([{"CPU": 5}], "PACK", IDLE)
    assert "bundle 0 {CPU: 5}" in too_big.reason
    no_label = place_bundles([ONE], "PACK", IDLE, bundle_label_selectors=[MARS])
    assert "no live node matches its label selector {'region': 'mars'}" in no_label.reason
    small = place_bundles([ONE, THREE], "PACK", IDLE, bundle_label_selectors=[(), EU])
    assert "bundle 1 {CPU: 3} fits no live node matching {'region': 'eu'}" in small.reason


def test_same_view_same_answer_whatever_the_order() -> None:
    for strategy in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
        forward = place_bundles([ONE] * 3, strategy, IDLE)
        backward = place_bundles([ONE] * 3, strategy, list(reversed(IDLE)))
        assert forward == backward and forward.kind == "placed", strategy


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="unknown placement strategy"):
        place_bundles([ONE], "PACKED", IDLE)
    with pytest.raises(ValueError, match="one per bundle"):
        place_bundles([ONE, ONE], "PACK", IDLE, bundle_label_selectors=[EU])


@pytest.mark.parametrize(
    ("bundles", "strategy", "message"),
    [
        ({"CPU": 1}, "PACK", "Placement group bundles must be a list, got <class 'dict'>"),
        ([], "PACK", "Bundles must be a non-empty list of resource dictionaries.*empty list"),
        ([{}], "PACK", "Bundles cannot be an empty dictionary or resources with only 0 values"),
        ([ONE, {"CPU": 0, "GPU": 0}], "PACK", "only 0 values"),
        (["CPU"], "PACK", "Bundles must be a non-empty list of resource dictionaries"),
        ([{"CPU": "1"}], "PACK", "Bundles must be a non-empty list of resource dictionaries"),
        ([{1: 1}], "PACK", "Bundles must be a non-empty list of resource dictionaries"),
        ([{"CPU": -1, "GPU": 1}], "PACK", "negative amount of CPU"),
        ([ONE], "SPREAD_OUT", "Invalid placement group strategy SPREAD_OUT. Supported"),
        ([ONE], None, "Invalid placement group strategy None"),
    ],
)
def test_validate_bundles_refuses_as_ray_does(bundles: Any, strategy: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        validate_bundles(bundles, strategy)


def test_validate_bundles_accepts_rays_examples() -> None:
    for strategy in ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"):
        validate_bundles([{"CPU": 1.0}, {"GPU": 1.0}], strategy)
    validate_bundles([{"CPU": 1, "GPU": 0}], "PACK")  # zero amounts beside a non-zero one
    validate_bundles([{"CPU": True}], "PACK")  # a bool is a number to Ray's check too
