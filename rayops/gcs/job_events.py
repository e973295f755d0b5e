"""The job table's commands (what may change it) and change events (what did change).

Commands come in from the GCS's job handlers (a driver starts: `AddJob`; it ends, or its
raylet saw it exit: `FinishJob`); `rayops.gcs.job_table.JobTable.apply` decides and returns
the events, each stamped with the table's next version. The events are the event spine's
"jobs" channel (`rayops.gcs.pubsub`): the GCS's placement groups follow it in process (a
job's groups die with it) and any subscriber (the dashboard, a test) over gRPC.

Plain frozen dataclasses with no I/O; their protobuf form (`JobEvent` in
`protocol/gcs_pubsub.proto`) is converted in `rayops.gcs.codec` only.
"""

from __future__ import annotations

from dataclasses import dataclass

from rayops.gcs.types import JobInfo

__all__ = [
    "AddJob",
    "FinishJob",
    "JobAdded",
    "JobCommand",
    "JobEvent",
    "JobFinished",
    "JobSnapshot",
]


# Commands.


@dataclass(frozen=True, slots=True)
class AddJob:
    """A driver started: record its job as RUNNING (start time filled in when 0)."""

    job: JobInfo


@dataclass(frozen=True, slots=True)
class FinishJob:
    """The job's driver is gone (it shut down, or its raylet saw the process exit)."""

    job_id: int


JobCommand = AddJob | FinishJob


# Events. `version` is the table's version right after the change: strictly increasing, one
# per event, so a subscriber that saw version v needs exactly the events after v.


@dataclass(frozen=True, slots=True)
class JobAdded:
    """A job is RUNNING with this record."""

    version: int
    job: JobInfo


@dataclass(frozen=True, slots=True)
class JobFinished:
    """A RUNNING job turned FINISHED at `end_time_ms`; it never runs again."""

    version: int
    job_id: int
    end_time_ms: int


JobEvent = JobAdded | JobFinished


@dataclass(frozen=True, slots=True)
class JobSnapshot:
    """Every job the table holds, in job-id order, as of `version`."""

    version: int
    jobs: tuple[JobInfo, ...]
