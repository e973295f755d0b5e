"""Submitted jobs: the record the API server and a job's supervisor share.

A `JobRecord` is kept as JSON in the GCS internal KV (namespace `JOB_NAMESPACE`, key
`JOB_KEY_PREFIX` + submission id, as Ray keeps its job info), so it survives the API server
restarting. The server writes it first (PENDING) with the request's fields; the supervisor
(``rayops.dashboard.supervisor``) then owns it: RUNNING with its pid and the entrypoint's
process group, then a terminal state with the driver's exit code and the end time. Stop is
asked for through the record too (`stop_requested`), so a restarted server can still stop a job.

JSON field names are Ray's ``JobDetails`` names (``start_time``/``end_time`` in ms since the
epoch), plus rayops's own underscored ones the REST API never shows. This module imports
nothing of rayops: it is the contract between the server, the supervisor and the SDK.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

__all__ = [
    "DRIVER_SUBMISSION_PREFIX",
    "JOB_KEY_PREFIX",
    "JOB_NAMESPACE",
    "JOB_STATUSES",
    "TERMINAL_STATUSES",
    "JobRecord",
]

JOB_NAMESPACE = "job"
JOB_KEY_PREFIX = "_ray_internal_job_info_"
# + a driver's job id (hex) -> the submission id it is the entrypoint of, written by the
# driver's init() (RAYOPS_JOB_SUBMISSION_ID in its environment); see dashboard/driver_jobs.py.
DRIVER_SUBMISSION_PREFIX = "_rayops_driver_submission_"
JOB_STATUSES = ("PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED")
TERMINAL_STATUSES = frozenset({"STOPPED", "SUCCEEDED", "FAILED"})

# Fields the REST API shows, in Ray's JobDetails order; the rest are rayops's bookkeeping.
PUBLIC_FIELDS = (
    "type",
    "job_id",
    "submission_id",
    "driver_info",
    "status",
    "entrypoint",
    "message",
    "error_type",
    "start_time",
    "end_time",
    "metadata",
    "runtime_env",
    "driver_agent_http_address",
    "driver_node_id",
    "driver_exit_code",
    "entrypoint_num_cpus",
    "entrypoint_num_gpus",
    "entrypoint_memory",
    "entrypoint_resources",
)


@dataclass(frozen=True)
class JobRecord:
    submission_id: str
    entrypoint: str
    status: str = "PENDING"
    message: str | None = None
    error_type: str | None = None
    start_time: int | None = None  # ms since the epoch
    end_time: int | None = None
    metadata: dict[str, str] = field(default_factory=dict)
    runtime_env: dict[str, Any] = field(default_factory=dict)
    entrypoint_num_cpus: float | None = None
    entrypoint_num_gpus: float | None = None
    entrypoint_memory: int | None = None
    entrypoint_resources: dict[str, float] | None = None
    driver_exit_code: int | None = None
    driver_node_id: str | None = None
    driver_node_ip: str | None = None
    driver_pid: int | None = None  # the entrypoint's pid, also its process group id
    supervisor_pid: int | None = None
    stop_requested: bool = False
    log_path: str = ""

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    def with_(self, **changes: Any) -> JobRecord:
        return replace(self, **changes)

    def to_json(self) -> bytes:
        return json.dumps(asdict(self), sort_keys=True).encode()

    @staticmethod
    def from_json(raw: bytes) -> JobRecord:
        data = json.loads(raw)
        known = {f.name for f in fields(JobRecord)}
        # Additive evolution: fields a newer writer added are skipped, missing ones default.
        return JobRecord(**{k: v for k, v in data.items() if k in known})

    def details(self) -> dict[str, Any]:
        """Ray's ``JobDetails`` JSON of this job."""
        driver_info = None
        if self.driver_pid is not None:
            driver_info = {
                "id": self.submission_id,
                "node_ip_address": self.driver_node_ip or "",
                "pid": str(self.driver_pid),
            }
        out: dict[str, Any] = {
            "type": "SUBMISSION",
            "job_id": None,
            "driver_info": driver_info,
            "driver_agent_http_address": None,
        }
        for name in PUBLIC_FIELDS:
            if name not in out:
                out[name] = getattr(self, name)
        return {name: out[name] for name in PUBLIC_FIELDS}
