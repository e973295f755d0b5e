"""Resource shapes and per-node accounting, free of I/O.

A shape is a ``dict[str, float]`` (``{"CPU": 1, "GPU": 0.5, "accel": 2}``).
Quantities are kept in fixed point (1/10000) so fractional requests add up exactly.
Unit resources (GPUs) are handed out as instance ids so a task can be told which
devices it owns (``CUDA_VISIBLE_DEVICES``).
"""

from __future__ import annotations

from collections.abc import Mapping
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


def format_shape(shape: Mapping[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"


@dataclass
class Allocation:
    """What a lease holds: quantities plus, for unit resources, (instance, fraction) pairs."""

    shape: dict[str, float]
    instances: dict[str, list[tuple[int, float]]] = field(default_factory=dict)


class NodeResources:
    """Total and available resources of one node."""

    def __init__(self, total: Mapping[str, float]) -> None:
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
        free = self._instances[name]
        if need < _SCALE:  # fractional: one instance with enough left (fullest first packs best)
            candidates = [i for i, f in enumerate(free) if f >= need]
            if not candidates:
                return None
            best = min(candidates, key=lambda i: free[i])
            return [(best, need)]
        whole = [i for i, f in enumerate(free) if f == _SCALE]
        count = need // _SCALE
        if len(whole) < count:
            return None
        return [(i, _SCALE) for i in whole[:count]]

    def acquire(self, shape: Mapping[str, float]) -> Allocation:
        """Take ``shape``; the caller checked ``fits`` first."""
        alloc = Allocation(dict(shape))
        for k, v in shape.items():
            need = _fx(v)
            self.available[k] = self.available.get(k, 0) - need
            if k in self._instances:
                picks = self._pick_instances(k, need) or []
                for idx, amount in picks:
                    self._instances[k][idx] -= amount
                alloc.instances[k] = [(idx, _fl(amount)) for idx, amount in picks]
        return alloc

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

    def total_dict(self) -> dict[str, float]:
        return {k: _fl(v) for k, v in self.total.items()}

    def available_dict(self) -> dict[str, float]:
        return {k: max(0.0, _fl(v)) for k, v in self.available.items()}
