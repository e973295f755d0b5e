"""Large reads and by-value arguments on the default store (4 KiB /dev/shm pages): recycled
pages are read through each process's kept mapping (objectstore/_mapcache.py), so a fresh
object costs almost no page faults, and every byte is the new object's."""

from __future__ import annotations

import hashlib
import resource
import statistics
from collections.abc import Iterator

import numpy as np
import pytest

import rayops

MiB = 2**20
SIZE = 32 * MiB
# Reading a fresh 4 KiB-page mapping of SIZE takes a fault per 16 pages (the kernel's
# fault-around): ~512. Through a kept mapping it takes next to none.
FRESH_FAULTS = SIZE // (16 * 4096)


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[None]:
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYOPS_OBJECT_STORE_HUGE_PAGES", "off")
    try:
        rayops.init(num_cpus=1, _temp_dir=temp_dir, object_store_memory=512 * MiB)
        yield
        rayops.shutdown()
    finally:
        mp.undo()


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _expected(arr: np.ndarray) -> str:
    total = int(arr.view(np.uint64).sum(dtype=np.uint64))
    return hashlib.sha256(arr.data).hexdigest() + f":{total}"


def test_by_value_arguments_reuse_the_workers_mapping(cluster: None) -> None:
    @rayops.remote
    def digest_and_faults(arr: np.ndarray) -> tuple[str, int]:
        def faults() -> int:
            return resource.getrusage(resource.RUSAGE_SELF).ru_minflt

        before = faults()
        total = int(arr.view(np.uint64).sum(dtype=np.uint64))
        taken = faults() - before
        return hashlib.sha256(arr.data).hexdigest() + f":{total}", taken

    faults = []
    for seed in range(10):
        arr = np.random.default_rng(seed).integers(0, 256, SIZE, dtype=np.uint8)
        got, taken = rayops.get(digest_and_faults.remote(arr))
        assert got == _expected(arr), f"call {seed}: the worker read other bytes"
        faults.append(taken)
    # The first calls map new pages; later ones get recycled pages the worker already maps.
    assert statistics.median(faults[4:]) < FRESH_FAULTS / 4, faults


def test_get_after_put_reads_recycled_pages_without_faults(cluster: None) -> None:
    faults = []
    for seed in range(10):
        arr = np.random.default_rng(100 + seed).integers(0, 256, SIZE, dtype=np.uint8)
        ref = rayops.put(arr)
        value = rayops.get(ref)
        before = _faults()
        total = int(value.view(np.uint64).sum(dtype=np.uint64))
        faults.append(_faults() - before)
        assert total == int(arr.view(np.uint64).sum(dtype=np.uint64))
        assert np.array_equal(value, arr)
        assert not value.flags.writeable
        del value, ref
    assert statistics.median(faults[4:]) < FRESH_FAULTS / 4, faults
