"""Where a placement group's bundles go: a pure function of the bundles, the strategy and a
view of the nodes.

No I/O and no clock. The GCS (which commits the reservations on the raylets, two-phase) asks
``place_bundles`` and carries the answer out; the same call reschedules only the lost bundles
of a group, passing the ones still committed as ``fixed``. Placement is all or nothing: either
every bundle gets a node that has its resources free now ("placed"), or none is placed.

Ray's strategies (``ray.util.placement_group``):

- PACK: as few nodes as possible, best effort: spills onto more nodes when one is not enough.
- SPREAD: distinct nodes, best effort: reuses a node when there are more bundles than nodes
  with room.
- STRICT_PACK: every bundle on one node, else not placed.
- STRICT_SPREAD: every bundle on its own node, else not placed.

When the bundles cannot be placed now the answer says whether waiting can help: "pending"
when each bundle fits some live node's totals (resources may free up, or, for the strict
strategies, a bigger node or more nodes may join), "infeasible" when some bundle fits no live
node's totals at all (only a new kind of node could take it; the autoscaler's case).

Ties are broken by node id, so the same view always gives the same placement.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from rayops.scheduling.labels import LabelSelector, format_selector, labels_match
from rayops.scheduling.policy import EPS, NodeView

__all__ = ["STRATEGIES", "BundlePlacement", "place_bundles", "validate_bundles"]

STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")

Shape = Mapping[str, float]


@dataclass(frozen=True)
class BundlePlacement:
    """The decision for a group's bundles.

    ``kind``: "placed" (``nodes`` maps every bundle index, fixed ones included, to its node
    id), "pending" (not now, maybe later) or "infeasible" (some bundle fits no live node).
    ``reason`` says why in words a user can act on (empty when placed).
    """

    kind: str
    nodes: dict[int, str] = field(default_factory=dict)
    reason: str = ""


def validate_bundles(bundles: object, strategy: object) -> None:
    """Refuse what Ray's ``placement_group(bundles, strategy)`` refuses, as Ray does.

    ValueError for: bundles not a list, an empty list, a bundle that is not a dict of resource
    name -> number, an empty or all-zero bundle, an unknown strategy. A negative amount is a
    ValueError too (Ray lets it through to fail later; nothing could ever reserve it).
    """
    if not isinstance(bundles, list):
        raise ValueError(f"Placement group bundles must be a list, got {type(bundles)}.")
    if not bundles:
        raise ValueError(
            "Bundles must be a non-empty list of resource dictionaries. For example: "
            '`[{"CPU": 1.0}, {"GPU": 1.0}]`. Got empty list instead.'
        )
    for index, bundle in enumerate(bundles):
        if not isinstance(bundle, dict) or not all(
            isinstance(k, str) and isinstance(v, int | float)  # bool is an int, as in Ray
            for k, v in bundle.items()
        ):
            raise ValueError(
                "Bundles must be a non-empty list of resource dictionaries. For example: "
                f'`[{{"CPU": 1.0}}, {{"GPU": 1.0}}]`. Bundle {index} is {bundle!r}.'
            )
        if not bundle or all(v == 0 for v in bundle.values()):
            raise ValueError(
                "Bundles cannot be an empty dictionary or resources with only 0 values. "
                f"Bundles: {bundles}"
            )
        negative = sorted(k for k, v in bundle.items() if v < 0)
        if negative:
            raise ValueError(
                f"Bundle {index} asks for a negative amount of {', '.join(negative)}: "
                f"{bundle!r}. Resource amounts in a bundle must be >= 0."
            )
    if strategy not in STRATEGIES:
        raise ValueError(
            f"Invalid placement group strategy {strategy}. "
            f"Supported strategies are: {set(STRATEGIES)}."
        )


def place_bundles(
    bundles: Sequence[Shape],
    strategy: str,
    nodes: Sequence[NodeView],
    *,
    bundle_label_selectors: Sequence[LabelSelector] = (),
    fixed: Mapping[int, str] = {},
) -> BundlePlacement:
    """Place the bundles not in ``fixed`` on ``nodes`` with ``strategy``.

    ``fixed`` maps indexes of bundles already committed to their node ids: their resources
    are already taken out of those nodes' ``available``, and the strategy counts them (a
    STRICT_PACK group stays on their node, a STRICT_SPREAD group avoids it).
    ``bundle_label_selectors``: none, or one selector per bundle, which narrows the nodes
    that bundle may go to.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown placement strategy {strategy!r}; one of {STRATEGIES}")
    if bundle_label_selectors and len(bundle_label_selectors) != len(bundles):
        raise ValueError(
            f"{len(bundle_label_selectors)} bundle label selectors for {len(bundles)} bundles: "
            "give one per bundle, or none"
        )
    group = _Group(bundles, bundle_label_selectors, nodes, fixed)
    infeasible = group.infeasible()
    if infeasible:
        return BundlePlacement("infeasible", reason=infeasible)
    place = {
        "PACK": _pack,
        "SPREAD": _spread,
        "STRICT_PACK": _strict_pack,
        "STRICT_SPREAD": _strict_spread,
    }[strategy]
    placed, why_not = place(group)
    if placed is None:
        return BundlePlacement("pending", reason=f"{strategy}: {why_not}")
    return BundlePlacement("placed", dict(sorted({**fixed, **placed}.items())))


