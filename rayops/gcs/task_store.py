"""The GCS's task-event store: task attempts merged from their owners' and executors' events.

Owns one record per (task id, attempt), built from the events that processes report
(an owner sees the pending states, SUBMITTED_TO_WORKER and the end; the executor sees
RUNNING and, on failure, the error). Events of one attempt arrive in any order and from
several processes, so a record keeps every state's first time and its state is the latest
in ``TASK_STATES`` order it has seen (FAILED after FINISHED: an attempt that failed
anywhere failed), never the latest to arrive.

Bounded (Ray's ``task_events_max_num_task_in_gcs``, 100,000): past the bound, the attempt
that ended first is evicted, else (none has ended) the oldest; evictions are counted, per
job too. Events the processes dropped before they reached the GCS (their buffers were
full) are counted per job as they report them.

No I/O, no clock: events in, records out. The gRPC face is ``task_service.py``.
"""

from __future__ import annotations

from array import array
from collections.abc import Mapping
from dataclasses import dataclass

from rayops.protocol.state_messages import (
    TASK_ID_LEN,
    TASK_STATES,
    ReportTaskEvents,
    TaskDescriptor,
    unpack_times,
)

__all__ = ["DEFAULT_MAX_TASKS", "TaskAttempt", "TaskEventStore", "TaskQuery"]

DEFAULT_MAX_TASKS = 100_000
N_STATES = len(TASK_STATES)
_TERMINAL_FROM = TASK_STATES.index("FINISHED")  # FINISHED and FAILED end an attempt

Key = tuple[bytes, int]


