"""Node labels and Ray's ``label_selector``: parsing, matching, and a node's default labels.

Pure: no I/O. A selector (Ray's syntax: ``{"region": "us"}``, ``"!us"``, ``"in(us,eu)"``,
``"!in(us,eu)"``) is parsed once where the option is given (``options.py`` refuses a bad one
at once) and travels as a tuple of ``LabelCondition``; the placement functions
(``policy.choose_node``, ``bundles.place_bundles``) narrow their candidate nodes with it.
Every node carries Ray's default labels: ``ray.io/node-id`` and, with an accelerator,
``ray.io/accelerator-type``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

__all__ = [
    "ACCELERATOR_RESOURCE_PREFIX",
    "ACCELERATOR_TYPE_LABEL",
    "NODE_ID_LABEL",
    "LabelCondition",
    "LabelSelector",
    "default_node_labels",
    "format_selector",
    "labels_match",
    "parse_label_selector",
]

NODE_ID_LABEL = "ray.io/node-id"
ACCELERATOR_TYPE_LABEL = "ray.io/accelerator-type"
ACCELERATOR_RESOURCE_PREFIX = "accelerator_type:"

# Kubernetes-style names (Ray's rule for label keys and values): 1-63 characters, alphanumeric
# at both ends, dashes, underscores and dots between.
_NAME = r"[A-Za-z0-9](?:[A-Za-z0-9_.-]{0,61}[A-Za-z0-9])?"
_NAME_RE = re.compile(_NAME)
_PREFIX_RE = re.compile(rf"(?:{_NAME})?(?:\.(?:{_NAME})?)*")
_VALUE_RE = re.compile(rf"(!?)(?:in\(({_NAME}(?:, ?{_NAME})*)\)|({_NAME}))")


@dataclass(frozen=True)
class LabelCondition:
    """One ``key: value`` of a label selector: the label's value must be one of ``values``
    (``negated``: must not be, and a node without the label matches)."""

    key: str
    values: tuple[str, ...]
    negated: bool = False

    def matches(self, labels: Mapping[str, str]) -> bool:
        value = labels.get(self.key)
        if self.negated:
            return value is None or value not in self.values
        return value is not None and value in self.values


LabelSelector = tuple[LabelCondition, ...]


def parse_label_selector(selector: object, *, where: str = "label_selector") -> LabelSelector:
    """Ray's ``label_selector`` dict as conditions; None or {} is no condition.

    Raises TypeError for a value that is not a dict of strings and ValueError for a key or
    value that is not Ray's syntax, naming it (as Ray refuses it when the option is given).
    """
    if selector is None:
        return ()
    if not isinstance(selector, dict):
        raise TypeError(
            f"{where} must be a dict of label keys to selector strings, e.g. "
            f"{{'region': 'in(us,eu)'}}, got {type(selector).__name__} {selector!r}"
        )
    out: list[LabelCondition] = []
    for key, value in selector.items():
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(f"{where}: keys and values must be strings, got {key!r}: {value!r}")
        problem = _key_problem(key)
        if problem:
            raise ValueError(f"{where}: {problem}")
        out.append(_condition(key, value, where))
    return tuple(sorted(out, key=lambda c: c.key))


def _key_problem(key: str) -> str | None:
    prefix, slash, name = key.rpartition("/")
    if slash and (len(prefix) > 253 or not _PREFIX_RE.fullmatch(prefix)):
        return (
            f"label key {key!r}: the prefix before '/' must be dot-separated DNS labels of at "
            "most 253 characters"
        )
    if not _NAME_RE.fullmatch(name):
        return (
            f"label key {key!r}: the name must be 1-63 characters, alphanumeric at both ends "
            "with '-', '_' or '.' between"
        )
    return None


def _condition(key: str, value: str, where: str) -> LabelCondition:
    if value == "":
        return LabelCondition(key, ("",))
    m = _VALUE_RE.fullmatch(value)
    if m is None:
        raise ValueError(
            f"{where}: value {value!r} of {key!r} is not a label selector: use 'v', '!v', "
            "'in(v1,v2)' or '!in(v1,v2)', where each v is 1-63 characters, alphanumeric at "
            "both ends with '-', '_' or '.' between"
        )
    negated, listed, single = m.groups()
    values = tuple(v.strip() for v in listed.split(",")) if listed else (single,)
    return LabelCondition(key, values, bool(negated))


def labels_match(selector: LabelSelector, labels: Mapping[str, str]) -> bool:
    """Whether a node with ``labels`` satisfies every condition of ``selector``."""
    return all(c.matches(labels) for c in selector)


def format_selector(selector: LabelSelector) -> str:
    """A selector the way the user wrote it (for messages)."""
    parts = []
    for c in selector:
        body = c.values[0] if len(c.values) == 1 else f"in({','.join(c.values)})"
        parts.append(f"{c.key!r}: '{'!' if c.negated else ''}{body}'")
    return "{" + ", ".join(parts) + "}"


def default_node_labels(node_id: str, resources: Mapping[str, float]) -> dict[str, str]:
    """Ray's default labels for a node: its id and, when it has one, its accelerator type."""
    labels = {NODE_ID_LABEL: node_id}
    for name in resources:
        if name.startswith(ACCELERATOR_RESOURCE_PREFIX):
            labels[ACCELERATOR_TYPE_LABEL] = name[len(ACCELERATOR_RESOURCE_PREFIX) :]
            break
    return labels
