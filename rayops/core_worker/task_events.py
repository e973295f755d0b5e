"""Task state transitions of this process, buffered and sent to the raylet about once a second.

What is recorded (Ray's task events):

- as *owner* (the process that submitted the task): PENDING_ARGS_AVAIL,
  PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, FINISHED, FAILED, through the same hook that
  counts ``ray_tasks`` (``RecordingOwnerCounts.move``), with what the task is (name, type,
  job, actor, resources) on the first event of each attempt, and the cause when the owner
  fails it (worker died, cancelled, ...);
- as *executor* (the worker running it): RUNNING with where (node, worker, pid), and FAILED
  with the exception's type and message when the task raised; an actor's constructor is
  recorded here whole (its owner side is the GCS), as ACTOR_CREATION_TASK;
- a driver records its own DRIVER_TASK: RUNNING from ``init()``, FINISHED at shutdown.

Recording is an append to a bounded deque (any thread; ``deque.append`` is atomic): nothing
blocks, nothing waits, nothing is built but one tuple. When the buffer is full the event
is dropped and counted; the count goes out with the next batch. ``TaskEventReporter`` runs
on the IO loop: every ``report_interval_ms`` it drains the buffer, merges the events of one
attempt into one record (its states' times) and notifies the raylet with the records as
columns (``ReportTaskEvents``) over the connection the core worker already has; the raylet
forwards them to the GCS. ``RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS=0`` turns all of it off
(no hook is installed).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import Mapping
from dataclasses import dataclass
from time import time_ns
from typing import TYPE_CHECKING, Any

from rayops.core_worker.task_metrics import UNCOUNTED, OwnerTaskCounts
from rayops.protocol.state_messages import (
    TASK_STATES,
    ReportTaskEvents,
    TaskDescriptor,
    TaskError,
)

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

__all__ = [
    "ENV_BUFFER_SIZE",
    "ENV_REPORT_INTERVAL_MS",
    "RecordingOwnerCounts",
    "TaskEventBuffer",
    "TaskEventReporter",
    "TaskEventSettings",
    "error_type_of",
]

logger = logging.getLogger(__name__)

ENV_REPORT_INTERVAL_MS = "RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS"
ENV_BUFFER_SIZE = "RAYOPS_TASK_EVENTS_MAX_BUFFER_SIZE"
MAX_ERROR_MESSAGE = 2000  # characters of an error message kept in an event

PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, RUNNING, FINISHED, FAILED = range(
    len(TASK_STATES)
)
# task_metrics' owner state indices (ST_ARGS .. ST_FAILED) -> TASK_STATES indices
OWNER_STATE = (PENDING_ARGS_AVAIL, PENDING_NODE_ASSIGNMENT, SUBMITTED_TO_WORKER, FINISHED, FAILED)
OWNER, EXECUTOR = 0, 1


@dataclass(frozen=True)
class TaskEventSettings:
    """Ray's ``task_events_report_interval_ms`` (0: off) and the per-process buffer
    (Ray's ``task_events_max_num_status_events_buffer_on_worker``)."""

    report_interval_ms: int = 1000
    buffer_size: int = 100_000

    @property
    def enabled(self) -> bool:
        return self.report_interval_ms > 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> TaskEventSettings:
        env = os.environ if env is None else env
        return cls(
            report_interval_ms=_env_int(env, ENV_REPORT_INTERVAL_MS, 1000, minimum=0),
            buffer_size=_env_int(env, ENV_BUFFER_SIZE, 100_000, minimum=1),
        )


def _env_int(env: Mapping[str, str], name: str, default: int, minimum: int) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {raw!r}") from None
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value}")
    return value


