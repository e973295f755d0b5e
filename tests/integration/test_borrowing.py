"""Borrowers on a real embedded cluster: an owner keeps an object alive while another
process holds a ref to it, and frees it (its shared-memory copy included) once the
borrower drops the ref or its process goes.

Each test first waits for the store to hold no objects (the known baseline: an earlier
test's objects are freed asynchronously), then polls with a deadline for the outcome.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np

import rayops
from rayops.testing.waiting import wait_for

SIZE = 4 * 2**20  # shared memory, not inline
DEADLINE_S = 15.0


def _shm_dir() -> str:
    from rayops.node.session import NodeRecord

    cw = rayops.get_runtime_context().worker
    return NodeRecord.load(cw.session_dir).shm_dir


def _store_used(shm_dir: str) -> int:
    """Bytes in the store's object files (not the pool of recycled pages in pool/)."""
    total = 0
    for entry in os.scandir(shm_dir):
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
    return total


def _empty_store(shm: str) -> None:
    wait_for("the store still holds objects of earlier tests", lambda: _store_used(shm) == 0)


@rayops.remote
class Holder:
    def __init__(self) -> None:
        self.held: list[Any] = []

    def hold(self, box: list[Any]) -> int:
        self.held.extend(box)  # a ref nested in an argument is borrowed, not resolved
        return len(self.held)

    def total(self) -> int:
        return sum(int(rayops.get(r).sum()) for r in self.held)

    def drop(self) -> None:
        self.held.clear()


@rayops.remote
def make_inner() -> list[Any]:
    return [rayops.put(np.ones(SIZE, dtype=np.uint8))]


def test_a_borrowed_object_lives_until_the_borrower_drops_it(ray: Any) -> None:
    shm = _shm_dir()
    _empty_store(shm)
    holder = Holder.remote()
    ref = rayops.put(np.ones(SIZE, dtype=np.uint8))
    assert rayops.get(holder.hold.remote([ref])) == 1
    del ref  # the owner's last handle: the borrower still holds it
    assert rayops.get(holder.total.remote()) == SIZE
    assert _store_used(shm) >= SIZE
    rayops.get(holder.drop.remote())
    wait_for("the object outlived its last borrower", lambda: _store_used(shm) == 0)
    rayops.kill(holder)


def test_a_borrower_that_dies_releases_what_it_held(ray: Any) -> None:
    shm = _shm_dir()
    _empty_store(shm)
    holder = Holder.remote()
    ref = rayops.put(np.ones(SIZE, dtype=np.uint8))
    assert rayops.get(holder.hold.remote([ref])) == 1
    del ref
    assert _store_used(shm) >= SIZE
    rayops.kill(holder)  # its connection to the owner closes: it holds nothing any more
    wait_for("the object outlived its dead borrower", lambda: _store_used(shm) == 0)


def test_a_ref_returned_inside_a_value_is_readable_and_then_freed(ray: Any) -> None:
    shm = _shm_dir()
    _empty_store(shm)
    outer = make_inner.remote()
    (inner,) = rayops.get(outer)
    del outer  # the value that held it goes; our own handle keeps the inner object
    assert int(rayops.get(inner).sum()) == SIZE
    del inner
    wait_for("the inner object outlived every ref to it", lambda: _store_used(shm) == 0)


def test_nested_refs_in_a_put_value_are_freed_with_it(ray: Any) -> None:
    shm = _shm_dir()
    _empty_store(shm)
    inner = rayops.put(np.ones(SIZE, dtype=np.uint8))
    outer = rayops.put({"a": inner})
    del inner
    assert int(rayops.get(rayops.get(outer)["a"]).sum()) == SIZE
    del outer
    wait_for("the nested object outlived the value holding it", lambda: _store_used(shm) == 0)


@rayops.remote(num_returns="streaming")
def large_items(n: int) -> Any:
    for _ in range(n):
        yield np.ones(SIZE, dtype=np.uint8)


def test_generator_items_in_shared_memory_are_freed_with_their_refs(ray: Any) -> None:
    shm = _shm_dir()
    _empty_store(shm)
    gen = large_items.remote(3)
    refs = list(gen)
    assert [int(rayops.get(r).sum()) for r in refs] == [SIZE] * 3
    assert _store_used(shm) >= 3 * SIZE
    del refs, gen
    wait_for("generator items outlived their refs", lambda: _store_used(shm) == 0)


@rayops.remote
def total(a: Any) -> int:
    return int(a.sum())


def test_a_large_argument_passed_by_value_is_freed_when_its_task_ends(ray: Any) -> None:
    shm = _shm_dir()
    _empty_store(shm)
    # Too large to inline: the owner stores it and pins it for the task.
    assert rayops.get(total.remote(np.ones(SIZE, dtype=np.uint8))) == SIZE
    wait_for("a task's by-value argument outlived the task", lambda: _store_used(shm) == 0)