class _Group:
    """The bundles still to place, and the live nodes each one may go to (sorted by id)."""

    def __init__(
        self,
        bundles: Sequence[Shape],
        selectors: Sequence[LabelSelector],
        nodes: Sequence[NodeView],
        fixed: Mapping[int, str],
    ) -> None:
        self.bundles = bundles
        self.selectors = selectors
        self.fixed = fixed
        self.alive = sorted((n for n in nodes if n.alive), key=lambda n: n.node_id)
        self.todo = [i for i in range(len(bundles)) if i not in fixed]

    def selector(self, index: int) -> LabelSelector:
        return self.selectors[index] if self.selectors else ()

    def candidates(self, index: int) -> list[NodeView]:
        """Live nodes whose labels match bundle ``index``'s selector."""
        return [n for n in self.alive if labels_match(self.selector(index), n.labels)]

    def infeasible(self) -> str:
        """Why some bundle to place fits no live node's totals ("" when each fits one)."""
        for i in self.todo:
            candidates = self.candidates(i)
            if any(n.feasible(self.bundles[i]) for n in candidates):
                continue
            shape, where = _fmt(self.bundles[i]), self.selector(i)
            if where and not candidates:
                return (
                    f"bundle {i} {shape}: no live node matches its label selector "
                    f"{format_selector(where)}. Add such a node, or change the selector."
                )
            matching = f" matching {format_selector(where)}" if where else ""
            return (
                f"bundle {i} {shape} fits no live node{matching}: none has that much in "
                "total. Add a node that has it, or ask for less."
            )
        return ""


def _fits(free: Mapping[str, float], shape: Shape) -> bool:
    return all(free.get(k, 0.0) + EPS >= v for k, v in shape.items())


def _take(free: dict[str, float], shape: Shape) -> None:
    for k, v in shape.items():
        free[k] = free.get(k, 0.0) - v


def _sum(shapes: Sequence[Shape]) -> dict[str, float]:
    total: dict[str, float] = {}
    for shape in shapes:
        for k, v in shape.items():
            total[k] = total.get(k, 0.0) + v
    return total


def _fmt(shape: Shape) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"


def _how_many_fit(free: Mapping[str, float], shapes: Sequence[Shape]) -> int:
    """How many of ``shapes``, taken in order where they fit, a node with ``free`` takes."""
    left = dict(free)
    count = 0
    for shape in shapes:
        if _fits(left, shape):
            _take(left, shape)
            count += 1
    return count


Placed = tuple[dict[int, str] | None, str]