class TaskEventBuffer:
    """Bounded; ``add`` from any thread, ``drain`` from the IO loop."""

    __slots__ = ("_cap", "_q", "dropped")

    def __init__(self, capacity: int) -> None:
        self._q: deque[tuple[Any, ...]] = deque()
        self._cap = capacity
        self.dropped = 0  # since the last drain (a racing += may undercount by one)

    def add(self, item: tuple[Any, ...]) -> None:
        if len(self._q) < self._cap:
            self._q.append(item)
        else:
            self.dropped += 1

    def __len__(self) -> int:
        return len(self._q)

    def drain(self) -> tuple[list[tuple[Any, ...]], int]:
        q = self._q
        items = [q.popleft() for _ in range(len(q))]
        dropped, self.dropped = self.dropped, 0
        return items, dropped


def error_type_of(error: BaseException | None) -> str:
    """Ray's ErrorType name for why an owner failed a task."""
    name = type(error).__name__ if error is not None else ""
    return {
        "WorkerCrashedError": "WORKER_DIED",
        "TaskCancelledError": "TASK_CANCELLED",
        "ActorDiedError": "ACTOR_DIED",
        "ActorUnavailableError": "ACTOR_UNAVAILABLE",
        "RayActorError": "ACTOR_DIED",
        "ObjectLostError": "OBJECT_LOST",
        "OwnerDiedError": "OWNER_DIED",
    }.get(name, "TASK_EXECUTION_EXCEPTION" if error is not None else "DEPENDENCY_FAILED")


def _info(record: Any) -> tuple[Any, ...]:
    """What the task is, as TaskDescriptor's fields (a tuple: built on the hot path)."""
    spec = record.spec
    if spec.actor_id:
        cls = record.class_name
        return (
            spec.name,
            f"{cls}.{spec.name}" if cls else spec.name,
            "ACTOR_TASK",
            spec.job_id,
            spec.actor_id,
            spec.parent_task_id,
            spec.resources,
        )
    return (
        spec.name,
        spec.name,
        "NORMAL_TASK",
        spec.job_id,
        b"",
        spec.parent_task_id,
        spec.resources,
    )


class RecordingOwnerCounts(OwnerTaskCounts):
    """The owner's ``ray_tasks`` counts that also record each move as a task event."""

    __slots__ = ("_add",)

    def __init__(self, buffer: TaskEventBuffer) -> None:
        super().__init__()
        self._add = buffer.add

    def move(self, record: Any, new: int) -> None:
        old = record.mstate
        if old == new:
            return
        OwnerTaskCounts.move(self, record, new)
        spec = record.spec
        self._add(
            (
                (OWNER, spec.task_id, spec.attempt),
                OWNER_STATE[new],
                time_ns(),
                _info(record) if old == UNCOUNTED else None,
            )
        )

    def retry(self, record: Any) -> None:
        attempt = record.spec.attempt
        if attempt > 0:  # a normal task's retry: the attempt before this one failed
            self._add(((OWNER, record.spec.task_id, attempt - 1), FAILED, time_ns(), None))
        super().retry(record)

    def failed(self, record: Any, error: BaseException | None) -> None:
        spec = record.spec
        message = "" if error is None else str(error)[:MAX_ERROR_MESSAGE]
        self._add(
            ((OWNER, spec.task_id, spec.attempt), FAILED, time_ns(), None, error_type_of(error),
             message)
        )  # fmt: skip


