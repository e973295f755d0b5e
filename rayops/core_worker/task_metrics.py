"""Counts of tasks by state for Ray's ``ray_tasks`` metric, kept in memory on the hot path.

Two sides count, as in Ray:

- the *owner* (the process that submitted the task) counts PENDING_ARGS_AVAIL,
  PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, and the cumulative FINISHED and FAILED
  (``OwnerTaskCounts``, touched only on the core worker's IO loop, so without a lock);
- the *executor* (the worker running it) counts RUNNING and its sub-states
  RUNNING_IN_RAY_GET / RUNNING_IN_RAY_WAIT (``ExecutorTaskCounts``, touched from the threads
  that run tasks). It also reports minus its running tasks under SUBMITTED_TO_WORKER, so
  the sum over both sides counts each task once.

A retried task counts its failed attempt once under FAILED and continues with IsRetry=1.
Actor method calls are named ``Class.method``.

This module does no I/O: ``rows()`` turns the counts into report records for the reporter.
"""

from __future__ import annotations

import threading
from typing import Any

from rayops.protocol.metrics import (
    FAILED,
    FINISHED,
    PENDING_ARGS_AVAIL,
    PENDING_NODE_ASSIGNMENT,
    RUNNING,
    RUNNING_IN_RAY_GET,
    RUNNING_IN_RAY_WAIT,
    SOURCE_EXECUTOR,
    SOURCE_OWNER,
    SUBMITTED_TO_WORKER,
    TaskStateCount,
)

# (name, is_retry)
ExecKey = tuple[str, bool]

# Owner-side states, as indices into a per-(name, is_retry) row of counts.
ST_ARGS, ST_NODE, ST_SUBMITTED, ST_FINISHED, ST_FAILED = range(5)
OWNER_STATES = (PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, FINISHED, FAILED)
UNCOUNTED = -1


class OwnerTaskCounts:
    """Tasks this process submitted, by (name, is_retry) and state. IO loop only.

    A task record carries its current state index in ``record.mstate`` (UNCOUNTED at first),
    its name in ``record.mname`` ("" means ``record.spec.name``), ``record.is_retry``, and
    ``record.mrow``, the row of counts it is in, so a move is two list updates.
    """

    __slots__ = ("counts", "retries")

    def __init__(self) -> None:
        self.counts: dict[ExecKey, list[int]] = {}
        self.retries = 0  # attempts after the first, tasks and actor calls (never reset)

    def _row(self, name: str, retry: bool) -> list[int]:
        row = self.counts.get((name, retry))
        if row is None:
            row = self.counts[(name, retry)] = [0] * len(OWNER_STATES)
        return row

    def move(self, record: Any, new: int) -> None:
        """Move a task to state index ``new`` (from its current state, if counted)."""
        old = record.mstate
        if old == new:
            return
        row = record.mrow
        if row is None:
            row = record.mrow = self._row(record.mname or record.spec.name, record.is_retry)
        else:
            row[old] -= 1
        row[new] += 1
        record.mstate = new

    def answered(self, record: Any) -> None:
        """A new (uncounted) actor call moves through ST_ARGS and ST_SUBMITTED to
        ST_FINISHED in one step (``TaskManager.answered_at_once``): only the end counts."""
        row = record.mrow = self._row(record.mname or record.spec.name, record.is_retry)
        row[ST_FINISHED] += 1
        record.mstate = ST_FINISHED

    def retry(self, record: Any) -> None:
        """The attempt failed and the task runs again: count the failure, then IsRetry=1."""
        self.retries += 1
        row = record.mrow
        if row is not None:
            row[record.mstate] -= 1
            row[ST_FAILED] += 1
        record.is_retry = True
        record.mrow = None
        record.mstate = UNCOUNTED
        self.move(record, ST_ARGS)

    def failed(self, record: Any, error: BaseException | None) -> None:
        """The owner fails the task with ``error`` (counted by the FAILED move that follows;
        ``task_events.RecordingOwnerCounts`` also records the cause)."""

    def rows(self) -> list[TaskStateCount]:
        return [
            TaskStateCount(name, state, retry, SOURCE_OWNER, n)
            for (name, retry), row in self.counts.items()
            for state, n in zip(OWNER_STATES, row, strict=True)
        ]


class ExecutorTaskCounts:
    """Tasks this worker is running, by (name, is_retry), with the get/wait sub-states.

    Sync tasks run on the main thread, threaded actors in a pool, async actors on their own
    loop. ``started``/``ended`` are one dict store and one pop (each atomic in CPython, so
    no lock on the hot path); the rarer get/wait sub-states take a lock.
    """

    def __init__(self) -> None:
        self._running: dict[bytes, ExecKey] = {}  # task id -> key
        self._lock = threading.Lock()
        self._in_get: dict[ExecKey, int] = {}
        self._in_wait: dict[ExecKey, int] = {}
        self._seen: set[ExecKey] = set()  # keys reported once stay, at 0, like Ray's

    def started(self, task_id: bytes, key: ExecKey) -> None:
        self._running[task_id] = key

    def ended(self, task_id: bytes) -> None:
        self._running.pop(task_id, None)

    def blocked(self, key: ExecKey, state: str, delta: int) -> None:
        """Enter (delta=1) or leave (delta=-1) RUNNING_IN_RAY_GET or RUNNING_IN_RAY_WAIT."""
        table = self._in_get if state == RUNNING_IN_RAY_GET else self._in_wait
        with self._lock:
            table[key] = table.get(key, 0) + delta

    def rows(self) -> list[TaskStateCount]:
        running: dict[ExecKey, int] = dict.fromkeys(self._seen, 0)
        for key in list(self._running.values()):
            running[key] = running.get(key, 0) + 1
        self._seen.update(running)
        with self._lock:
            in_get = dict(self._in_get)
            in_wait = dict(self._in_wait)
        out: list[TaskStateCount] = []
        for (name, retry), n in running.items():
            g = in_get.get((name, retry), 0)
            w = in_wait.get((name, retry), 0)
            out.append(TaskStateCount(name, RUNNING, retry, SOURCE_EXECUTOR, n - g - w))
            out.append(TaskStateCount(name, RUNNING_IN_RAY_GET, retry, SOURCE_EXECUTOR, g))
            out.append(TaskStateCount(name, RUNNING_IN_RAY_WAIT, retry, SOURCE_EXECUTOR, w))
            out.append(TaskStateCount(name, SUBMITTED_TO_WORKER, retry, SOURCE_EXECUTOR, -n))
        return out


def executor_key(name: str, class_name: str | None, attempt: int) -> ExecKey:
    """The metric key of a task a worker runs: ``Class.method`` for actor calls."""
    return (f"{class_name}.{name}" if class_name else name, attempt > 0)
