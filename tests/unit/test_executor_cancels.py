"""The worker remembers a cancel for a task that is not running yet (it is skipped when its
turn comes) but not for ever: a cancel whose call never comes here (it ended before the
cancel arrived, or ran on an async actor's loop) is forgotten after a while."""

from __future__ import annotations

import threading
from types import SimpleNamespace
from typing import Any

import pytest

from rayops.core_worker import executor as ex


class _Actor:
    def __init__(self) -> None:
        self.cancelled: list[bytes] = []

    def cancel(self, task_id: bytes) -> None:
        self.cancelled.append(task_id)


def _executor() -> ex.Executor:
    # Built off the main thread: it must not install its SIGINT handler in the test runner.
    box: list[ex.Executor] = []
    t = threading.Thread(target=lambda: box.append(ex.Executor(SimpleNamespace())))  # type: ignore[arg-type]
    t.start()
    t.join()
    return box[0]


def test_cancels_of_calls_that_never_come_are_forgotten(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(ex.time, "monotonic", lambda: clock[0])
    e = _executor()
    actor = _Actor()
    e.actor = actor
    conn: Any = None
    old = [b"old-%04d" % i for i in range(ex.CANCEL_PRUNE_AT)]
    for tid in old:
        e._h_cancel_task(conn, tid, False, False)
    assert all(e.is_cancelled(t) for t in old) and actor.cancelled == old
    clock[0] += ex.CANCEL_MEMORY_S + 1
    e._h_cancel_task(conn, b"new", False, False)  # over the threshold: the old ones go
    assert e.is_cancelled(b"new")
    assert not any(e.is_cancelled(t) for t in old)
    assert len(e._cancel_requested) == 1
