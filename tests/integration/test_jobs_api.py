"""The head's API server and Jobs, with real processes and real HTTP on 127.0.0.1: the token
on every endpoint, Ray's REST paths through raw HTTP (aiohttp), the SDK and the CLI, stop of a
job that ignores SIGTERM, logs followed while a job runs, a job using the cluster from inside,
entrypoint resources and runtime_env."""

from __future__ import annotations

import asyncio
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import psutil
import pytest

from rayops.exceptions import AuthenticationError
from rayops.job_submission import JobDetails, JobStatus, JobSubmissionClient
from rayops.testing.cluster import Cluster

RAYOPS = str(Path(sys.executable).with_name("rayops"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("jobs")), head_cpus=2)
    yield c
    c.shutdown()


@pytest.fixture(scope="module")
def url(cluster: Cluster) -> str:
    return "http://" + cluster.head.started.record.dashboard_url


@pytest.fixture(scope="module")
def client(cluster: Cluster, url: str) -> JobSubmissionClient:
    return JobSubmissionClient(url, headers={"Authorization": f"Bearer {cluster.token}"})


def _wait_terminal(client: JobSubmissionClient, sid: str, timeout: float = 30.0) -> JobDetails:
    deadline = time.monotonic() + timeout
    while True:
        info = client.get_job_info(sid)
        if info.status.is_terminal():
            return info
        assert time.monotonic() < deadline, f"job {sid} still {info.status} after {timeout} s"
        time.sleep(0.05)


def _http(method: str, url: str, **kw: Any) -> tuple[int, Any]:
    async def go() -> tuple[int, Any]:
        async with aiohttp.ClientSession() as s, s.request(method, url, **kw) as r:
            body = await r.read()
            try:
                return r.status, json.loads(body)
            except ValueError:
                return r.status, body.decode()

    return asyncio.run(go())


def test_unauthenticated_submit_is_refused_and_nothing_runs(
    cluster: Cluster, url: str, client: JobSubmissionClient, tmp_path: Path
) -> None:
    marker = tmp_path / "pwned"
    body = {"entrypoint": f"touch {marker}"}
    for headers, code in (
        ({}, 401),
        ({"Authorization": "Bearer wrong"}, 403),
        ({"x-ray-authorization": "Bearer wrong"}, 403),
        ({"Cookie": "ray-authentication-token=wrong"}, 403),
    ):
        status, answer = _http("POST", url + "/api/jobs/", json=body, headers=headers)
        assert status == code, (headers, status, answer)
        assert "cluster token" in answer["error"]
    for path in ("/api/jobs/", "/api/version", "/api/packages/gcs/_ray_pkg_ab.zip", "/metrics"):
        assert _http("GET", url + path)[0] == 401, path
    assert _http("GET", url + "/api/gcs_healthz") == (200, "success")
    # The server runs jobs promptly: one that was let in has finished, the refused never ran.
    sid = client.submit_job(entrypoint="true")
    assert _wait_terminal(client, sid).status == JobStatus.SUCCEEDED
    assert not marker.exists()
    assert all(j.entrypoint != body["entrypoint"] for j in client.list_jobs())
    auth = {"Authorization": f"Bearer {cluster.token}"}
    _, metrics = _http("GET", url + "/metrics", headers=auth)
    refused = [ln for ln in metrics.splitlines() if ln.startswith("rayops_dashboard_refused")]
    assert refused and float(refused[0].split()[-1]) >= 8, refused
    client.delete_job(sid)


