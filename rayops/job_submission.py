"""Ray's ``ray.job_submission``: the Jobs SDK (see ``rayops/dashboard/``)."""

from __future__ import annotations

from rayops.dashboard.client import JobSubmissionClient
from rayops.dashboard.models import (
    DriverInfo,
    JobDetails,
    JobErrorType,
    JobInfo,
    JobStatus,
    JobType,
)

__all__ = [
    "DriverInfo",
    "JobDetails",
    "JobErrorType",
    "JobInfo",
    "JobStatus",
    "JobSubmissionClient",
    "JobType",
]