def _pack(g: _Group) -> Placed:
    """Bundles in index order onto nodes already used by the group when they fit; else onto
    the node that can take the most of the bundles still to place (ties: node id)."""
    free = {n.node_id: dict(n.available) for n in g.alive}
    used = set(g.fixed.values())
    out: dict[int, str] = {}
    for pos, i in enumerate(g.todo):
        shape = g.bundles[i]
        fitting = [n.node_id for n in g.candidates(i) if _fits(free[n.node_id], shape)]
        if not fitting:
            return None, f"bundle {i} {_fmt(shape)} has no node with room now"
        reuse = [nid for nid in fitting if nid in used]
        if reuse:
            nid = reuse[0]
        else:
            rest = [g.bundles[j] for j in g.todo[pos:]]
            nid = min(fitting, key=lambda x: (-_how_many_fit(free[x], rest), x))
        _take(free[nid], shape)
        used.add(nid)
        out[i] = nid
    return out, ""


def _spread(g: _Group) -> Placed:
    """Each bundle, in index order, onto the node with room that holds the fewest bundles of
    the group so far (ties: node id)."""
    free = {n.node_id: dict(n.available) for n in g.alive}
    count: dict[str, int] = {}
    for nid in g.fixed.values():
        count[nid] = count.get(nid, 0) + 1
    out: dict[int, str] = {}
    for i in g.todo:
        shape = g.bundles[i]
        fitting = [n.node_id for n in g.candidates(i) if _fits(free[n.node_id], shape)]
        if not fitting:
            return None, f"bundle {i} {_fmt(shape)} has no node with room now"
        nid = min(fitting, key=lambda x: (count.get(x, 0), x))
        _take(free[nid], shape)
        count[nid] = count.get(nid, 0) + 1
        out[i] = nid
    return out, ""


def _strict_pack(g: _Group) -> Placed:
    """Every bundle on one node: the fixed bundles' node, else the first node (by id) whose
    labels suit every bundle and that has room for all of them now."""
    homes = set(g.fixed.values())
    if len(homes) > 1:
        return None, f"the committed bundles are on {len(homes)} nodes, not one"
    shapes = [g.bundles[i] for i in g.todo]
    need = _sum(shapes)
    suitable = [n for n in g.alive if all(labels_match(g.selector(i), n.labels) for i in g.todo)]
    if homes:
        suitable = [n for n in suitable if n.node_id in homes]
        if not suitable:
            return None, f"node {next(iter(homes))} of the committed bundles is not usable"
    for n in suitable:
        if _fits(n.available, need):
            return dict.fromkeys(g.todo, n.node_id), ""
    whole = _sum([g.bundles[i] for i in range(len(g.bundles))])
    if any(n.feasible(whole) for n in suitable):
        return None, f"no single node has {_fmt(need)} free now"
    return None, (
        f"no live node has {_fmt(whole)} in total for all bundles together; it waits for "
        "such a node to join"
    )


def _strict_spread(g: _Group) -> Placed:
    """Every bundle on its own node, none on a fixed bundle's node: a matching of bundles to
    nodes with room now (tries nodes by id, so the result is deterministic)."""
    taken = set(g.fixed.values())
    now = _match(g, taken, lambda n, s: n.fits_now(s))
    if now is not None:
        return now, ""
    if _match(g, taken, lambda n, s: n.feasible(s)) is not None:
        return None, "not enough distinct nodes have room now"
    return None, (
        f"{len(g.bundles)} bundles need {len(g.bundles)} distinct nodes that can hold them; "
        "it waits for more nodes to join"
    )


def _match(
    g: _Group, taken: set[str], fits: Callable[[NodeView, Shape], bool]
) -> dict[int, str] | None:
    """A node for each bundle to place, no two on one node nor on ``taken`` (augmenting
    paths; groups are small), or None."""
    options = {
        i: [n.node_id for n in g.candidates(i) if n.node_id not in taken and fits(n, g.bundles[i])]
        for i in g.todo
    }
    holder: dict[str, int] = {}

    def assign(i: int, seen: set[str]) -> bool:
        free = [nid for nid in options[i] if nid not in holder]
        if free:  # a node nobody holds: take the first, moving no one
            holder[free[0]] = i
            return True
        for nid in options[i]:
            if nid in seen:
                continue
            seen.add(nid)
            if nid not in holder or assign(holder[nid], seen):
                holder[nid] = i
                return True
        return False

    for i in g.todo:
        if not assign(i, set()):
            return None
    return dict(sorted((i, nid) for nid, i in holder.items()))
