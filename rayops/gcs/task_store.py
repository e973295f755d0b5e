"""The GCS's task-event store: task attempts merged from their owners' and executors' events.

Owns one record per (task id, attempt), built from the ``TaskEvent``s that processes report
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

from collections.abc import Mapping
from dataclasses import dataclass

from rayops.protocol.state_messages import TASK_STATES, ReportTaskEvents, TaskDescriptor

__all__ = ["DEFAULT_MAX_TASKS", "TaskAttempt", "TaskEventStore", "TaskQuery"]

DEFAULT_MAX_TASKS = 100_000
N_STATES = len(TASK_STATES)
_TERMINAL_FROM = TASK_STATES.index("FINISHED")  # FINISHED and FAILED end an attempt

Key = tuple[bytes, int]


class TaskAttempt:
    """One attempt of one task, as merged so far (a plain slotted class: the store makes
    one per task, so construction cost counts)."""

    __slots__ = (
        "attempt", "desc", "error_message", "error_type", "node_id", "state", "task_id",
        "times_ns", "worker_id", "worker_pid",
    )  # fmt: skip

    def __init__(self, task_id: bytes, attempt: int, state: int, times_ns: list[int]) -> None:
        self.task_id = task_id
        self.attempt = attempt
        self.state = state  # index into TASK_STATES; -1: none seen yet
        self.times_ns = times_ns  # one per state, wall clock; 0: not entered
        self.desc: TaskDescriptor | None = None  # from the owner's first record
        self.node_id = ""
        self.worker_id = b""
        self.worker_pid = 0
        self.error_type = ""
        self.error_message = ""

    @property
    def state_name(self) -> str:
        return TASK_STATES[self.state] if self.state >= 0 else "NIL"

    @property
    def ended(self) -> bool:
        return self.state >= _TERMINAL_FROM

    @property
    def job_id(self) -> int:
        return self.desc.job_id if self.desc is not None else -1


def _latest(times: list[int]) -> int:
    """The latest state a record's times show (-1: none)."""
    for s in range(N_STATES - 1, -1, -1):
        if times[s]:
            return s
    return -1


@dataclass(frozen=True, slots=True)
class TaskQuery:
    """Which records to read: one job, one task (None: any), at most ``limit`` (0: all)."""

    job_id: int | None = None
    task_id: bytes = b""
    limit: int = 0


class TaskEventStore:
    def __init__(self, max_tasks: int = DEFAULT_MAX_TASKS) -> None:
        if max_tasks < 1:
            raise ValueError(f"max_tasks must be at least 1, got {max_tasks}")
        self.max_tasks = max_tasks
        self._records: dict[Key, TaskAttempt] = {}  # oldest first
        self._ended: dict[Key, None] = {}  # ended attempts, in the order they ended
        self.num_evicted = 0
        self.evicted_by_job: dict[int, int] = {}
        self.dropped_by_job: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._records)

    # ---------------------------------------------------------------- events
    def add(self, batch: ReportTaskEvents) -> None:
        """Merge one process's batch, and count what it dropped."""
        records = self._records
        times = batch.times_ns
        descs = batch.descriptors
        executor = batch.executor
        recs: list[TaskAttempt] = []
        for i, key in enumerate(zip(batch.task_ids, batch.attempts, strict=True)):
            base = i * N_STATES
            chunk = times[base : base + N_STATES]
            rec = records.get(key)
            if rec is None:
                rec = records[key] = TaskAttempt(key[0], key[1], _latest(chunk), chunk)
                was_ended = False
            else:
                was_ended = rec.state >= _TERMINAL_FROM
                have = rec.times_ns
                for s, t in enumerate(chunk):
                    if t and (not have[s] or t < have[s]):
                        have[s] = t
                latest = _latest(chunk)
                if latest > rec.state:
                    rec.state = latest
            recs.append(rec)
            d = batch.descriptor[i]
            if 0 <= d < len(descs):
                rec.desc = descs[d]
            if executor[i]:
                rec.node_id = batch.node_id
                rec.worker_id = batch.worker_id
                rec.worker_pid = batch.worker_pid
            if not was_ended and rec.state >= _TERMINAL_FROM:
                self._ended[key] = None
        for err in batch.errors:
            if 0 <= err.index < len(recs) and not recs[err.index].error_type:
                recs[err.index].error_type = err.error_type
                recs[err.index].error_message = err.message
        if batch.dropped:
            self.count_dropped({batch.job_id: batch.dropped})
        while len(records) > self.max_tasks:
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
            key = next(iter(self._records))
        rec = self._records.pop(key)
        self.num_evicted += 1
        self.evicted_by_job[rec.job_id] = self.evicted_by_job.get(rec.job_id, 0) + 1

    # ---------------------------------------------------------------- queries
    def query(self, q: TaskQuery) -> tuple[list[TaskAttempt], int]:
        """Matching records, newest first, and how many matched before the limit."""
        if q.task_id:
            found = [r for (tid, _), r in self._records.items() if tid == q.task_id]
            found.reverse()
            if q.job_id is not None:
                found = [r for r in found if r.job_id == q.job_id]
            total = len(found)
            return (found[: q.limit] if q.limit else found), total
        out: list[TaskAttempt] = []
        total = 0
        for rec in reversed(self._records.values()):
            if q.job_id is not None and rec.job_id != q.job_id:
                continue
            total += 1
            if not q.limit or len(out) < q.limit:
                out.append(rec)
        return out, total

    @property
    def num_dropped(self) -> int:
        return sum(self.dropped_by_job.values())
