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
from dataclasses import dataclass

from rayops.protocol.bundle_resources import bundle_resources
from rayops.raylet.resources import Allocation, NodeResources


@dataclass
class Bundle:
    pg_hex: str
    index: int
    shape: dict[str, float]
    alloc: Allocation  # what the reservation took from the node's own resources
    committed: bool = False


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

    def groups(self) -> set[str]:
        return {pg for pg, _ in self._bundles}
