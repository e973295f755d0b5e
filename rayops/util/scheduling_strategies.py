"""Scheduling strategies (Ray's names). On one node every strategy places locally;
the multi-node policy reads these objects; a placement-group strategy turns a task's
resources into its group's bundle resources (``rayops.util.placement_group``)."""

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
        if _spill_on_unavailable or _fail_on_unavailable:
            # Ray's private knobs for soft affinity; honoured by no rayops scheduler yet, so
            # refused rather than silently dropped.
            raise NotImplementedError(
                "NodeAffinitySchedulingStrategy's _spill_on_unavailable and "
                "_fail_on_unavailable are not supported by rayops (no issue plans them yet); "
                "leave them False"
            )
        self.node_id = node_id
        self.soft = bool(soft)
        self._spill_on_unavailable = _spill_on_unavailable
        self._fail_on_unavailable = _fail_on_unavailable

    def __repr__(self) -> str:
        return f"NodeAffinitySchedulingStrategy(node_id={self.node_id!r}, soft={self.soft})"


class PlacementGroupSchedulingStrategy:
    """Run in ``placement_group``'s bundle ``placement_group_bundle_index`` (-1: any bundle);
    with ``placement_group_capture_child_tasks`` the tasks it starts without a strategy of
    their own run in the group too (Ray's semantics)."""

    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        from rayops.util.placement_group_handle import PlacementGroup

        if placement_group is not None and not isinstance(placement_group, PlacementGroup):
            raise TypeError(
                "placement_group must be a PlacementGroup (from rayops.util.placement_group) "
                f"or None, got {type(placement_group).__name__} {placement_group!r}"
            )
        if isinstance(placement_group_bundle_index, bool) or not isinstance(
            placement_group_bundle_index, int
        ):
            raise TypeError(
                f"placement_group_bundle_index must be an int, got {placement_group_bundle_index!r}"
            )
        self.placement_group = placement_group
        self.placement_group_bundle_index = placement_group_bundle_index
        self.placement_group_capture_child_tasks = placement_group_capture_child_tasks

    def __repr__(self) -> str:
        return (
            f"PlacementGroupSchedulingStrategy({self.placement_group!r}, "
            f"placement_group_bundle_index={self.placement_group_bundle_index}, "
            "placement_group_capture_child_tasks="
            f"{self.placement_group_capture_child_tasks})"
        )


def is_scheduling_strategy(value: Any) -> bool:
    return (
        value is None
        or value in ("DEFAULT", "SPREAD")
        or isinstance(value, (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy))
    )
