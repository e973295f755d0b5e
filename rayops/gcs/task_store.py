"""The GCS's task-event store: task attempts merged from their owners' and executors' events.

Owns one record per (task id, attempt), built from the rows that processes report (a row:
one attempt's events one process saw in one batch; an owner sees the pending states,
SUBMITTED_TO_WORKER and the end; the executor sees RUNNING and, on failure, the error).
Rows of one attempt arrive in any order and from several processes, so a record keeps every
state's first time (per slot, the smaller time) and its state is the latest in
``TASK_STATES`` order it has seen (FAILED after FINISHED: an attempt that failed anywhere
failed), never the latest to arrive.

Bounded (Ray's ``task_events_max_num_task_in_gcs``, 100,000): past the bound, the attempt
that ended first is evicted, else (none has ended) the oldest; evictions are counted, per
job too. Events the processes dropped before they reached the GCS (their buffers were
full) are counted per job as they report them.

No I/O, no clock: rows in, records out. The gRPC face is ``task_service.py``.
"""

from __future__ import annotations

from array import array
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from itertools import islice

from rayops.protocol.state_messages import (
    N_STATES,
    TASK_ID_LEN,
    TASK_STATES,
    TIME_UNSET,
    ReportTaskEvents,
    TaskDescriptor,
    unpack_times,
)

__all__ = ["DEFAULT_MAX_TASKS", "TaskAttempt", "TaskEventStore", "TaskQuery"]

DEFAULT_MAX_TASKS = 100_000
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
_UNSET_ROW = array("q", [TIME_UNSET] * N_STATES)