class TaskEventReporter:
    """Drains the buffer into ``ReportTaskEvents`` for the raylet (IO loop only)."""

    def __init__(self, cw: CoreWorker, settings: TaskEventSettings) -> None:
        self._cw = cw
        self.settings = settings
        self.buffer = TaskEventBuffer(settings.buffer_size)
        self.owner_counts = RecordingOwnerCounts(self.buffer)
        self.sent_events = 0
        self.dropped_total = 0

    # ------------------------------------------------------------- executor side
    def running(self, spec: Any, func_or_class_name: str, task_type: str = "") -> None:
        """A task starts on this worker (any thread). ``task_type`` is given for an actor's
        creation task only, which no owner records."""
        info: tuple[Any, ...] | None = None
        if task_type:
            info = (
                spec.name,
                func_or_class_name,
                task_type,
                spec.job_id,
                spec.actor_id,
                spec.parent_task_id,
                spec.resources,
            )
        self.buffer.add(((EXECUTOR, spec.task_id, spec.attempt), RUNNING, time_ns(), info))

    def ended(self, spec: Any, error: BaseException | None, creation: bool = False) -> None:
        """A task this worker ran raised ``error`` (None: it returned; recorded only for an
        actor's creation task, whose owner is not a core worker)."""
        if error is None:
            if creation:
                self.buffer.add(((EXECUTOR, spec.task_id, spec.attempt), FINISHED, time_ns(), None))
            return
        self.buffer.add(
            ((EXECUTOR, spec.task_id, spec.attempt), FAILED, time_ns(), None,
             "TASK_EXECUTION_EXCEPTION", f"{type(error).__name__}: {error}"[:MAX_ERROR_MESSAGE])
        )  # fmt: skip

    # ------------------------------------------------------------- driver task
    def driver_task(self, task_id: bytes, state: int) -> None:
        """The driver's own task enters ``state`` (RUNNING at init, FINISHED at shutdown)."""
        info: tuple[Any, ...] | None = None
        if state == RUNNING:
            info = ("driver", "driver", "DRIVER_TASK", self._cw.job_id, b"", b"", {})
        self.buffer.add(((EXECUTOR, task_id, 0), state, time_ns(), info))

    # ------------------------------------------------------------- IO loop
    async def run(self) -> None:
        interval = self.settings.report_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            self.report_once()

    def report_once(self) -> int:
        """Send what was recorded since the last report; returns how many records went."""
        items, dropped = self.buffer.drain()
        if not items and not dropped:
            return 0
        cw = self._cw
        raylet = cw.raylet
        if raylet is None or raylet.closed:
            self.dropped_total += len(items) + dropped
            return 0
        batch = self.merge(items, dropped)
        raylet.notify(batch)
        self.sent_events += len(items)
        self.dropped_total += dropped
        return len(batch)

    def merge(self, items: list[tuple[Any, ...]], dropped: int = 0) -> ReportTaskEvents:
        """One record per (side, task, attempt), as the batch's columns."""
        n_states = len(TASK_STATES)
        index: dict[tuple[int, bytes, int], int] = {}
        task_ids: list[bytes] = []
        attempts: list[int] = []
        executor = bytearray()
        times: list[int] = []
        desc_of: list[int] = []
        descs: dict[tuple[Any, ...], int] = {}
        infos: list[tuple[Any, ...]] = []
        zeros = [0] * n_states
        errors: list[TaskError] = []
        # An item: ((side, task id, attempt), state, time, info[, error type, message]).
        for item in items:
            key = item[0]
            i = index.get(key)
            if i is None:
                i = index[key] = len(task_ids)
                task_ids.append(key[1])
                attempts.append(key[2])
                executor.append(key[0])
                times.extend(zeros)
                desc_of.append(-1)
            slot = i * n_states + item[1]
            if not times[slot]:
                times[slot] = item[2]
            info = item[3]
            if info is not None:
                # The resources dict is shared by a function's calls; alive until sent, so
                # its id names it within the batch.
                dkey = (*info[:6], id(info[6]))
                d = descs.get(dkey)
                if d is None:
                    d = descs[dkey] = len(descs)
                    infos.append(info)
                desc_of[i] = d
            if len(item) > 4:
                errors.append(TaskError(i, item[4], item[5]))
        cw = self._cw
        return ReportTaskEvents(
            task_ids,
            attempts,
            bytes(executor),
            times,
            desc_of,
            tuple(TaskDescriptor(k[0], k[1], k[2], k[3], k[4], k[5], dict(k[6])) for k in infos),
            tuple(errors),
            cw.node_id,
            cw.worker_id,
            os.getpid(),
            cw.job_id,
            dropped,
        )

    def flush(self) -> None:
        """A last report at shutdown (the raylet connection is still open)."""
        try:
            self.report_once()
        except Exception as err:
            logger.debug("final task event report failed: %r", err)
