"""The autoscaling decision: a pure function of demand, nodes, instance records, config, time.

``decide`` answers three questions each round: which nodes to launch (by type), which idle
nodes to terminate, and which demand no node type can ever hold (reported, not launched for).

How it packs (Ray's autoscaler does the same steps; this is its own implementation):

1. ``min_workers`` of each type first.
2. ``request_resources`` bundles (a floor) are packed onto the *totals* of the live nodes,
   the nodes still coming (pending records) and the nodes of step 1; what does not fit
   gets new nodes. Nodes used by the floor are not terminated when idle.
3. Pending placement groups: STRICT_SPREAD bundles each need a node of their own, so each
   bundle takes a distinct node with room (live, coming or new) and the rest get one new
   node each (a 3-bundle group on a cluster with one fitting node launches 2); STRICT_PACK
   bundles are one shape (their sum) that must fit one node; PACK and SPREAD bundles are
   best effort, packed like tasks.
4. Queued tasks and actors: first-fit-decreasing onto the *free* capacity of live nodes and
   of nodes still coming, then onto new nodes.

New nodes: the best type for what is left is the one an empty node of which is filled the
most (Ray's rule: a GPU type is not used for work that needs no GPU while another type fits;
then the most resource kinds used; then the highest least-used fraction; then the highest
mean fraction), and as many identical nodes as the same filling repeats are added at once.
Every launch honours, in that order of priority, the type's ``max_workers`` (the head's
type launches only with an explicit ``max_workers``), the cluster's ``max_workers`` and
``upscaling_speed`` (at most ``max(5, upscaling_speed * live nodes)`` nodes pending at once).
A type whose last record failed for good is not launched again for
``retry_backoff_s * 2**launch_retries`` seconds (``Decision.cooling``).

Speed: identical shapes are grouped (a shape is a vector over the resource names the demand
uses), identical nodes are grouped into bins (same free vector and labels), and a shape is
not even tried when it exceeds the largest free amount of some resource. Packing costs
about (distinct shapes x bins), not (shapes x nodes).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from rayops.autoscaler.instances import PENDING_STATES, Instance
from rayops.autoscaler.types import (
    AutoscalerConfig,
    BundleDemand,
    Decision,
    Demand,
    Infeasible,
    NodeTypeConfig,
    NodeView,
    Shape,
    Termination,
)
from rayops.scheduling.labels import LabelSelector, format_selector, labels_match

__all__ = ["UPSCALING_INITIAL_NODES", "decide"]

#: Ray's floor on pending nodes, whatever ``upscaling_speed`` and the cluster size say.
UPSCALING_INITIAL_NODES = 5
#: past this many different shapes, amounts are rounded up to a grid (see ``_coarsen``)
COARSEN_ABOVE = 256
COARSEN_STEPS = 256
_EPS = 1e-9

Vec = tuple[float, ...]
#: a kind of demand: its resource vector and label selector
Key = tuple[Vec, LabelSelector]


@dataclass
class _Bin:
    """Nodes with the same free vector and labels (``nodes``: their ids)."""

    free: list[float]
    labels: Mapping[str, str]
    nodes: list[str]
    node_type: str


@dataclass
class _Space:
    """The resource names the demand uses, and how to turn a shape into a vector."""

    names: tuple[str, ...]
    index: dict[str, int]
    scale: tuple[float, ...]  # the largest amount of each name a node has (for sizes)

    def vec(self, shape: Shape) -> Vec:
        out = [0.0] * len(self.names)
        for name, amount in shape.items():
            if amount > 0:
                out[self.index[name]] = float(amount)
        return tuple(out)

    def project(self, shape: Shape) -> list[float]:
        return [float(shape.get(n, 0.0)) for n in self.names]

    def size(self, key: Key) -> tuple[int, float]:
        """Bigger shapes are placed first: more resource kinds, then more of the nodes."""
        vec = key[0]
        return (
            sum(1 for a in vec if a > 0),
            sum(a / s for a, s in zip(vec, self.scale, strict=True)),
        )

    def shape(self, vec: Vec) -> dict[str, float]:
        return {n: a for n, a in zip(self.names, vec, strict=True) if a > 0}


@dataclass
class _Budget:
    """How many more nodes may be launched: per type, cluster-wide and pending at once."""

    per_type: dict[str, float]
    cluster: float
    speed: float
    launch: dict[str, int] = field(default_factory=dict)

    def room(self, node_type: str) -> int:
        return int(max(0, min(self.per_type.get(node_type, 0), self.cluster, self.speed)))

    def take(self, node_type: str, n: int) -> None:
        self.per_type[node_type] -= n
        self.cluster -= n
        self.speed -= n
        self.launch[node_type] = self.launch.get(node_type, 0) + n


def _fits_count(free: Sequence[float], need: Vec) -> int:
    """How many copies of ``need`` fit in ``free`` (a large number when need is all zero)."""
    best = 1 << 30
    for f, n in zip(free, need, strict=True):
        if n > 0:
            k = int((f + _EPS) // n)
            if k < best:
                best = k
                if k == 0:
                    return 0
    return best


def _fits_once(free: Sequence[float], need: Vec) -> bool:
    """Whether one copy of ``need`` fits in ``free`` (``_fits_count(...) > 0``, cheaper)."""
    for f, n in zip(free, need, strict=True):  # noqa: SIM110 (a loop: no generator per call)
        if n > f + _EPS:
            return False
    return True


def _sub(free: Sequence[float], need: Vec, times: int) -> list[float]:
    return [f - n * times for f, n in zip(free, need, strict=True)]


def decide(
    demand: Demand,
    nodes: Sequence[NodeView],
    instances: Mapping[str, Instance],
    config: AutoscalerConfig,
    now: float,
) -> Decision:
    """What to launch and terminate now; see the module docstring for the rules."""
    queued = _group_tasks(demand)
    space = _space_of(demand, queued, config, nodes)
    types = config.node_types
    live, pending = _live_and_pending(nodes, instances)
    budget, cooling = _budget(config, live, pending, now, instances)
    feasible = _Feasibility(space, types, live)
    infeasible: list[Infeasible] = []
    keep: set[str] = set()  # live nodes the floor or pending demand will use

    # 1. min_workers, 2. the request_resources floor (on totals)
    new_nodes = _min_workers(types, _count_workers(live, pending), budget)
    floor: dict[Key, int] = {}
    for req in demand.requests:
        for bundle in req.bundles:
            _add(floor, (space.vec(bundle), ()), 1)
    floor = _drop_infeasible(_coarsen(floor, space, feasible), feasible, infeasible)
    totals = _bins(space, ((n.node_id, n.node_type, n.total, n.labels) for n in live))
    totals += _coming_bins(space, types, pending, new_nodes)
    left = _first_fit(floor, totals, keep, space)
    new_nodes += _pack_new(left, space, types, budget, cooling)

    # 3 and 4: placement groups and tasks onto free capacity, then new nodes
    free = _bins(space, ((n.node_id, n.node_type, n.available, n.labels) for n in live))
    free += _coming_bins(space, types, pending, new_nodes)
    work: dict[Key, int] = {}
    spread_groups: list[BundleDemand] = []
    for g in demand.groups:
        _group_demand(g, space, work, spread_groups)
    for (items, selector), count in queued.items():
        _add(work, (space.vec(dict(items)), selector), count)
    work = _drop_infeasible(_coarsen(work, space, feasible), feasible, infeasible)
    unplaced: dict[Key, int] = {}
    for gi, g in enumerate(spread_groups):
        _strict_spread(
            gi, g, space, free, types, feasible, budget, cooling, infeasible, unplaced, keep
        )
    left = _first_fit(work, free, keep, space)
    waiting = dict(left)
    for key, n in unplaced.items():
        _add(waiting, key, n)
    _pack_new(left, space, types, budget, cooling)

    return Decision(
        launch={t: n for t, n in sorted(budget.launch.items()) if n > 0},
        terminate=_idle(live, instances, config, keep),
        infeasible=tuple(infeasible),
        pending=tuple((space.shape(k[0]), n) for k, n in sorted(waiting.items(), key=_in_order)),
        cooling=cooling,
    )


def _live_and_pending(
    nodes: Sequence[NodeView], instances: Mapping[str, Instance]
) -> tuple[list[NodeView], list[Instance]]:
    """The nodes that count (not those on their way out) and the records whose node is
    still to come (not those whose node already joined)."""
    leaving = {i.instance_id for i in instances.values() if i.state == "terminating"}
    live = [n for n in nodes if n.instance_id is None or n.instance_id not in leaving]
    joined = {n.instance_id for n in nodes if n.instance_id is not None}
    pending = [
        i for i in instances.values() if i.state in PENDING_STATES and i.instance_id not in joined
    ]
    return live, sorted(pending, key=lambda i: i.instance_id)


def _min_workers(
    types: Mapping[str, NodeTypeConfig], workers: Mapping[str, int], budget: _Budget
) -> list[tuple[str, int]]:
    new_nodes = []
    for name in sorted(types):
        short = types[name].min_workers - workers.get(name, 0)
        n = min(short, budget.room(name)) if short > 0 else 0
        if n > 0:
            budget.take(name, n)
            new_nodes.append((name, n))
    return new_nodes


def _group_tasks(
    demand: Demand,
) -> dict[tuple[tuple[tuple[str, float], ...], LabelSelector], int]:
    """Queued tasks and actors by shape and selector (one pass; all later work is per kind)."""
    out: dict[tuple[tuple[tuple[str, float], ...], LabelSelector], int] = {}
    for t in demand.tasks:
        if t.count > 0:
            key = (tuple(sorted(t.shape.items())), tuple(t.label_selector))
            out[key] = out.get(key, 0) + t.count
    return out


def _space_of(
    demand: Demand,
    queued: Mapping[tuple[tuple[tuple[str, float], ...], LabelSelector], int],
    config: AutoscalerConfig,
    nodes: Sequence[NodeView],
) -> _Space:
    names: set[str] = set()
    for items, _ in queued:
        names.update(k for k, v in items if v > 0)
    for g in demand.groups:
        for b in g.bundles:
            names.update(k for k, v in b.items() if v > 0)
    for r in demand.requests:
        for b in r.bundles:
            names.update(k for k, v in b.items() if v > 0)
    ordered = tuple(sorted(names))
    scale = []
    for name in ordered:
        most = max((t.resources.get(name, 0.0) for t in config.node_types.values()), default=0)
        most = max([most, *(n.total.get(name, 0.0) for n in nodes)])
        scale.append(float(most) if most > 0 else 1.0)
    return _Space(ordered, {n: i for i, n in enumerate(ordered)}, tuple(scale))


def _in_order(item: tuple[Key, int]) -> tuple[Vec, str]:
    """A total order on demand kinds (selectors are not comparable themselves)."""
    return item[0][0], format_selector(item[0][1])


def _add(d: dict[Key, int], key: Key, n: int) -> None:
    d[key] = d.get(key, 0) + n


def _count_workers(live: Iterable[NodeView], pending: Iterable[Instance]) -> dict[str, int]:
    out: dict[str, int] = {}
    for n in live:
        if not n.is_head:
            out[n.node_type] = out.get(n.node_type, 0) + 1
    for i in pending:
        out[i.node_type] = out.get(i.node_type, 0) + 1
    return out


def _budget(
    config: AutoscalerConfig,
    live: Sequence[NodeView],
    pending: Sequence[Instance],
    now: float,
    instances: Mapping[str, Instance],
) -> tuple[_Budget, dict[str, float]]:
    workers = _count_workers(live, pending)
    per_type: dict[str, float] = {}
    for name, t in config.node_types.items():
        cap = t.max_workers
        if cap is None:
            cap = 0 if name == config.head_node_type else config.max_workers
        per_type[name] = cap - workers.get(name, 0)
    cooling: dict[str, float] = {}
    quiet = config.retry_backoff_s * 2**config.launch_retries
    for inst in instances.values():
        if inst.state == "failed" and now - inst.since < quiet:
            until = inst.since + quiet
            if until > cooling.get(inst.node_type, 0.0):
                cooling[inst.node_type] = until
    allowed_pending = max(UPSCALING_INITIAL_NODES, math.floor(config.upscaling_speed * len(live)))
    return (
        _Budget(
            per_type,
            config.max_workers - sum(workers.values()),
            allowed_pending - len(pending),
        ),
        cooling,
    )


def _bins(
    space: _Space, members: Iterable[tuple[str, str, Shape, Mapping[str, str]]]
) -> list[_Bin]:
    """Group nodes with the same projected capacity, labels and type."""
    grouped: dict[tuple[Vec, int, str], _Bin] = {}
    label_ids: dict[tuple[tuple[str, str], ...], int] = {}
    names = space.names
    for node_id, node_type, capacity, labels in members:
        vec = tuple([float(capacity.get(n, 0.0)) for n in names])
        lkey = tuple(sorted(labels.items())) if labels else ()
        key = (vec, label_ids.setdefault(lkey, len(label_ids)), node_type)
        b = grouped.get(key)
        if b is None:
            grouped[key] = _Bin(list(vec), labels, [node_id], node_type)
        else:
            b.nodes.append(node_id)
    return list(grouped.values())


def _coming_bins(
    space: _Space,
    types: Mapping[str, NodeTypeConfig],
    pending: Sequence[Instance],
    new_nodes: Sequence[tuple[str, int]],
) -> list[_Bin]:
    """Nodes that are not live yet (pending records, launches of this decision), at full
    capacity; their ids start with ``coming:`` so they are never kept or terminated."""
    members = []
    for inst in pending:
        t = types.get(inst.node_type)
        if t is not None:
            members.append((f"coming:{inst.instance_id}", t.name, t.resources, t.labels))
    for k, (name, n) in enumerate(new_nodes):
        t = types[name]
        members += [(f"coming:new{k}.{j}", name, t.resources, t.labels) for j in range(n)]
    return _bins(space, members)


def _first_fit(
    work: Mapping[Key, int], bins: list[_Bin], keep: set[str], space: _Space
) -> dict[Key, int]:
    """Place ``work`` onto ``bins`` (changed in place), biggest shapes first; what did not
    fit. Live nodes that took something go into ``keep``."""
    unmet: dict[Key, int] = {}
    dims = len(bins[0].free) if bins else 0
    top = [max((b.free[i] for b in bins), default=0.0) for i in range(dims)]
    for key in sorted(work, key=space.size, reverse=True):
        need, selector = key
        left = work[key]
        if any(n > t + _EPS for n, t in zip(need, top, strict=False)) or not bins:
            unmet[key] = left
            continue
        out: list[_Bin] = []
        for b in bins:
            if left > 0 and (not selector or labels_match(selector, b.labels)):
                k = _fits_count(b.free, need)
                if k > 0:
                    left = _take(b, k, need, left, out, keep)
                    continue
            out.append(b)
        bins[:] = out
        if left > 0:
            unmet[key] = left
            # every bin was tried: take the exact maxima, so shapes this big skip the scan
            top = [max(b.free[i] for b in bins) for i in range(dims)]
    return unmet


def _take(b: _Bin, k: int, need: Vec, left: int, out: list[_Bin], keep: set[str]) -> int:
    """Fill nodes of bin ``b`` (``k`` copies each fit) with up to ``left`` copies; append the
    resulting bins to ``out``; return what is still left."""
    full = min(len(b.nodes), left // k)
    rest = b.nodes[full:]
    if full:
        used = b.nodes[:full]
        keep.update(used)
        out.append(_Bin(_sub(b.free, need, k), b.labels, used, b.node_type))
        left -= full * k
    if left and rest:  # left < k: one more node takes the remainder
        keep.add(rest[0])
        out.append(_Bin(_sub(b.free, need, left), b.labels, [rest[0]], b.node_type))
        rest = rest[1:]
        left = 0
    if rest:
        out.append(_Bin(b.free, b.labels, rest, b.node_type))
    return left


def _group_demand(
    g: BundleDemand, space: _Space, work: dict[Key, int], spread: list[BundleDemand]
) -> None:
    selector = tuple(g.label_selector)
    if g.strategy == "STRICT_SPREAD":
        spread.append(g)
    elif g.strategy == "STRICT_PACK":
        total: dict[str, float] = {}
        for b in g.bundles:
            for name, amount in b.items():
                total[name] = total.get(name, 0.0) + amount
        _add(work, (space.vec(total), selector), 1)
    else:  # PACK and SPREAD are best effort: each bundle is packed like a task
        for b in g.bundles:
            _add(work, (space.vec(b), selector), 1)


def _strict_spread(
    gi: int,
    g: BundleDemand,
    space: _Space,
    free: list[_Bin],
    types: Mapping[str, NodeTypeConfig],
    feasible: _Feasibility,
    budget: _Budget,
    cooling: Mapping[str, float],
    infeasible: list[Infeasible],
    unplaced: dict[Key, int],
    keep: set[str],
) -> None:
    """Every bundle on a node of its own: a distinct node with room, else a new node."""
    selector = tuple(g.label_selector)
    used: set[str] = set()
    keys = sorted(((space.vec(b), selector) for b in g.bundles), key=space.size, reverse=True)
    for key in keys:
        if _place_on_distinct(key, free, used, keep):
            continue
        if not feasible.fits(key):
            _note_infeasible(infeasible, key, 1, space, "STRICT_SPREAD bundle ")
            continue
        name = _best_single_type(key, space, types, budget, cooling)
        if name is None:
            _add(unplaced, key, 1)
            continue
        budget.take(name, 1)
        t = types[name]
        vec = _sub(space.project(t.resources), key[0], 1)
        node = f"coming:spread{gi}.{len(used)}"
        used.add(node)
        free.append(_Bin(vec, t.labels, [node], name))


def _place_on_distinct(key: Key, free: list[_Bin], used: set[str], keep: set[str]) -> bool:
    need, selector = key
    for idx, b in enumerate(free):
        if selector and not labels_match(selector, b.labels):
            continue
        if _fits_count(b.free, need) == 0:
            continue
        choice = next((n for n in b.nodes if n not in used), None)
        if choice is None:
            continue
        used.add(choice)
        keep.add(choice)
        others = [n for n in b.nodes if n != choice]
        free[idx] = _Bin(_sub(b.free, need, 1), b.labels, [choice], b.node_type)
        if others:
            free.insert(idx + 1, _Bin(b.free, b.labels, others, b.node_type))
        return True
    return False


def _type_fits(t: NodeTypeConfig, key: Key, space: _Space) -> bool:
    need, selector = key
    if selector and not labels_match(selector, t.labels):
        return False
    return _fits_count(space.project(t.resources), need) > 0


class _Feasibility:
    """Whether a kind of demand could ever be held: by some node type, or by some live node's
    totals (a node started by hand may have what no type has). Live nodes are grouped by
    totals and labels first, so the check is per distinct node, not per node."""

    def __init__(
        self, space: _Space, types: Mapping[str, NodeTypeConfig], live: Sequence[NodeView]
    ) -> None:
        self.space = space
        self.types = [(space.project(t.resources), t.labels) for t in types.values()]
        self.nodes = _bins(space, ((n.node_id, n.node_type, n.total, n.labels) for n in live))
        # Answers per key: coarsened shapes repeat, and one decision asks twice for some.
        self._type_fits: dict[Key, bool] = {}

    def type_fits(self, key: Key) -> bool:
        known = self._type_fits.get(key)
        if known is None:
            need, selector = key
            known = any(
                (not selector or labels_match(selector, labels)) and _fits_once(vec, need)
                for vec, labels in self.types
            )
            self._type_fits[key] = known
        return known

    def fits(self, key: Key) -> bool:
        if self.type_fits(key):
            return True
        need, selector = key
        return any(
            (not selector or labels_match(selector, b.labels)) and _fits_once(b.free, need)
            for b in self.nodes
        )


def _note_infeasible(
    out: list[Infeasible], key: Key, count: int, space: _Space, what: str = ""
) -> None:
    shape = space.shape(key[0])
    where = f" with labels {format_selector(key[1])}" if key[1] else ""
    out.append(
        Infeasible(
            shape,
            count,
            f"{what}{shape} fits no node type{where} (nor any live node): add a node type "
            "that has it to available_node_types",
        )
    )


def _drop_infeasible(
    work: Mapping[Key, int], feasible: _Feasibility, infeasible: list[Infeasible]
) -> dict[Key, int]:
    left = {}
    for key, n in sorted(work.items(), key=_in_order):
        if feasible.fits(key):
            left[key] = n
        else:
            _note_infeasible(infeasible, key, n, feasible.space)
    return left


def _coarsen(work: dict[Key, int], space: _Space, feasible: _Feasibility) -> dict[Key, int]:
    """With more than ``COARSEN_ABOVE`` kinds, round each amount up to a step of
    1/``COARSEN_STEPS`` of the largest node's, so near-equal shapes pack as one kind.

    Only the extreme case pays (thousands of different shapes, which grouping cannot help):
    a rounded shape asks for at most that step more of a resource, so a decision may launch
    slightly more than the exact packing would. A shape whose rounded form no type holds
    keeps its exact amounts.
    """
    if len(work) <= COARSEN_ABOVE:
        return work
    steps = [s / COARSEN_STEPS for s in space.scale]
    out: dict[Key, int] = {}
    for (vec, selector), n in work.items():
        rounded = tuple(
            math.ceil(v / st - _EPS) * st if v > 0 else 0.0
            for v, st in zip(vec, steps, strict=True)
        )
        key = (rounded, selector)
        _add(out, key if feasible.type_fits(key) else (vec, selector), n)
    return out


def _score(t: NodeTypeConfig, space: _Space, used: Sequence[float], gpu_wanted: bool) -> tuple:
    """Ray's order of preference for a filled empty node of type ``t`` (higher is better)."""
    total = space.project(t.resources)
    fractions = [u / c for u, c in zip(used, total, strict=True) if c > 0 and u > 0]
    has_gpu = t.resources.get("GPU", 0) > 0
    return (
        not (has_gpu and not gpu_wanted),
        len(fractions),
        min(fractions, default=0.0),
        sum(fractions) / len(fractions) if fractions else 0.0,
        -sum(t.resources.values()),
        t.name,
    )