def test_job_lifecycle_over_raw_http(cluster: Cluster, url: str) -> None:
    auth = {"Authorization": f"Bearer {cluster.token}"}
    status, version = _http("GET", url + "/api/version", headers=auth)
    assert status == 200 and version["version"] == "4" and version["session_name"]
    body = {
        "entrypoint": "echo hello $GREETING",
        "submission_id": "raw-1",
        "runtime_env": {"env_vars": {"GREETING": "from-env"}},
        "metadata": {"team": "a"},
    }
    status, answer = _http("POST", url + "/api/jobs/", json=body, headers=auth)
    assert status == 200 and answer == {"submission_id": "raw-1", "job_id": "raw-1"}
    # Ray's x-ray-authorization header and the page's cookie are accepted too.
    deadline = time.monotonic() + 30
    while True:
        status, info = _http(
            "GET", url + "/api/jobs/raw-1", headers={"x-ray-authorization": cluster.token}
        )
        assert status == 200
        if info["status"] in ("SUCCEEDED", "FAILED", "STOPPED"):
            break
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert info["status"] == "SUCCEEDED", info
    assert info["type"] == "SUBMISSION" and info["driver_exit_code"] == 0
    assert info["metadata"] == {"team": "a"}
    assert info["start_time"] <= info["end_time"]
    cookie = {"Cookie": f"ray-authentication-token={cluster.token}"}
    status, logs = _http("GET", url + "/api/jobs/raw-1/logs", headers=cookie)
    assert (status, logs) == (200, {"logs": "hello from-env\n"})
    status, jobs = _http("GET", url + "/api/jobs/", headers=auth)
    assert "raw-1" in [j["submission_id"] for j in jobs]

    # Bad requests: 4xx with a JSON message naming the field.
    for bad, field in (
        ({**body}, "submission_id raw-1 already exists"),
        ({"entrypoint": ""}, "'entrypoint'"),
        ({"entrypoint": "true", "entrypoint_num_cpus": -1}, "'entrypoint_num_cpus'"),
        ({"entrypoint": "true", "entrypoint_resources": {"CPU": 1}}, "'entrypoint_resources'"),
        ({"entrypoint": "true", "colour": 1}, "'colour'"),
        ({"entrypoint": "true", "runtime_env": {"conda": "x"}}, "'conda'"),
        ({"entrypoint": "true", "runtime_env": {"pip": ["x"]}}, "'runtime_env.pip'"),
        ({"entrypoint": "true", "runtime_env": {"working_dir": "/etc"}}, "runtime_env.working_dir"),
    ):
        status, answer = _http("POST", url + "/api/jobs/", json=bad, headers=auth)
        assert status == 400 and field in answer["message"], (bad, answer)
    status, answer = _http("POST", url + "/api/jobs/", data=b"{nope", headers=auth)
    assert status == 400 and "not valid JSON" in answer["message"]

    assert _http("POST", url + "/api/jobs/raw-1/stop", headers=auth) == (200, {"stopped": False})
    assert _http("DELETE", url + "/api/jobs/raw-1", headers=auth) == (200, {"deleted": True})
    status, answer = _http("GET", url + "/api/jobs/raw-1", headers=auth)
    assert status == 404 and "raw-1" in answer["message"]


