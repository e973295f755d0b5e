"""Sync lanes on a real cluster: who gets one, order across the lane and the ordinary
connection, and a lane cut off by the actor's death (retried, or ActorDiedError)."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.core_worker import state
from rayops.core_worker.actor_submitter import SYNC_LANE_AFTER


def _log_class() -> Any:
    """The actor of these tests (made here: a class of a test module travels by value)."""

    @rayops.remote
    class Log:
        def __init__(self) -> None:
            self.seen: list[int] = []

        def add(self, i: int) -> int:
            self.seen.append(i)
            return i

        def log(self) -> list[int]:
            return list(self.seen)

        def lanes(self) -> tuple[int, str]:
            ex = state.current().executor  # type: ignore[union-attr]
            return (0 if ex.lanes is None else len(ex.lanes)), threading.current_thread().name

        def pid(self) -> int:
            return os.getpid()

        def boom(self) -> None:
            raise ValueError("boom on the lane")

        def nap(self, s: float) -> int:
            deadline = time.monotonic() + s
            while time.monotonic() < deadline:
                if rayops.get_runtime_context().is_canceled():
                    return -1
                time.sleep(0.01)
            return os.getpid()

    return Log


def _warm(actor: Any) -> None:
    """Calls one at a time, enough for the caller to ask for a sync lane."""
    for _ in range(SYNC_LANE_AFTER + 2):
        rayops.get(actor.pid.remote(), timeout=30)


def _wait_for_lane(actor: Any) -> None:
    deadline = time.monotonic() + 10
    while rayops.get(actor.lanes.remote(), timeout=30)[0] != 1:
        assert time.monotonic() < deadline, "the sync lane never opened"
        time.sleep(0.02)


def test_a_plain_sync_actor_gets_a_lane_and_runs_its_calls_on_the_main_thread(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    assert rayops.get(a.lanes.remote()) == (1, "MainThread")

    @rayops.remote(max_concurrency=2)
    class Threaded:
        def lanes(self) -> int:
            ex = state.current().executor  # type: ignore[union-attr]
            return 0 if ex.lanes is None else len(ex.lanes)

    @rayops.remote
    class Async:
        async def lanes(self) -> int:
            ex = state.current().executor  # type: ignore[union-attr]
            return 0 if ex.lanes is None else len(ex.lanes)

    for cls in (Threaded, Async):
        other = cls.remote()
        for _ in range(SYNC_LANE_AFTER + 4):
            assert rayops.get(other.lanes.remote(), timeout=30) == 0


def test_each_callers_order_holds_across_the_lane_and_the_ordinary_connection(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    expected: list[int] = []
    n = 0
    for round_ in range(30):
        kind = round_ % 3
        if kind == 0:  # one at a time: through the lane
            assert rayops.get(a.add.remote(n)) == n
            expected.append(n)
            n += 1
        elif kind == 1:  # a batch: the first on the lane, the rest the usual way
            refs = [a.add.remote(n + i) for i in range(7)]
            expected += list(range(n, n + 7))
            n += 7
            if round_ % 2:
                rayops.get(refs)
        else:  # fire and forget, then one more through whichever way is open
            a.add.remote(n)
            a.add.remote(n + 1)
            expected += [n, n + 1]
            n += 2
    assert rayops.get(a.log.remote(), timeout=30) == expected


def test_a_lane_call_cut_off_by_the_actors_death_is_retried(ray: Any) -> None:
    a = _log_class().options(max_restarts=1, max_task_retries=1).remote()
    _warm(a)
    _wait_for_lane(a)
    pid = rayops.get(a.pid.remote())
    ref = a.nap.remote(1.0)  # alone in flight: on the lane
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    new_pid = rayops.get(ref, timeout=60)  # ran again on the restarted actor
    assert new_pid != pid
    assert rayops.get(a.pid.remote(), timeout=30) == new_pid


def test_a_lane_call_cut_off_without_retries_fails_with_actor_died(ray: Any) -> None:
    a = _log_class().options(max_restarts=1, max_task_retries=0).remote()
    _warm(a)
    _wait_for_lane(a)
    pid = rayops.get(a.pid.remote())
    ref = a.nap.remote(5.0)
    time.sleep(0.3)
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(rex.ActorDiedError):
        rayops.get(ref, timeout=60)
    # The actor restarted: calls go on (a new lane for the new process).
    _warm(a)
    _wait_for_lane(a)
    assert rayops.get(a.pid.remote(), timeout=30) != pid


def test_cancel_of_a_running_lane_call(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    ref = a.nap.remote(30)
    time.sleep(0.2)
    rayops.cancel(ref)
    start = time.monotonic()
    with pytest.raises(rex.TaskCancelledError):
        rayops.get(ref, timeout=20)
    assert time.monotonic() - start < 5
    assert rayops.get(a.add.remote(1), timeout=30) == 1


def test_killed_actor_fails_calls_on_its_lane(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    ref = a.nap.remote(30)
    time.sleep(0.2)
    rayops.kill(a)
    with pytest.raises(rex.ActorDiedError):
        rayops.get(ref, timeout=30)


def test_exit_actor_and_terminate_through_the_lane(ray: Any) -> None:
    @rayops.remote
    class Quitter:
        def quit(self) -> None:
            rayops.actor.exit_actor()

        def lanes(self) -> int:
            ex = state.current().executor  # type: ignore[union-attr]
            return 0 if ex.lanes is None else len(ex.lanes)

    for how in ("exit_actor", "__ray_terminate__"):
        q = Quitter.options(max_restarts=2).remote()
        deadline = time.monotonic() + 10
        while rayops.get(q.lanes.remote(), timeout=30) != 1:
            assert time.monotonic() < deadline, "the sync lane never opened"
        if how == "exit_actor":
            rayops.get(q.quit.remote(), timeout=30)
            with pytest.raises(rex.ActorDiedError, match="intentionally"):
                rayops.get(q.lanes.remote(), timeout=30)
        else:
            q.__ray_terminate__.remote()
            with pytest.raises(rex.ActorDiedError):
                rayops.get(q.lanes.remote(), timeout=30)


# ----------------------------------------------------------------- the caller's end
def _caller_lanes() -> Any:
    return state.current().actor_submitter.caller_lanes  # type: ignore[union-attr]


def _eventually(what: str, check: Any, within: float = 10.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_the_waiting_thread_reads_the_reply_and_the_io_thread_counts_the_call(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    lanes = _caller_lanes()
    _eventually("the caller never read its lane", lambda: len(lanes) >= 1)
    before = lanes.ended_here
    for i in range(300):
        assert rayops.get(a.add.remote(i)) == i
    assert lanes.ended_here - before >= 250  # ended on this thread, not the IO thread's
    cw = state.current()
    assert cw is not None
    # The IO thread counts them through the task manager at its next turn (the lane tick),
    # and nothing is left in flight.
    _eventually("calls ended here were never counted", lambda: not cw.tasks.has_finished_here())
    assert not lanes.by_oid
    assert rayops.get(a.log.remote(), timeout=30) == list(range(300))


def test_other_waits_for_a_lane_call_are_answered(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    ref = a.nap.remote(0.05)  # alone in flight: on the lane
    ready, _ = rayops.wait([ref], timeout=30)
    assert ready == [ref]
    ref = a.nap.remote(0.05)
    other = rayops.put(7)
    assert rayops.get([ref, other], timeout=30)[1] == 7
    ref = a.nap.remote(0.05)
    assert ref.future().result(timeout=30) > 0
    # Nobody waits: the reply is read anyway, and the value kept for a later get.
    ref = a.add.remote(42)
    cw = state.current()
    assert cw is not None
    _eventually(
        "an unwaited lane reply was never read", lambda: cw.memory_store.contains(ref.binary())
    )
    assert rayops.get(ref) == 42


def test_a_get_that_times_out_leaves_the_reply_to_the_loop(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    ref = a.nap.remote(0.5)
    with pytest.raises(rex.GetTimeoutError):
        rayops.get(ref, timeout=0.05)
    assert rayops.get(ref, timeout=30) > 0
    for i in range(20):  # the lane goes on carrying calls
        assert rayops.get(a.add.remote(i), timeout=30) == i


def test_errors_and_several_waiters_on_a_lane_call(ray: Any) -> None:
    a = _log_class().remote()
    _warm(a)
    _wait_for_lane(a)
    with pytest.raises(ValueError, match="boom on the lane"):
        rayops.get(a.boom.remote(), timeout=30)
    ref = a.nap.remote(0.3)
    got: list[int] = []
    threads = [
        threading.Thread(target=lambda: got.append(rayops.get(ref, timeout=30))) for _ in range(3)
    ]
    for t in threads:
        t.start()
    value = rayops.get(ref, timeout=30)
    for t in threads:
        t.join(30)
    assert got == [value] * 3
    assert rayops.get(a.add.remote(1), timeout=30) == 1
