"""The GCS job table: the cluster's job counter and a record per driver.

A pure state machine, no I/O: typed commands in (`rayops.gcs.job_events`: AddJob,
FinishJob), typed change events out (JobAdded, JobFinished), each stamped with the table's
next version and handed to a *sink* (in the GCS, the publisher's "jobs" channel), so no
change bypasses the event spine. Time comes from an injected clock.

A job's state is None (the table does not hold it), RUNNING or FINISHED; `TRANSITIONS` is
the one table of what each command does in each state, and `apply` looks every command up
there. Job ids are 1, 2, 3, ... per cluster and never reused: `next_job_id` only moves
forward (it hands out a number, it changes no job, so it publishes nothing), and a job added
with an id the counter has not reached yet (e.g. recorded before a GCS restart) moves the
counter past it.
"""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from rayops.gcs.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from rayops.gcs.job_events import (
    AddJob,
    FinishJob,
    JobAdded,
    JobCommand,
    JobEvent,
    JobFinished,
    JobSnapshot,
)
from rayops.gcs.types import MAX_JOB_ID, JobInfo

__all__ = ["TRANSITIONS", "Applied", "Edge", "Effect", "JobState", "JobTable"]


class JobState(enum.StrEnum):
    RUNNING = "RUNNING"
    FINISHED = "FINISHED"


class Effect(enum.Enum):
    """What a command does to a job in a given state."""

    APPLY = "apply"  # the job changes; one event follows
    IGNORE = "ignore"  # nothing changes; the caller is told (found=False, or already over)
    REFUSE = "refuse"  # the command is an error: AlreadyExists to the caller


@dataclass(frozen=True, slots=True)
class Edge:
    """One row of the transition table: the state after the command, and its effect."""

    to: JobState | None
    effect: Effect


_RUNNING, _FINISHED = JobState.RUNNING, JobState.FINISHED

# The only legal transitions: (state the table holds the job in, command) -> edge.
TRANSITIONS: dict[tuple[JobState | None, type[JobCommand]], Edge] = {
    # A driver starts under a job id from next_job_id: JobAdded.
    (None, AddJob): Edge(_RUNNING, Effect.APPLY),
    # A job id is recorded once: a second driver with the same id is a bug (or a replay).
    (_RUNNING, AddJob): Edge(_RUNNING, Effect.REFUSE),
    # ... and a finished job never runs again under its id.
    (_FINISHED, AddJob): Edge(_FINISHED, Effect.REFUSE),
    # The end of a job the table never held (e.g. recorded before a GCS restart): found=False.
    (None, FinishJob): Edge(None, Effect.IGNORE),
    # The driver shut down or its raylet saw it exit: JobFinished, with the end time.
    (_RUNNING, FinishJob): Edge(_FINISHED, Effect.APPLY),
    # Idempotent (the driver and its raylet may both report the end): the first end time stays.
    (_FINISHED, FinishJob): Edge(_FINISHED, Effect.IGNORE),
}


@dataclass(frozen=True, slots=True)
class Applied:
    """What one command did: the job's state before and after, its record, the events."""

    before: JobState | None
    after: JobState | None
    job: JobInfo | None
    events: tuple[JobEvent, ...]


def _state(job: JobInfo | None) -> JobState | None:
    if job is None:
        return None
    return _FINISHED if job.is_dead else _RUNNING


class JobTable:
    """Every job the GCS knows, by job id, and the version of the last change.

    `sink`, when given, receives the events of every command as it is applied; `apply`
    returns them too.
    """

    def __init__(
        self,
        clock_ms: Callable[[], int],
        *,
        sink: Callable[[Sequence[JobEvent]], None] | None = None,
    ) -> None:
        self._clock_ms = clock_ms
        self._last_job_id = 0
        self._jobs: dict[int, JobInfo] = {}
        self._sink = sink
        self.version = 0

    @property
    def last_job_id(self) -> int:
        """The highest job id handed out (what a restarted GCS must not hand out again)."""
        return self._last_job_id

    def restore(self, jobs: Iterable[JobInfo], last_job_id: int) -> None:
        """Load the jobs a restarted GCS read back from its store."""
        for job in jobs:
            self._jobs[job.job_id] = job
            last_job_id = max(last_job_id, job.job_id)
        self._last_job_id = max(self._last_job_id, last_job_id)

    def next_job_id(self) -> int:
        """A job id never handed out before."""
        if self._last_job_id >= MAX_JOB_ID:
            raise FailedPrecondition(f"this cluster has used all {MAX_JOB_ID} job ids")
        self._last_job_id += 1
        return self._last_job_id

    def apply(self, cmd: JobCommand) -> Applied:
        """Validate `cmd`, look up its edge in TRANSITIONS, carry it out; return what changed."""
        job_id = cmd.job.job_id if isinstance(cmd, AddJob) else cmd.job_id
        if isinstance(cmd, AddJob) and not 1 <= job_id <= MAX_JOB_ID:
            raise InvalidArgument(f"job id must be in 1..{MAX_JOB_ID}, found {job_id}")
        current = self._jobs.get(job_id)
        before = _state(current)
        edge = TRANSITIONS[(before, type(cmd))]
        if edge.effect is Effect.REFUSE:
            assert current is not None
            raise AlreadyExists(f"job {current.job_id_hex} ({job_id}) is already recorded")
        if edge.effect is Effect.IGNORE:
            return Applied(before, before, current, ())
        event: JobEvent
        if isinstance(cmd, AddJob):
            stored = dataclasses.replace(
                cmd.job,
                start_time_ms=cmd.job.start_time_ms or self._clock_ms(),
                end_time_ms=0,
                is_dead=False,
            )
            self._last_job_id = max(self._last_job_id, job_id)
            self.version += 1
            event = JobAdded(self.version, stored)
        else:
            assert current is not None
            stored = dataclasses.replace(current, is_dead=True, end_time_ms=self._clock_ms())
            self.version += 1
            event = JobFinished(self.version, job_id, stored.end_time_ms)
        self._jobs[job_id] = stored
        assert _state(stored) is edge.to
        if self._sink is not None:
            self._sink((event,))
        return Applied(before, edge.to, stored, (event,))

    def snapshot(self) -> JobSnapshot:
        """Every job as of the current version."""
        return JobSnapshot(self.version, tuple(self.all_jobs()))

    # The table's original calls, kept for its callers: each is one command.

    def add(self, job: JobInfo) -> JobInfo:
        """Record a running job; return it as stored (start time filled in if 0)."""
        stored = self.apply(AddJob(job)).job
        assert stored is not None
        return stored

    def mark_finished(self, job_id: int) -> bool:
        """Mark the job finished now; False if it was never added. The first end time stays."""
        return self.apply(FinishJob(job_id)).before is not None

    def get(self, job_id: int) -> JobInfo | None:
        return self._jobs.get(job_id)

    def all_jobs(self) -> list[JobInfo]:
        """Jobs in job-id order."""
        return [self._jobs[job_id] for job_id in sorted(self._jobs)]
