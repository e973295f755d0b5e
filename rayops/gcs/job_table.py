"""The GCS job table: the cluster's job counter and a record per driver.

Pure state and decisions, no I/O; time comes from an injected clock. Job ids are 1, 2, 3, ...
per cluster and never reused: `next_job_id` only moves forward, and a job added with an id the
counter has not reached yet (e.g. recorded before a GCS restart) moves the counter past it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from rayops.gcs.errors import AlreadyExists, FailedPrecondition, InvalidArgument
from rayops.gcs.types import MAX_JOB_ID, JobInfo

__all__ = ["JobTable"]


class JobTable:
    """Every job the GCS knows, by job id."""

    def __init__(self, clock_ms: Callable[[], int]) -> None:
        self._clock_ms = clock_ms
        self._last_job_id = 0
        self._jobs: dict[int, JobInfo] = {}

    def next_job_id(self) -> int:
        """A job id never handed out before."""
        if self._last_job_id >= MAX_JOB_ID:
            raise FailedPrecondition(f"this cluster has used all {MAX_JOB_ID} job ids")
        self._last_job_id += 1
        return self._last_job_id

    def add(self, job: JobInfo) -> JobInfo:
        """Record a running job; return it as stored (start time filled in if 0)."""
        if not 1 <= job.job_id <= MAX_JOB_ID:
            raise InvalidArgument(f"job id must be in 1..{MAX_JOB_ID}, found {job.job_id}")
        if job.job_id in self._jobs:
            raise AlreadyExists(f"job {job.job_id_hex} ({job.job_id}) is already recorded")
        stored = dataclasses.replace(
            job,
            start_time_ms=job.start_time_ms or self._clock_ms(),
            end_time_ms=0,
            is_dead=False,
        )
        self._jobs[job.job_id] = stored
        self._last_job_id = max(self._last_job_id, job.job_id)
        return stored

    def mark_finished(self, job_id: int) -> bool:
        """Mark the job finished now; False if it was never added. The first end time stays."""
        job = self._jobs.get(job_id)
        if job is None:
            return False
        if not job.is_dead:
            self._jobs[job_id] = dataclasses.replace(
                job, is_dead=True, end_time_ms=self._clock_ms()
            )
        return True

    def get(self, job_id: int) -> JobInfo | None:
        return self._jobs.get(job_id)

    def all_jobs(self) -> list[JobInfo]:
        """Jobs in job-id order."""
        return [self._jobs[job_id] for job_id in sorted(self._jobs)]
