"""Giving back the memory of the owner's per-object tables once a burst of work is over.

A CPython dict never shrinks when entries are deleted: after 100,000 tasks have come and
gone, the reference table and the memory store would each keep a table sized for 100,000
entries (about 5 MB apiece) for the life of the process. The owner's tables call
``compacted`` every ``CHECK_EVERY`` deletions and swap in the copy it returns.

This module owns only that sizing decision; it does no I/O and holds no state.
"""

from __future__ import annotations

import sys
from typing import TypeVar

K = TypeVar("K")
V = TypeVar("V")

# Deletions between two checks: a check is one C call, a copy is amortized over the
# deletions that made the table sparse.
CHECK_EVERY = 1024
# A dict of n entries takes about 30-55 bytes per entry; a table using more than this per
# live entry (plus slack, so small tables are never copied) has been emptied and is worth
# rebuilding.
_MAX_BYTES_PER_ENTRY = 256
_SLACK_ENTRIES = 256


def compacted(table: dict[K, V]) -> dict[K, V] | None:
    """A right-sized copy of ``table`` if most of its allocated slots are empty, else None.

    The caller swaps the copy in while holding the lock that guards writes to ``table``.
    """
    if sys.getsizeof(table) > _MAX_BYTES_PER_ENTRY * (len(table) + _SLACK_ENTRIES):
        return dict(table)
    return None
