"""``cancel()`` against a real cluster, wherever the task is: the ref resolves within a second.

Ray 2.60's semantics: a cancelled ref raises TaskCancelledError; a running normal task gets
KeyboardInterrupt (``force=True``: its worker exits); ``recursive`` reaches the tasks it
submitted; actor calls are never interrupted by force: a sync or threaded one sees
``is_canceled()``, an async one gets CancelledError (and ``except RayTaskError`` catches
what ``get()`` raises), a queued one never runs.
"""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

import rayops
from rayops import exceptions as rex
from rayops.testing.waiting import wait_for

BOUND_S = 1.0


def _cancel_resolves(ref: Any, *, force: bool = False, recursive: bool = True) -> BaseException:
    """Cancel ``ref`` and return what get() raises, asserting it came within BOUND_S."""
    start = time.monotonic()
    rayops.cancel(ref, force=force, recursive=recursive)
    with pytest.raises(rex.TaskCancelledError) as info:
        rayops.get(ref, timeout=30)
    elapsed = time.monotonic() - start
    assert elapsed < BOUND_S, f"cancel took {elapsed:.2f} s to resolve the ref"
    return info.value


@rayops.remote
def sleeper(marker: str = "", seconds: float = 60.0) -> str:
    if marker:
        Path(marker + ".started").write_text(str(os.getpid()))
    try:
        time.sleep(seconds)
    except KeyboardInterrupt:
        if marker:
            Path(marker + ".interrupted").write_text("1")
        raise
    return "finished"


@rayops.remote
def echo(x: Any) -> Any:
    return x


def test_just_submitted(ray: Any) -> None:
    err = _cancel_resolves(sleeper.remote())
    assert type(err) is rex.TaskCancelledError


def test_waiting_for_arguments_at_the_owner(ray: Any) -> None:
    upstream = sleeper.remote()
    downstream = echo.remote(upstream)
    _cancel_resolves(downstream)
    _cancel_resolves(upstream)


def test_queued_at_the_owner_for_a_lease(ray: Any) -> None:
    never = sleeper.options(resources={"no_such_resource": 1}).remote()
    _cancel_resolves(never)


def test_running_gets_keyboard_interrupt(ray: Any, tmp_path: Path) -> None:
    marker = str(tmp_path / "run")
    ref = sleeper.remote(marker)
    wait_for("the task to start", lambda: Path(marker + ".started").exists())
    _cancel_resolves(ref)
    wait_for("KeyboardInterrupt in the task", lambda: Path(marker + ".interrupted").exists())
    assert rayops.get(echo.remote(1), timeout=30) == 1  # the worker goes on


def test_running_force_kills_the_worker(ray: Any, tmp_path: Path) -> None:
    marker = str(tmp_path / "force")
    ref = sleeper.remote(marker)
    started = Path(marker + ".started")
    wait_for("the task to start", lambda: started.exists() and started.read_text() != "")
    pid = int(started.read_text())
    _cancel_resolves(ref, force=True)
    wait_for("the worker to exit", lambda: not psutil.pid_exists(pid) or _zombie(pid))
    assert rayops.get(echo.remote(2), timeout=30) == 2


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def test_between_retries_no_more_attempts(ray: Any, tmp_path: Path) -> None:
    attempts = tmp_path / "attempts"

    @rayops.remote(max_retries=100, retry_exceptions=True)
    def flaky(path: str) -> None:
        with open(path, "a") as f:
            f.write("(")  # an attempt starts
        try:
            time.sleep(0.05)
        finally:  # and ends (also when the cancel interrupts it)
            with open(path, "a") as f:
                f.write(")")
        raise ValueError("again")

    def log() -> str:
        return attempts.read_text() if attempts.exists() else ""

    ref = flaky.remote(str(attempts))
    wait_for("two failed attempts", lambda: log().count(")") >= 2)
    _cancel_resolves(ref)
    # An attempt already running when the cancel came may finish; none may start after it.
    wait_for("the running attempt to end", lambda: log().count("(") == log().count(")"))
    settled = log()
    assert rayops.get([echo.remote(i) for i in range(4)], timeout=30) == list(range(4))
    assert log() == settled, "a cancelled task was retried"


def test_chain_raises_task_cancelled_error_itself(ray: Any) -> None:
    upstream = sleeper.remote()
    downstream = echo.remote(upstream)
    _cancel_resolves(upstream)
    with pytest.raises(rex.TaskCancelledError) as info:
        rayops.get(downstream, timeout=30)
    assert type(info.value) is rex.TaskCancelledError


def test_recursive_cancels_the_children(ray: Any, tmp_path: Path) -> None:
    marker = str(tmp_path / "child")

    @rayops.remote(num_cpus=0)
    def parent(m: str) -> str:
        return rayops.get(sleeper.remote(m))

    ref = parent.remote(marker)
    wait_for("the child to start", lambda: Path(marker + ".started").exists())
    _cancel_resolves(ref)
    wait_for("the child to be cancelled", lambda: Path(marker + ".interrupted").exists())


def test_cancel_of_a_finished_task_keeps_its_value(ray: Any) -> None:
    ref = echo.remote(5)
    assert rayops.get(ref, timeout=30) == 5
    rayops.cancel(ref)
    assert rayops.get(ref, timeout=30) == 5