def _best_single_type(
    key: Key,
    space: _Space,
    types: Mapping[str, NodeTypeConfig],
    budget: _Budget,
    cooling: Mapping[str, float],
) -> str | None:
    gpu = "GPU" in space.index and key[0][space.index["GPU"]] > 0
    best: tuple | None = None
    name = None
    for t in types.values():
        if t.name in cooling or budget.room(t.name) <= 0 or not _type_fits(t, key, space):
            continue
        s = _score(t, space, key[0], gpu)
        if best is None or s > best:
            best, name = s, t.name
    return name


def _pack_new(
    work: dict[Key, int],
    space: _Space,
    types: Mapping[str, NodeTypeConfig],
    budget: _Budget,
    cooling: Mapping[str, float],
) -> list[tuple[str, int]]:
    """New nodes for ``work``: (type, how many) in the order chosen. ``work`` keeps what
    no launch allowed now could take."""
    made: list[tuple[str, int]] = []
    order = sorted(work, key=space.size, reverse=True)
    fillers = [_Filler(t, space, order) for t in types.values() if t.name not in cooling]
    gpu_i = space.index.get("GPU")
    gpu_left = sum(1 for k in order if gpu_i is not None and k[0][gpu_i] > 0)
    while work:
        best: tuple | None = None
        choice: tuple[str, dict[Key, int]] | None = None
        for f in fillers:
            if budget.room(f.t.name) <= 0:
                continue
            fill, used = f.fill(work)
            if not fill:
                continue
            s = _score(f.t, space, used, gpu_left > 0)
            if best is None or s > best:
                best, choice = s, (f.t.name, fill)
        if choice is None:
            break
        name, fill = choice
        repeat = min(budget.room(name), min(work[k] // n for k, n in fill.items()))
        budget.take(name, repeat)
        for k, n in fill.items():
            work[k] -= n * repeat
            if work[k] == 0:
                del work[k]
                if gpu_i is not None and k[0][gpu_i] > 0:
                    gpu_left -= 1
        made.append((name, repeat))
    return made


class _Filler:
    """Fills one empty node of a type with what is left, biggest shapes first.

    It only looks at the kinds an empty node of its type can hold, skips the exhausted ones
    at the front (the biggest go first, so they run out first), and stops as soon as no
    kind can fit any more: when every kind needs some resource the node has less of than
    the smallest amount any kind asks for. This keeps a fill near (kinds placed), not
    (kinds left), which matters when thousands of shapes differ.
    """

    def __init__(self, t: NodeTypeConfig, space: _Space, order: Sequence[Key]) -> None:
        self.t = t
        self.capacity = space.project(t.resources)
        self.keys = [k for k in order if _type_fits(t, k, space)]
        self.start = 0
        dims = len(space.names)
        self.min_need = [math.inf] * dims
        masks = set()
        for need, _ in self.keys:
            mask = 0
            for d, n in enumerate(need):
                if n > 0:
                    mask |= 1 << d
                    self.min_need[d] = min(self.min_need[d], n)
            masks.add(mask)
        self.masks = tuple(masks)

    def fill(self, work: Mapping[Key, int]) -> tuple[dict[Key, int], list[float]]:
        """What one empty node would take of ``work``, and how much of each resource."""
        keys = self.keys
        while self.start < len(keys) and keys[self.start] not in work:
            self.start += 1
        free = list(self.capacity)
        fill: dict[Key, int] = {}
        for idx in range(self.start, len(keys)):
            key = keys[idx]
            left = work.get(key, 0)
            if not left:
                continue
            k = min(_fits_count(free, key[0]), left)
            if k <= 0:
                continue
            fill[key] = k
            free = _sub(free, key[0], k)
            if self._full(free):
                break
        return fill, [c - f for c, f in zip(self.capacity, free, strict=True)]

    def _full(self, free: Sequence[float]) -> bool:
        short = 0
        for d, f in enumerate(free):
            if f + _EPS < self.min_need[d]:
                short |= 1 << d
        return all(mask & short for mask in self.masks)


def _idle(
    live: Sequence[NodeView],
    instances: Mapping[str, Instance],
    config: AutoscalerConfig,
    keep: set[str],
) -> tuple[Termination, ...]:
    """Nodes idle past the timeout: never the head, a node the autoscaler did not make, a
    node holding objects or placement-group bundles, one the floor or pending demand uses,
    nor below the type's ``min_workers``."""
    workers: dict[str, int] = {}
    for n in live:
        if not n.is_head:
            workers[n.node_type] = workers.get(n.node_type, 0) + 1
    out = []
    candidates = sorted(live, key=lambda n: (-n.idle_s, n.node_id))
    for n in candidates:
        if (
            n.is_head
            or n.instance_id is None
            or n.idle_s < config.idle_timeout_s
            or n.holds_objects
            or n.holds_bundles
            or n.node_id in keep
        ):
            continue
        inst = instances.get(n.instance_id)
        if inst is None or inst.state != "running":
            continue
        t = config.node_types.get(n.node_type)
        floor = t.min_workers if t is not None else 0
        if workers.get(n.node_type, 0) <= floor:
            continue
        workers[n.node_type] -= 1
        out.append(
            Termination(
                n.instance_id,
                f"idle for {n.idle_s:.0f}s (idle_timeout {config.idle_timeout_s:.0f}s)",
            )
        )
    return tuple(out)