class TaskAttempt:
    """One attempt of one task, as merged so far (what a query returns; the store keeps
    its attempts as columns)."""

    state = -1  # index into TASK_STATES; -1: none seen yet
    desc: TaskDescriptor | None = None  # from the owner's first event
    where: tuple[str, bytes, int] | None = None  # (node id, worker id, pid): the executor
    error_type = ""
    error_message = ""

    def __init__(self, task_id: bytes, attempt: int) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.times_ns = [0] * N_STATES  # when it entered each state (wall clock); 0: not

    @property
    def state_name(self) -> str:
        return TASK_STATES[self.state] if self.state >= 0 else "NIL"

    @property
    def ended(self) -> bool:
        return self.state >= _TERMINAL_FROM

    @property
    def job_id(self) -> int:
        return self.desc.job_id if self.desc is not None else -1

    @property
    def node_id(self) -> str:
        return self.where[0] if self.where else ""

    @property
    def worker_id(self) -> bytes:
        return self.where[1] if self.where else b""

    @property
    def worker_pid(self) -> int:
        return self.where[2] if self.where else 0


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which records to read: one job, one task (None: any), at most ``limit`` (0: all)."""

    job_id: int | None = None
    task_id: bytes = b""
    limit: int = 0


_NONE = 255  # no state seen yet, in the state column
_ZEROS = array("q", [0] * N_STATES)


class TaskEventStore:
    """Attempts as rows of columns (the state and the times packed in arrays; descriptor,
    executor and error by reference), indexed by (task id, attempt) in age order.

    Columns, not an object per attempt: at 100,000 attempts, objects (each with its times
    list) made the GCS's garbage collections cost as much as the merging; rows of arrays
    add nothing for the collector to scan. Evicted rows are reused.
    """

    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be at least 1, got {max_tasks}")
        self.max_tasks = max_tasks
        self._index: dict[Key, int] = {}  # key -> row, oldest first
        self._ended: dict[Key, None] = {}  # ended attempts, in the order they ended
        self._state = bytearray()  # per row: index into TASK_STATES, or _NONE
        self._times = array("q")  # N_STATES per row
        self._desc: list[TaskDescriptor | None] = []
        self._where: list[tuple[str, bytes, int] | None] = []
        self._errors: dict[int, tuple[str, str]] = {}  # row -> (type, message)
        self._free: list[int] = []
        self.num_evicted = 0
        self.evicted_by_job: dict[int, int] = {}
        self.dropped_by_job: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._index)

    # ---------------------------------------------------------------- events
    def _new_row(self) -> int:
        if self._free:
            return self._free.pop()
        self._state.append(_NONE)
        self._times.extend(_ZEROS)
        self._desc.append(None)
        self._where.append(None)
        return len(self._state) - 1

    def add(self, batch: ReportTaskEvents) -> None:
        """Merge one process's batch of events, and count what it dropped."""
        index = self._index
        ended = self._ended
        states = self._state
        times = self._times
        desc_col = self._desc
        where_col = self._where
        descs = batch.descriptors
        where = (batch.node_id, batch.worker_id, batch.worker_pid) if batch.executor else None
        rows: list[int] | None = [] if batch.errors else None
        ids = batch.task_ids
        if len(ids) != TASK_ID_LEN * len(batch.states):
            raise ValueError(
                f"a task event batch has {len(ids)} bytes of task ids for {len(batch.states)} "
                f"events (expected {TASK_ID_LEN} each)"
            )
        pos = 0
        for att, state, t, d in zip(
            batch.attempts, batch.states, unpack_times(batch.times_ns), batch.descriptor,
            strict=True,
        ):  # fmt: skip
            key = (ids[pos : pos + TASK_ID_LEN], att)
            pos += TASK_ID_LEN
            row = index.get(key)
            if row is None:
                row = index[key] = self._new_row()
            if rows is not None:
                rows.append(row)
            if where is not None:
                where_col[row] = where
            if d >= 0:
                desc_col[row] = descs[d]
            if state >= N_STATES:
                continue  # a newer sender's state this store does not know
            slot = row * N_STATES + state
            if not times[slot] or t < times[slot]:
                times[slot] = t
            cur = states[row]
            if cur == _NONE or state > cur:
                if state >= _TERMINAL_FROM and (cur == _NONE or cur < _TERMINAL_FROM):
                    ended[key] = None
                states[row] = state
        for err in batch.errors:
            assert rows is not None
            if 0 <= err.index < len(rows) and rows[err.index] not in self._errors:
                self._errors[rows[err.index]] = (err.error_type, err.message)
        if batch.dropped:
            self.count_dropped({batch.job_id: batch.dropped})
        while len(index) > self.max_tasks:
            self._evict_one()

    def count_dropped(self, dropped: Mapping[int, int]) -> None:
        """Events that never reached the store (job id -> how many)."""
        for job_id, n in dropped.items():
            if n > 0:
                self.dropped_by_job[job_id] = self.dropped_by_job.get(job_id, 0) + n

    def _evict_one(self) -> None:
        if self._ended:
            key = next(iter(self._ended))
            del self._ended[key]
        else:
            key = next(iter(self._index))
        row = self._index.pop(key)
        desc = self._desc[row]
        job_id = desc.job_id if desc is not None else -1
        self.num_evicted += 1
        self.evicted_by_job[job_id] = self.evicted_by_job.get(job_id, 0) + 1
        self._state[row] = _NONE
        self._times[row * N_STATES : (row + 1) * N_STATES] = _ZEROS
        self._desc[row] = None
        self._where[row] = None
        self._errors.pop(row, None)
        self._free.append(row)

    # ---------------------------------------------------------------- queries
    def _view(self, key: Key, row: int) -> TaskAttempt:
        rec = TaskAttempt(key[0], key[1])
        state = self._state[row]
        if state != _NONE:
            rec.state = state
        rec.times_ns = list(self._times[row * N_STATES : (row + 1) * N_STATES])
        rec.desc = self._desc[row]
        rec.where = self._where[row]
        if row in self._errors:
            rec.error_type, rec.error_message = self._errors[row]
        return rec

    def query(self, q: TaskQuery) -> tuple[list[TaskAttempt], int]:
        """Matching records, newest first, and how many matched before the limit."""
        desc = self._desc
        out: list[TaskAttempt] = []
        total = 0
        for key, row in reversed(self._index.items()):
            if q.task_id and key[0] != q.task_id:
                continue
            if q.job_id is not None:
                d = desc[row]
                if d is None or d.job_id != q.job_id:
                    continue
            total += 1
            if not q.limit or len(out) < q.limit:
                out.append(self._view(key, row))
        return out, total

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped_by_job.values())
