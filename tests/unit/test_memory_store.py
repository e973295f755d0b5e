"""The owner's in-process memory store: blocking waits, and tables that give memory back.

No processes: a user thread blocks in ``wait`` while another thread fills objects, as the
core worker's IO thread does.
"""

from __future__ import annotations

import gc
import sys
import threading
import time
from collections.abc import Iterator, Sequence

from rayops.core_worker import table_size
from rayops.core_worker.memory_store import MemoryStore
from rayops.core_worker.references import FreeValue, ReferenceTable

DEADLINE_S = 10.0


class CountingOids(Sequence[bytes]):
    """A list of object ids that counts how often it is scanned from the start."""

    def __init__(self, oids: list[bytes]) -> None:
        self._oids = oids
        self.scans = 0

    def __iter__(self) -> Iterator[bytes]:
        self.scans += 1
        return iter(self._oids)

    def __getitem__(self, i):  # type: ignore[no-untyped-def]
        return self._oids[i]

    def __len__(self) -> int:
        return len(self._oids)


def _oid(i: int) -> bytes:
    return i.to_bytes(20, "big")


def _wait_until_blocked(ms: MemoryStore) -> None:
    deadline = time.monotonic() + DEADLINE_S
    while ms.blocked_waits() == 0:
        assert time.monotonic() < deadline, "wait() never blocked"
        time.sleep(0.001)


def test_wait_scans_its_list_a_fixed_number_of_times_however_many_objects_arrive() -> None:
    """Each arrival used to wake the waiter to rescan all n ids: quadratic for a get of n
    refs (a get of 100,000 task results ran 10x slower per task than one of 1,000)."""
    n = 2000
    ms = MemoryStore()
    oids = CountingOids([_oid(i) for i in range(n)])
    result: list[list[bool]] = []
    waiter = threading.Thread(target=lambda: result.append(ms.wait(oids, n, None)))
    waiter.start()
    _wait_until_blocked(ms)
    for i in range(n):
        ms.put(_oid(i), ("v", i))
        # Give the waiter every chance to wake (it must not): still blocked, same scans.
        if i % 100 == 0:
            time.sleep(0.001)
            assert ms.blocked_waits() == 1 or i == n - 1
    waiter.join(DEADLINE_S)
    assert not waiter.is_alive(), "wait() did not return once all objects were present"
    assert result == [[True] * n]
    assert oids.scans <= 3, f"wait() scanned its {n} ids {oids.scans} times"
    assert ms.blocked_waits() == 0


def test_wait_counts_duplicates_and_wakes_at_num_ready() -> None:
    ms = MemoryStore()
    a, b, c = _oid(1), _oid(2), _oid(3)
    result: list[list[bool]] = []
    waiter = threading.Thread(target=lambda: result.append(ms.wait([a, a, b, c], 3, None)))
    waiter.start()
    _wait_until_blocked(ms)
    ms.put(b, ("v", 2))
    ms.put(b, ("v", 2))  # a second put of the same object counts once
    assert ms.blocked_waits() == 1
    ms.put(a, ("v", 1))  # two occurrences: 3 of 4 ready
    waiter.join(DEADLINE_S)
    assert result == [[True, True, True, False]]
    assert ms.blocked_waits() == 0


def test_wait_times_out_and_unregisters() -> None:
    ms = MemoryStore()
    ms.put(_oid(1), ("v", 1))
    start = time.monotonic()
    flags = ms.wait([_oid(1), _oid(2)], 2, time.monotonic() + 0.05)
    assert flags == [True, False]
    assert time.monotonic() - start < DEADLINE_S
    assert ms.blocked_waits() == 0
    ms.put(_oid(2), ("v", 2))  # nobody waits any more: nothing to wake
    assert ms.wait([_oid(2)], 1, None) == [True]


