"""Large objects on the store's fast path: the huge-page tmpfs (RAYOPS_OBJECT_STORE_HUGE_PAGES,
"auto" by default), recycled pages, many sizes, several readers, every byte checked."""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import rayops
from rayops.objectstore._tmpfs import is_huge_tmpfs

MiB = 2**20
# Around every boundary of the store's paths: copied reads (<= 64 KiB), unpooled files
# (< 256 KiB), pooled 4 KiB tails, whole and partial 2 MiB huge pages.
SIZES = [
    1,
    4095,
    64 * 1024,
    64 * 1024 + 1,
    256 * 1024,
    2 * MiB - 1,
    2 * MiB,
    2 * MiB + 7,
    9 * MiB + 123,
    33 * MiB,
]


@pytest.fixture(scope="module")
def store(temp_dir: str) -> Iterator[str]:
    # The huge-page store is opt-in (store_settings.py): these tests run with it where the
    # node may mount it, so the huge-page and two-thread write paths are the ones checked.
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYOPS_OBJECT_STORE_HUGE_PAGES", "auto")
    try:
        rayops.init(num_cpus=2, _temp_dir=temp_dir, object_store_memory=256 * MiB)
        from rayops.node.session import NodeRecord

        cw = rayops.get_runtime_context().worker
        yield NodeRecord.load(cw.session_dir).shm_dir
        rayops.shutdown()
    finally:
        mp.undo()


def _can_mount() -> bool:
    return os.geteuid() == 0


def _array(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def _digest(arr: np.ndarray) -> str:
    return hashlib.sha256(memoryview(arr).cast("B")).hexdigest()


# Self-contained bodies: workers cannot import this test module.
@rayops.remote
def digest_of(arr: Any) -> tuple[str, int]:
    import hashlib
    import os

    return hashlib.sha256(memoryview(arr).cast("B")).hexdigest(), os.getpid()


@rayops.remote
def make(size: int, seed: int) -> Any:
    import numpy as np

    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


def test_store_sits_on_a_huge_page_tmpfs_when_asked_and_allowed(store: str) -> None:
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    assert is_huge_tmpfs(store), f"{store} is not a huge=within_size tmpfs"


def test_many_sizes_byte_identical_through_put_tasks_and_returns(store: str) -> None:
    arrays = [_array(size, seed) for seed, size in enumerate(SIZES)]
    digests = [_digest(a) for a in arrays]
    refs = [rayops.put(a) for a in arrays]
    for ref, arr, digest in zip(refs, arrays, digests, strict=True):
        out = rayops.get(ref)
        assert out.nbytes == arr.nbytes and _digest(out) == digest
        del out
    # by reference and by value, in workers
    assert [d for d, _ in rayops.get([digest_of.remote(r) for r in refs])] == digests
    assert [d for d, _ in rayops.get([digest_of.remote(a) for a in arrays])] == digests
    # made by a worker, read by the driver
    made = rayops.get([make.remote(size, seed) for seed, size in enumerate(SIZES)])
    assert [_digest(m) for m in made] == digests


def test_freed_pages_are_reused_and_hold_only_the_new_bytes(store: str) -> None:
    pool = os.path.join(store, "pool")
    for round_ in range(6):
        # Shrinking sizes: recycled files are trimmed, and a stale tail must never show.
        size = (40 - 5 * round_) * MiB + 17 * round_
        arr = _array(size, 100 + round_)
        ref = rayops.put(arr)
        out = rayops.get(ref)
        assert out.nbytes == size and _digest(out) == _digest(arr)
        assert digest_of.remote(ref) is not None
        assert rayops.get(digest_of.remote(ref))[0] == _digest(arr)
        del out, ref
        _wait_for(lambda: len(os.listdir(pool)) > 0, "the freed file in the pool")


def test_one_object_read_by_several_processes_at_once(store: str) -> None:
    arr = _array(48 * MiB + 5, 7)
    ref = rayops.put(arr)
    results = rayops.get([digest_of.remote(ref) for _ in range(6)])
    assert {d for d, _ in results} == {_digest(arr)}
    assert len({pid for _, pid in results}) >= 2, "expected readers in several workers"
    assert _digest(rayops.get(ref)) == _digest(arr)


def test_sealed_objects_are_read_only_views(store: str) -> None:
    ref = rayops.put(_array(8 * MiB, 3))
    out = rayops.get(ref)
    assert not out.flags.writeable
    with pytest.raises(ValueError):
        out[0] = 1
    with pytest.raises(TypeError):
        memoryview(out).cast("B")[0] = 1


def test_every_byte_of_a_large_object(store: str) -> None:
    size = 150 * MiB + 3
    arr = np.arange(size, dtype=np.uint64).astype(np.uint8)  # a pattern with no runs
    ref = rayops.put(arr)
    del arr
    out = rayops.get(ref)
    expected = np.arange(size, dtype=np.uint64).astype(np.uint8)
    assert out.nbytes == size
    assert np.array_equal(out, expected), "a byte differs"

    @rayops.remote
    def mismatches(a: Any) -> int:
        import numpy as np

        want = np.arange(a.nbytes, dtype=np.uint64).astype(np.uint8)
        return int(np.count_nonzero(a != want))

    assert rayops.get(mismatches.remote(ref)) == 0
    del out, ref


def _wait_for(cond: Any, what: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)
