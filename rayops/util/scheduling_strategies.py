"""Scheduling strategies (Ray's names). On one node every strategy places locally;
the multi-node policy reads these objects."""

from __future__ import annotations

from typing import Any

__all__ = [
    "NodeAffinitySchedulingStrategy",
    "PlacementGroupSchedulingStrategy",
    "is_scheduling_strategy",
]


class NodeAffinitySchedulingStrategy:
    """Run on ``node_id``; with ``soft=True`` fall back to other nodes when it can't."""

    def __init__(
        self,
        node_id: str,
        soft: bool,
        _spill_on_unavailable: bool = False,
        _fail_on_unavailable: bool = False,
    ) -> None:
        if not isinstance(node_id, str) or not node_id:
            raise ValueError(f"node_id must be a node id hex string, got {node_id!r}")
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks


def is_scheduling_strategy(value: Any) -> bool:
    return (
        value is None
        or value in ("DEFAULT", "SPREAD")
        or isinstance(value, (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy))
    )
