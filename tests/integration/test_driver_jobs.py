"""Drivers started by hand appear in the Jobs list (``GET /api/jobs/``, the SDK's
``list_jobs``, ``rayops job list``) as Ray's ``DRIVER`` entries; a submitted job's own driver
is shown once, as its submission, with its ``job_id``. Real processes on 127.0.0.1."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.job_submission import JobDetails, JobSubmissionClient
from rayops.testing.cluster import Cluster

RAYOPS = str(Path(sys.executable).with_name("rayops"))

DRIVER = """
import os, sys, time
import rayops
rayops.init(address=sys.argv[1], _temp_dir=sys.argv[2])
print("JOB", rayops.get_runtime_context().get_job_id(), flush=True)
while not os.path.exists(sys.argv[3]):
    time.sleep(0.05)
rayops.shutdown()
"""


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("drivers")), head_cpus=1)
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def client(cluster: Cluster) -> JobSubmissionClient:
    url = "http://" + cluster.head.started.record.dashboard_url
    return JobSubmissionClient(url, headers={"Authorization": f"Bearer {cluster.token}"})


def _by_id(client: JobSubmissionClient, job_id: str) -> JobDetails:
    found = [j for j in client.list_jobs() if j.job_id == job_id]
    assert len(found) == 1, [j.dict() for j in client.list_jobs()]
    return found[0]


def _wait(pred: object, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not pred():  # type: ignore[operator]
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def test_hand_started_driver_is_listed_running_then_succeeded(
    cluster: Cluster, client: JobSubmissionClient, tmp_path: Path
) -> None:
    release = tmp_path / "release"
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    proc = subprocess.Popen(
        [sys.executable, str(script), cluster.address, cluster.head.temp_dir, str(release)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("JOB "), line
        job_id = line.split()[1]
        job = _by_id(client, job_id)
        assert job.type.value == "DRIVER"
        assert job.status.value == "RUNNING"
        assert job.submission_id is None
        assert job.driver_info is not None
        assert job.driver_info.id == job_id
        assert job.driver_info.pid == str(proc.pid)
        assert job.driver_info.node_ip_address == "127.0.0.1"
        assert str(script) in job.entrypoint
        assert job.start_time and job.end_time is None
        # Found by its job id too, as Ray's get_job_info finds a driver.
        assert client.get_job_info(job_id).driver_info.pid == str(proc.pid)  # type: ignore[union-attr]
        release.touch()
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()
    _wait(lambda: _by_id(client, job_id).status.value == "SUCCEEDED", "the driver's end")
    job = _by_id(client, job_id)
    assert job.end_time is not None and job.end_time >= job.start_time  # type: ignore[operator]
    # The CLI renders the same list.
    env = {**os.environ, "RAYOPS_TOKEN_FILE": cluster.token_file}
    url = "http://" + cluster.head.started.record.dashboard_url
    out = subprocess.run(
        [RAYOPS, "job", "list", "--address", url], env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert f"'job_id': '{job_id}'" in out.stdout and "'type': 'DRIVER'" in out.stdout


def test_submitted_jobs_driver_is_listed_once_as_its_submission(
    cluster: Cluster, client: JobSubmissionClient, tmp_path: Path
) -> None:
    entry = tmp_path / "entry.py"
    entry.write_text(
        "import rayops\nrayops.init()\nprint('JOB', rayops.get_runtime_context().get_job_id())\n"
    )
    sid = client.submit_job(entrypoint=f"python {entry}")
    _wait(lambda: client.get_job_status(sid).is_terminal(), "the job's end")
    assert client.get_job_status(sid).value == "SUCCEEDED", client.get_job_logs(sid)
    job_id = client.get_job_logs(sid).split("JOB ", 1)[1].split()[0]
    listed = client.list_jobs()
    mine = [j for j in listed if j.job_id == job_id]
    assert len(mine) == 1, [j.dict() for j in listed]
    assert mine[0].type.value == "SUBMISSION" and mine[0].submission_id == sid
    # No job supervisor's internal driver shows up as a job.
    assert all(j.entrypoint and "rayops.dashboard.supervisor" not in j.entrypoint for j in listed)
