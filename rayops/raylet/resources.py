"""Resource shapes and per-node accounting, free of I/O.

A shape is a ``dict[str, float]`` (``{"CPU": 1, "GPU": 0.5, "accel": 2}``).
Quantities are kept in fixed point (1/10000) so fractional requests add up exactly.
Unit resources (GPUs) are handed out as instances (an index into the node's devices) so a
task can be told which devices it owns: ``device_assignment`` turns the indices into the node's
physical device ids (its own ``CUDA_VISIBLE_DEVICES``, as Ray does), and ``pick_instances`` is
the packing rule (a fraction goes to the fullest device it still fits on, so several 0.5 GPU
tasks share one device; a whole number takes that many completely free devices, lowest first).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

_SCALE = 10_000
UNIT_RESOURCES = ("GPU",)


def _fx(x: float) -> int:
    return round(x * _SCALE)


def _fl(x: int) -> float:
    return x / _SCALE


def normalize_shape(shape: Mapping[str, float]) -> dict[str, float]:
    """Drop zero entries and reject negative or non-numeric quantities."""
    out: dict[str, float] = {}
    for name, qty in shape.items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"resource names must be non-empty strings, got {name!r}")
        if isinstance(qty, bool) or not isinstance(qty, (int, float)):
            raise ValueError(f"resource {name!r} must be a number, got {qty!r}")
        if qty < 0:
            raise ValueError(f"resource {name!r} must be >= 0, got {qty}")
        if name in UNIT_RESOURCES and qty > 1 and qty != int(qty):
            raise ValueError(f"{name} quantities above 1 must be whole numbers, got {qty}")
        if qty:
            out[name] = float(qty)
    return out


def visible_device_ids(env_value: str | None) -> list[str] | None:
    """The devices a node may use, from its ``CUDA_VISIBLE_DEVICES`` (None: not set, all).

    Ray's reading: unset is None, empty (or ``NoDevFiles``) is no device, otherwise the
    comma-separated ids as strings, kept as given (``"2,3"`` -> ``["2", "3"]``).
    """
    if env_value is None:
        return None
    if env_value.strip() in ("", "NoDevFiles"):
        return []
    return [d.strip() for d in env_value.split(",") if d.strip()]


def check_gpu_count(num_gpus: float, visible: Sequence[str] | None) -> None:
    """Refuse more GPUs than ``CUDA_VISIBLE_DEVICES`` lists (Ray refuses to start the node)."""
    if visible is not None and num_gpus > len(visible):
        raise ValueError(
            f"num_gpus={num_gpus:g} but CUDA_VISIBLE_DEVICES lists only {len(visible)} "
            f"device(s) {list(visible)}; lower num_gpus or make more devices visible"
        )


def pick_instances(free: Sequence[float], demand: float) -> list[tuple[int, float]] | None:
    """Which instances of a unit resource (GPUs) a demand takes; None if it does not fit now.

    ``free`` is each instance's free fraction (0..1). A fraction below 1 goes whole to one
    instance: the one with the least free that still fits (best fit, lowest index on ties),
    which packs fractional tasks onto shared devices as Ray does. A whole number takes that
    many completely free instances, lowest index first.
    """
    picks = _pick_fixed([_fx(f) for f in free], _fx(demand))
    return None if picks is None else [(i, _fl(amount)) for i, amount in picks]


def _pick_fixed(free: Sequence[int], need: int) -> list[tuple[int, int]] | None:
    if need < _SCALE:
        candidates = [i for i, f in enumerate(free) if f >= need]
        if not candidates:
            return None
        best = min(candidates, key=lambda i: (free[i], i))
        return [(best, need)]
    whole = [i for i, f in enumerate(free) if f == _SCALE]
    count = need // _SCALE
    if len(whole) < count:
        return None
    return [(i, _SCALE) for i in whole[:count]]


def device_assignment(
    instances: Mapping[str, Sequence[tuple[int, float]]],
    device_ids: Mapping[str, Sequence[str]],
) -> dict[str, list[tuple[int | str, float]]]:
    """The ids a task is told it owns: instance indices mapped through the node's devices.

    With a device list for the resource (the node's ``CUDA_VISIBLE_DEVICES``) an index becomes
    that physical id, a string (index 0 of ``["2", "3"]`` is ``"2"``); without one the index
    itself is the id, an int. This is what Ray's ``get_gpu_ids()`` returns in each case.
    """
    out: dict[str, list[tuple[int | str, float]]] = {}
    for name, picks in instances.items():
        ids = device_ids.get(name)
        if ids is None:
            out[name] = [(idx, amount) for idx, amount in picks]
        else:
            out[name] = [(ids[idx], amount) for idx, amount in picks]
    return out


def format_shape(shape: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"


@dataclass
class Allocation:
    """What a lease holds: quantities plus, for unit resources, (instance, fraction) pairs."""

    shape: dict[str, float]
    instances: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


class NodeResources:
    """Total and available resources of one node.

    ``device_ids`` maps a unit resource to the node's physical ids for it (``{"GPU": ["2",
    "3"]}`` from ``CUDA_VISIBLE_DEVICES=2,3``); instance ``i`` is ``device_ids[name][i]``.
    """

    def __init__(
        self, total: Mapping[str, float], device_ids: Mapping[str, Sequence[str]] | None = None
    ) -> None:
        self.device_ids = {k: list(v) for k, v in (device_ids or {}).items()}
        for name, ids in self.device_ids.items():
            if len(ids) < int(total.get(name, 0)):
                raise ValueError(
                    f"{name}: {total.get(name, 0):g} instances but only {len(ids)} device ids {ids}"
                )
        self.total = {k: _fx(v) for k, v in total.items()}
        self.available = dict(self.total)
        # per-instance free fraction for unit resources
        self._instances: dict[str, list[int]] = {
            name: [_SCALE] * int(_fl(self.total[name]))
            for name in UNIT_RESOURCES
            if name in self.total
        }

    def feasible(self, shape: Mapping[str, float]) -> bool:
        """Could this node ever run the shape (ignoring current use)?"""
        return all(self.total.get(k, 0) >= _fx(v) for k, v in shape.items())

    def fits(self, shape: Mapping[str, float]) -> bool:
        for k, v in shape.items():
            need = _fx(v)
            if self.available.get(k, 0) < need:
                return False
            if k in self._instances and not self._pick_instances(k, need):
                return False
        return True

    def _pick_instances(self, name: str, need: int) -> list[tuple[int, int]] | None:
        return _pick_fixed(self._instances[name], need)

    def assigned_ids(self, alloc: Allocation) -> dict[str, list[tuple[int | str, float]]]:
        """What the lease's worker is told it owns (see ``device_assignment``)."""
        return device_assignment(alloc.instances, self.device_ids)

    def acquire(
        self,
        shape: Mapping[str, float],
        keep: Mapping[str, Sequence[tuple[int, float]]] | None = None,
    ) -> Allocation:
        """Take ``shape``; the caller checked ``fits`` first.

        ``keep``: instances the worker was already told it owns (a lease being resized); a unit
        resource asked for in the same amount takes exactly those again, so the devices in the
        worker's ``CUDA_VISIBLE_DEVICES`` stay the ones accounted to it.
        """
        alloc = Allocation(dict(shape))
        for k, v in shape.items():
            need = _fx(v)
            self.available[k] = self.available.get(k, 0) - need
            if k in self._instances:
                picks = self._same_instances(k, need, (keep or {}).get(k))
                if picks is None:
                    picks = self._pick_instances(k, need) or []
                for idx, amount in picks:
                    self._instances[k][idx] -= amount
                alloc.instances[k] = [(idx, _fl(amount)) for idx, amount in picks]
        return alloc

    def _same_instances(
        self, name: str, need: int, held: Sequence[tuple[int, float]] | None
    ) -> list[tuple[int, int]] | None:
        if not held:
            return None
        picks = [(idx, _fx(amount)) for idx, amount in held]
        free = self._instances[name]
        if sum(a for _, a in picks) != need or any(free[i] < a for i, a in picks):
            return None
        return picks

    def release(self, alloc: Allocation) -> None:
        for k, v in alloc.shape.items():
            self.available[k] = min(self.total.get(k, 0), self.available.get(k, 0) + _fx(v))
        for k, picks in alloc.instances.items():
            for idx, amount in picks:
                self._instances[k][idx] = min(_SCALE, self._instances[k][idx] + _fx(amount))

    def release_quantities(self, shape: Mapping[str, float]) -> None:
        """Give back quantities without instances (a blocked worker lending its CPUs)."""
        for k, v in shape.items():
            self.available[k] = self.available.get(k, 0) + _fx(v)

    def take_quantities(self, shape: Mapping[str, float]) -> None:
        """Take quantities back even past zero (an unblocked worker may oversubscribe briefly)."""
        for k, v in shape.items():
            self.available[k] = self.available.get(k, 0) - _fx(v)

    def add_capacity(self, shape: Mapping[str, float]) -> None:
        """Grow the node by ``shape`` (a committed placement-group bundle's resources)."""
        for k, v in shape.items():
            self.total[k] = self.total.get(k, 0) + _fx(v)
            self.available[k] = self.available.get(k, 0) + _fx(v)

    def remove_capacity(self, shape: Mapping[str, float]) -> None:
        """Shrink the node by ``shape`` (a released bundle); names that reach zero go."""
        for k, v in shape.items():
            self.total[k] = self.total.get(k, 0) - _fx(v)
            self.available[k] = self.available.get(k, 0) - _fx(v)
            if self.total[k] <= 0:
                del self.total[k]
                self.available.pop(k, None)

    def total_dict(self) -> dict[str, float]:
        return {k: _fl(v) for k, v in self.total.items()}

    def available_dict(self) -> dict[str, float]:
        return {k: max(0.0, _fl(v)) for k, v in self.available.items()}
