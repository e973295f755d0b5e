"""The Jobs SDK's value types, as Ray's ``ray.job_submission`` names them.

``JobStatus`` (a str enum with ``is_terminal``), ``JobInfo`` (what ``get_job_info`` returned
before Ray had JobDetails), ``JobDetails`` (a job as ``GET /api/jobs/{id}`` shows it),
``DriverInfo`` and ``JobType``. Plain dataclasses: no pydantic needed to read a job.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from enum import Enum, StrEnum
from typing import Any

__all__ = ["DriverInfo", "JobDetails", "JobErrorType", "JobInfo", "JobStatus", "JobType"]


class JobStatus(StrEnum):
    """A job's state (Ray's values)."""

    #: Submitted, not started yet (waiting for its entrypoint resources, or its supervisor).
    PENDING = "PENDING"
    #: Its entrypoint runs.
    RUNNING = "RUNNING"
    #: Stopped by a user.
    STOPPED = "STOPPED"
    #: Its entrypoint exited with code 0.
    SUCCEEDED = "SUCCEEDED"
    #: Its entrypoint exited with another code, or it could not start.
    FAILED = "FAILED"

    def is_terminal(self) -> bool:
        return self.value in {"STOPPED", "SUCCEEDED", "FAILED"}


class JobErrorType(StrEnum):
    """Why a job failed (``error_type``), Ray's values."""

    RUNTIME_ENV_SETUP_FAILURE = "RUNTIME_ENV_SETUP_FAILURE"
    JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE = "JOB_SUPERVISOR_ACTOR_UNSCHEDULABLE"
    JOB_SUPERVISOR_ACTOR_START_TIMEOUT = "JOB_SUPERVISOR_ACTOR_START_TIMEOUT"
    JOB_SUPERVISOR_ACTOR_START_FAILURE = "JOB_SUPERVISOR_ACTOR_START_FAILURE"
    JOB_SUPERVISOR_ACTOR_DIED = "JOB_SUPERVISOR_ACTOR_DIED"
    JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE = "JOB_SUPERVISOR_ACTOR_UNKNOWN_FAILURE"
    JOB_ENTRYPOINT_COMMAND_ERROR = "JOB_ENTRYPOINT_COMMAND_ERROR"
    JOB_ENTRYPOINT_COMMAND_START_ERROR = "JOB_ENTRYPOINT_COMMAND_START_ERROR"


class JobType(StrEnum):
    SUBMISSION = "SUBMISSION"
    DRIVER = "DRIVER"


@dataclass
class DriverInfo:
    id: str
    node_ip_address: str
    pid: str


@dataclass
class JobInfo:
    """A submitted job's status and settings (Ray's JobInfo)."""

    status: JobStatus
    entrypoint: str
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] | None = None
    runtime_env: dict[str, Any] | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None
    driver_agent_http_address: str | None = None
    driver_node_id: str | None = None
    driver_exit_code: int | None = None

    def to_json(self) -> dict[str, Any]:
        """A JSON-able dict (Ray's JobInfo.to_json)."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["status"] = JobStatus(self.status).value
        return out

    @classmethod
    def from_json(cls, json_dict: dict[str, Any]) -> JobInfo:
        known = {f.name for f in fields(cls)}
        kwargs = {k: v for k, v in json_dict.items() if k in known}
        kwargs["status"] = JobStatus(kwargs["status"])
        return cls(**kwargs)


@dataclass
class JobDetails:
    """A job as the Jobs REST API shows it (Ray's JobDetails)."""

    type: JobType
    status: JobStatus
    entrypoint: str
    job_id: str | None = None
    submission_id: str | None = None
    driver_info: DriverInfo | None = None
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None
    end_time: int | None = None
    metadata: dict[str, str] | None = field(default_factory=dict)
    runtime_env: dict[str, Any] | None = field(default_factory=dict)
    driver_agent_http_address: str | None = None
    driver_node_id: str | None = None
    driver_exit_code: int | None = None
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None

    @staticmethod
    def from_json(data: dict[str, Any]) -> JobDetails:
        known = {f.name for f in fields(JobDetails)}
        kwargs = {k: v for k, v in data.items() if k in known}
        kwargs["type"] = JobType(kwargs.get("type") or "SUBMISSION")
        kwargs["status"] = JobStatus(kwargs["status"])
        if kwargs.get("driver_info"):
            kwargs["driver_info"] = DriverInfo(**kwargs["driver_info"])
        return JobDetails(**kwargs)

    def dict(self) -> dict[str, Any]:
        """Ray's JobDetails is a pydantic model; ``.dict()`` is what its users call."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Enum):
                value = value.value
            elif isinstance(value, DriverInfo):
                value = vars(value).copy()
            out[f.name] = value
        return out
