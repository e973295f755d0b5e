"""The Jobs API's parts without processes: submission checks, ids, the job record, the token
check, and the SDK's value types read from the record's JSON."""

from __future__ import annotations

import logging
import re
from typing import Any

import pytest

from rayops.dashboard.auth import HttpTokenCheck
from rayops.dashboard.jobs import BadRequest, new_submission_id, parse_submit
from rayops.job_submission import JobDetails, JobInfo, JobStatus, JobType
from rayops.protocol.job_messages import PUBLIC_FIELDS, JobRecord


def test_submission_ids_have_rays_form() -> None:
    ids = {new_submission_id() for _ in range(200)}
    assert len(ids) == 200
    for sid in ids:
        assert re.fullmatch(r"raysubmit_[A-Za-z0-9]{16}", sid), sid
        assert not set(sid[len("raysubmit_") :]) & set("IloO0")


def test_a_good_submission_is_normalized() -> None:
    got = parse_submit(
        {
            "entrypoint": "python x.py",
            "job_id": "old-name",
            "runtime_env": {"env_vars": {"A": "1"}, "working_dir": "gcs://_ray_pkg_ab12.zip"},
            "metadata": {"k": "v"},
            "entrypoint_num_cpus": 1,
            "entrypoint_memory": 2**20,
            "entrypoint_resources": {"accel": 0.5},
        }
    )
    assert got["submission_id"] == "old-name"  # Ray's deprecated job_id still names it
    assert got["runtime_env"]["working_dir"] == "gcs://_ray_pkg_ab12.zip"
    assert got["entrypoint_num_gpus"] is None and got["entrypoint_resources"] == {"accel": 0.5}


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ([], "JSON object"),
        ({}, "'entrypoint'"),
        ({"entrypoint": "   "}, "'entrypoint'"),
        ({"entrypoint": "x", "submission_id": "a b"}, "'submission_id'"),
        ({"entrypoint": "x", "submission_id": "a", "job_id": "b"}, "'job_id'"),
        ({"entrypoint": "x", "metadata": {"k": 1}}, "'metadata'"),
        ({"entrypoint": "x", "entrypoint_num_cpus": True}, "'entrypoint_num_cpus'"),
        ({"entrypoint": "x", "entrypoint_num_gpus": -0.5}, "'entrypoint_num_gpus'"),
        ({"entrypoint": "x", "entrypoint_memory": 1.5}, "'entrypoint_memory'"),
        ({"entrypoint": "x", "entrypoint_resources": {"a": "1"}}, "'entrypoint_resources'"),
        ({"entrypoint": "x", "entrypoint_resources": {"GPU": 1}}, "entrypoint_num_gpus"),
        ({"entrypoint": "x", "runtime_env": {"conda": "env"}}, "'conda'"),
        ({"entrypoint": "x", "runtime_env": {"working_dir": "/tmp"}}, "runtime_env.working_dir"),
        ({"entrypoint": "x", "runtime_env": {"py_modules": ["/tmp"]}}, "py_modules"),
        ({"entrypoint": "x", "runtime_env": {"pip": ["requests"]}}, "'runtime_env.pip'"),
        ({"entrypoint": "x", "runtime_env": {"uv": ["requests"]}}, "'runtime_env.uv'"),
        ({"entrypoint": "x", "extra": 1}, "'extra'"),
    ],
)
def test_a_bad_submission_names_its_field(body: Any, named: str) -> None:
    with pytest.raises(BadRequest, match=re.escape(named)):
        parse_submit(body)


def test_the_record_round_trips_and_shows_rays_fields() -> None:
    rec = JobRecord(submission_id="s", entrypoint="e", metadata={"a": "b"}, driver_pid=12)
    again = JobRecord.from_json(rec.to_json())
    assert again == rec
    # Fields a newer writer added are skipped (additive evolution).
    raw = rec.to_json()[:-1] + b', "from_the_future": 1}'
    assert JobRecord.from_json(raw) == rec
    details = rec.details()
    assert tuple(details) == PUBLIC_FIELDS
    assert details["type"] == "SUBMISSION" and details["driver_info"]["pid"] == "12"
    assert "stop_requested" not in details and "log_path" not in details
    sdk = JobDetails.from_json(details)
    assert sdk.status is JobStatus.PENDING and sdk.type is JobType.SUBMISSION
    assert sdk.dict()["status"] == "PENDING" and sdk.dict()["driver_info"]["pid"] == "12"
    assert not rec.terminal and rec.with_(status="STOPPED").terminal


def test_job_status_and_info_as_rays() -> None:
    assert [s.value for s in JobStatus] == ["PENDING", "RUNNING", "STOPPED", "SUCCEEDED", "FAILED"]
    assert [s.is_terminal() for s in JobStatus] == [False, False, True, True, True]
    assert str(JobStatus.RUNNING) == "RUNNING" and JobStatus.RUNNING == "RUNNING"
    info = JobInfo(status=JobStatus.FAILED, entrypoint="e", driver_exit_code=3)
    assert JobInfo.from_json(info.to_json()) == info


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_token_check_credentials_and_rate_limited_log(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    check = HttpTokenCheck("s3cret", clock=clock)
    ok = [
        ({"Authorization": "Bearer s3cret"}, {}),
        ({"Authorization": "bearer s3cret"}, {}),
        ({"x-ray-authorization": "Bearer s3cret"}, {}),
        ({"x-ray-authorization": "s3cret"}, {}),
        ({}, {"ray-authentication-token": "s3cret"}),
    ]
    for headers, cookies in ok:
        assert check.allows(headers, cookies, "peer", "/p"), (headers, cookies)
    bad = [
        ({}, {}),
        ({"Authorization": "s3cret"}, {}),  # Authorization needs the Bearer scheme
        ({"Authorization": "Bearer s3cre"}, {}),
        ({"x-ray-authorization": "Bearer nope"}, {}),
        ({}, {"ray-authentication-token": "Bearer s3cret"}),
    ]
    with caplog.at_level(logging.WARNING, logger="rayops.dashboard.auth"):
        for headers, cookies in bad:
            assert not check.allows(headers, cookies, "peer", "/p"), (headers, cookies)
        assert check.refused == len(bad)
        assert len(caplog.records) == 1  # one line per 10 s, however many refusals
        clock.now = 10.0
        assert not check.allows({}, {}, "peer", "/q")
        # The next line carries the count since the last one: 4 held back + this one.
        assert len(caplog.records) == 2 and "refused 5 request" in caplog.records[1].message
    assert HttpTokenCheck.presented({"Authorization": "x"}, {})
    assert not HttpTokenCheck.presented({}, {})