class TaskEventStore:
    """Attempts as rows of columns (the state and the times packed in arrays; descriptor,
    executor and error by reference), indexed by (task id, attempt) in age order.

    Columns, not an object per attempt: at 100,000 attempts, objects (each with its times
    list) made the GCS's garbage collections cost as much as the merging; rows of arrays
    add nothing for the collector to scan. Evicted rows are reused.

    Most attempts get one row from each side (owner, executor), so the store keeps one
    times array per side: each side's first row of an attempt is a slice copy, and only
    rows of an attempt whose events spanned batches merge slot by slot (~0.6 us per row
    merged, against ~0.5 per event when every event was merged on its own).
    """

    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be at least 1, got {max_tasks}")
        self.max_tasks = max_tasks
        self._index: dict[Key, int] = {}  # key -> row, oldest first
        # Ended attempts, in the order they ended: an OrderedDict, as eviction takes from its
        # front (a dict's first key is found past every key deleted before it: evicting one
        # at a time from a full store made each new attempt cost ~30 us, growing).
        self._ended: OrderedDict[Key, None] = OrderedDict()
        self._state = bytearray()  # per row: index into TASK_STATES, or _NONE
        # N_STATES per row, one array per side (the owner's rows, the executors'): a side's
        # first row of an attempt is copied whole, with nothing to merge; a query takes
        # the earlier of the two. TIME_UNSET: not entered.
        self._times = (array("q"), array("q"))
        self._sides = bytearray()  # per row: the sides seen (bit 1: owner, 2: executor)
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
    def add(self, batch: ReportTaskEvents) -> None:
        """Merge one process's batch of rows, and count what it dropped."""
        n = len(batch.states)
        ids = batch.task_ids
        if len(ids) != TASK_ID_LEN * n:
            raise ValueError(
                f"a task event batch has {len(ids)} bytes of task ids for {n} rows "
                f"(expected {TASK_ID_LEN} each)"
            )
        if len(batch.times_ns) != 8 * N_STATES * n:
            raise ValueError(
                f"a task event batch has {len(batch.times_ns)} bytes of times for {n} rows "
                f"(expected {8 * N_STATES} each)"
            )
        if len(batch.attempts) != n or len(batch.descriptor) != n:
            raise ValueError(
                f"a task event batch has {len(batch.attempts)} attempts and "
                f"{len(batch.descriptor)} descriptor indices for {n} rows"
            )
        index = self._index
        ended = self._ended
        states = self._state
        sides = self._sides
        side = 2 if batch.executor else 1
        times = self._times[batch.executor]
        other = self._times[not batch.executor]
        free = self._free
        desc_col = self._desc
        where_col = self._where
        descs = batch.descriptors
        where = (batch.node_id, batch.worker_id, batch.worker_pid) if batch.executor else None
        rows: list[int] | None = [] if batch.errors else None
        bt = unpack_times(batch.times_ns)
        pos = src = 0
        for att, state, d in zip(batch.attempts, batch.states, batch.descriptor, strict=True):
            key = (ids[pos : pos + TASK_ID_LEN], att)
            pos += TASK_ID_LEN
            row = index.get(key)
            i = src
            src += N_STATES
            if row is None:  # the first row of this attempt: its times as they are
                if free:  # an evicted row's (reset)
                    row = index[key] = free.pop()
                    lo = row * N_STATES
                    times[lo : lo + N_STATES] = bt[i:src]
                    sides[row] = side
                else:  # a new row at the end of every column
                    row = index[key] = len(states)
                    states.append(_NONE)
                    sides.append(side)
                    times.extend(bt[i:src])
                    other.extend(_UNSET_ROW)
                    desc_col.append(None)
                    where_col.append(None)
                cur = _NONE
            else:
                cur = states[row]
                lo = row * N_STATES
                if not sides[row] & side:  # this side's first row of it: copied whole
                    times[lo : lo + N_STATES] = bt[i:src]
                    sides[row] |= side
                else:  # (its events spanned batches) per state, the earlier time
                    for t in bt[i:src]:
                        if t < times[lo]:
                            times[lo] = t
                        lo += 1
            if rows is not None:
                rows.append(row)
            if where is not None:
                where_col[row] = where
            if d >= 0:
                desc_col[row] = descs[d]
            if state < N_STATES and (cur == _NONE or state > cur):
                # (a state past N_STATES: a newer sender's, which this store does not know)
                if state >= _TERMINAL_FROM and (cur == _NONE or cur < _TERMINAL_FROM):
                    ended[key] = None
                states[row] = state
        for err in batch.errors:
            assert rows is not None
            if 0 <= err.index < len(rows) and rows[err.index] not in self._errors:
                self._errors[rows[err.index]] = (err.error_type, err.message)
        if batch.dropped:
            self.count_dropped({batch.job_id: batch.dropped})
        if len(index) > self.max_tasks:
            self._evict(len(index) - self.max_tasks)

    def count_dropped(self, dropped: Mapping[int, int]) -> None:
        """Events that never reached the store (job id -> how many)."""
        for job_id, n in dropped.items():
            if n > 0:
                self.dropped_by_job[job_id] = self.dropped_by_job.get(job_id, 0) + n

    def _evict(self, n: int) -> None:
        """Evict ``n`` attempts: those that ended first, then (none ended) the oldest."""
        ended = self._ended
        while n and ended:
            self._drop(ended.popitem(last=False)[0])
            n -= 1
        if n:  # none of those left has ended: the oldest, found in one pass
            for key in list(islice(self._index, n)):
                self._drop(key)

    def _drop(self, key: Key) -> None:
        row = self._index.pop(key)
        desc = self._desc[row]
        job_id = desc.job_id if desc is not None else -1
        self.num_evicted += 1
        self.evicted_by_job[job_id] = self.evicted_by_job.get(job_id, 0) + 1
        self._state[row] = _NONE
        self._sides[row] = 0
        self._times[0][row * N_STATES : (row + 1) * N_STATES] = _UNSET_ROW
        self._times[1][row * N_STATES : (row + 1) * N_STATES] = _UNSET_ROW
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
        lo, hi = row * N_STATES, (row + 1) * N_STATES
        rec.times_ns = [
            0 if t == TIME_UNSET else t
            for t in map(min, self._times[0][lo:hi], self._times[1][lo:hi])
        ]
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
