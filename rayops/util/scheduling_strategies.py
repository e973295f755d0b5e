"""Scheduling strategies (Ray's names). On one node every strategy places locally;
the multi-node policy reads these objects. Placement groups are not there yet (issue 10)."""

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
    """Ray's strategy for running in a placement group's bundle.

    Placement groups do not exist yet (rayops issue 10): constructing one raises
    NotImplementedError, so no task or actor runs outside the group it asked for. The class is
    here so that code importing it loads, and so its signature stays Ray's.
    """

    def __init__(
        self,
        placement_group: Any,
        placement_group_bundle_index: int = -1,
        placement_group_capture_child_tasks: bool | None = None,
    ) -> None:
        raise NotImplementedError(
            "PlacementGroupSchedulingStrategy is not supported yet: placement groups do not "
            "exist yet (rayops issue 10); request resources with num_cpus/num_gpus/resources "
            "meanwhile."
        )


def is_scheduling_strategy(value: Any) -> bool:
    return (
        value is None
        or value in ("DEFAULT", "SPREAD")
        or isinstance(value, (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy))
    )
