"""The state API against a real two-node cluster on 127.0.0.1: task events from workers
through raylets to the GCS, and list/get/summary of tasks, actors, nodes, objects, workers,
placement groups and jobs through the SDK (``rayops.util.state``), the CLI and raw HTTP
(with the token, and refused without); a tiny task-event buffer drops and says so; task
events can be turned off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import rayops
from rayops.testing.cluster import Cluster
from rayops.util import state
from rayops.util.placement_group import placement_group, remove_placement_group

RAYOPS = str(Path(sys.executable).with_name("rayops"))


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "state"), head_cpus=2)
    c.add_node(num_cpus=1, resources={"other": 1})
    c.wait_for_nodes(2)
    old = os.environ.get("RAYOPS_TOKEN_FILE")
    os.environ["RAYOPS_TOKEN_FILE"] = c.token_file  # the SDK and CLI find the token here
    c.connect()
    yield c
    rayops.shutdown()
    c.shutdown()
    if old is None:
        os.environ.pop("RAYOPS_TOKEN_FILE", None)
    else:
        os.environ["RAYOPS_TOKEN_FILE"] = old


@pytest.fixture(scope="module")
def url(cluster: Cluster) -> str:
    return "http://" + cluster.head.started.record.dashboard_url


def _until(what: str, check: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        got = check()
        if got:
            return got
        assert time.monotonic() < deadline, f"{what}: not seen within {timeout} s"
        time.sleep(0.2)


@rayops.remote
def square(x: int) -> int:
    return x * x


@rayops.remote
def fails() -> None:
    raise ValueError("boom from a task")


@rayops.remote(resources={"other": 1})
class Holder:
    def __init__(self) -> None:
        self.kept: Any = None

    def keep(self, refs: list[Any]) -> str:
        self.kept = refs  # a ref held by a worker on the other node
        return rayops.get_runtime_context().get_node_id()


@pytest.fixture(scope="module")
def workload(cluster: Cluster, url: str) -> dict[str, Any]:
    assert rayops.get([square.remote(i) for i in range(20)]) == [i * i for i in range(20)]
    bad = fails.remote()
    with pytest.raises(rayops.exceptions.RayTaskError):
        rayops.get(bad)
    holder = Holder.remote()
    big = rayops.put(b"x" * 2_000_000)
    holder_node = rayops.get(holder.keep.remote([big]))
    pg = placement_group([{"CPU": 1}], strategy="PACK")
    rayops.get(pg.ready(), timeout=30)

    def all_seen() -> bool:
        # Owners and executors report on their own clocks: wait for both sides.
        seen = {(t.func_or_class_name, t.state) for t in state.list_tasks(address=url, limit=1000)}
        want = {("square", "FINISHED"), ("fails", "FAILED"), ("Holder", "FINISHED")}
        return want | {("Holder.keep", "FINISHED")} <= seen

    _until("task events in the GCS", all_seen)

    def squares_done() -> bool:
        rows = state.list_tasks(address=url, filters=[("name", "=", "square")])
        return len(rows) == 20 and all(r.state == "FINISHED" and r.node_id for r in rows)

    _until("every square finished, and where it ran", squares_done)
    return {"bad": bad, "holder": holder, "big": big, "holder_node": holder_node, "pg": pg}


def test_tasks_through_the_sdk(url: str, workload: dict[str, Any]) -> None:
    tasks = state.list_tasks(address=url, limit=1000)
    squares = [t for t in tasks if t.func_or_class_name == "square"]
    assert len(squares) == 20 and {t.state for t in squares} == {"FINISHED"}
    assert all(t.type == "NORMAL_TASK" and t.job_id == "01000000" for t in squares)
    assert all(t.node_id and t.worker_pid for t in squares)  # where they ran
    failed = state.list_tasks(address=url, filters=[("state", "=", "FAILED")])
    assert [t.name for t in failed] == ["fails"]
    one = state.get_task(workload["bad"].task_id().hex(), address=url)
    assert one is not None and one["error_type"] == "TASK_EXECUTION_EXCEPTION"
    assert "boom from a task" in one["error_message"]
    assert one["start_time_ms"] <= one["end_time_ms"]
    kinds = {t.type for t in tasks}
    assert {"ACTOR_CREATION_TASK", "ACTOR_TASK"} <= kinds and "DRIVER_TASK" not in kinds
    drivers = state.list_tasks(address=url, filters=[("type", "=", "DRIVER_TASK")])
    assert drivers == []  # excluded by default, as Ray's
    summary = state.summarize_tasks(address=url)["cluster"]
    assert summary["summary"]["square"]["state_counts"] == {"FINISHED": 20}
    assert summary["summary"]["fails"]["state_counts"] == {"FAILED": 1}
    assert summary["total_actor_scheduled"] >= 1


def test_unknown_filters_and_predicates_are_refused_naming_them(url: str) -> None:
    with pytest.raises(state.RayStateApiException, match="filter key 'colour'"):
        state.list_tasks(address=url, filters=[("colour", "=", "red")])
    with pytest.raises(ValueError, match="predicate '>'"):
        state.list_tasks(address=url, filters=[("state", ">", "x")])


def test_actors_nodes_workers_pgs_jobs_through_the_sdk(
    cluster: Cluster, url: str, workload: dict[str, Any]
) -> None:
    (actor,) = state.list_actors(address=url, filters=[("class_name", "=", "Holder")])
    assert actor.state == "ALIVE" and actor.node_id == workload["holder_node"]
    assert state.get_actor(actor.actor_id, address=url)["pid"] == actor.pid
    assert state.summarize_actors(address=url)["cluster"]["summary"]["Holder"] == {
        "class_name": "Holder",
        "state_counts": {"ALIVE": 1},
    }
    nodes = state.list_nodes(address=url)
    assert {n.node_id for n in nodes} == {n.node_id for n in cluster.nodes}
    assert {n.state for n in nodes} == {"ALIVE"} and sum(n.is_head_node for n in nodes) == 1
    assert state.get_node(cluster.nodes[1].node_id, address=url)["resources_total"]["other"] == 1
    workers = state.list_workers(address=url, limit=1000, detail=True)
    drivers = [w for w in workers if w.worker_type == "DRIVER"]
    assert [w.pid for w in drivers] == [os.getpid()]
    assert drivers[0].worker_id == rayops.get_runtime_context().get_worker_id()
    assert {w.node_id for w in workers} == {n.node_id for n in cluster.nodes}
    assert actor.pid in {w.pid for w in workers}
    pgs = state.list_placement_groups(address=url, detail=True)
    (pg,) = [g for g in pgs if g.placement_group_id == workload["pg"].id.hex()]
    assert pg.state == "CREATED" and pg.bundles[0]["unit_resources"] == {"CPU": 1.0}
    jobs = state.list_jobs(address=url)
    assert any(j.type == "DRIVER" and j.status == "RUNNING" for j in jobs)


def test_objects_and_memory(url: str, workload: dict[str, Any]) -> None:
    big_hex = workload["big"].hex()
    refs = state.get_objects(big_hex, address=url)
    by_type = {r["type"]: r for r in refs}
    assert by_type["DRIVER"]["reference_type"] == "PINNED_IN_MEMORY"
    assert by_type["DRIVER"]["object_size"] >= 2_000_000 and by_type["DRIVER"]["in_memory"]
    # the actor on the other node holds it too (a borrowed ref inside its list)
    assert by_type["WORKER"]["node_id"] == workload["holder_node"]
    handles = state.list_objects(address=url, filters=[("reference_type", "=", "ACTOR_HANDLE")])
    assert handles
    summary = state.summarize_objects(address=url)["cluster"]
    assert summary["total_objects"] >= 2 and summary["total_size_mb"] >= 1.9


def test_the_cli(url: str, workload: dict[str, Any]) -> None:
    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RAYOPS, *args, "--address", url], capture_output=True, text=True, timeout=60
        )

    out = run("list", "tasks", "--filter", "name=square", "--limit", "5", "--format", "json")
    assert out.returncode == 0, out.stderr
    rows = json.loads(out.stdout)
    assert len(rows) == 5 and {r["state"] for r in rows} == {"FINISHED"}
    assert "20 tasks match, 5 are returned" in out.stderr
    out = run("list", "placement-groups")
    assert out.returncode == 0 and "CREATED" in out.stdout and "Total: " in out.stdout
    out = run("get", "actors", workload["holder"]._actor_id.hex())
    assert out.returncode == 0 and "class_name: Holder" in out.stdout
    out = run("summary", "tasks")
    assert out.returncode == 0 and "square" in out.stdout and "FINISHED: 20" in out.stdout
    out = run("memory", "--units", "MB")
    assert out.returncode == 0 and "PINNED_IN_MEMORY" in out.stdout
    out = run("list", "tasks", "--filter", "colour=red")
    assert out.returncode == 1 and "filter key 'colour'" in out.stderr
    assert "Traceback" not in out.stderr
    out = run("list", "nodes", "--format", "yaml")
    assert out.returncode == 0 and "is_head_node: true" in out.stdout


def test_the_timeline(url: str, workload: dict[str, Any], tmp_path: Path) -> None:
    path = tmp_path / "trace.json"
    out = subprocess.run(
        [RAYOPS, "timeline", "--address", url, "--output", str(path)],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr
    events = json.loads(path.read_text())
    spans = [e for e in events if e["ph"] == "X" and e["name"] == "square"]
    assert len(spans) == 20 and all(e["dur"] >= 0 and e["ts"] > 0 for e in spans)


def test_raw_http_needs_the_token(cluster: Cluster, url: str, workload: dict[str, Any]) -> None:
    def get(path: str, headers: dict[str, str]) -> tuple[int, Any]:
        req = urllib.request.Request(url + path, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=30) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    auth = {"Authorization": f"Bearer {cluster.token}"}
    for resource in ("nodes", "actors", "tasks", "objects", "jobs", "placement_groups", "workers"):
        status, body = get(f"/api/v0/{resource}?limit=2", auth)
        assert status == 200 and body["result"] is True, (resource, body)
        data = body["data"]["result"]
        assert len(data["result"]) <= 2 and data["total"] >= len(data["result"])
        assert get(f"/api/v0/{resource}", {})[0] == 401
        assert get(f"/api/v0/{resource}", {"Authorization": "Bearer wrong"})[0] == 403
    for resource in ("tasks", "actors", "objects"):
        status, body = get(f"/api/v0/{resource}/summarize", auth)
        assert status == 200 and "cluster" in body["data"]["result"]["result"]["node_id_to_summary"]
        assert get(f"/api/v0/{resource}/summarize", {})[0] == 401
    assert get("/api/v0/tasks/timeline", {})[0] == 401
    status, body = get("/api/v0/tasks?limit=0", auth)
    assert status == 400 and body["result"] is False and "limit" in body["msg"]
    q = "filter_keys=state&filter_predicates=%3D&filter_values=failed&detail=true"
    status, body = get(f"/api/v0/tasks?{q}", auth)
    assert [t["name"] for t in body["data"]["result"]["result"]] == ["fails"]
    remove_placement_group(workload["pg"])


DRIVER = """
import sys, rayops
rayops.init(sys.argv[1], _temp_dir=sys.argv[2])
@rayops.remote
def f(i):
    return i
