"""The raylet's memory monitor on a real cluster: a task or actor that eats the node's memory
is killed with Ray's ``OutOfMemoryError`` (or an actor death naming the monitor) before the
kernel's OOM killer picks something at random, and the node keeps working afterwards.

The threshold is set just above what the machine uses when the test starts, so the hog (which
grows by 100 MiB every 50 ms) crosses it after about 2 GiB, whatever else runs here."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

import rayops
from rayops.exceptions import ActorDiedError, OutOfMemoryError, RayTaskError
from rayops.raylet.memory_monitor import GIB, read_snapshot


@pytest.fixture
def cluster(temp_dir: str) -> Iterator[Any]:
    snap = read_snapshot()
    # Measured just before this test's cluster starts (other processes come and go).
    threshold = (snap.used + 2 * GIB) / snap.total
    if threshold > 0.9:
        pytest.skip(f"the machine has too little free memory ({snap.used / GIB:.1f} GiB used)")
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYOPS_MEMORY_USAGE_THRESHOLD", f"{threshold:.4f}")
    mp.setenv("RAYOPS_MEMORY_MONITOR_REFRESH_MS", "100")
    try:
        rayops.init(num_cpus=2, _temp_dir=temp_dir, object_store_memory=128 * 2**20)
        yield rayops
        rayops.shutdown()
    finally:
        mp.undo()


def _remotes() -> tuple[Any, Any, Any]:
    """Defined here, not at module level: workers cannot import this test module."""
    step = 100 * 2**20

    def grow() -> str:
        chunks = []
        for _ in range(60):  # at most 6 GiB, in the (unlikely) case nothing kills it
            chunks.append(b"\x01" * step)  # written: really resident
            time.sleep(0.05)
        return "survived"

    @rayops.remote(max_retries=3)
    def hog() -> str:
        return grow()

    @rayops.remote
    def small(x: int) -> int:
        return x + 1

    @rayops.remote(max_restarts=0)
    class Hog:
        def grow(self) -> str:
            return grow()

        def ping(self) -> str:
            return "pong"

    return hog, small, Hog


def test_a_bad_threshold_is_refused_before_any_daemon_starts(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rayops.raylet.memory_monitor import MemoryConfigError

    monkeypatch.setenv("RAY_memory_usage_threshold", "95")
    with pytest.raises(MemoryConfigError, match="RAY_memory_usage_threshold: expected a fraction"):
        rayops.init(num_cpus=1, _temp_dir=str(tmp_path))
    assert not rayops.is_initialized()
    # (runs before the module's cluster starts)
    assert not list(tmp_path.iterdir())  # no session directory: nothing was started


def test_a_task_eating_the_node_fails_with_out_of_memory_error(cluster: Any) -> None:
    hog, small, _ = _remotes()
    t0 = time.monotonic()
    with pytest.raises(OutOfMemoryError) as info:
        rayops.get(hog.remote(), timeout=120)
    elapsed = time.monotonic() - t0
    text = str(info.value)
    # Ray's documented error: which task, which node, how much, the threshold, who uses memory.
    assert "Task was killed due to the node running low on memory" in text
    assert "hog" in text
    assert "exceeds the memory usage threshold of" in text
    assert "PID\tMEM(GB)\tCOMMAND" in text
    # It was its caller's only worker on the node: not retried (max_retries=3 notwithstanding),
    # so a task too big for the node does not loop.
    assert "last worker on the node" in text
    assert not isinstance(info.value, RayTaskError)
    assert elapsed < 60, elapsed
    # The node is fine afterwards.
    assert rayops.get([small.remote(i) for i in range(10)], timeout=60) == list(range(1, 11))


def test_an_actor_eating_the_node_dies_naming_the_memory_monitor(cluster: Any) -> None:
    _, small, Hog = _remotes()
    actor = Hog.remote()
    assert rayops.get(actor.ping.remote(), timeout=60) == "pong"
    with pytest.raises(ActorDiedError) as info:
        rayops.get(actor.grow.remote(), timeout=120)
    assert "memory monitor" in str(info.value)
    assert rayops.get(small.remote(1), timeout=60) == 2


def test_a_killed_task_is_retried_while_its_caller_runs_others_on_the_node(
    cluster: Any, tmp_path: Any
) -> None:
    marker = str(tmp_path / "first-attempt")

    @rayops.remote(max_retries=1)
    def hog_once(path: str) -> str:
        import os

        if os.path.exists(path):
            return "second attempt"
        open(path, "w").close()
        chunks = []
        for _ in range(60):
            chunks.append(b"\x01" * (100 * 2**20))
            time.sleep(0.05)
        return "survived"

    # Another shape: its own lease (same-shape tasks may queue on one worker). It runs until
    # the hog is done, however long the hog takes to reach the threshold on a busy machine.
    @rayops.remote(max_retries=0, num_cpus=0.5)
    def sleeper(done: str) -> str:
        import os

        deadline = time.monotonic() + 120
        while not os.path.exists(done) and time.monotonic() < deadline:
            time.sleep(0.05)
        return "slept"

    done = str(tmp_path / "hog-done")
    first = sleeper.remote(done)
    time.sleep(0.5)  # the sleeper's worker starts first: the hog is the newest of the group
    try:
        assert rayops.get(hog_once.remote(marker), timeout=120) == "second attempt"
    finally:
        open(done, "w").close()
    assert rayops.get(first, timeout=60) == "slept"
