"""Where a lease request should run: a pure function of the request and the cluster view.

No I/O and no clock: the raylet passes its current view of every node (what the GCS
last told it, with its own node's numbers fresh) and gets a decision back. Actor
placement in the GCS uses the same function.

Default ("hybrid", like Ray's): run locally when the local node has the resources
free now; otherwise on the node with the most of the requested resources free;
otherwise queue where the shape is feasible, preferring the local node. SPREAD
rotates over the nodes that could run the shape. Node affinity pins to one node:
hard affinity fails when that node is dead or lacks the resources, soft affinity
falls back to the default policy.

A ``label_selector`` (Ray's syntax: ``{"region": "us"}``, ``"!us"``, ``"in(us,eu)"``,
``"!in(us,eu)"``) narrows the candidates to the nodes whose labels match, before any of the
above; no matching node makes the request infeasible (pending, warned once). Every node carries
Ray's default labels: ``ray.io/node-id`` and, with an accelerator, ``ray.io/accelerator-type``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

EPS = 1e-9

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


@dataclass(frozen=True)
class LabelScoped:
    """A scheduling strategy restricted to nodes matching ``label_selector``.

    What a task's ``label_selector`` option travels as, next to its strategy, from the caller
    to the raylet (``split_strategy`` takes it apart); it is part of the lease key, so leases
    are never shared between different selectors.
    """

    strategy: Any
    label_selector: LabelSelector


def scoped_strategy(strategy: Any, selector: LabelSelector) -> Any:
    """``strategy`` with ``selector`` attached (``strategy`` itself when there is none)."""
    return LabelScoped(strategy, selector) if selector else strategy


def split_strategy(strategy: Any) -> tuple[Any, LabelSelector]:
    """(the plain strategy, its label selector) of what a lease request carries."""
    if isinstance(strategy, LabelScoped):
        return strategy.strategy, strategy.label_selector
    return strategy, ()


@dataclass(frozen=True)
class NodeView:
    node_id: str
    address: tuple[str, int]  # the node's raylet
    total: Mapping[str, float]
    available: Mapping[str, float]
    alive: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    def feasible(self, shape: Mapping[str, float]) -> bool:
        return all(self.total.get(k, 0.0) + EPS >= v for k, v in shape.items())

    def fits_now(self, shape: Mapping[str, float]) -> bool:
        return all(self.available.get(k, 0.0) + EPS >= v for k, v in shape.items())


@dataclass(frozen=True)
class Decision:
    """``kind``: "local" (grant or queue here), "spill" (ask ``node``), "infeasible"
    (no node could ever run it: keep it pending and warn), or "fail" (``reason``)."""

    kind: str
    node: NodeView | None = None
    reason: str = ""


def _headroom(node: NodeView, shape: Mapping[str, float]) -> float:
    """How much of the requested resources stays free after placing the shape (more is better)."""
    if not shape:
        return sum(node.available.values())
    return min((node.available.get(k, 0.0) - v) / max(v, EPS) for k, v in shape.items())


def choose_node(
    shape: Mapping[str, float],
    strategy: object,
    local_id: str,
    nodes: Sequence[NodeView],
    *,
    spread_counter: int = 0,
    preferred: Sequence[str] = (),
    label_selector: LabelSelector = (),
) -> Decision:
    alive = [n for n in nodes if n.alive and labels_match(label_selector, n.labels)]
    local = next((n for n in alive if n.node_id == local_id), None)
    affinity = _affinity(strategy)
    if affinity is not None:
        node_id, soft = affinity
        target = next((n for n in alive if n.node_id == node_id), None)
        if target is not None and target.feasible(shape):
            return _at(target, local_id)
        if not soft:
            if target is None and any(n.alive and n.node_id == node_id for n in nodes):
                why = f"does not match the label_selector {format_selector(label_selector)}"
            else:
                why = "is dead or unknown" if target is None else "lacks the resources"
            return Decision(
                "fail",
                reason=(
                    f"NodeAffinitySchedulingStrategy(soft=False) names node {node_id}, which "
                    f"{why}; use soft=True to let it run elsewhere."
                ),
            )
    feasible = [n for n in alive if n.feasible(shape)]
    if not feasible:
        return Decision("infeasible")
    ready = [n for n in feasible if n.fits_now(shape)]
    if strategy == "SPREAD":
        # Rotate over every node that could run it (queueing where busy): other nodes'
        # free resources in the view are up to a report period old.
        ordered = sorted(feasible, key=lambda n: n.node_id)
        return _at(ordered[spread_counter % len(ordered)], local_id)
    for node_id in preferred:  # nodes holding the task's large arguments
        n = next((x for x in ready if x.node_id == node_id), None)
        if n is not None:
            return _at(n, local_id)
    if local is not None and local in ready:
        return Decision("local", local)
    if ready:
        return _at(max(ready, key=lambda n: _headroom(n, shape)), local_id)
    if local is not None and local.feasible(shape):
        return Decision("local", local)
    return _at(feasible[0], local_id)


def _at(node: NodeView, local_id: str) -> Decision:
    return Decision("local" if node.node_id == local_id else "spill", node)


def _affinity(strategy: object) -> tuple[str, bool] | None:
    node_id = getattr(strategy, "node_id", None)
    if node_id is None:
        return None
    return str(node_id), bool(getattr(strategy, "soft", False))
