"""Node labels and ``label_selector`` (Ray 2.60's syntax and meaning), as pure functions:
parsing and refusal, matching, default labels, and placement by ``choose_node``."""

from __future__ import annotations

import pytest

from rayops.options import validate_actor_options, validate_task_options
from rayops.scheduling.labels import (
    LabelCondition,
    default_node_labels,
    labels_match,
    parse_label_selector,
)
from rayops.scheduling.policy import NodeView, choose_node
from rayops.scheduling.strategy import LabelScoped, scoped_strategy, split_strategy
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def node(nid: str, labels: dict[str, str], cpus: float = 1, free: float | None = None) -> NodeView:
    total = {"CPU": cpus}
    avail = {"CPU": cpus if free is None else free}
    return NodeView(nid, ("127.0.0.1", 1), total, avail, True, {"ray.io/node-id": nid, **labels})


# ------------------------------------------------------------------------------ syntax
@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        (None, ()),
        ({}, ()),
        ({"region": "us"}, (LabelCondition("region", ("us",)),)),
        ({"region": "!us"}, (LabelCondition("region", ("us",), True),)),
        ({"region": "in(us,eu)"}, (LabelCondition("region", ("us", "eu")),)),
        ({"region": "in(us, eu)"}, (LabelCondition("region", ("us", "eu")),)),
        ({"region": "!in(us,eu)"}, (LabelCondition("region", ("us", "eu"), True),)),
        ({"k": "a.b-c_d"}, (LabelCondition("k", ("a.b-c_d",)),)),
        ({"k": ""}, (LabelCondition("k", ("",)),)),
        ({"example.com/tier": "gold"}, (LabelCondition("example.com/tier", ("gold",)),)),
        ({"ray.io/node-id": "ab12"}, (LabelCondition("ray.io/node-id", ("ab12",)),)),
        (
            {"z": "1", "a": "2"},  # kept in key order, so equal selectors share leases
            (LabelCondition("a", ("2",)), LabelCondition("z", ("1",))),
        ),
    ],
)
def test_selectors_ray_accepts(selector: object, expected: tuple[LabelCondition, ...]) -> None:
    assert parse_label_selector(selector) == expected


@pytest.mark.parametrize(
    ("selector", "error"),
    [
        # each refused by Ray 2.60 with the same exception type (checked side by side)
        ("us", TypeError),
        (["region"], TypeError),
        ({"region": 1}, TypeError),
        ({"region": "in(us"}, ValueError),
        ({"region": "in()"}, ValueError),
        ({"region": "in(us,eu,)"}, ValueError),
        ({"region": "in( us)"}, ValueError),
        ({"region": "IN(us)"}, ValueError),
        ({"region": "!"}, ValueError),
        ({"region": "!!us"}, ValueError),
        ({"region": "a b"}, ValueError),
        ({"region": "-us"}, ValueError),
        ({"region": "x" * 64}, ValueError),
        ({"bad key!": "x"}, ValueError),
        ({"-k": "x"}, ValueError),
    ],
)
def test_selectors_ray_refuses(selector: object, error: type[Exception]) -> None:
    with pytest.raises(error, match="label_selector"):
        parse_label_selector(selector)


@pytest.mark.parametrize("validate", [validate_task_options, validate_actor_options])
def test_option_is_checked_when_given(validate: object) -> None:
    assert validate({"label_selector": {"region": "in(us,eu)"}}, where="@remote()") == {  # type: ignore[operator]
        "label_selector": {"region": "in(us,eu)"}
    }
    with pytest.raises(ValueError, match=r"value 'in\(us' of 'region'"):
        validate({"label_selector": {"region": "in(us"}}, where="@remote()")  # type: ignore[operator]
    with pytest.raises(TypeError, match="must be a dict"):
        validate({"label_selector": "region=us"}, where="@remote()")  # type: ignore[operator]


# ------------------------------------------------------------------------------ meaning
US = {"region": "us", "zone": "a"}
BARE: dict[str, str] = {}


@pytest.mark.parametrize(
    ("selector", "labels", "match"),
    [
        ({"region": "us"}, US, True),
        ({"region": "eu"}, US, False),
        ({"region": "us"}, BARE, False),  # a missing label is not a value
        ({"region": "!eu"}, US, True),
        ({"region": "!us"}, US, False),
        ({"region": "!us"}, BARE, True),  # negations match nodes without the label (Ray)
        ({"region": "in(us,eu)"}, US, True),
        ({"region": "in(eu,ap)"}, US, False),
        ({"region": "in(us,eu)"}, BARE, False),
        ({"region": "!in(us,eu)"}, US, False),
        ({"region": "!in(eu,ap)"}, US, True),
        ({"region": "!in(us,eu)"}, BARE, True),
        ({"region": "us", "zone": "a"}, US, True),  # every condition must hold
        ({"region": "us", "zone": "b"}, US, False),
        ({}, US, True),
    ],
)
def test_labels_match(selector: dict[str, str], labels: dict[str, str], match: bool) -> None:
    assert labels_match(parse_label_selector(selector), labels) is match


def test_default_labels() -> None:
    assert default_node_labels("n1", {"CPU": 4}) == {"ray.io/node-id": "n1"}
    assert default_node_labels("n1", {"GPU": 1, "accelerator_type:A100": 1}) == {
        "ray.io/node-id": "n1",
        "ray.io/accelerator-type": "A100",
    }


def test_strategy_carries_the_selector() -> None:
    sel = parse_label_selector({"region": "us"})
    assert scoped_strategy("SPREAD", ()) == "SPREAD"
    scoped = scoped_strategy("SPREAD", sel)
    assert isinstance(scoped, LabelScoped)
    assert split_strategy(scoped) == ("SPREAD", sel)
    assert split_strategy(None) == (None, ())


# ------------------------------------------------------------------------------ placement
NODES = [
    node("head", {}),
    node("us1", {"region": "us"}),
    node("eu1", {"region": "eu"}, free=0),  # busy now
]


@pytest.mark.parametrize(
    ("selector", "strategy", "kind", "where"),
    [
        ({}, None, "local", "head"),
        ({"region": "us"}, None, "spill", "us1"),
        ({"region": "in(us,eu)"}, None, "spill", "us1"),  # the one with room now
        ({"region": "eu"}, None, "spill", "eu1"),  # busy but the only match: queue there
        ({"region": "!in(us,eu)"}, None, "local", "head"),
        ({"region": "!us"}, None, "local", "head"),
        ({"region": "ap"}, None, "infeasible", None),
        ({"ray.io/node-id": "eu1"}, None, "spill", "eu1"),
        ({"region": "us"}, "SPREAD", "spill", "us1"),
        ({"region": "us"}, NodeAffinitySchedulingStrategy("head", soft=True), "spill", "us1"),
        ({"region": "eu"}, NodeAffinitySchedulingStrategy("eu1", soft=False), "spill", "eu1"),
        ({"region": "us"}, NodeAffinitySchedulingStrategy("head", soft=False), "fail", None),
    ],
)
def test_choose_node_with_selector(
    selector: dict[str, str], strategy: object, kind: str, where: str | None
) -> None:
    d = choose_node(
        {"CPU": 1}, strategy, "head", NODES, label_selector=parse_label_selector(selector)
    )
    assert d.kind == kind
    assert (d.node.node_id if d.node is not None else None) == where
    if kind == "fail":
        assert "does not match the label_selector" in d.reason
