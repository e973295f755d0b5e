"""Where a request runs: a pure function of the request and a view of the nodes.

No I/O and no clock: the caller passes its current view of every node and gets a decision
back. The raylet decides leases with it (its view is what the GCS last told it, with its own
node's numbers fresh); the GCS places actors with it (its view is its node table, with no
local node). One function, so tasks and actors honour the same strategies alike.

Default ("hybrid", like Ray's): run locally when the local node has the resources free now;
otherwise on the node with the most of the requested resources free; otherwise queue where
the shape is feasible, preferring the local node. SPREAD rotates over the nodes that could run
the shape. Node affinity pins to one node: hard affinity fails when that node is dead,
unknown or lacks the resources, soft affinity falls back to the default policy.

A ``label_selector`` narrows the candidates to the nodes whose labels match, before any of the
above; no matching node makes the request infeasible (pending, warned once).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rayops.scheduling.labels import LabelSelector, format_selector, labels_match
from rayops.scheduling.strategy import affinity_of

__all__ = ["EPS", "Decision", "NodeView", "choose_node"]

EPS = 1e-9


@dataclass(frozen=True)
class NodeView:
    """One node as a placement decision sees it: totals (what it could ever run), what is
    free now, whether it is alive, and its labels."""

    node_id: str
    address: tuple[str, int]  # the node's raylet
    total: Mapping[str, float]
    available: Mapping[str, float]
    alive: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    def feasible(self, shape: Mapping[str, float]) -> bool:
        """Whether the node could ever run ``shape`` (its totals have room)."""
        return all(self.total.get(k, 0.0) + EPS >= v for k, v in shape.items())

    def fits_now(self, shape: Mapping[str, float]) -> bool:
        """Whether ``shape`` fits in what the node has free now."""
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
    """Where ``shape`` with ``strategy`` should run, seen from node ``local_id``.

    ``local_id`` may name no node (the GCS has none): then "local" is never the answer
    unless that id is a node's. ``spread_counter`` is the caller's count of SPREAD decisions
    so far (the rotation); ``preferred`` are nodes holding the request's large arguments.
    """
    alive = [n for n in nodes if n.alive and labels_match(label_selector, n.labels)]
    local = next((n for n in alive if n.node_id == local_id), None)
    affinity = affinity_of(strategy)
    if affinity is not None:
        node_id, soft = affinity.node_id, affinity.soft
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
