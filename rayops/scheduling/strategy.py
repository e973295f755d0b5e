"""What a placement request asks for besides resources: its strategy and label selector.

Pure: no I/O. ``choose_node`` reads strategies by shape, not by class, so the API's
``NodeAffinitySchedulingStrategy`` (``rayops.util.scheduling_strategies``) and the GCS's own
``NodeAffinity`` (rebuilt from an actor's registration, where the API classes must not be
imported) are read alike: ``"DEFAULT"``/None, ``"SPREAD"``, or anything with ``node_id`` and
``soft``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rayops.scheduling.labels import LabelSelector

__all__ = [
    "LabelScoped",
    "NodeAffinity",
    "affinity_of",
    "scoped_strategy",
    "split_strategy",
]


@dataclass(frozen=True)
class NodeAffinity:
    """Node affinity as plain data: run on ``node_id``; ``soft``: elsewhere when it cannot.

    What the GCS keeps for an actor created with ``NodeAffinitySchedulingStrategy``: the
    strategy crosses the wire as its fields, not as the user's object.
    """

    node_id: str
    soft: bool = False


def affinity_of(strategy: object) -> NodeAffinity | None:
    """The node affinity ``strategy`` asks for (any object with ``node_id``/``soft``), if any."""
    node_id = getattr(strategy, "node_id", None)
    if node_id is None:
        return None
    return NodeAffinity(str(node_id), bool(getattr(strategy, "soft", False)))


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
