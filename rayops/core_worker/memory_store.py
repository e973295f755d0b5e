"""The in-process store of object states: small values inline, pointers to the
shared-memory store for large ones, errors, and who is waiting for what.

An entry is a tuple:
- ``("v", (metadata, pickled, buffers))``: the value inline;
- ``("s", node_id, size)``: sealed in the shared-memory store of node ``node_id``.

Thread-safe: the IO loop thread fills entries, user threads wait on them.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

Entry = tuple[Any, ...]
Callback = Callable[[bytes, Entry], None]


class MemoryStore:
    def __init__(self) -> None:
        self._values: dict[bytes, Entry] = {}
        self._cond = threading.Condition(threading.Lock())
        self._waiting = 0
        self._callbacks: dict[bytes, list[Callback]] = {}

    def put(self, oid: bytes, entry: Entry) -> None:
        with self._cond:
            self._values[oid] = entry
            cbs = self._callbacks.pop(oid, None)
            if self._waiting:
                self._cond.notify_all()
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
        with self._cond:
            self._callbacks.pop(oid, None)
            return self._values.pop(oid, None)

    def on_ready(self, oid: bytes, cb: Callback) -> None:
        """Call ``cb(oid, entry)`` once the object is ready (now, if it already is)."""
        with self._cond:
            entry = self._values.get(oid)
            if entry is None:
                self._callbacks.setdefault(oid, []).append(cb)
                return
        cb(oid, entry)

    def wait(self, oids: Sequence[bytes], num_ready: int, deadline: float | None) -> list[bool]:
        """Block until at least ``num_ready`` of ``oids`` are present or the deadline passes."""
        values = self._values
        with self._cond:
            while True:
                ready = list(map(values.__contains__, oids))
                if ready.count(True) >= num_ready:
                    return ready
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return ready
                self._waiting += 1
                try:
                    self._cond.wait(remaining if remaining is None else min(remaining, 1.0))
                finally:
                    self._waiting -= 1

    def __len__(self) -> int:
        return len(self._values)