@rayops.remote
class Worker:
    def watch(self, marker: str, seconds: float = 30.0) -> str:
        Path(marker + ".started").write_text("1")
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if rayops.get_runtime_context().is_canceled():
                Path(marker + ".saw_cancel").write_text("1")
                return "saw cancel"
            time.sleep(0.01)
        return "not cancelled"

    def mark(self, marker: str) -> str:
        Path(marker).write_text("ran")
        return "ran"


def test_sync_actor_running_call_sees_is_canceled(ray: Any, tmp_path: Path) -> None:
    a = Worker.remote()
    marker = str(tmp_path / "sync")
    ref = a.watch.remote(marker)
    wait_for("the call to start", lambda: Path(marker + ".started").exists())
    _cancel_resolves(ref)
    wait_for("is_canceled() to turn True", lambda: Path(marker + ".saw_cancel").exists())
    assert rayops.get(a.mark.remote(str(tmp_path / "after")), timeout=30) == "ran"


def test_threaded_actor_running_call_sees_is_canceled(ray: Any, tmp_path: Path) -> None:
    a = Worker.options(max_concurrency=4).remote()
    marker = str(tmp_path / "threaded")
    other = str(tmp_path / "threaded_other")
    ref = a.watch.remote(marker)
    keep = a.watch.remote(other, 1.0)
    wait_for("the call to start", lambda: Path(marker + ".started").exists())
    _cancel_resolves(ref)
    wait_for("is_canceled() to turn True", lambda: Path(marker + ".saw_cancel").exists())
    assert rayops.get(keep, timeout=30) == "not cancelled"  # only the cancelled call sees it


def test_queued_actor_call_is_dropped(ray: Any, tmp_path: Path) -> None:
    a = Worker.remote()
    first = str(tmp_path / "first")
    queued = str(tmp_path / "queued")
    running = a.watch.remote(first, 2.0)
    wait_for("the first call to start", lambda: Path(first + ".started").exists())
    ref = a.mark.remote(queued)
    _cancel_resolves(ref)
    assert rayops.get(running, timeout=30) == "not cancelled"
    assert rayops.get(a.mark.remote(str(tmp_path / "later")), timeout=30) == "ran"
    assert not Path(queued).exists(), "a cancelled queued call ran"


def test_force_on_an_actor_call_is_refused(ray: Any) -> None:
    a = Worker.remote()
    ref = a.mark.remote(os.devnull)
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        rayops.cancel(ref, force=True)
    assert rayops.get(ref, timeout=30) == "ran"


@rayops.remote
class AsyncWorker:
    async def wait(self, marker: str) -> str:
        Path(marker + ".started").write_text("1")
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            Path(marker + ".cancelled").write_text("1")
            raise
        return "finished"

    async def is_canceled(self) -> str:
        try:
            rayops.get_runtime_context().is_canceled()
        except RuntimeError as err:
            return str(err)
        return "no error"


def test_async_actor_call_gets_cancelled_error(ray: Any, tmp_path: Path) -> None:
    a = AsyncWorker.remote()
    marker = str(tmp_path / "async")
    ref = a.wait.remote(marker)
    wait_for("the call to start", lambda: Path(marker + ".started").exists())
    start = time.monotonic()
    rayops.cancel(ref)
    try:
        rayops.get(ref, timeout=30)
    except rex.RayTaskError as err:  # Ray's documented way to catch it
        assert isinstance(err, rex.TaskCancelledError)
    else:
        raise AssertionError("get() of a cancelled call returned")
    assert time.monotonic() - start < BOUND_S
    wait_for("CancelledError in the coroutine", lambda: Path(marker + ".cancelled").exists())
    assert "async actor" in rayops.get(a.is_canceled.remote(), timeout=30)


def test_is_canceled_outside_a_worker_raises(ray: Any) -> None:
    with pytest.raises(RuntimeError, match="driver"):
        rayops.get_runtime_context().is_canceled()


def test_cancel_checks_its_arguments(ray: Any) -> None:
    with pytest.raises(TypeError, match="ObjectRef"):
        rayops.cancel("not a ref")  # type: ignore[arg-type]
    ref = echo.remote(1)
    with pytest.raises(TypeError, match="force"):
        rayops.cancel(ref, force="yes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="recursive"):
        rayops.cancel(ref, recursive=None)  # type: ignore[arg-type]
    assert rayops.get(ref, timeout=30) == 1  # refused before anything happened


def test_cancel_through_a_borrowed_ref_reaches_the_owner(ray: Any) -> None:
    @rayops.remote(num_cpus=0)  # its own lease: never pipelined behind the sleeper
    def cancel_inside(refs: list[Any]) -> bool:
        rayops.cancel(refs[0])
        return True

    ref = sleeper.remote()
    start = time.monotonic()
    assert rayops.get(cancel_inside.remote([ref]), timeout=30) is True
    with pytest.raises(rex.TaskCancelledError):
        rayops.get(ref, timeout=30)
    assert time.monotonic() - start < 5.0  # one extra task round trip, no hang