def test_stop_kills_the_process_group_after_the_grace_period(
    client: JobSubmissionClient, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    sid = client.submit_job(
        entrypoint=f"trap '' TERM; sleep 300 & echo $! > {pidfile}; wait",
        submission_id="stubborn",
    )
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, client.get_job_info(sid)
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    info = client.get_job_info(sid)
    assert info.status == JobStatus.RUNNING and info.driver_info is not None
    leader = int(info.driver_info.pid)
    t0 = time.monotonic()
    assert client.stop_job(sid) is True
    info = _wait_terminal(client, sid)
    took = time.monotonic() - t0
    assert info.status == JobStatus.STOPPED, info
    assert took >= 2.5, f"stopped after {took:.1f} s: SIGTERM was not ignored?"
    for pid in (leader, grandchild):
        assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == "zombie", pid
    client.delete_job(sid)


def test_logs_are_followed_while_the_job_runs(client: JobSubmissionClient, tmp_path: Path) -> None:
    go = tmp_path / "go"
    sid = client.submit_job(
        entrypoint=f"echo first; while [ ! -e {go} ]; do sleep 0.05; done; echo second"
    )

    async def follow() -> list[str]:
        seen: list[str] = []
        async for chunk in client.tail_job_logs(sid):
            seen.append(chunk)
            if "first" in "".join(seen) and not go.exists():
                # The job is still running (it waits for this file): the tail streams.
                assert client.get_job_status(sid) == JobStatus.RUNNING
                go.touch()
        return seen

    text = "".join(asyncio.run(asyncio.wait_for(follow(), 30)))
    assert text == "first\nsecond\n"
    assert _wait_terminal(client, sid).status == JobStatus.SUCCEEDED
    assert client.get_job_logs(sid) == "first\nsecond\n"


DRIVER = """
import rayops
rayops.init()

@rayops.remote
def f(x):
    return x + 1

print("result", rayops.get(f.remote(41)))
print("cpus_free", rayops.available_resources().get("CPU", 0))
"""


def test_a_job_uses_the_cluster_and_holds_its_entrypoint_resources(
    client: JobSubmissionClient, tmp_path: Path
) -> None:
    script = tmp_path / "driver.py"
    script.write_text(DRIVER)
    sid = client.submit_job(entrypoint=f"python {script}", entrypoint_num_cpus=1)
    info = _wait_terminal(client, sid, timeout=60)
    logs = client.get_job_logs(sid)
    assert info.status == JobStatus.SUCCEEDED, (info, logs)
    assert "result 42" in logs
    # 2 CPUs on the head, 1 held for the entrypoint while it ran.
    assert "cpus_free 1.0" in logs, logs
    assert info.entrypoint_num_cpus == 1
    # A request the head can never meet fails at once, naming the field.
    sid2 = client.submit_job(entrypoint="true", entrypoint_resources={"unobtainium": 1})
    info2 = _wait_terminal(client, sid2, timeout=60)
    assert info2.status == JobStatus.FAILED
    assert "entrypoint_resources['unobtainium']" in (info2.message or "")
    for s in (sid, sid2):
        client.delete_job(s)


def test_sdk_errors_and_token(cluster: Cluster, url: str, client: JobSubmissionClient) -> None:
    assert client.get_version() == "4"
    with pytest.raises(AuthenticationError, match="refused the cluster token"):
        JobSubmissionClient(url, headers={"Authorization": "Bearer nope"})
    with pytest.raises(RuntimeError, match=r"404.*no-such-job"):
        client.get_job_status("no-such-job")
    with pytest.raises(NotImplementedError, match="create_cluster_if_needed"):
        JobSubmissionClient(url, create_cluster_if_needed=True)


def _cli(cluster: Cluster, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "RAYOPS_API_SERVER_ADDRESS": "http://" + cluster.head.started.record.dashboard_url,
        "RAYOPS_TOKEN_FILE": cluster.token_file,
    }
    return subprocess.run(
        [RAYOPS, "job", *args], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_cli_job_lifecycle(cluster: Cluster, tmp_path: Path) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "hello.txt").write_text("hello from the working dir\n")
    r = _cli(
        cluster,
        "submit",
        "--submission-id",
        "cli-1",
        "--working-dir",
        str(wd),
        "--runtime-env-json",
        '{"env_vars": {"WHO": "cli"}}',
        "--metadata-json",
        '{"k": "v"}',
        "--",
        "cat hello.txt; python -c 'import os; print(os.environ[\"WHO\"])'",
    )
    assert r.returncode == 0, r.stderr + r.stdout
    assert "Job 'cli-1' submitted successfully" in r.stdout
    assert "hello from the working dir\ncli\n" in r.stdout
    assert "Job 'cli-1' succeeded" in r.stdout
    r = _cli(cluster, "status", "cli-1")
    assert r.returncode == 0 and "Status for job 'cli-1': SUCCEEDED" in r.stdout
    r = _cli(cluster, "logs", "cli-1")
    assert r.stdout == "hello from the working dir\ncli\n"
    r = _cli(cluster, "list")
    assert r.returncode == 0 and "'submission_id': 'cli-1'" in r.stdout

    r = _cli(cluster, "submit", "--", "python", "-c", "import sys; print(1); sys.exit(3)")
    assert r.returncode == 1 and "failed" in r.stdout and "exit code 3" in r.stderr

    r = _cli(cluster, "submit", "--no-wait", "--submission-id", "cli-2", "--", "sleep", "300")
    assert r.returncode == 0 and "Tailing" not in r.stdout
    r = _cli(cluster, "stop", "cli-2")
    assert r.returncode == 0 and "Job 'cli-2' was stopped" in r.stdout, r.stdout + r.stderr
    r = _cli(cluster, "logs", "--follow", "cli-2")
    assert r.returncode == 0

    for args, needle in (
        (("status", "nope"), "404"),
        (("delete", "nope"), "404"),
        (
            (
                "submit",
                "--",
            ),
            "no entrypoint",
        ),
        (("submit", "--submission-id", "cli-1", "--", "true"), "already exists"),
        (("submit", "--runtime-env-json", "[1]", "--", "true"), "must be a JSON object"),
        (("submit", "--entrypoint-num-gpus", "-1", "--", "true"), "--entrypoint-num-gpus"),
    ):
        r = _cli(cluster, *args)
        assert r.returncode != 0 and needle in r.stderr, (args, r.stderr)
        assert "Traceback" not in r.stderr
    for sid in ("cli-1", "cli-2"):
        r = _cli(cluster, "delete", sid)
        assert r.returncode == 0 and f"Job '{sid}' deleted successfully" in r.stdout


def test_init_dashboard_options(tmp_path: Path) -> None:
    import rayops
    from rayops.rpc.auth import read_token_file

    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    taken = busy.getsockname()[1]
    try:
        with pytest.raises(ValueError, match=f"dashboard port 127.0.0.1:{taken} is already in use"):
            rayops.init(num_cpus=1, dashboard_port=taken, _temp_dir=str(tmp_path / "a"))
        assert not rayops.is_initialized()
    finally:
        busy.close()
    ctx = rayops.init(
        num_cpus=1,
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        dashboard_port=0,
        _temp_dir=str(tmp_path / "b"),
    )
    try:
        assert ctx.dashboard_url and ctx.dashboard_url.startswith("127.0.0.1:")
        token = read_token_file(os.path.join(ctx["session_dir"], "cluster_token"))
        c = JobSubmissionClient(
            "http://" + ctx.dashboard_url, headers={"Authorization": f"Bearer {token}"}
        )
        assert c.get_version() == "4"
    finally:
        rayops.shutdown()
    ctx = rayops.init(num_cpus=1, include_dashboard=False, _temp_dir=str(tmp_path / "c"))
    try:
        assert ctx.dashboard_url is None
    finally:
        rayops.shutdown()


def test_jobs_outlive_a_restart_of_the_server(
    cluster: Cluster, url: str, client: JobSubmissionClient, tmp_path: Path
) -> None:
    """Records are in the GCS, supervisors are not the server's threads: a new server lists the
    jobs of the one before it and stops them (through the stop key the supervisor polls)."""
    from rayops.node.processes import free_port

    sid = client.submit_job(entrypoint="echo up; sleep 300")
    deadline = time.monotonic() + 30
    while client.get_job_status(sid) != JobStatus.RUNNING:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rec = cluster.head.started.record
    old = cluster.head.started.procs["dashboard"]
    old.kill()
    old.wait(10)
    port = free_port("127.0.0.1")
    new = subprocess.Popen(
        [sys.executable, "-m", "rayops.dashboard", "--host", "127.0.0.1", "--port", str(port),
         "--gcs-address", rec.gcs_address, "--token-file", cluster.token_file,
         "--session-dir", rec.session_dir, "--node-ip", rec.node_ip,
         "--temp-dir", rec.temp_dir],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        again = JobSubmissionClient(
            f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {cluster.token}"}
        )
        assert again.get_job_status(sid) == JobStatus.RUNNING
        assert again.get_job_logs(sid) == "up\n"
        assert again.stop_job(sid) is True
        assert _wait_terminal(again, sid).status == JobStatus.STOPPED
        again.delete_job(sid)
    finally:
        new.terminate()
        new.wait(10)
        # The module's other tests talk to the old address: serve it again there.
        restored = subprocess.Popen(
            [sys.executable, "-m", "rayops.dashboard", "--host", "127.0.0.1",
             "--port", url.rsplit(":", 1)[1], "--gcs-address", rec.gcs_address,
             "--token-file", cluster.token_file, "--session-dir", rec.session_dir,
             "--node-ip", rec.node_ip, "--temp-dir", rec.temp_dir],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        cluster.head.started.procs["dashboard"] = restored
