"""Placement groups (Ray's ``ray.util.placement_group``): reserve bundles of resources across
nodes at once, then run tasks and actors inside them.

The GCS places a group with the cluster's one placement policy and reserves its bundles with a
two-phase commit on the raylets involved (``rayops/gcs/pg_manager.py``); a committed bundle
becomes resources of its node (``protocol/bundle_resources``), which work scheduled with
``PlacementGroupSchedulingStrategy`` asks for instead of plain CPUs.
"""

from __future__ import annotations

from typing import Any

from rayops.core_worker import state
from rayops.protocol import gcs_pg_pb2
from rayops.protocol.bundle_resources import InPlacementGroup
from rayops.scheduling.bundles import validate_bundles
from rayops.scheduling.labels import parse_label_selector
from rayops.util.placement_group_handle import (
    PlacementGroup,
    PlacementGroupID,
    group_info,
    groups_of,
)

__all__ = [
    "PlacementGroup",
    "PlacementGroupID",
    "get_current_placement_group",
    "get_placement_group",
    "placement_group",
    "placement_group_table",
    "remove_placement_group",
]


# ---------------------------------------------------------------------- the API
def placement_group(
    bundles: list[dict[str, float]],
    strategy: str = "PACK",
    name: str = "",
    lifetime: str | None = None,
    _max_cpu_fraction_per_node: float | None = None,
    _soft_target_node_id: str | None = None,
    bundle_label_selector: list[dict[str, str]] | None = None,
) -> PlacementGroup:
    """Reserve ``bundles`` with ``strategy`` (Ray's): returns at once; ``ready()`` /
    ``wait()`` tell when the reservation is made."""
    validate_bundles(bundles, strategy)
    checked = [{k: float(v) for k, v in b.items() if v} for b in bundles]
    if not isinstance(name, str):
        raise TypeError(f"name must be a string, got {type(name).__name__} {name!r}")
    if lifetime not in (None, "detached"):
        raise ValueError(
            "Placement group `lifetime` argument must be either `None` or 'detached'. "
            f"Got {lifetime}."
        )
    if _max_cpu_fraction_per_node is not None:
        raise ValueError(
            "_max_cpu_fraction_per_node is not supported (Ray deprecated it); remove it."
        )
    if _soft_target_node_id is not None:
        raise ValueError(
            "_soft_target_node_id is not supported by rayops yet; remove it (the group is "
            "placed by its strategy)."
        )
    selectors = _bundle_selectors(bundle_label_selector, len(checked))
    cw = _worker()
    pg_id = PlacementGroupID.from_random()
    spec = gcs_pg_pb2.PlacementGroupInfo(
        placement_group_id=pg_id.binary(),
        name=name,
        ray_namespace=_namespace(cw),
        strategy=strategy,
        bundles=[
            gcs_pg_pb2.Bundle(resources=b, label_selector=s)
            for b, s in zip(checked, selectors, strict=True)
        ],
        creator_job_id=cw.task_context().job_id or cw.job_id,
        is_detached=lifetime == "detached",
    )
    groups_of(cw).create(spec, named=bool(name))
    return PlacementGroup(pg_id, checked)


def remove_placement_group(placement_group: PlacementGroup) -> None:
    """Release the group's bundles and kill the tasks and actors running in them."""
    if not isinstance(placement_group, PlacementGroup):
        raise TypeError(
            f"remove_placement_group takes a PlacementGroup, got {type(placement_group).__name__}"
        )
    groups_of(_worker()).removed(placement_group.id.binary())


def get_placement_group(placement_group_name: str) -> PlacementGroup:
    """The live group named ``placement_group_name`` in this job's namespace."""
    if not isinstance(placement_group_name, str) or not placement_group_name:
        raise ValueError(
            f"Please supply a non-empty value to get_placement_group, got {placement_group_name!r}"
        )
    cw = _worker()
    from rayops.gcs.calls import get_placement_group as get_call

    info = groups_of(cw).call(get_call(b"", placement_group_name, _namespace(cw)))
    if info is None:
        raise ValueError(f"Failed to look up placement group with name: {placement_group_name}")
    return PlacementGroup(
        PlacementGroupID(info.placement_group_id), [dict(b.resources) for b in info.bundles]
    )


def placement_group_table(placement_group: PlacementGroup | None = None) -> dict[str, Any]:
    """Ray's table: one group's record, or every group's by hex id."""
    if placement_group is not None:
        info = group_info(placement_group.id.binary())
        return _table_row(info) if info is not None else {}
    from rayops.gcs.calls import get_all_placement_groups

    return {
        g.placement_group_id.hex(): _table_row(g)
        for g in groups_of(_worker()).call(get_all_placement_groups())
    }


def get_current_placement_group() -> PlacementGroup | None:
    """The group the current task or actor runs in (None in a driver or outside groups)."""
    cw = state.current()
    if cw is None or cw.mode != "worker":
        return None
    where = cw.task_context().placement
    if not isinstance(where, InPlacementGroup):
        return None
    return PlacementGroup(PlacementGroupID(where.pg_id))


# ------------------------------------------------------------------ validation
def _bundle_selectors(selectors: Any, n: int) -> list[dict[str, str]]:
    if selectors is None:
        return [{} for _ in range(n)]
    if not isinstance(selectors, list) or len(selectors) != n:
        raise ValueError(
            f"bundle_label_selector must be a list with one dict per bundle ({n}), got "
            f"{selectors!r}"
        )
    out = []
    for i, sel in enumerate(selectors):
        parse_label_selector(sel or None, where=f"bundle_label_selector[{i}]")
        out.append(dict(sel or {}))
    return out


# ----------------------------------------------------------------------- helpers
def _worker() -> Any:
    from rayops.api import _auto_init

    _auto_init()
    return state.require()


def _namespace(cw: Any) -> str:
    from rayops.core_worker.actor_caller import job_namespace

    return str(job_namespace(cw))


def _table_row(info: Any) -> dict[str, Any]:
    return {
        "placement_group_id": info.placement_group_id.hex(),
        "name": info.name,
        "bundles": {i: dict(b.resources) for i, b in enumerate(info.bundles)},
        "bundles_to_node_id": {int(i): n for i, n in sorted(info.bundle_nodes.items())},
        "strategy": info.strategy,
        "state": info.state,
        "stats": {
            "end_to_end_creation_latency_ms": round(info.creation_latency_ms, 3),
            "scheduling_attempt": info.scheduling_attempts,
            "scheduling_state": info.scheduling_state,
        },
    }
