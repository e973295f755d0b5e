"""Reference counting for the objects this process owns or borrows.

An object stays alive while any of these is non-zero:
- ``local``: ObjectRef handles alive in this process;
- ``submitted``: pending tasks of ours that take it as an argument;
- ``nested``: objects we hold whose value contains a ref to it;
- ``borrowers`` (owned objects only): other processes that told us they hold it.

When all drop to zero the entry goes and the ``on_free`` callback runs: for an
owned object the core worker deletes its value everywhere; for a borrowed one it
tells the owner we no longer hold it (if we had told it we did).

Thread-safe. ObjectRef.__del__ can run on any thread at any time (garbage
collection), so the lock is re-entrant and callbacks run after it is released.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from rayops.core_worker import table_size

Address = tuple[str, int]


@dataclass(slots=True)
class RefEntry:
    owner: Address
    owned: bool
    local: int = 0
    submitted: int = 0
    nested: int = 0
    # Made on the first borrower: most objects never have one, and an empty set costs
    # 216 bytes per entry (a fifth of the driver's memory per task in flight).
    borrowers: set[Address] | None = None
    # borrowed entries: has the owner been told we hold it?
    registered: bool = False
    contains: tuple[bytes, ...] = ()


FreeCallback = Callable[[bytes, RefEntry], None]


class ReferenceTable:
    def __init__(self, on_free: FreeCallback) -> None:
        self._lock = threading.RLock()
        self._refs: dict[bytes, RefEntry] = {}
        self._on_free = on_free
        # Borrowed refs deserialized since the last drain (for registration with owners).
        self._new_borrows: list[bytes] = []
        self._frees_since_compaction = 0

    # ------------------------------------------------------------------ queries
    def get(self, oid: bytes) -> RefEntry | None:
        return self._refs.get(oid)

    def is_owned(self, oid: bytes) -> bool:
        e = self._refs.get(oid)
        return e is not None and e.owned

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._refs

    # ----------------------------------------------------------------- changes
    def add_owned(
        self, oid: bytes, owner: Address, *, local: int = 1, contains: Iterable[bytes] = ()
    ) -> None:
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                e = RefEntry(owner, True)
                self._refs[oid] = e
            e.owned = True
            e.local += local
            self._hold_nested(e, contains)

    def add_owned_pinned(self, oid: bytes, owner: Address) -> None:
        """An owned object with no handle yet (an untaken generator item), pinned by ``nested``."""
        with self._lock:
            e = self._refs.setdefault(oid, RefEntry(owner, True))
            e.nested += 1

    def set_contains(self, oid: bytes, inner: Iterable[tuple[bytes, Address]]) -> None:
        """The value of ``oid`` (ours or borrowed) holds these refs; keep them alive with it.

        Inner refs not owned by us arrive already registered with their owner
        (whoever sent us the value told the owner about us).
        """
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                return
            ids = []
            for inner_id, inner_owner in inner:
                ie = self._refs.get(inner_id)
                if ie is None:
                    ie = RefEntry(inner_owner, False, registered=True)
                    self._refs[inner_id] = ie
                ie.nested += 1
                ids.append(inner_id)
            e.contains = (*e.contains, *ids)

    def _hold_nested(self, e: RefEntry, contains: Iterable[bytes]) -> None:
        ids = tuple(contains)
        for inner in ids:
            ie = self._refs.get(inner)
            if ie is not None:
                ie.nested += 1
        e.contains = (*e.contains, *ids)

    def add_local(self, oid: bytes, owner: Address) -> None:
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                e = RefEntry(owner, False)
                self._refs[oid] = e
            e.local += 1

    def on_deserialized(self, oid: bytes, owner: Address) -> None:
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                e = RefEntry(owner, False)
                self._refs[oid] = e
            if not e.owned and not e.registered:
                self._new_borrows.append(oid)
            e.local += 1

    def remove_local(self, oid: bytes) -> None:
        freed: list[tuple[bytes, RefEntry]] = []
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                return
            e.local -= 1
            self._collect(oid, e, freed)
        self._run_free(freed)

    def pin_submitted(self, oids: Iterable[bytes]) -> None:
        with self._lock:
            for oid in oids:
                e = self._refs.get(oid)
                if e is not None:
                    e.submitted += 1

    def unpin_submitted(self, oids: Iterable[bytes]) -> None:
        freed: list[tuple[bytes, RefEntry]] = []
        with self._lock:
            for oid in oids:
                e = self._refs.get(oid)
                if e is not None:
                    e.submitted -= 1
                    self._collect(oid, e, freed)
        self._run_free(freed)

    def release_nested(self, oid: bytes) -> None:
        freed: list[tuple[bytes, RefEntry]] = []
        with self._lock:
            e = self._refs.get(oid)
            if e is not None:
                e.nested -= 1
                self._collect(oid, e, freed)
        self._run_free(freed)

    def add_borrower(self, oid: bytes, who: Address) -> bool:
        with self._lock:
            e = self._refs.get(oid)
            if e is None or not e.owned:
                return False
            if e.borrowers is None:
                e.borrowers = set()
            e.borrowers.add(who)
            return True

    def remove_borrower(self, oid: bytes, who: Address) -> None:
        freed: list[tuple[bytes, RefEntry]] = []
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                return
            if e.borrowers is not None:
                e.borrowers.discard(who)
            self._collect(oid, e, freed)
        self._run_free(freed)

    def remove_borrower_everywhere(self, who: Address) -> None:
        """A borrower process died: it holds nothing any more."""
        freed: list[tuple[bytes, RefEntry]] = []
        with self._lock:
            for oid, e in list(self._refs.items()):
                if e.borrowers is not None and who in e.borrowers:
                    e.borrowers.discard(who)
                    self._collect(oid, e, freed)
        self._run_free(freed)

    def drain_new_borrows(self) -> list[tuple[bytes, Address]]:
        """Borrowed refs still alive that the owner has not been told about; marks them told."""
        with self._lock:
            out = []
            for oid in self._new_borrows:
                e = self._refs.get(oid)
                if e is not None and not e.owned and not e.registered:
                    e.registered = True
                    out.append((oid, e.owner))
            self._new_borrows.clear()
            return out

    def mark_registered(self, oid: bytes) -> None:
        with self._lock:
            e = self._refs.get(oid)
            if e is not None:
                e.registered = True

    # ---------------------------------------------------------------- freeing
    def _collect(self, oid: bytes, e: RefEntry, freed: list[tuple[bytes, RefEntry]]) -> None:
        stack = [(oid, e)]
        while stack:
            oid, e = stack.pop()
            if e.local > 0 or e.submitted > 0 or e.nested > 0 or e.borrowers:
                continue
            if self._refs.get(oid) is not e:
                continue
            del self._refs[oid]
            freed.append((oid, e))
            for inner in e.contains:
                ie = self._refs.get(inner)
                if ie is not None:
                    ie.nested -= 1
                    stack.append((inner, ie))
        self._frees_since_compaction += 1
        if self._frees_since_compaction >= table_size.CHECK_EVERY:
            self._frees_since_compaction = 0
            smaller = table_size.compacted(self._refs)
            if smaller is not None:
                self._refs = smaller

    def _run_free(self, freed: list[tuple[bytes, RefEntry]]) -> None:
        for oid, e in freed:
            self._on_free(oid, e)
