"""Where the GCS places an actor: the decision, with no I/O.

The actor's request (resources to place it, its scheduling strategy and label selector, its
creator's node) and the GCS's node table go into ``rayops.scheduling.choose_node``, the
function the raylets decide leases with, so that an actor honours SPREAD, node affinity and
labels exactly as a task does. ``actor_manager`` carries the decision out.

The GCS has no node of its own: the creator's node stands for the "local" node of the default
policy (an actor goes there when it has room, as a task runs on its caller's node), and a
decision for it counts like any other.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rayops.gcs.actor_table import ActorRecord
from rayops.gcs.types import NodeInfo
from rayops.scheduling.labels import parse_label_selector
from rayops.scheduling.policy import Decision, NodeView, choose_node
from rayops.scheduling.strategy import NodeAffinity, affinity_of

__all__ = [
    "NODE_AFFINITY",
    "SPREAD",
    "node_views",
    "place_actor",
    "strategy_from_wire",
    "strategy_to_wire",
]

SPREAD = "SPREAD"
NODE_AFFINITY = "NODE_AFFINITY"


def strategy_to_wire(strategy: Any) -> dict[str, Any]:
    """The ``RegisterActorRequest`` fields for a validated ``scheduling_strategy`` option.

    None and "DEFAULT" send nothing; placement-group strategies never get here (refused when
    the option is given).
    """
    affinity = affinity_of(strategy)
    if affinity is not None:
        return {
            "scheduling_strategy": NODE_AFFINITY,
            "affinity_node_id": affinity.node_id,
            "affinity_soft": affinity.soft,
        }
    if strategy == SPREAD:
        return {"scheduling_strategy": SPREAD}
    return {}


def strategy_from_wire(kind: str, node_id: str, soft: bool) -> object:
    """What the actor record keeps: None (DEFAULT), "SPREAD" or a ``NodeAffinity``.

    Raises ValueError for a kind this GCS does not know (a newer client), rather than
    placing the actor some other way than it asked.
    """
    if kind in ("", "DEFAULT"):
        return None
    if kind == SPREAD:
        return SPREAD
    if kind == NODE_AFFINITY and node_id:
        return NodeAffinity(node_id, soft)
    raise ValueError(f"unknown actor scheduling strategy {kind!r} (node_id {node_id!r})")


def node_views(nodes: Iterable[NodeInfo]) -> list[NodeView]:
    """The node table as the placement policy sees it."""
    return [
        NodeView(
            n.node_id,
            (n.node_ip, n.raylet_port),
            n.resources_total,
            n.resources_available,
            n.is_alive,
            n.labels,
        )
        for n in nodes
    ]


def place_actor(rec: ActorRecord, nodes: Iterable[NodeInfo], *, spread_counter: int) -> Decision:
    """Where ``rec`` should be created now.

    "local"/"spill": on ``decision.node`` (which may have to free the resources first: its
    raylet queues the lease); "infeasible": no live node could ever take it (it stays pending);
    "fail": it can never be placed as asked (hard node affinity to a dead or unknown node, or
    to one that lacks the resources), ``decision.reason`` says why.
    ``spread_counter``: how many SPREAD actors the GCS placed so far (the rotation).
    """
    return choose_node(
        rec.placement_resources,
        rec.scheduling_strategy,
        rec.owner_node_id,
        node_views(nodes),
        spread_counter=spread_counter,
        label_selector=parse_label_selector(rec.label_selector),
    )
