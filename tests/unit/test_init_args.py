"""Checks of a node's user-given settings (init() and `rayops start`), and label parsing."""

from __future__ import annotations

import math
from typing import Any

import pytest

from rayops.gcs.probe import split_address
from rayops.node import node_args

ARG = "init(num_cpus=...)"


@pytest.mark.parametrize("value", [None, 0, 1, 2.0, 64])
def test_quantity_accepts(value: Any) -> None:
    got = node_args.check_quantity(ARG, value)
    assert got == (None if value is None else float(value))


@pytest.mark.parametrize(
    ("value", "exc"),
    [
        (-1, ValueError),
        (-0.5, ValueError),
        (2.5, ValueError),  # as in Ray: a node's resources are whole numbers
        (math.inf, ValueError),
        (math.nan, ValueError),
        ("2", TypeError),
        (True, TypeError),
        ([1], TypeError),
    ],
)
def test_quantity_refuses(value: Any, exc: type[Exception]) -> None:
    with pytest.raises(exc) as info:
        node_args.check_quantity(ARG, value)
    assert str(info.value).startswith(ARG)
    assert repr(value) in str(info.value)


def test_resources() -> None:
    arg = "init(resources=...)"
    assert node_args.check_resources(arg, None) == {}
    assert node_args.check_resources(arg, {"accel": 2, "two": 2.0}) == {"accel": 2.0, "two": 2.0}
    with pytest.raises(ValueError, match="resource 'half' must be a whole number"):
        node_args.check_resources(arg, {"half": 0.5})
    for name in node_args.RESERVED_RESOURCES:
        with pytest.raises(ValueError, match=re_escape(f"{arg} must not contain '{name}'")):
            node_args.check_resources(arg, {name: 1})
    with pytest.raises(ValueError, match=r"resource 'accel' must be a finite number >= 0, got -1"):
        node_args.check_resources(arg, {"accel": -1})
    with pytest.raises(TypeError, match=r"resource 'accel' must be a number >= 0, got str 'x'"):
        node_args.check_resources(arg, {"accel": "x"})
    with pytest.raises(TypeError, match="resource names must be non-empty strings, got 1"):
        node_args.check_resources(arg, {1: 2})
    with pytest.raises(TypeError, match="must be a dict of resource names"):
        node_args.check_resources(arg, [("accel", 1)])


def test_object_store_memory() -> None:
    arg = "init(object_store_memory=...)"
    assert node_args.check_object_store_memory(arg, None) is None
    assert node_args.check_object_store_memory(arg, 64 * 2**20) == 64 * 2**20
    assert node_args.check_object_store_memory(arg, 2e9) == 2_000_000_000
    for bad in (0, -5, 1.5, math.inf):
        with pytest.raises(ValueError, match=rf"^{re_escape(arg)} must be a whole number"):
            node_args.check_object_store_memory(arg, bad)
    for wrong in ("1GB", True):
        with pytest.raises(TypeError, match=rf"^{re_escape(arg)} must be a number of bytes"):
            node_args.check_object_store_memory(arg, wrong)


def re_escape(text: str) -> str:
    import re

    return re.escape(text)


GOOD_LABELS = {
    "region": "us",
    "empty": "",
    "example.com/tier": "gold",
    "a": "A-1_b.2",
    "x" * 63: "y" * 63,
}


def test_labels_accepts() -> None:
    assert node_args.check_labels("init(labels=...)", GOOD_LABELS) == GOOD_LABELS
    assert node_args.check_labels("init(labels=...)", None) == {}


@pytest.mark.parametrize(
    ("labels", "exc", "says"),
    [
        ([1, 2], TypeError, "must be a dict of label keys to values"),
        ({"a": 1}, TypeError, "label keys and values must be strings"),
        ({1: "a"}, TypeError, "label keys and values must be strings"),
        ({"ray.io/node-id": "x"}, ValueError, "are reserved"),
        ({"-a": "b"}, ValueError, "label key '-a': the name must be"),
        ({"x" * 64: "b"}, ValueError, "the name must be at most 63"),
        ({"a": "b c"}, ValueError, "the value 'b c' must be empty or"),
        ({"bad..prefix/a": "b"}, ValueError, "the prefix before '/'"),
        ({"/a": "b"}, ValueError, "the prefix before '/'"),
    ],
)
def test_labels_refuses(labels: Any, exc: type[Exception], says: str) -> None:
    with pytest.raises(exc, match="^" + re_escape("init(labels=...)")) as info:
        node_args.check_labels("init(labels=...)", labels)
    assert says in str(info.value)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("region=us,tier=gold", {"region": "us", "tier": "gold"}),
        (" region = us , tier=gold ", {"region": "us", "tier": "gold"}),
        ('"region=us"', {"region": "us"}),
        ("", {}),
        ("empty=", {"empty": ""}),
        ('{"region": "us"}', {"region": "us"}),  # JSON, as Ray still accepts
        ("{}", {}),
    ],
)
def test_parse_labels(text: str, want: dict[str, str]) -> None:
    assert node_args.parse_labels(text) == want


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("[1,2]", "expected key=value pairs separated by commas"),
        ("a=b,c", "expected key=value pairs"),
        ("a=b=c", "expected key=value pairs"),
        ("=b", "expected key=value pairs"),
        ("a=b,a=c", "label key 'a' is given twice"),
        ('{"a": 1}', "must map strings to strings"),
        ("{nope", "starts like a JSON object but is not one"),
        ("ray.io/x=1", "are reserved"),
        ("a=-b", "the value '-b' must be"),
    ],
)
def test_parse_labels_refuses(text: str, says: str) -> None:
    with pytest.raises(ValueError) as info:
        node_args.parse_labels(text)
    assert says in str(info.value)


def test_split_address() -> None:
    assert split_address("127.0.0.1:6379") == ("127.0.0.1", 6379)
    assert split_address("[::1]:6379") == ("::1", 6379)
    for bad in ("127.0.0.1", "127.0.0.1:x", ":6379", "h:0", "h:70000"):
        with pytest.raises(ValueError, match="--address must be HOST:PORT"):
            split_address(bad, "--address")
