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

from collections.abc import Mapping
from dataclasses import dataclass

from rayops.protocol.state_messages import TASK_STATES, ReportTaskEvents, TaskDescriptor

__all__ = ["DEFAULT_MAX_TASKS", "TaskAttempt", "TaskEventStore", "TaskQuery"]

DEFAULT_MAX_TASKS = 100_000
N_STATES = len(TASK_STATES)
_TERMINAL_FROM = TASK_STATES.index("FINISHED")  # FINISHED and FAILED end an attempt

Key = tuple[bytes, int]


class TaskAttempt:
    """One attempt of one task, as merged so far.

    A plain class whose defaults live on the class: the store makes one per task attempt,
    and setting only what an event brings keeps that cheap (measured: a slotted record with
    every field set in ``__init__`` cost more than the merge itself).
    """

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
        """Merge one process's batch of events, and count what it dropped."""
        records = self._records
        ended = self._ended
        descs = batch.descriptors
        where = (batch.node_id, batch.worker_id, batch.worker_pid) if batch.executor else None
        touched: list[TaskAttempt] | None = [] if batch.errors else None
        for key, state, t, d in zip(
            zip(batch.task_ids, batch.attempts, strict=True),
            batch.states,
            batch.times_ns,
            batch.descriptor,
            strict=True,
        ):
            rec = records.get(key)
            if rec is None:
                rec = records[key] = TaskAttempt(key[0], key[1])
            if touched is not None:
                touched.append(rec)
            if where is not None:
                rec.where = where
            if d >= 0:
                rec.desc = descs[d]
            if state >= N_STATES:
                continue  # a newer sender's state this store does not know
            times = rec.times_ns
            if not times[state] or t < times[state]:
                times[state] = t
            if state > rec.state:
                if state >= _TERMINAL_FROM and rec.state < _TERMINAL_FROM:
                    ended[key] = None
                rec.state = state
        for err in batch.errors:
            assert touched is not None
            if 0 <= err.index < len(touched) and not touched[err.index].error_type:
                touched[err.index].error_type = err.error_type
                touched[err.index].error_message = err.message
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
