"""Ray's ``ray.util``: named-actor listing, ActorPool, and (submodules) queue,
scheduling strategies."""

from __future__ import annotations

from typing import Any

from rayops.util.actor_pool import ActorPool

__all__ = ["ActorPool", "list_named_actors"]


def list_named_actors(all_namespaces: bool = False) -> list[Any]:
    """Names of live named actors: in this job's namespace, or (all_namespaces=True)
    as ``{"name": ..., "namespace": ...}`` dicts across all namespaces."""
    from rayops.core_worker import actor_caller, state

    return actor_caller.list_named_actors(state.require(), all_namespaces)