def test_wait_one_wakes_on_its_object_or_times_out_and_unregisters() -> None:
    ms = MemoryStore()
    a, b = _oid(1), _oid(2)
    result: list[bool] = []
    waiter = threading.Thread(target=lambda: result.append(ms.wait_one(a, None)))
    waiter.start()
    _wait_until_blocked(ms)
    ms.put(b, ("v", 2))  # another object: still waiting
    assert ms.blocked_waits() == 1
    ms.put(a, ("v", 1))
    waiter.join(DEADLINE_S)
    assert result == [True] and ms.blocked_waits() == 0
    assert ms.wait_one(a, None)  # present: no wait
    assert not ms.wait_one(_oid(3), time.monotonic() + 0.05)
    assert ms.blocked_waits() == 0


def test_tables_give_memory_back_after_a_burst() -> None:
    """Dicts never shrink on delete; after 100,000 objects come and go the owner's tables
    must not keep 100,000-entry tables for the life of the process."""
    n = 100_000
    ms = MemoryStore()

    refs = ReferenceTable()
    owner = ("127.0.0.1", 1)
    empty_ms, empty_refs = sys.getsizeof(ms._values), sys.getsizeof(refs._refs)
    for i in range(n):
        refs.add_owned(_oid(i), owner)
        ms.put(_oid(i), ("v", i))
    assert len(ms) == n and len(refs) == n
    for i in range(n):
        for ins in refs.remove_local(_oid(i)):
            assert isinstance(ins, FreeValue)
            ms.delete(ins.oid)
    assert len(ms) == 0 and len(refs) == 0
    bound = table_size._MAX_BYTES_PER_ENTRY * (table_size._SLACK_ENTRIES + table_size.CHECK_EVERY)
    assert sys.getsizeof(ms._values) <= max(bound, empty_ms)
    assert sys.getsizeof(refs._refs) <= max(bound, empty_refs)


def test_borrowers_are_tracked_and_release_the_object() -> None:
    refs = ReferenceTable()
    owner, borrower = ("127.0.0.1", 1), ("127.0.0.1", 2)
    refs.add_owned(_oid(1), owner)
    assert refs.add_borrower(_oid(1), borrower)
    assert not refs.remove_local(_oid(1))  # the borrower still holds it
    assert refs.borrower_lost(borrower) == [FreeValue(_oid(1))]


class _FreedByTheCollector:
    """Garbage in a reference cycle whose finalizer deletes from the store, as
    ``ObjectRef.__del__`` does when the garbage collector finds a ref in a cycle (an
    exception's traceback holding the frame that held the ref, say)."""

    def __init__(self, store: MemoryStore, oid: bytes, inside: list[bool]) -> None:
        self.store = store
        self.oid = oid
        self.inside = inside
        self.cycle = self

    def __del__(self) -> None:
        owned = getattr(self.store._lock, "_is_owned", None)
        self.inside.append(bool(owned and owned()))
        self.store.delete(self.oid)


def test_a_finalizer_may_delete_while_its_thread_is_inside_the_store() -> None:
    """The collector runs finalizers in whichever thread allocates, possibly inside
    ``wait``'s critical section; with a plain lock the thread deadlocked on itself (a driver
    hung in get() in tests/integration/test_cancel.py, its IO thread behind it in put)."""
    store = MemoryStore()
    inside: list[bool] = []
    done = threading.Event()

    def waiter() -> None:
        thresholds = gc.get_threshold()
        try:
            # Which allocation triggers the collection depends on the threshold: try a few,
            # so that one of them collects inside the critical section.
            for threshold in range(1, 12):
                oid = b"a%d" % threshold
                store.put(oid, ("v", (b"", b"x", [])))
                wait, oids, deadline = store.wait, [b"missing"], time.monotonic() + 0.001
                gc.collect()
                _FreedByTheCollector(store, oid, inside)  # garbage at once
                gc.set_threshold(threshold)
                wait(oids, 1, deadline)
                gc.set_threshold(*thresholds)
                assert not store.contains(oid)
        finally:
            gc.set_threshold(*thresholds)
        done.set()

    threading.Thread(target=waiter, daemon=True).start()
    assert done.wait(DEADLINE_S), "a finalizer's delete deadlocked the thread in wait()"
    assert True in inside, f"no finalizer ran inside the store's lock: {inside}"