rayops.get([f.remote(i) for i in range(300)])
rayops.shutdown()
"""


def _driver_env(c: Cluster, **extra: str) -> dict[str, str]:
    env = dict(os.environ, RAYOPS_TOKEN_FILE=c.token_file, **extra)
    return env


def test_a_tiny_buffer_drops_events_and_the_api_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Workers inherit the variable from their raylet; the driver reads it in init().
    monkeypatch.setenv("RAYOPS_TASK_EVENTS_MAX_BUFFER_SIZE", "20")
    c = Cluster(str(tmp_path / "tiny"), head_cpus=1)
    try:
        env = _driver_env(c)
        subprocess.run(
            [sys.executable, "-c", DRIVER, c.address, c.head.temp_dir],
            env=env, check=True, timeout=120,
        )  # fmt: skip
        url = "http://" + c.head.started.record.dashboard_url
        monkeypatch.setenv("RAYOPS_TOKEN_FILE", c.token_file)
        with pytest.warns(UserWarning, match="task events were dropped"):
            got = _until(
                "drops reported",
                lambda: _warned_list(url),
            )
        assert 0 < len(got) < 300  # some made it, not all
    finally:
        c.shutdown()


def _warned_list(url: str) -> list[Any]:
    import warnings

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = state.list_tasks(address=url, limit=1000)
    for w in caught:
        warnings.warn(w.message, stacklevel=1)  # re-emit for pytest.warns
    return rows if any("dropped" in str(w.message) for w in caught) else []


def test_task_events_can_be_turned_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS", "0")
    c = Cluster(str(tmp_path / "off"), head_cpus=1)
    try:
        subprocess.run(
            [sys.executable, "-c", DRIVER, c.address, c.head.temp_dir],
            env=_driver_env(c), check=True, timeout=120,
        )  # fmt: skip
        monkeypatch.setenv("RAYOPS_TOKEN_FILE", c.token_file)
        url = "http://" + c.head.started.record.dashboard_url
        time.sleep(1.5)  # past a report interval: nothing may arrive
        assert state.list_tasks(address=url, limit=1000) == []
    finally:
        c.shutdown()


def test_a_bad_setting_fails_init_naming_it(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS", "often")
    out = subprocess.run(
        [sys.executable, "-c", "import rayops; rayops.init(num_cpus=1)"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert out.returncode != 0
    assert "RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS must be an integer >= 0" in out.stderr


def test_a_connected_driver_finds_its_own_cluster_without_address_or_token_file(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The cluster lives under a test temp dir, not the default one: with neither an address
    # nor RAYOPS_TOKEN_FILE, the SDK must use the session this driver is connected to.
    monkeypatch.delenv("RAYOPS_TOKEN_FILE", raising=False)
    monkeypatch.delenv("RAYOPS_TEMP_DIR", raising=False)
    monkeypatch.delenv("RAYOPS_API_SERVER_ADDRESS", raising=False)
    rows = state.list_nodes()
    assert len(rows) == 2
