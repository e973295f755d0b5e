"""Drivers started by hand in the Jobs list: Ray's ``type: "DRIVER"`` entries.

``GET /api/jobs/`` lists submitted jobs (their records in the GCS KV) and every other driver
the GCS job table holds: a script that called ``rayops.init(address=...)`` itself. A submitted
job's entrypoint is a driver too; it says so at ``init()`` by writing its job id's submission
id under `DRIVER_SUBMISSION_PREFIX` (as Ray's driver carries ``job_submission_id`` in its job
config), so it is shown once, as its submission, with ``job_id`` filled in. Drivers in a
rayops-internal namespace (a job supervisor holding entrypoint resources) are not shown.

Status as Ray's: RUNNING while the table holds the driver alive, SUCCEEDED once it ended (the
GCS records the end of a driver, not how it ended, and neither does Ray's).

`driver_details` is a pure function (job table rows and the submission map in, Ray's
``JobDetails`` JSON out); `read_driver_jobs` is its shell.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from rayops.gcs.types import JobInfo
from rayops.protocol.job_messages import (
    DRIVER_SUBMISSION_PREFIX,
    JOB_NAMESPACE,
    PUBLIC_FIELDS,
)

__all__ = ["INTERNAL_NAMESPACE_PREFIXES", "driver_details", "read_driver_jobs"]

INTERNAL_NAMESPACE_PREFIXES = ("_rayops_", "_ray_internal_")


def driver_details(
    table: Iterable[JobInfo], submission_of: Mapping[str, str]
) -> list[dict[str, Any]]:
    """Ray's JobDetails JSON for each driver started by hand, in job-id order."""
    out = []
    for job in sorted(table, key=lambda j: j.job_id):
        hex_id = job.job_id_hex
        if hex_id in submission_of or job.namespace.startswith(INTERNAL_NAMESPACE_PREFIXES):
            continue
        details: dict[str, Any] = dict.fromkeys(PUBLIC_FIELDS)
        details.update(
            type="DRIVER",
            job_id=hex_id,
            submission_id=None,
            driver_info={
                "id": hex_id,
                "node_ip_address": job.driver_ip,
                "pid": str(job.driver_pid),
            },
            status="SUCCEEDED" if job.is_dead else "RUNNING",
            entrypoint=job.entrypoint,
            message=None,
            start_time=job.start_time_ms or None,
            end_time=job.end_time_ms or None,
            metadata={},
            runtime_env={},
        )
        out.append(details)
    return out


async def read_driver_jobs(gcs: Any) -> tuple[list[JobInfo], dict[str, str]]:
    """The GCS job table and the job-id -> submission-id map the submitted drivers wrote."""
    table = await gcs.get_all_jobs()
    keys = await gcs.kv_keys(DRIVER_SUBMISSION_PREFIX.encode(), namespace=JOB_NAMESPACE)
    submission_of: dict[str, str] = {}
    if keys:
        got = await gcs.kv_multi_get(keys, namespace=JOB_NAMESPACE)
        for key, value in got.items():
            submission_of[key.decode()[len(DRIVER_SUBMISSION_PREFIX) :]] = value.decode()
    return table, submission_of
