"""``@remote(max_calls=N)`` against a real cluster: a worker process runs a function at most N
times, then exits, and the next call gets a fresh process (as in Ray 2.60; GPU functions
default to 1). Every function here has ``max_retries=0``, so a call pushed to a worker that is
already exiting would fail the test instead of being retried quietly."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import psutil
import pytest

import rayops


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Any]:
    rayops.init(num_cpus=2, num_gpus=1, _temp_dir=temp_dir, object_store_memory=256 * 2**20)
    yield rayops
    rayops.shutdown()


def _counting(name: str, **options: Any) -> Any:
    """A remote function returning (its process's pid, how many times that process ran it)."""

    def call() -> tuple[int, int]:
        n = int(os.environ.get(name, "0")) + 1
        os.environ[name] = str(n)
        return os.getpid(), n

    return rayops.remote(max_retries=0, **options)(call)


once = _counting("CALLS_ONCE", max_calls=1)
twice = _counting("CALLS_TWICE", max_calls=2)
gpu = _counting("CALLS_GPU", num_gpus=1)
gpu_reused = _counting("CALLS_GPU_REUSED", num_gpus=1, max_calls=0)


def _wait_gone(pids: set[int], timeout: float = 20.0) -> None:
    def alive(pid: int) -> bool:
        try:
            return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return False

    deadline = time.monotonic() + timeout
    while any(alive(p) for p in pids):
        if time.monotonic() > deadline:
            raise AssertionError(f"worker processes still running: {[p for p in pids if alive(p)]}")
        time.sleep(0.05)


def test_max_calls_one_gives_a_new_process_each_call(cluster: Any) -> None:
    results = [rayops.get(once.remote(), timeout=60) for _ in range(4)]
    pids = [pid for pid, _ in results]
    assert len(set(pids)) == 4, f"a process ran more than one call: {results}"
    assert all(n == 1 for _, n in results), results
    _wait_gone(set(pids))


def test_max_calls_one_submitted_at_once(cluster: Any) -> None:
    """Several calls queued together: none is pushed to a worker that is about to exit."""
    results = rayops.get([once.remote() for _ in range(6)], timeout=120)
    assert len({pid for pid, _ in results}) == 6, results
    _wait_gone({pid for pid, _ in results})


def test_max_calls_two_runs_two_calls_per_process(cluster: Any) -> None:
    results = [rayops.get(twice.remote(), timeout=60) for _ in range(6)]
    per_pid = Counter(pid for pid, _ in results)
    assert max(per_pid.values()) <= 2 and all(n <= 2 for _, n in results), results
    # A process that ran its second call exits and is never used again.
    spent = {pid for pid, n in results if n == 2}
    assert spent, f"no process ran two calls: {results}"
    _wait_gone(spent)


def test_gpu_functions_default_to_one_call_per_process(cluster: Any) -> None:
    results = [rayops.get(gpu.remote(), timeout=60) for _ in range(3)]
    assert len({pid for pid, _ in results}) == 3, results
    assert all(n == 1 for _, n in results), results
    _wait_gone({pid for pid, _ in results})
    assert gpu._max_calls == 1 and gpu_reused._max_calls == 0  # max_calls=0: no limit


def test_max_calls_is_a_decoration_option(cluster: Any) -> None:
    """As in Ray: not settable in .options(); not an actor option."""
    with pytest.raises(ValueError, match="max_calls"):
        once.options(max_calls=3)
    with pytest.raises(ValueError, match="max_calls"):

        @rayops.remote(max_calls=1)
        class Actor:
            pass
