"""Cluster-wide logs against a real 3-node loopback cluster: the head's API server proxies
Ray's ``/api/v0/logs`` routes to each node's agent (``rayops logs``, ``rayops.util.state_logs``)."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rayops
from rayops.testing.cluster import Cluster, ClusterNode
from rayops.util.state_logs import RayStateApiException, get_log, list_logs

RAYOPS = str(Path(sys.executable).with_name("rayops"))


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("logs")), head_cpus=1)
    c.add_node(num_cpus=1, resources={"w1": 1})
    c.add_node(num_cpus=1, resources={"w2": 1})
    c.connect()
    try:
        yield c
    finally:
        rayops.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def url(cluster: Cluster) -> str:
    return "http://" + cluster.head.started.record.dashboard_url


@pytest.fixture(autouse=True)
def _token_env(cluster: Cluster, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYOPS_TOKEN_FILE", cluster.token_file)


def _logs_dir(node: ClusterNode) -> Path:
    return Path(node.started.record.session_dir) / "logs"


def _text(url: str, **kw: Any) -> str:
    return "".join(get_log(url, **kw))


def _http(url: str, headers: dict[str, str] | None = None) -> tuple[int, str]:
    req = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, resp.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _cli(cluster: Cluster, url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "RAYOPS_TOKEN_FILE": cluster.token_file}
    return subprocess.run(
        [RAYOPS, "logs", *args, "--address", url], env=env, capture_output=True, text=True
    )


def test_logs_of_every_node_are_listed(cluster: Cluster, url: str) -> None:
    for node in cluster.nodes:
        logs = list_logs(url, node_id=node.node_id)
        assert "raylet.log" in logs["raylet"] and "agent.log" in logs["agent"], logs
        on_disk = {p.name for p in _logs_dir(node).iterdir() if p.is_file()}
        assert {n for files in logs.values() for n in files} <= on_disk
        if node is cluster.head:
            assert "gcs.log" in logs["gcs_server"] and "dashboard.log" in logs["dashboard"]
        else:
            assert "gcs_server" not in logs
    assert list_logs(url, node_id=cluster.nodes[1].node_id, glob_filter="raylet.*") == {
        "raylet": ["raylet.log", "raylet.out"]
    }
    # Ray's default format: each chunk starts with "1" (Ray's own client strips it).
    code, body = _http(f"{url}/api/v0/logs/file?filename=raylet.log&lines=2", _auth(cluster))
    assert code == 200 and body.startswith("1") and body.count("\n") == 2, body
    # The CLI: the head by default; one named file is printed.
    res = _cli(cluster, url)
    assert res.returncode == 0 and "[gcs_server]" in res.stdout and "  gcs.log" in res.stdout
    res = _cli(cluster, url, "cluster", "raylet.log", "--node-id", cluster.nodes[2].node_id)
    assert res.returncode == 0 and cluster.nodes[2].node_id[:8] in res.stdout, res.stderr


def test_tail_of_a_workers_print_from_a_task(cluster: Cluster, url: str) -> None:
    @rayops.remote(resources={"w1": 1})
    def shout(marker: str) -> int:
        for i in range(50):
            print(f"{marker} line {i}", flush=True)
        return os.getpid()

    pid = rayops.get(shout.remote("TASKMARK"))
    node = cluster.nodes[1]
    text = _text(url, node_id=node.node_id, pid=pid, tail=3)
    assert text.splitlines() == [f"TASKMARK line {i}" for i in (47, 48, 49)], text
    res = _cli(cluster, url, "worker", "--pid", str(pid), "--node-id", node.node_id, "--tail", "2")
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == ["TASKMARK line 48", "TASKMARK line 49"]
    # The worker lives on node 1, not on node 2.
    with pytest.raises(RayStateApiException, match=f"no worker with pid {pid}"):
        _text(url, node_id=cluster.nodes[2].node_id, pid=pid)


def test_task_log_found_through_its_task_events(cluster: Cluster, url: str) -> None:
    @rayops.remote(resources={"w2": 1})
    def tagged(marker: str) -> str:
        print(f"{marker} from my task", flush=True)
        return rayops.get_runtime_context().get_task_id()

    task_hex = rayops.get(tagged.remote("TASKLOGMARK"))
    # The worker's RUNNING event reaches the GCS within about a second.
    deadline = time.monotonic() + 20
    while True:
        try:
            text = _text(url, task_id=task_hex, tail=-1)
            break
        except RayStateApiException as err:
            assert "has not run" in str(err) or "no task" in str(err), err
            assert time.monotonic() < deadline, err
            time.sleep(0.2)
    assert "TASKLOGMARK from my task" in text, text
    res = _cli(cluster, url, "task", "--id", task_hex, "--tail", "-1")
    assert res.returncode == 0 and "TASKLOGMARK from my task" in res.stdout, res.stderr
    with pytest.raises(RayStateApiException, match="has no attempt 3"):
        _text(url, task_id=task_hex, attempt_number=3)
    code, body = _http(
        f"{url}/api/v0/logs/file?task_id={task_hex}&node_id={cluster.head.node_id}",
        _auth(cluster),
    )
    assert code == 400 and "'node_id'" in body, body


def test_follow_a_log_while_an_actor_prints(cluster: Cluster, url: str) -> None:
    @rayops.remote(resources={"w2": 1})
    class Talker:
        def __init__(self) -> None:
            print("TALKER born", flush=True)

        def say(self, i: int) -> None:
            print(f"TALKER says {i}", flush=True)

    talker = Talker.remote()  # type: ignore[attr-defined]
    rayops.get(talker.say.remote(-1))
    actor_id = talker._actor_id.hex()
    # actor_id is resolved to the actor's node and worker log through the GCS actor table.
    assert "TALKER born" in _text(url, actor_id=actor_id, tail=-1)
    got: list[str] = []
    stream = get_log(url, actor_id=actor_id, follow=True, tail=0, _interval=0.05)

    def read() -> None:
        for chunk in stream:
            got.append(chunk)
            if "TALKER says 9" in "".join(got):
                return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(0.5)
    for i in range(10):
        rayops.get(talker.say.remote(i))
        time.sleep(0.05)
    reader.join(30)
    assert not reader.is_alive(), "".join(got)
    lines = "".join(got).splitlines()
    assert lines == [f"TALKER says {i}" for i in range(10)], lines
    assert "TALKER born" not in "".join(got)  # tail=0: only what came after
    stream.close()  # type: ignore[attr-defined]
    res = _cli(cluster, url, "actor", "--id", actor_id, "--tail", "1")
    assert res.returncode == 0 and res.stdout == "TALKER says 9\n", res.stdout + res.stderr


def test_path_traversal_is_refused(cluster: Cluster, url: str) -> None:
    logs = _logs_dir(cluster.head)
    (logs / "escape.log").symlink_to(cluster.token_file)
    try:
        for name, status in (
            ("../cluster_token", 400),
            ("..", 400),
            ("/etc/passwd", 400),
            ("escape.log", 403),
            ("nope.log", 404),
        ):
            code, body = _http(f"{url}/api/v0/logs/file?filename={name}", _auth(cluster))
            assert code == status, (name, code, body)
            assert cluster.token not in body
        # Nor straight to an agent: names only there too, and its listing stays in logs/.
        agent = _agent_url(cluster.head)
        code, body = _http(f"{agent}/api/v0/node_logs/file?filename=../node.json", _auth(cluster))
        assert code == 400, body
        code, body = _http(f"{agent}/api/v0/node_logs?glob=../*", _auth(cluster))
        assert code == 200 and '"files": []' in body, body
        assert "escape.log" not in str(list_logs(url))
    finally:
        (logs / "escape.log").unlink()


def test_without_the_token_nothing_is_served(cluster: Cluster, url: str) -> None:
    for target in (
        f"{url}/api/v0/logs",
        f"{url}/api/v0/logs/file?filename=raylet.log",
        f"{_agent_url(cluster.head)}/api/v0/node_logs",
        f"{_agent_url(cluster.head)}/api/v0/node_logs/file?filename=raylet.log",
    ):
        code, body = _http(target)
        assert code == 401, (target, code, body)
        assert "raylet" not in body


def test_bad_parameters_are_named(cluster: Cluster, url: str) -> None:
    with pytest.raises(RayStateApiException, match="no task with task_id"):
        _text(url, task_id="ab" * 24)
    code, body = _http(f"{url}/api/v0/logs/file?filename=raylet.log&colour=red", _auth(cluster))
    assert code == 400 and "'colour'" in body
    code, body = _http(f"{url}/api/v0/logs/file?filename=raylet.log&suffix=both", _auth(cluster))
    assert code == 400 and "'suffix'" in body
    with pytest.raises(RayStateApiException, match="no actor with actor_id"):
        _text(url, actor_id="00" * 16)
    code, body = _http(
        f"{url}/api/v0/logs/file?actor_id={'00' * 16}&node_id={cluster.head.node_id}",
        _auth(cluster),
    )
    assert code == 400 and "'node_id'" in body, body
    res = _cli(cluster, url, "worker", "--id", "x", "--pid", "1")
    assert res.returncode == 1 and "--id goes with" in res.stderr, res.stderr
    res = _cli(cluster, url, "task", "--id", "ab" * 24)
    assert res.returncode == 1 and "no task" in res.stderr and "Traceback" not in res.stderr


def test_one_megabyte_file_end_to_end(cluster: Cluster, url: str) -> None:
    line = "x" * 99 + "\n"
    (_logs_dir(cluster.nodes[1]) / "big.log").write_text(line * 10_486)  # ~1 MiB
    t0 = time.monotonic()
    res = _cli(cluster, url, "cluster", "big.log", "--node-id", cluster.nodes[1].node_id,
               "--tail", "-1")  # fmt: skip
    seconds = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    assert res.stdout == line * 10_486
    print(f"\nrayops logs of a 1 MiB file, whole CLI process: {seconds:.2f} s")


def _auth(cluster: Cluster) -> dict[str, str]:
    return {"Authorization": f"Bearer {cluster.token}"}


def _agent_url(node: ClusterNode) -> str:
    from rayops.gcs.client import GcsClient

    rec = node.started.record
    with GcsClient(rec.gcs_address, node.started.token) as gcs:
        (info,) = [n for n in gcs.get_all_nodes() if n.node_id == rec.node_id]
    return f"http://{info.node_ip}:{info.metrics_export_port}"
