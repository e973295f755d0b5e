"""The in-process store of object states: small values inline, pointers to the
shared-memory store for large ones, errors, and who is waiting for what.

An entry is a tuple:
- ``("v", (metadata, pickled, buffers))``: the value inline;
- ``("s", node_id, size)``: sealed in the shared-memory store of node ``node_id``.

Thread-safe: the IO loop thread fills entries, user threads wait on them.
"""

from __future__ import annotations

import collections
import itertools
import operator
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from rayops.core_worker import table_size

Entry = tuple[Any, ...]
Callback = Callable[[bytes, Entry], None]


class _Waiter:
    """One blocked ``wait``: the objects it still counts on, and how many more must arrive.

    ``gate`` is a lock held from the start; ``put`` releases it once, when ``needed``
    reaches 0, and the blocked thread wakes by acquiring it (a one-shot event, cheaper to
    make per call than a Condition).
    """

    __slots__ = ("gate", "missing", "needed")

    def __init__(self, missing: dict[bytes, int], needed: int) -> None:
        self.gate = threading.Lock()
        self.gate.acquire()
        self.missing = missing  # oid -> its occurrences in the waited-for list
        self.needed = needed


class MemoryStore:
    def __init__(self) -> None:
        self._values: dict[bytes, Entry] = {}
        # Reentrant: the garbage collector may run ObjectRef.__del__ (-> delete) on a thread
        # in the middle of any allocation, including one made while that thread holds this
        # lock (wait, on_ready, delete's compaction); a plain Lock deadlocked the thread.
        self._lock = threading.RLock()
        self._callbacks: dict[bytes, list[Callback]] = {}
        # The blocked waits (one per blocked thread, so a handful). A put checks each for its
        # object and wakes a wait only once enough have arrived, so a get of n objects costs
        # O(n) in total. (It used to wake every wait on every put to rescan its whole list:
        # quadratic for a get of 100,000 refs, holding the lock against the IO thread.)
        self._waiters: list[_Waiter] = []
        self._deletes_since_compaction = 0

    def put(self, oid: bytes, entry: Entry) -> None:
        with self._lock:
            self._values[oid] = entry
            cbs = self._callbacks.pop(oid, None)
            for w in self._waiters:
                n = w.missing.pop(oid, 0)
                if n and w.needed > 0:
                    w.needed -= n
                    if w.needed <= 0:
                        w.gate.release()
        if cbs:
            for cb in cbs:
                cb(oid, entry)

    def get(self, oid: bytes) -> Entry | None:
        return self._values.get(oid)

    def present(self, oids: Sequence[bytes]) -> list[bool]:
        return list(map(self._values.__contains__, oids))

    def contains(self, oid: bytes) -> bool:
        return oid in self._values

    def delete(self, oid: bytes) -> Entry | None:
        with self._lock:
            self._callbacks.pop(oid, None)
            entry = self._values.pop(oid, None)
            self._deletes_since_compaction += 1
            if self._deletes_since_compaction >= table_size.CHECK_EVERY:
                self._deletes_since_compaction = 0
                # The copy may run a finalizer that deletes (reentrantly) from the old table
                # before it is copied: nothing deleted comes back.
                smaller = table_size.compacted(self._values)
                if smaller is not None:
                    self._values = smaller
            return entry

    def on_ready(self, oid: bytes, cb: Callback) -> None:
        """Call ``cb(oid, entry)`` once the object is ready (now, if it already is)."""
        with self._lock:
            entry = self._values.get(oid)
            if entry is None:
                self._callbacks.setdefault(oid, []).append(cb)
                return
        cb(oid, entry)

    def wait(self, oids: Sequence[bytes], num_ready: int, deadline: float | None) -> list[bool]:
        """Block until at least ``num_ready`` of ``oids`` are present or the deadline passes."""
        with self._lock:
            ready = list(map(self._values.__contains__, oids))
            needed = num_ready - ready.count(True)
            if needed <= 0:
                return ready
            absent = list(itertools.compress(oids, map(operator.not_, ready)))
            missing = dict.fromkeys(absent, 1)
            if len(missing) != len(absent):  # an id listed twice counts twice
                missing = collections.Counter(absent)
            waiter = _Waiter(missing, needed)
            self._waiters.append(waiter)
        self._block(waiter, deadline)
        # self._values again: a delete may have swapped in a compacted table.
        return list(map(self._values.__contains__, oids))

    def wait_one(self, oid: bytes, deadline: float | None) -> bool:
        """``wait`` for one object: whether it is present."""
        with self._lock:
            if oid in self._values:
                return True
            waiter = _Waiter({oid: 1}, 1)
            self._waiters.append(waiter)
        self._block(waiter, deadline)
        return oid in self._values

    def _block(self, waiter: _Waiter, deadline: float | None) -> None:
        """Wait until ``waiter``'s gate opens or the deadline passes; then drop it."""
        try:
            while True:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    break
                # Wake at least once a second so a signal (Ctrl-C) reaches the thread.
                timeout = 1.0 if remaining is None else min(remaining, 1.0)
                if waiter.gate.acquire(timeout=timeout):
                    break
        finally:
            with self._lock:
                self._waiters.remove(waiter)

    def blocked_waits(self) -> int:
        """How many ``wait`` calls are blocked right now (tests; sync lanes: a caller waits)."""
        return len(self._waiters)

    def __len__(self) -> int:
        return len(self._values)
