"""A raylet's share of placement groups: the bundles it reserved, free of I/O.

The two phases of a group's reservation, as the GCS drives them (``gcs/pg_manager``):

- ``prepare``: take the bundle's resources out of the node's free resources, all of a
  group's bundles on this node or none (a refusal leaves nothing taken);
- ``commit``: turn each prepared bundle into the group's resources
  (``protocol.bundle_resources``), which tasks and actors of the group then lease;
- ``release``: give a bundle back, prepared or committed (the raylet first ends the leases
  that hold its resources).

Every operation is idempotent (the GCS retries after a lost connection), and each answers
whether the node's resources changed.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from rayops.protocol.bundle_resources import bundle_resources, split_bundle_resource
from rayops.raylet.resources import Allocation, NodeResources, pick_instances


@dataclass
class Bundle:
    pg_hex: str
    index: int
    shape: dict[str, float]
    alloc: Allocation  # what the reservation took from the node's own resources
    committed: bool = False
    # The GPUs the reservation holds (node instance indexes) and how much of each is free
    # for the leases of the group's tasks: they are told exactly these devices.
    devices: list[int] = field(default_factory=list)
    free: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class BundleDevices:
    """GPUs a lease took from a bundle: given back when the lease ends."""

    key: tuple[str, int]
    picks: tuple[tuple[int, float], ...]  # (position in the bundle's devices, amount)
    instances: tuple[tuple[int, float], ...]  # (node instance index, amount)


class BundleBook:
    def __init__(self, resources: NodeResources) -> None:
        self._res = resources
        self._bundles: dict[tuple[str, int], Bundle] = {}

    def __contains__(self, key: tuple[str, int]) -> bool:
        return key in self._bundles

    def bundles(self) -> list[Bundle]:
        return list(self._bundles.values())

    def prepare(self, pg_hex: str, bundles: Sequence[tuple[int, Mapping[str, float]]]) -> bool:
        """Reserve every bundle of ``bundles`` ((index, shape) pairs) or none; True if they are
        all reserved (now or by an earlier prepare)."""
        new = [(i, dict(s)) for i, s in bundles if (pg_hex, i) not in self._bundles]
        taken: list[Bundle] = []
        for index, shape in new:
            if not self._res.fits(shape):
                for b in taken:
                    self._res.release(b.alloc)
                    del self._bundles[(pg_hex, b.index)]
                return False
            b = Bundle(pg_hex, index, shape, self._res.acquire(shape))
            gpus = b.alloc.instances.get("GPU", [])
            b.devices = [idx for idx, _ in gpus]
            b.free = [amount for _, amount in gpus]
            self._bundles[(pg_hex, index)] = b
            taken.append(b)
        return True

    def commit(self, pg_hex: str, indexes: Sequence[int]) -> bool:
        """Add the group's resources of prepared bundles; False if one was never prepared
        (this raylet restarted, or released it meanwhile): the GCS aborts the attempt."""
        if any((pg_hex, i) not in self._bundles for i in indexes):
            return False
        for i in indexes:
            b = self._bundles[(pg_hex, i)]
            if not b.committed:
                b.committed = True
                self._res.add_capacity(bundle_resources(pg_hex, i, b.shape))
        return True

    def release(self, pg_hex: str, indexes: Sequence[int] | None = None) -> list[Bundle]:
        """Give bundles back (``None``: every bundle of the group here); returns those released.
        The caller has ended the leases holding their resources."""
        keys = [k for k in self._bundles if k[0] == pg_hex and (indexes is None or k[1] in indexes)]
        out = []
        for key in keys:
            b = self._bundles.pop(key)
            if b.committed:
                self._res.remove_capacity(bundle_resources(pg_hex, b.index, b.shape))
            self._res.release(b.alloc)
            out.append(b)
        return out

    def take_devices(self, shape: Mapping[str, float]) -> BundleDevices | None:
        """The GPUs of its bundle for a lease that asks for a group's GPUs (the bundle it
        names, or for the group's wildcard the first bundle here with room); None when the
        shape asks for none or no bundle here can give them."""
        if not self._bundles:  # every lease is granted through here: no groups, no work
            return None
        want: dict[int, float] = {}
        pg = ""
        for name, qty in shape.items():
            parts = split_bundle_resource(name)
            if parts is not None and parts[0] == "GPU":
                pg = parts[2]
                want[parts[1]] = qty
        if not want:
            return None
        if any(i >= 0 for i in want):
            index = max(want)
            candidates = [(pg, index)]
        else:
            index = -1
            candidates = sorted(k for k in self._bundles if k[0] == pg)
        qty = want[index]
        for key in candidates:
            b = self._bundles.get(key)
            if b is None or not b.committed or not b.devices:
                continue
            picks = pick_instances(b.free, qty)
            if picks is None:
                continue
            for pos, amount in picks:
                b.free[pos] -= amount
            return BundleDevices(
                key, tuple(picks), tuple((b.devices[pos], amount) for pos, amount in picks)
            )
        return None

    def give_back(self, taken: BundleDevices) -> None:
        """A lease ended: its bundle's GPUs are free again (if the bundle is still here)."""
        b = self._bundles.get(taken.key)
        if b is None:
            return
        for pos, amount in taken.picks:
            b.free[pos] = min(1.0, b.free[pos] + amount)

    def groups(self) -> set[str]:
        return {pg for pg, _ in self._bundles}
