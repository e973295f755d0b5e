"""Drivers started by hand as Ray's DRIVER job entries: a pure function of the GCS job table
and the submission map (a table of cases, no processes)."""

from __future__ import annotations

from rayops.dashboard.driver_jobs import driver_details
from rayops.gcs.types import JobInfo


def _job(job_id: int, **kw: object) -> JobInfo:
    fields: dict[str, object] = {"driver_pid": 100 + job_id, "driver_ip": "10.0.0.1"}
    fields.update(kw)
    return JobInfo(job_id=job_id, **fields)  # type: ignore[arg-type]


def test_hand_started_drivers_only_in_job_id_order() -> None:
    table = [
        _job(3, entrypoint="python c.py", start_time_ms=30, end_time_ms=35, is_dead=True),
        _job(1, entrypoint="python a.py", start_time_ms=10),
        _job(2, entrypoint="python sub.py", start_time_ms=20),  # a submission's driver
        _job(4, namespace="_rayops_jobs"),  # a job supervisor holding entrypoint resources
    ]
    out = driver_details(table, {"02000000": "raysubmit_x"})
    assert [(d["job_id"], d["status"]) for d in out] == [
        ("01000000", "RUNNING"),
        ("03000000", "SUCCEEDED"),
    ]
    first = out[0]
    assert first["type"] == "DRIVER" and first["submission_id"] is None
    assert first["driver_info"] == {"id": "01000000", "node_ip_address": "10.0.0.1", "pid": "101"}
    assert (first["entrypoint"], first["start_time"], first["end_time"]) == (
        "python a.py",
        10,
        None,
    )
    assert (out[1]["start_time"], out[1]["end_time"]) == (30, 35)
    # Every JobDetails field is present, as the Jobs SDK's JobDetails.from_json expects.
    from rayops.protocol.job_messages import PUBLIC_FIELDS

    assert all(list(d) == list(PUBLIC_FIELDS) for d in out)
