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

Recording writes bounded columns of rows, one row per task attempt per batch
(``TaskEventBuffer``: the owner's on the IO thread, the executor's under an uncontended lock):
an attempt's first event in a batch makes its row, the later ones write the row's time slot
for their state (the task record keeps its row's number, so finding it is a subtraction).
Nothing blocks, nothing waits, no object is made per event. When a buffer is full an event
that needs a new row is dropped and counted; the count goes out with the next batch.
``TaskEventReporter`` runs on the IO loop: every ``report_interval_ms`` it takes both
buffers and notifies the raylet with them as columns (``ReportTaskEvents``) over the
connection the core worker already has; the raylet forwards them to the GCS, which merges
the rows of each attempt (one merge step per side for a task whose events share a batch).
``RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS=0`` turns all of it off (no hook is installed).
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from array import array
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from time import time_ns
from typing import TYPE_CHECKING, Any

from rayops.core_worker.task_metrics import UNCOUNTED, OwnerTaskCounts
from rayops.protocol.state_messages import (
    N_STATES,
    TASK_STATES,
    TIME_UNSET,
    ReportTaskEvents,
    TaskDescriptor,
    TaskError,
    pack_times,
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
_UNSET_ROW = array("q", [TIME_UNSET] * N_STATES)


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
    """Bounded columns of rows, one row per task attempt (entry ``i`` of each list is row
    ``i``): the attempt, its time slots (``N_STATES`` per row in ``times``, ``TIME_UNSET``
    where it has not entered that state in this batch) and the latest state it entered.

    A row, not an event, is the unit: the owner's four transitions of a task that fall in one
    batch write four slots of one row (the first makes it), so the GCS merges one row, not
    four events. Columns of ints and bytes rather than an object per row: the buffer adds
    nothing for the garbage collector to scan. Rows are numbered across batches (``base`` +
    index), so a task record can keep its row's number and find it again without a lookup;
    a number below ``base`` names a row already sent. Bounded: when ``cap`` rows are held, an
    event that needs a new row is dropped and counted (events that write a held row cost no
    memory). Not thread-safe: the owner's buffer is written on the IO thread only; the
    executor's is written under its reporter's lock.
    """

    __slots__ = (
        "attempts",
        "base",
        "cap",
        "desc_cache",
        "descs",
        "dropped",
        "errors",
        "infos",
        "rows_by_task",
        "states",
        "task_ids",
        "times",
    )

    def __init__(self, capacity: int) -> None:
        self.cap = capacity
        self.dropped = 0
        self.base = 0  # the number of this batch's row 0
        self._clear()

    def _clear(self) -> None:
        self.task_ids: list[bytes] = []
        self.attempts: list[int] = []
        self.states = bytearray()  # the latest state of each row
        self.times = array("q")  # N_STATES per row
        self.descs: list[int] = []  # index into infos, -1: none
        # Distinct TaskDescriptor fields, and the key each was found under: the calls of
        # one function (or actor method, from one parent) share one, so a task costs a
        # dict lookup here rather than an object kept until the batch goes.
        self.infos: list[tuple[Any, ...]] = []
        self.desc_cache: dict[tuple[Any, ...], int] = {}
        self.errors: list[tuple[int, str, str]] = []  # (row index, type, message)
        # The executor's: task id -> its latest row's number (to add an error to it).
        self.rows_by_task: dict[bytes, int] = {}

    def add(self, task_id: bytes, attempt: int, state: int, t: int, desc: int = -1) -> int:
        """A new row for one attempt, with its first event (``desc``: from ``describe``);
        the row's number, or -1 if the buffer was full (the event dropped, counted)."""
        n = len(self.states)
        if n >= self.cap:
            self.dropped += 1
            return -1
        self.task_ids.append(task_id)
        self.attempts.append(attempt)
        self.states.append(state)
        self.times.extend(_UNSET_ROW)
        self.times[n * N_STATES + state] = t
        self.descs.append(desc)
        return self.base + n

    def put(self, number: int, task_id: bytes, attempt: int, state: int, t: int) -> int:
        """Record an event in row ``number`` if this batch holds it (else in a new row);
        the row's number, or -1 if dropped."""
        r = number - self.base
        if r < 0 or r >= len(self.states):
            return self.add(task_id, attempt, state, t)
        i = r * N_STATES + state
        if t < self.times[i]:
            self.times[i] = t
        if state > self.states[r]:
            self.states[r] = state
        return number

    def describe(self, key: tuple[Any, ...], info: Callable[[], tuple[Any, ...]]) -> int:
        """The index of the descriptor ``key`` names in this batch (``info()`` makes its
        fields the first time). Keys hold ``id()``s of dicts the infos keep alive."""
        d = self.desc_cache.get(key)
        if d is None:
            d = self.desc_cache[key] = len(self.infos)
            self.infos.append(info())
        return d

    def error(self, number: int, error_type: str, message: str) -> None:
        """The attempt of row ``number`` (held by this batch) failed with this error."""
        self.errors.append((number - self.base, error_type, message))

    def __len__(self) -> int:
        return len(self.states)

    def take(self) -> TaskEventBuffer:
        """Everything recorded so far, as a detached buffer; this one starts empty (and
        numbers its rows after the taken ones)."""
        out = TaskEventBuffer(self.cap)
        out.task_ids, out.attempts, out.states = self.task_ids, self.attempts, self.states
        out.times, out.descs, out.infos = self.times, self.descs, self.infos
        out.errors, out.dropped, out.desc_cache = self.errors, self.dropped, self.desc_cache
        out.base = self.base
        self.base += len(self.states)
        self.dropped = 0
        self._clear()
        return out


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


def _desc_of(buf: TaskEventBuffer, record: Any) -> int:
    """The descriptor of an owner's task record in ``buf`` (``TaskEventBuffer.describe``
    without its closure: this runs once per task on the submit path)."""
    spec = record.spec
    res = spec.resources
    key = (
        spec.name,
        record.class_name,
        spec.job_id,
        spec.actor_id,
        spec.parent_task_id,
        id(res) if res else 0,
    )
    desc = buf.desc_cache.get(key)
    if desc is None:
        desc = buf.desc_cache[key] = len(buf.infos)
        buf.infos.append(_info(record))
    return desc


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
    """The owner's ``ray_tasks`` counts that also record each move as a task event
    (IO thread only, as the counts). A task record keeps its row's number in
    ``record.erow``: the events after an attempt's first write that row's slots directly."""

    __slots__ = ("_buffer",)

    def __init__(self, buffer: TaskEventBuffer) -> None:
        super().__init__()
        self._buffer = buffer

    def move(self, record: Any, new: int) -> None:
        old = record.mstate
        if old == new:
            return
        # OwnerTaskCounts.move, inline (this runs four times per task)
        counts = record.mrow
        if counts is None:
            counts = record.mrow = self._row(record.mname or record.spec.name, record.is_retry)
        else:
            counts[old] -= 1
        counts[new] += 1
        record.mstate = new
        buf = self._buffer
        state = OWNER_STATE[new]
        t = time_ns()
        if old != UNCOUNTED:
            r = record.erow - buf.base
            if 0 <= r < len(buf.states):  # this batch holds the attempt's row
                i = r * N_STATES + state
                times = buf.times
                if t < times[i]:
                    times[i] = t
                if state > buf.states[r]:
                    buf.states[r] = state
                return
            spec = record.spec
            record.erow = buf.add(spec.task_id, spec.attempt, state, t)
            return
        # the first event of this attempt: a new row that says what the task is
        # (TaskEventBuffer.add, inline)
        spec = record.spec
        desc = _desc_of(buf, record)
        n = len(buf.states)
        if n >= buf.cap:
            buf.dropped += 1
            record.erow = -1
            return
        buf.task_ids.append(spec.task_id)
        buf.attempts.append(spec.attempt)
        buf.states.append(state)
        times = buf.times
        times.extend(_UNSET_ROW)
        times[n * N_STATES + state] = t
        buf.descs.append(desc)
        record.erow = buf.base + n

    def answered(self, record: Any) -> None:
        """``move`` to ST_ARGS, ST_SUBMITTED and ST_FINISHED of a new record, in one step:
        its row of events gets the three states at one time."""
        super().answered(record)
        buf = self._buffer
        spec = record.spec
        n = buf.add(spec.task_id, spec.attempt, FINISHED, time_ns(), _desc_of(buf, record))
        record.erow = n
        if n < 0:  # the buffer is full: its three events are dropped (as move counts them)
            buf.dropped += 2
        else:
            times = buf.times
            i = (n - buf.base) * N_STATES
            times[i + PENDING_ARGS_AVAIL] = times[i + SUBMITTED_TO_WORKER] = times[i + FINISHED]

    def retry(self, record: Any) -> None:
        spec = record.spec
        if spec.attempt > 0:  # a normal task's retry: the attempt before this one failed
            # (its row is the record's until the move to the next attempt below)
            self._buffer.put(record.erow, spec.task_id, spec.attempt - 1, FAILED, time_ns())
        super().retry(record)

    def failed(self, record: Any, error: BaseException | None) -> None:
        spec = record.spec
        buf = self._buffer
        number = record.erow = buf.put(record.erow, spec.task_id, spec.attempt, FAILED, time_ns())
        if number >= 0:
            message = "" if error is None else str(error)[:MAX_ERROR_MESSAGE]
            buf.error(number, error_type_of(error), message)


class TaskEventReporter:
    """Owns the two buffers and sends their contents to the raylet (IO loop)."""

    def __init__(self, cw: CoreWorker, settings: TaskEventSettings) -> None:
        self._cw = cw
        self.settings = settings
        self.buffer = TaskEventBuffer(settings.buffer_size)  # the owner's: IO thread only
        self.owner_counts = RecordingOwnerCounts(self.buffer)
        # The executor's: written by whichever thread runs a task (main, actor threads, an
        # async actor's loop), so under a lock (uncontended: one event per task).
        self.exec_buffer = TaskEventBuffer(settings.buffer_size)
        self._exec_lock = threading.Lock()
        self.sent_events = 0
        self.dropped_total = 0

    # ------------------------------------------------------------- executor side
    def running(self, spec: Any, func_or_class_name: str, task_type: str = "") -> None:
        """A task starts on this worker (any thread). ``task_type`` is given for an actor's
        creation task only, which no owner records."""
        buf = self.exec_buffer
        with self._exec_lock:
            desc = -1
            if task_type:
                key = (spec.name, func_or_class_name, task_type, spec.job_id, spec.actor_id)
                desc = buf.describe(
                    key,
                    lambda: (
                        spec.name,
                        func_or_class_name,
                        task_type,
                        spec.job_id,
                        spec.actor_id,
                        spec.parent_task_id,
                        dict(spec.resources),
                    ),
                )
            number = buf.add(spec.task_id, spec.attempt, RUNNING, time_ns(), desc)
            if number >= 0:
                buf.rows_by_task[spec.task_id] = number

    def ended(self, spec: Any, error: BaseException | None, creation: bool = False) -> None:
        """A task this worker ran raised ``error`` (None: it returned; recorded only for an
        actor's creation task, whose owner is not a core worker)."""
        if error is None and not creation:
            return
        buf = self.exec_buffer
        with self._exec_lock:
            task_id, attempt = spec.task_id, spec.attempt
            number = buf.rows_by_task.get(task_id, -1)
            r = number - buf.base
            if not 0 <= r < len(buf.states) or buf.attempts[r] != attempt:
                number = -1  # its RUNNING row went with an earlier batch: a new row
            state = FINISHED if error is None else FAILED
            number = buf.put(number, task_id, attempt, state, time_ns())
            if error is not None and number >= 0:
                message = f"{type(error).__name__}: {error}"[:MAX_ERROR_MESSAGE]
                buf.error(number, "TASK_EXECUTION_EXCEPTION", message)

    # ------------------------------------------------------------- driver task
    def driver_task(self, task_id: bytes, state: int) -> None:
        """The driver's own task enters ``state`` (RUNNING at init, FINISHED at shutdown)."""
        buf = self.exec_buffer
        with self._exec_lock:
            desc = -1
            if state == RUNNING:
                job = self._cw.job_id
                info: tuple[Any, ...] = ("driver", "driver", "DRIVER_TASK", job, b"", b"", {})
                desc = buf.describe(("driver", job), lambda: info)
            buf.add(task_id, 0, state, time_ns(), desc)

    # ------------------------------------------------------------- IO loop
    async def run(self) -> None:
        interval = self.settings.report_interval_ms / 1000.0
        while True:
            await asyncio.sleep(interval)
            self.report_once()

    def take(self) -> list[ReportTaskEvents]:
        """The batches to send now (owner's, executor's), emptying the buffers."""
        owner = self.buffer.take()
        with self._exec_lock:
            executor = self.exec_buffer.take()
        return [
            self.batch(taken, side)
            for taken, side in ((owner, False), (executor, True))
            if len(taken) or taken.dropped
        ]

    def report_once(self) -> int:
        """Send what was recorded since the last report; returns how many rows went."""
        batches = self.take()
        if not batches:
            return 0
        raylet = self._cw.raylet
        n = sum(len(b) for b in batches)
        dropped = sum(b.dropped for b in batches)
        if raylet is None or raylet.closed:
            self.dropped_total += n + dropped
            return 0
        for b in batches:
            raylet.notify(b)
        self.sent_events += n
        self.dropped_total += dropped
        return n

    def batch(self, taken: TaskEventBuffer, executor: bool) -> ReportTaskEvents:
        """A detached buffer as a ReportTaskEvents."""
        cw = self._cw
        return ReportTaskEvents(
            b"".join(taken.task_ids),
            taken.attempts,
            bytes(taken.states),
            pack_times(taken.times),
            taken.descs,
            tuple(
                TaskDescriptor(i[0], i[1], i[2], i[3], i[4], i[5], dict(i[6])) for i in taken.infos
            ),
            tuple(TaskError(i, t, m) for i, t, m in taken.errors),
            executor,
            cw.node_id if executor else "",
            cw.worker_id if executor else b"",
            os.getpid() if executor else 0,
            cw.job_id,
            taken.dropped,
        )

    def flush(self) -> None:
        """A last report at shutdown (the raylet connection is still open)."""
        try:
            self.report_once()
        except Exception as err:
            logger.debug("final task event report failed: %r", err)
