"""Placement-group bundles as resources: the names every process agrees on (Ray's scheme).

A committed bundle ``i`` of group ``pg`` (hex id) adds to its node, for each resource ``r`` of
the bundle, ``r_group_i_pg`` (that bundle) and ``r_group_pg`` (any bundle of the group on the
node), plus the markers ``bundle_group_i_pg`` and ``bundle_group_pg`` (1000 units per bundle).
A task or actor scheduled into the group asks for the renamed shape instead of its plain one
(``demand_in_bundle``), plus a sliver of the marker so that even a zero-resource task lands on
a node of the group. The ordinary scheduler then places it: nothing else knows about groups.
Taking from both the indexed and the wildcard name keeps the two in step when tasks that name
a bundle and tasks that take any bundle share a node.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

INFIX = "_group_"
MARKER = "bundle"
MARKER_UNITS = 1000.0
MARKER_DEMAND = 0.001
PG_ID_BYTES = 18  # Ray's PlacementGroupID size
_HEX = frozenset("0123456789abcdef")


@dataclass(frozen=True)
class InPlacementGroup:
    """Where a task or actor was scheduled: a group's bundle (``bundle_index`` -1: any).

    Travels as the task spec's strategy (so the worker knows its group: Ray's
    ``get_current_placement_group``) while its resources name the group's bundle resources.
    ``capture_child_tasks``: tasks it submits without a strategy run in the group too.
    """

    pg_id: bytes
    bundle_index: int = -1
    capture_child_tasks: bool = False


def in_group(strategy: object) -> InPlacementGroup | None:
    """The placement group a task spec's strategy schedules it in (through a label scope)."""
    if isinstance(strategy, InPlacementGroup):
        return strategy
    inner = getattr(strategy, "strategy", None)  # a LabelScoped strategy
    return inner if isinstance(inner, InPlacementGroup) else None


def bundle_resources(pg_hex: str, index: int, shape: Mapping[str, float]) -> dict[str, float]:
    """What committing bundle ``index`` (``shape``) of group ``pg_hex`` adds to its node."""
    out: dict[str, float] = {}
    for name, qty in shape.items():
        if qty:
            out[f"{name}{INFIX}{index}_{pg_hex}"] = float(qty)
            out[f"{name}{INFIX}{pg_hex}"] = float(qty)
    out[f"{MARKER}{INFIX}{index}_{pg_hex}"] = MARKER_UNITS
    out[f"{MARKER}{INFIX}{pg_hex}"] = MARKER_UNITS
    return out


def demand_in_bundle(shape: Mapping[str, float], pg_hex: str, index: int) -> dict[str, float]:
    """A task's ``shape`` as asked of group ``pg_hex``'s bundle ``index`` (-1: any bundle)."""
    out: dict[str, float] = {}
    for name, qty in shape.items():
        if not qty:
            continue
        out[f"{name}{INFIX}{pg_hex}"] = float(qty)
        if index >= 0:
            out[f"{name}{INFIX}{index}_{pg_hex}"] = float(qty)
    if index >= 0:
        out[f"{MARKER}{INFIX}{index}_{pg_hex}"] = MARKER_DEMAND
    else:
        out[f"{MARKER}{INFIX}{pg_hex}"] = MARKER_DEMAND
    return out


def group_of(resource: str) -> str | None:
    """The group (hex id) a bundle resource belongs to, or None for a plain resource."""
    head, sep, tail = resource.rpartition(INFIX)
    if not sep or not head:
        return None
    pg_hex = tail.rpartition("_")[2]
    if len(pg_hex) != 2 * PG_ID_BYTES or not _HEX.issuperset(pg_hex):
        return None  # a custom resource that merely contains the infix
    return pg_hex


def split_bundle_resource(resource: str) -> tuple[str, int, str] | None:
    """(plain name, bundle index or -1 for the group's wildcard, group hex) of a bundle
    resource; None for any other name. The markers split as ("bundle", ...)."""
    pg_hex = group_of(resource)
    if pg_hex is None:
        return None
    head = resource[: -len(pg_hex) - 1]  # "CPU_group_1" or "CPU_group"
    base, sep, index = head.rpartition(INFIX)
    if sep and index.isdigit():
        return base, int(index), pg_hex
    return head[: -len(INFIX) + 1], -1, pg_hex


def is_bundle_resource(resource: str) -> bool:
    return group_of(resource) is not None


def plain_resources(resources: Mapping[str, float]) -> dict[str, float]:
    """``resources`` without bundle resources (what ``cluster_resources()`` shows, as Ray)."""
    return {k: v for k, v in resources.items() if not is_bundle_resource(k)}


def plain_shape(resources: Mapping[str, float]) -> dict[str, float]:
    """A demand made by ``demand_in_bundle`` back in plain names (what a task in a group is
    told it was assigned, as Ray's ``get_assigned_resources``); plain shapes pass through."""
    out: dict[str, float] = {}
    for name, qty in resources.items():
        pg_hex = group_of(name)
        if pg_hex is None:
            out[name] = qty
            continue
        rest = name[: -len(pg_hex) - 1]  # "CPU_group" (wildcard) or "CPU_group_1" (indexed)
        suffix = INFIX.rstrip("_")
        if rest.endswith(suffix) and rest[: -len(suffix)] != MARKER:
            out[rest[: -len(suffix)]] = qty  # the wildcard name: every demand has it
    return out
