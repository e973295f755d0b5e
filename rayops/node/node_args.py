"""A node's user-given settings (CPUs, GPUs, custom resources, object store size, labels):
checked once, at the edge, before anything starts.

``init()`` and ``rayops start`` both call these, so a bad value is refused with one message
naming the argument, what was expected and what was found, instead of reaching a daemon that
fails with a traceback. Types as Ray raises them where it has a clear rule: a negative quantity
is a ValueError; a value of the wrong type is a TypeError (Ray asserts there). No I/O.

Node labels follow Ray's rules (Kubernetes label syntax): a key is an optional DNS-like prefix
and ``/`` plus a name of at most 63 characters, alphanumeric at both ends with ``-``, ``_`` and
``.`` between; a value is empty or follows the name rule; keys under ``ray.io/`` are reserved.
On the command line labels are Ray's ``k=v,k2=v2`` form (a JSON object of strings is still
accepted, as Ray does).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from typing import Any

__all__ = [
    "RESERVED_RESOURCES",
    "check_labels",
    "check_object_store_memory",
    "check_quantity",
    "check_resources",
    "label_problem",
    "parse_labels",
]

# Set by the node itself: a custom resource of the same name would override them.
RESERVED_RESOURCES = ("CPU", "GPU", "memory", "object_store_memory")
RESERVED_LABEL_PREFIX = "ray.io/"
_NAME = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?")
_PREFIX_PART = re.compile(r"[A-Za-z0-9]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?")
_MAX_PREFIX = 253
_NAME_RULE = (
    "at most 63 characters, starting and ending with a letter or digit, with letters, "
    "digits, '-', '_' and '.' between"
)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_quantity(arg: str, value: object) -> float | None:
    """``value`` as a node's resource quantity (a whole number >= 0, as Ray requires of a
    node's resources), or None if it is None.

    ``arg`` names the argument in the message, e.g. ``"init(num_cpus=...)"``.
    """
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"{arg} must be a number >= 0, got {type(value).__name__} {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number < 0:
        raise ValueError(f"{arg} must be a finite number >= 0, got {value!r}")
    if not number.is_integer():
        raise ValueError(
            f"{arg} must be a whole number, as Ray requires of a node's resources "
            f"(tasks may ask for fractions of it), got {value!r}"
        )
    return number


def check_resources(arg: str, value: object) -> dict[str, float]:
    """``value`` as custom resources: a dict of names to quantities; None is no resources."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{arg} must be a dict of resource names to numbers, e.g. {{'accel': 2}}, "
            f"got {type(value).__name__} {value!r}"
        )
    out: dict[str, float] = {}
    for name, quantity in value.items():
        if not isinstance(name, str) or not name:
            raise TypeError(f"{arg}: resource names must be non-empty strings, got {name!r}")
        if name in RESERVED_RESOURCES:
            raise ValueError(
                f"{arg} must not contain {name!r}: the node sets it "
                "(use num_cpus / num_gpus / object_store_memory)"
            )
        got = check_quantity(f"{arg}: resource {name!r}", quantity)
        assert got is not None
        out[name] = got
    return out


def check_object_store_memory(arg: str, value: object) -> int | None:
    """``value`` as a byte count > 0 (a whole float such as 2e9 is accepted), or None."""
    if value is None:
        return None
    if not _is_number(value):
        raise TypeError(f"{arg} must be a number of bytes, got {type(value).__name__} {value!r}")
    number = float(value)  # type: ignore[arg-type]
    if not math.isfinite(number) or number != int(number) or number <= 0:
        raise ValueError(f"{arg} must be a whole number of bytes > 0, got {value!r}")
    return int(number)


def label_problem(key: str, value: str) -> str | None:
    """Why ``key: value`` is not a valid node label, None if it is."""
    prefix, slash, name = key.rpartition("/")
    if slash:
        if (
            not prefix
            or len(prefix) > _MAX_PREFIX
            or not all(_PREFIX_PART.fullmatch(part) for part in prefix.split("."))
        ):
            return (
                f"label key {key!r}: the prefix before '/' must be dot-separated DNS labels "
                f"of at most {_MAX_PREFIX} characters in all"
            )
        if key.startswith(RESERVED_LABEL_PREFIX):
            return f"label key {key!r}: keys under {RESERVED_LABEL_PREFIX!r} are reserved"
    if not _NAME.fullmatch(name):
        return f"label key {key!r}: the name must be {_NAME_RULE}"
    if value and not _NAME.fullmatch(value):
        return f"label {key!r}: the value {value!r} must be empty or {_NAME_RULE}"
    return None


def check_labels(arg: str, value: object) -> dict[str, str]:
    """``value`` as node labels: a dict of strings to strings; None is no labels."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise TypeError(
            f"{arg} must be a dict of label keys to values, e.g. {{'region': 'us'}}, "
            f"got {type(value).__name__} {value!r}"
        )
    out: dict[str, str] = {}
    for key, val in value.items():
        if not isinstance(key, str) or not isinstance(val, str):
            raise TypeError(f"{arg}: label keys and values must be strings, got {key!r}: {val!r}")
        problem = label_problem(key, val)
        if problem is not None:
            raise ValueError(f"{arg}: {problem}")
        out[key] = val
    return out


def parse_labels(text: str) -> dict[str, str]:
    """Node labels from the command line: ``k=v,k2=v2`` (Ray's form) or a JSON object.

    Raises ValueError saying what was expected and what was found.
    """
    text = text.strip()
    if len(text) > 1 and text[0] == text[-1] == '"':
        text = text[1:-1].strip()
    if not text:
        return {}
    if text.startswith("{"):
        return _labels_from_json(text)
    labels: dict[str, str] = {}
    for pair in text.split(","):
        key, eq, val = pair.partition("=")
        key, val = key.strip(), val.strip()
        if not eq or "=" in val or not key:
            raise ValueError(
                "expected key=value pairs separated by commas, e.g. 'region=us,tier=gold' "
                f"(or a JSON object of strings), got {text!r}"
            )
        if key in labels:
            raise ValueError(f"label key {key!r} is given twice in {text!r}")
        labels[key] = val
    return _valid_labels(labels)


def _labels_from_json(text: str) -> dict[str, str]:
    try:
        value: Any = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{text!r} starts like a JSON object but is not one: {err}") from err
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise ValueError(f"a JSON object of labels must map strings to strings, got {text!r}")
    return _valid_labels(value)


def _valid_labels(labels: dict[str, str]) -> dict[str, str]:
    for key, val in labels.items():
        problem = label_problem(key, val)
        if problem is not None:
            raise ValueError(problem)
    return labels
