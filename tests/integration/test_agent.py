"""The node agent with real daemons on loopback: started by the raylet, /metrics behind the
cluster token with Ray's names and labels, restarted when killed, and Prometheus service
discovery that follows nodes joining and dying."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import psutil
import pytest
from prometheus_client.parser import text_string_to_metric_families

from rayops.agent.discovery import FILE_NAME
from rayops.gcs.client import GcsClient
from rayops.gcs.health import HealthSettings
from rayops.node.processes import free_port
from rayops.node.session import TOKEN_FILE
from rayops.protocol.raylet_messages import NodeInfo, NodeInfoReply
from rayops.rpc import framed
from rayops.testing.cluster import Cluster

NODE_METRICS = (
    "ray_node_cpu_utilization",
    "ray_node_cpu_count",
    "ray_node_mem_used",
    "ray_node_mem_available",
    "ray_node_mem_total",
    "ray_node_disk_usage",
    "ray_node_disk_free",
    "ray_node_network_send_speed",
    "ray_node_network_receive_speed",
    "ray_object_store_memory",
    "ray_object_store_used_memory",
    "ray_object_store_available_memory",
    "ray_resources",
    "ray_component_rss_mb",
    "ray_component_cpu_percentage",
    "ray_workers",
    "ray_scheduler_tasks",
)
CLUSTER_METRICS = ("ray_cluster_active_nodes", "ray_actors", "ray_running_jobs")


def _get(url: str, token: str | None = None, timeout: float = 5.0) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, resp.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def _wait(cond: Any, timeout: float, what: str, period: float = 0.05) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(period)


def _samples(text: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out.setdefault(s.name, []).append((dict(s.labels), s.value))
    return out


def _agent_pids(raylet_pid: int) -> list[int]:
    try:
        children = psutil.Process(raylet_pid).children()
    except psutil.NoSuchProcess:
        return []
    out = []
    for c in children:
        try:
            if "rayops.agent" in " ".join(c.cmdline()):
                out.append(c.pid)
        except psutil.NoSuchProcess:
            pass
    return out


def _node_info(ip: str, port: int, token: str) -> dict[str, Any]:
    async def ask() -> dict[str, Any]:
        conn = await framed.connect(ip, port, token.encode(), {})
        try:
            reply: NodeInfoReply = await conn.request(NodeInfo())
            return {**dataclasses.asdict(reply.node), "num_workers": reply.num_workers}
        finally:
            conn.close()

    return asyncio.run(ask())


def _metrics_ready(url: str, token: str, names: tuple[str, ...]) -> Any:
    if not _up(url):
        return None
    code, body = _get(url + "/metrics", token)
    if code != 200:
        return None
    got = _samples(body.decode())
    return got if all(n in got for n in names) else None


@pytest.fixture(scope="module")
def embedded(temp_dir: str) -> Iterator[dict[str, Any]]:
    import rayops
    from rayops import api

    port = free_port("127.0.0.1")
    rayops.init(
        num_cpus=2,
        _temp_dir=temp_dir,
        object_store_memory=256 * 2**20,
        _metrics_export_port=port,
    )
    assert api._started is not None
    rec = api._started.record
    token = api._started.token
    yield {"record": rec, "token": token, "url": f"http://127.0.0.1:{port}", "port": port}
    rayops.shutdown()


def test_init_starts_an_agent_registered_with_the_gcs(embedded: dict[str, Any]) -> None:
    rec, token = embedded["record"], embedded["token"]
    info = _node_info(rec.node_ip, rec.raylet_port, token)
    assert info["metrics_export_port"] == embedded["port"]  # init(_metrics_export_port=...)
    assert info["agent_port"] > 0 and info["agent_port"] != info["metrics_export_port"]
    with GcsClient(rec.gcs_address, token) as gcs:
        (node,) = gcs.get_all_nodes()
    assert (node.metrics_export_port, node.agent_port) == (
        info["metrics_export_port"],
        info["agent_port"],
    )
    # The raylet starts its agent shortly after start-up (off the cold-start path).
    _wait(lambda: len(_agent_pids(rec.pids["raylet"])) == 1, 10, "one agent under the raylet")
    _wait(lambda: _up(embedded["url"]), 10, "the agent's HTTP server")
    code, body = _get(embedded["url"] + "/-/healthy")
    assert (code, body) == (200, b"ok")


def test_metrics_require_the_token(embedded: dict[str, Any]) -> None:
    url, token = embedded["url"], embedded["token"]
    _wait(lambda: _metrics_ready(url, token, ("ray_node_cpu_utilization",)), 15, "metrics")
    before = _samples(_get(url + "/metrics", token)[1].decode())
    refused_before = before["ray_agent_refused_scrapes_total"][0][1]
    for bad in (None, "wrong-token", ""):
        code, body = _get(url + "/metrics", bad)
        assert code == 401
        assert b"ray_" not in body
    code, body = _get(url + "/api/prometheus/sd")
    assert code == 401 and b"targets" not in body
    after = _samples(_get(url + "/metrics", token)[1].decode())
    assert after["ray_agent_refused_scrapes_total"][0][1] == refused_before + 4


def test_node_metrics_have_rays_names_and_labels(embedded: dict[str, Any]) -> None:
    rec, url, token = embedded["record"], embedded["url"], embedded["token"]

    def ready() -> Any:
        got = _metrics_ready(url, token, NODE_METRICS + CLUSTER_METRICS)
        # The GCS's pid comes with the first cluster snapshot, sampled on the next round.
        if got and "gcs" in {lab["Component"] for lab, _ in got["ray_component_rss_mb"]}:
            return got
        return None

    got = _wait(ready, 15, "node metrics")
    session = os.path.basename(rec.session_dir)
    for name, samples in got.items():
        for labels, _ in samples:
            assert labels.get("SessionName") == session, name
            assert labels.get("NodeAddress") == "127.0.0.1", name
    (cpu,) = got["ray_node_cpu_count"]
    assert cpu[0]["ip"] == "127.0.0.1" and cpu[0]["RayNodeType"] == "head"
    resources = {(lab["Name"], lab["State"]): v for lab, v in got["ray_resources"]}
    assert resources[("CPU", "AVAILABLE")] + resources[("CPU", "USED")] == 2.0
    components = {lab["Component"] for lab, _ in got["ray_component_rss_mb"]}
    assert {"raylet", "gcs", "agent", "workers"} <= components
    capacity = sum(
        v
        for lab, v in got["ray_object_store_used_memory"] + got["ray_object_store_available_memory"]
    )
    assert capacity == 256 * 2**20
    assert got["ray_cluster_active_nodes"]
    assert got["ray_running_jobs"][0][1] >= 1


def test_killed_agent_is_restarted_on_the_same_port(embedded: dict[str, Any]) -> None:
    rec, url, token = embedded["record"], embedded["url"], embedded["token"]
    (old,) = _wait(lambda: _agent_pids(rec.pids["raylet"]), 10, "the agent")
    os.kill(old, signal.SIGKILL)
    started = time.monotonic()
    new = _wait(lambda: [p for p in _agent_pids(rec.pids["raylet"]) if p != old], 10, "a new agent")
    _wait(lambda: _up(url), 10, "the restarted agent's HTTP server")
    elapsed = time.monotonic() - started
    assert len(new) == 1
    got = _wait(
        lambda: _metrics_ready(url, token, ("ray_agent_restarts_total",)), 10, "restart count"
    )
    assert got["ray_agent_restarts_total"][0][1] >= 1
    assert elapsed < 10
    log = os.path.join(rec.session_dir, "logs", "raylet.log")
    with open(log) as f:
        assert f"the node agent pid={old} exited" in f.read()


def _up(url: str) -> bool:
    try:
        return _get(url + "/-/healthy", timeout=1)[0] == 200
    except OSError:
        return False


def _sd(url: str, token: str) -> list[dict[str, Any]]:
    code, body = _get(url + "/api/prometheus/sd", token)
    assert code == 200
    groups: list[dict[str, Any]] = json.loads(body)
    return groups


def _targets(groups: list[dict[str, Any]]) -> set[str]:
    return {t for g in groups for t in g["targets"]}


def test_discovery_follows_nodes_joining_and_dying(tmp_path: Any) -> None:
    cluster = Cluster(str(tmp_path), head_cpus=1, object_store_memory=64 * 2**20)
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(2)
        token = cluster.token
        with GcsClient(cluster.address, token) as gcs:
            nodes = {n.node_id: n for n in gcs.get_all_nodes(alive_only=True)}
        head = nodes[cluster.head.node_id]
        url = f"http://127.0.0.1:{head.metrics_export_port}"
        sd_file = os.path.join(cluster.head.temp_dir, FILE_NAME)
        want = {f"127.0.0.1:{n.metrics_export_port}" for n in nodes.values()}
        _wait(lambda: _up(url) and _targets(_sd(url, token)) == want, 15, "both agents in SD")
        _wait(lambda: _file_targets(sd_file) == want, 5, "both agents in the file")
        groups = _sd(url, token)
        session = os.path.basename(cluster.head.started.record.session_dir)
        for g in groups:
            labels = g["labels"]
            assert labels["SessionName"] == session
            assert labels["NodeAddress"] == "127.0.0.1"
            assert nodes[labels["NodeId"]].is_head_node == (labels["ray_io_node_type"] == "head")
        # Every agent answers /metrics with the token, and a worker node's series carry the
        # cluster's (the head's) session name.
        for target in want:
            got = _wait(
                lambda t=target: _metrics_ready(f"http://{t}", token, ("ray_node_cpu_count",)),
                15,
                f"metrics of {target}",
            )
            assert {lab["SessionName"] for lab, _ in got["ray_node_cpu_count"]} == {session}

        # A node joins: listed within 2 s of its raylet being up.
        joined = cluster.add_node(num_cpus=1)
        t0 = time.monotonic()
        with GcsClient(cluster.address, token) as gcs:
            new = next(n for n in gcs.get_all_nodes() if n.node_id == joined.node_id)
        target = f"127.0.0.1:{new.metrics_export_port}"
        _wait(lambda: target in _targets(_sd(url, token)), 2.0, "the new node in HTTP SD")
        _wait(lambda: target in _file_targets(sd_file), 2.0, "the new node in the file")
        join_s = time.monotonic() - t0

        # A node dies (raylet SIGKILLed): gone within the GCS's health-check window, and its
        # agent exits with it.
        agents = _wait(
            lambda: _agent_pids(joined.raylet_pid), 10, "the joined node's agent started"
        )
        assert len(agents) == 1
        cluster.kill_raylet(joined)
        t0 = time.monotonic()
        h = HealthSettings()
        window = h.period_s * h.failure_threshold + h.timeout_s
        _wait(lambda: target not in _targets(_sd(url, token)), window + 3, "the dead node gone")
        _wait(lambda: target not in _file_targets(sd_file), 2.0, "the dead node out of the file")
        leave_s = time.monotonic() - t0
        _wait(lambda: not psutil.pid_exists(agents[0]) or _zombie(agents[0]), 10, "agent exit")
        print(f"\ndiscovery: join {join_s:.2f} s, leave {leave_s:.2f} s (window {window:.1f} s)")
    finally:
        cluster.shutdown()


def _gcs_reachable(url: str, token: str) -> float | None:
    got = _metrics_ready(url, token, ("ray_gcs_reachable",))
    return None if got is None else got["ray_gcs_reachable"][0][1]


def test_gcs_reachable_needs_the_node_stream_and_answers_from_the_gcs(tmp_path: Any) -> None:
    """ray_gcs_reachable on the head's agent: 1 with the node stream connected, 0 while the
    GCS is stopped (SIGSTOP keeps its connections open: the stream alone would not show it),
    1 again once it answers."""
    cluster = Cluster(str(tmp_path), head_cpus=1, object_store_memory=64 * 2**20)
    try:
        with GcsClient(cluster.address, cluster.token) as gcs:
            (head,) = gcs.get_all_nodes(alive_only=True)
        url = f"http://127.0.0.1:{head.metrics_export_port}"
        token = cluster.token
        _wait(lambda: _gcs_reachable(url, token) == 1.0, 20, "reachable at start")
        gcs_pid = cluster.gcs_pid()
        os.kill(gcs_pid, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            _wait(lambda: _gcs_reachable(url, token) == 0.0, 15, "unreachable while stopped")
            stopped_s = time.monotonic() - t0
        finally:
            os.kill(gcs_pid, signal.SIGCONT)
        _wait(lambda: _gcs_reachable(url, token) == 1.0, 20, "reachable again")
        print(f"\nray_gcs_reachable fell to 0 {stopped_s:.1f} s after SIGSTOP of the GCS")
    finally:
        cluster.shutdown()


def _zombie(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return True


def _file_targets(path: str) -> set[str]:
    try:
        with open(path) as f:
            return _targets(json.load(f))
    except (OSError, ValueError):
        return set()


def test_token_file_is_the_clusters(embedded: dict[str, Any]) -> None:
    # Prometheus reads the token with `authorization: credentials_file`: the session's file.
    rec, url = embedded["record"], embedded["url"]
    with open(os.path.join(rec.session_dir, TOKEN_FILE)) as f:
        token = f.read().strip()
    assert _get(url + "/metrics", token)[0] == 200


def test_workers_know_their_agents_address(embedded: dict[str, Any]) -> None:
    rec, token = embedded["record"], embedded["token"]
    info = _node_info(rec.node_ip, rec.raylet_port, token)
    want = f"RAYOPS_AGENT_ADDRESS=127.0.0.1:{info['agent_port']}".encode()
    raylet = psutil.Process(rec.pids["raylet"])

    def worker_envs() -> list[bytes]:
        envs = []
        for p in raylet.children(recursive=True):
            try:
                cmd = " ".join(p.cmdline())
                if "rayops.agent" in cmd:
                    continue
                with open(f"/proc/{p.pid}/environ", "rb") as f:
                    envs.append(f.read())
            except (OSError, psutil.NoSuchProcess):
                continue
        return envs

    envs = _wait(worker_envs, 10, "worker processes")
    assert envs and all(want in env.split(b"\0") for env in envs)


def test_cli_start_takes_the_metrics_export_port(tmp_path: Any) -> None:
    import subprocess
    import sys

    tmp = str(tmp_path)
    port = free_port("127.0.0.1")
    cli = [sys.executable, "-m", "rayops.cli.main"]
    bad = subprocess.run(
        [*cli, "start", "--head", "--metrics-export-port", "70000", "--temp-dir", tmp],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode != 0 and "--metrics-export-port" in bad.stderr
    r = subprocess.run(
        [
            *cli,
            "start",
            "--head",
            "--port",
            str(free_port("127.0.0.1")),
            "--num-cpus",
            "1",
            "--object-store-memory",
            str(64 * 2**20),
            "--node-ip-address",
            "127.0.0.1",
            "--temp-dir",
            tmp,
            "--metrics-export-port",
            str(port),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r.stderr
    try:
        url = f"http://127.0.0.1:{port}"
        _wait(lambda: _up(url), 15, "the agent of `rayops start`")
        with open(os.path.join(tmp, "session_latest", TOKEN_FILE)) as f:
            token = f.read().strip()
        assert _get(url + "/metrics")[0] == 401
        assert _metrics_ready(url, token, ("ray_node_cpu_count",)) is not None
        _wait(lambda: _file_targets(os.path.join(tmp, FILE_NAME)) == {f"127.0.0.1:{port}"}, 5, "sd")
    finally:
        stop = subprocess.run(
            [*cli, "stop", "--temp-dir", tmp], capture_output=True, text=True, timeout=60
        )
        assert stop.returncode == 0, stop.stderr
    _wait(lambda: not _up(f"http://127.0.0.1:{port}"), 10, "the agent to stop with the node")
