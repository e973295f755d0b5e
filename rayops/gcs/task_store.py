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

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from rayops.protocol.state_messages import TASK_STATES, TaskEvent

__all__ = ["DEFAULT_MAX_TASKS", "TaskAttempt", "TaskEventStore", "TaskQuery"]

DEFAULT_MAX_TASKS = 100_000
_FINISHED = TASK_STATES.index("FINISHED")
_TERMINAL = frozenset({_FINISHED, TASK_STATES.index("FAILED")})

Key = tuple[bytes, int]


@dataclass(slots=True)
class TaskAttempt:
    """One attempt of one task, as merged so far."""

    task_id: bytes
    attempt: int
    state: int = -1  # index into TASK_STATES; -1: no state seen yet
    state_ts_ns: dict[int, int] = field(default_factory=dict)
    name: str = ""
    func_or_class_name: str = ""
    type: str = ""
    job_id: int = -1  # -1: unknown until the owner's event arrives
    actor_id: bytes = b""
    parent_task_id: bytes = b""
    required_resources: dict[str, float] = field(default_factory=dict)
    node_id: str = ""
    worker_id: bytes = b""
    worker_pid: int = 0
    error_type: str = ""
    error_message: str = ""

    @property
    def state_name(self) -> str:
        return TASK_STATES[self.state] if self.state >= 0 else "NIL"

    @property
    def ended(self) -> bool:
        return self.state in _TERMINAL


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
    def add(self, events: Iterable[TaskEvent], dropped: Mapping[int, int] | None = None) -> None:
        """Merge a batch of events; count what its senders dropped (job id -> events)."""
        for event in events:
            self._merge(event)
        for job_id, n in (dropped or {}).items():
            if n > 0:
                self.dropped_by_job[job_id] = self.dropped_by_job.get(job_id, 0) + n
        while len(self._records) > self.max_tasks:
            self._evict_one()

    def _merge(self, event: TaskEvent) -> None:
        key = (event.task_id, event.attempt)
        rec = self._records.get(key)
        if rec is None:
            rec = self._records[key] = TaskAttempt(event.task_id, event.attempt)
        was_ended = rec.ended
        ts = rec.state_ts_ns
        for state, t in zip(event.states, event.times_ns, strict=True):
            if not 0 <= state < len(TASK_STATES):
                continue  # a newer sender's state this store does not know
            if state not in ts or t < ts[state]:
                ts[state] = t
            if state > rec.state:
                rec.state = state
        info = event.info
        if info is not None:
            rec.name = info.name
            rec.func_or_class_name = info.func_or_class_name
            rec.type = info.type
            rec.job_id = info.job_id
            rec.actor_id = info.actor_id
            rec.parent_task_id = info.parent_task_id
            rec.required_resources = dict(info.required_resources)
        if event.node_id:
            rec.node_id = event.node_id
            rec.worker_id = event.worker_id
            rec.worker_pid = event.worker_pid
        if event.error_type and not rec.error_type:
            rec.error_type = event.error_type
            rec.error_message = event.error_message
        if rec.ended and not was_ended:
            self._ended[key] = None

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
