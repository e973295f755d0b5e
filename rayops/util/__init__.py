"""Ray's ``ray.util``: named-actor listing, ActorPool, placement groups, and (submodules)
queue, scheduling strategies, placement_group."""

from __future__ import annotations

from typing import Any

from rayops.util.actor_pool import ActorPool
from rayops.util.placement_group import (
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)

__all__ = [
    "ActorPool",
    "get_current_placement_group",
    "get_placement_group",
    "list_named_actors",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """Names of live named actors: in this job's namespace, or (all_namespaces=True)
    as ``{"name": ..., "namespace": ...}`` dicts across all namespaces."""
    from rayops.core_worker import actor_caller, state

    return actor_caller.list_named_actors(state.require(), all_namespaces)
