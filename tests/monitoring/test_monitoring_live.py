"""A real Prometheus watching a real 3-node loopback cluster.

Prometheus finds the agents only through the head agent's HTTP service discovery and
scrapes them with the cluster token from a credentials_file, exactly as
monitoring/prometheus/prometheus.yml configures it (rendered by the same function that
``rayops metrics launch-prometheus`` uses). Then every dashboard query and every alert
expression is run through Prometheus's HTTP API and must return data. Alert conditions
are caused for real: an infeasible task, a small object store filled past 90% until it
spills, a stopped agent, a killed node, a stopped GCS (last: it may cost the cluster its
nodes).

The tests run in file order and share one cluster: each stage leaves the cluster in the
state the next one expects (the destructive stages come last).
"""

from __future__ import annotations

import os
import signal
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from rayops.gcs.client import GcsClient
from rayops.monitoring import PrometheusSetup, asset_text, dashboards, head_agent_address
from rayops.testing.cluster import Cluster
from rayops.testing.prometheus import PrometheusServer, prometheus_binary

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        prometheus_binary() is None, reason="no prometheus: run scripts/bootstrap-monitoring.sh"
    ),
]

STORE_MB = 64  # every node's object store: small, so filling it is cheap
ALERTS = {
    r["alert"]: r["expr"] for r in yaml.safe_load(asset_text("alerts.yml"))["groups"][0]["rules"]
}


def _agents(cluster: Cluster, timeout: float = 30.0) -> dict[str, str]:
    """node id -> ip:metrics_export_port of every alive node's agent, once all registered."""
    deadline = time.monotonic() + timeout
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        while True:
            nodes = gcs.get_all_nodes(alive_only=True)
            ports = {n.node_id: f"{n.node_ip}:{n.metrics_export_port}" for n in nodes}
            if len(nodes) == len(cluster.nodes) and all(n.metrics_export_port for n in nodes):
                return ports
            if time.monotonic() > deadline:
                raise TimeoutError(f"agents not all registered after {timeout} s: {ports}")
            time.sleep(0.1)


def _agent_pid(raylet_pid: int, timeout: float = 20.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        for child in psutil.Process(raylet_pid).children():
            try:
                if "rayops.agent" in " ".join(child.cmdline()):
                    return child.pid
            except psutil.Error:
                continue
        if time.monotonic() > deadline:
            raise TimeoutError(f"raylet {raylet_pid} has no agent child")
        time.sleep(0.1)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    from rayops.raylet.memory_monitor import GIB, read_snapshot

    # The memory monitor kills above what the machine uses now plus 3 GiB: only the hog of
    # the memory stage gets there (the alert is caused for real, like the others).
    snap = read_snapshot()
    mp = pytest.MonkeyPatch()
    mp.setenv(
        "RAYOPS_MEMORY_USAGE_THRESHOLD", f"{min(0.95, (snap.used + 3 * GIB) / snap.total):.4f}"
    )
    mp.setenv("RAYOPS_MEMORY_MONITOR_REFRESH_MS", "100")
    c = Cluster(
        str(tmp_path_factory.mktemp("prom-cluster")),
        head_cpus=2,
        object_store_memory=STORE_MB * 2**20,
    )
    try:
        c.add_node(num_cpus=1)
        c.add_node(num_cpus=1)
        mp.undo()  # the nodes have read it
        c.wait_for_nodes(3)
        c.connect()
        yield c
    finally:
        import rayops

        KEEP.clear()
        rayops.shutdown()
        c.shutdown()


@pytest.fixture(scope="module")
def agents(cluster: Cluster) -> dict[str, str]:
    return _agents(cluster)


@pytest.fixture(scope="module")
def prom(
    cluster: Cluster, agents: dict[str, str], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[PrometheusServer]:
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        head = head_agent_address(gcs.get_all_nodes(alive_only=True))
    setup = PrometheusSetup(
        token_file=cluster.token_file,
        head_agent=head,
        scrape_interval_s=1,
        evaluation_interval_s=1,
        sd_refresh_s=1,
    )
    server = PrometheusServer(
        str(tmp_path_factory.mktemp("prometheus")),
        setup,
        rules={"alerts.yml": asset_text("alerts.yml")},
    )
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="module")
def session_name(prom: PrometheusServer) -> str:
    up = prom.wait_for('up{job="ray"}', bool, timeout=30, what="any agent target")
    name: str = up[0]["metric"]["SessionName"]
    return name


FIRED: set[str] = set()  # alerts whose expression returned data
KEEP: list[Any] = []  # refs and handles the later stages rely on


def _alert(prom: PrometheusServer, name: str, predicate: Any = bool, **kw: Any) -> Any:
    """Poll alert ``name``'s expression (as alerts.yml has it) until it returns data."""
    result = prom.wait_for(ALERTS[name], predicate, **kw)
    FIRED.add(name)
    return result


def _values(result: list[dict[str, Any]]) -> list[float]:
    return [float(r["value"][1]) for r in result]


# ---- discovery and authentication ----------------------------------------------------------


def test_prometheus_discovers_and_scrapes_all_agents(
    prom: PrometheusServer, agents: dict[str, str]
) -> None:
    t0 = time.monotonic()
    up = prom.wait_for(
        'up{job="ray"}',
        lambda r: len(r) == 3 and all(v == 1 for v in _values(r)),
        timeout=40,
        what="3 agents up",
    )
    elapsed = time.monotonic() - t0
    assert {r["metric"]["instance"] for r in up} == set(agents.values())
    targets = [t for t in prom.targets() if t["scrapePool"] == "ray"]
    assert len(targets) == 3 and all(t["health"] == "up" for t in targets)
    # Found through HTTP SD (the config has no static targets for the agents), and the
    # discovery labels are attached.
    for t in targets:
        assert t["discoveredLabels"]["__meta_url"].endswith("/api/prometheus/sd"), t
        assert set(t["labels"]) >= {"SessionName", "NodeId", "NodeAddress", "ray_io_node_type"}
    assert sorted(t["labels"]["ray_io_node_type"] for t in targets) == ["head", "worker", "worker"]
    print(f"all 3 agents up in Prometheus {elapsed:.1f} s after it was ready")


def test_scrape_without_the_token_is_refused(cluster: Cluster, agents: dict[str, str]) -> None:
    for address in agents.values():
        for headers in ({}, {"Authorization": "Bearer not-the-token"}):
            req = urllib.request.Request(f"http://{address}/metrics", headers=headers)
            with pytest.raises(urllib.error.HTTPError) as err:
                urllib.request.urlopen(req, timeout=5)
            assert err.value.code == 401
            assert b"ray_" not in err.value.read()
        ok = urllib.request.Request(
            f"http://{address}/metrics", headers={"Authorization": f"Bearer {cluster.token}"}
        )
        with urllib.request.urlopen(ok, timeout=5) as r:
            assert b"ray_node_cpu_count" in r.read()
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        head_agent = head_agent_address(gcs.get_all_nodes(alive_only=True))
    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(f"http://{head_agent}/api/prometheus/sd", timeout=5)
    assert err.value.code == 401


def test_file_sd_alternative_finds_the_same_agents(
    cluster: Cluster, agents: dict[str, str], tmp_path: Path
) -> None:
    """prometheus-file-sd.yml: the file the head agent keeps in its temp dir."""
    sd_file = os.path.join(cluster.head.temp_dir, "prom_metrics_service_discovery.json")
    setup = PrometheusSetup(
        token_file=cluster.token_file, sd_file=sd_file, scrape_interval_s=1, sd_refresh_s=1
    )
    with PrometheusServer(str(tmp_path), setup) as prom:
        up = prom.wait_for(
            'up{job="ray"}',
            lambda r: len(r) == 3 and all(v == 1 for v in _values(r)),
            timeout=40,
            what="3 agents up through file_sd",
        )
    assert {r["metric"]["instance"] for r in up} == set(agents.values())


def test_user_counter_from_a_task_reaches_prometheus(
    cluster: Cluster, prom: PrometheusServer
) -> None:
    import rayops

    @rayops.remote
    def handle(n: int) -> int:
        from rayops.util.metrics import Counter

        c = Counter("monitoring_test_requests", description="requests handled", tag_keys=("route",))
        c.inc(n, tags={"route": "/predict"})
        return n

    assert rayops.get([handle.remote(2), handle.remote(3)]) == [2, 3]
    result = prom.wait_for(
        'sum(ray_monitoring_test_requests_total{route="/predict"})',
        lambda r: bool(r) and _values(r) == [5.0],
        timeout=30,
        what="user counter = 5",
    )
    assert _values(result) == [5.0]


# ---- alert conditions, caused for real -------------------------------------------------------


def test_infeasible_task_fires_its_alert_expression(prom: PrometheusServer) -> None:
    import rayops

    @rayops.remote(resources={"monitoring_test_nonexistent": 1})
    def never() -> None:
        return None

    KEEP.append(never.remote())  # stays pending
    result = _alert(prom, "RayopsTasksInfeasible", bool, timeout=30, what="infeasible")
    assert _values(result) == [1.0]


def test_object_store_filled_and_spilling_fire_their_alert_expressions(
    prom: PrometheusServer, session_name: str
) -> None:
    import numpy as np

    import rayops

    chunk = np.zeros(4 * 2**20, dtype=np.uint8)  # 4 MiB
    # 15 x 4 MiB = 60 MiB of a 64 MiB store: above 90%, nothing spilled yet.
    refs = [rayops.put(chunk) for _ in range(15)]
    full = _alert(prom, "RayopsObjectStoreAlmostFull", bool, timeout=30, what="store > 90%")
    assert all(v > 0.9 for v in _values(full))
    # The spill counter has a sample at its old value before spilling starts, so the rate sees it.
    prom.wait_for(
        'ray_spill_manager_request_total{Type="Spilled"}', lambda r: len(r) == 3, timeout=20
    )
    refs += [rayops.put(chunk) for _ in range(6)]  # does not fit: least recently used spill
    spilling = _alert(prom, "RayopsObjectSpilling", bool, timeout=30, what="spilling")
    assert all(v > 0 for v in _values(spilling))
    KEEP.append(refs)  # keeps the store full


def test_worker_killed_for_memory_fires_its_alert_expression(prom: PrometheusServer) -> None:
    import time as _time

    import rayops
    from rayops.exceptions import OutOfMemoryError

    @rayops.remote(max_retries=0)
    def hog() -> str:
        chunks = []
        for _ in range(60):  # at most 6 GiB; the monitor kills it past about 3 GiB
            chunks.append(b"\x01" * (100 * 2**20))
            _time.sleep(0.05)
        return "survived"

    with pytest.raises(OutOfMemoryError):
        rayops.get(hog.remote(), timeout=120)
    result = _alert(prom, "RayopsWorkersKilledForMemory", bool, timeout=30, what="memory kill")
    assert sum(_values(result)) >= 1


# ---- every dashboard query returns data -------------------------------------------------------


def test_every_dashboard_query_returns_data(
    prom: PrometheusServer, session_name: str, tmp_path: Path
) -> None:
    import rayops

    @rayops.remote
    def square(x: int) -> int:
        return x * x

    @rayops.remote
    def fail() -> None:
        raise ValueError("a failed task for the dashboard")

    @rayops.remote
    class Pinger:
        def ping(self) -> int:
            return 1

    marker = tmp_path / "first-attempt-done"

    @rayops.remote(max_retries=1, retry_exceptions=True)
    def flaky(path: str) -> str:
        if not os.path.exists(path):
            open(path, "w").close()
            raise RuntimeError("first attempt fails, the retry succeeds")
        return "ok"

    assert rayops.get([square.remote(i) for i in range(10)]) == [i * i for i in range(10)]
    assert rayops.get(flaky.remote(str(marker))) == "ok"
    with pytest.raises(Exception, match="a failed task"):
        rayops.get(fail.remote())
    pinger = Pinger.remote()
    assert rayops.get(pinger.ping.remote()) == 1
    KEEP.append(pinger)

    missing = []
    deadline = time.monotonic() + 40
    for uid, title, expr in dashboards.queries():
        query = dashboards.concrete_query(expr, session=session_name, rate="15s")
        while True:
            if prom.query(query):
                break
            if time.monotonic() > deadline:
                missing.append(f"{uid} / {title}: {query}")
                break
            time.sleep(0.25)
    assert not missing, "dashboard queries without data:\n" + "\n".join(missing)


# ---- destructive stages: a stopped agent, a stopped GCS, a killed node -----------------------


def test_stopped_head_agent_fires_scrape_failing_and_head_missing(
    cluster: Cluster, prom: PrometheusServer
) -> None:
    pid = _agent_pid(cluster.head.raylet_pid)
    os.kill(pid, signal.SIGSTOP)
    try:
        failing = _alert(prom, "RayopsAgentScrapeFailing", bool, timeout=30, what="up == 0")
        assert [r["metric"]["ray_io_node_type"] for r in failing] == ["head"]
        _alert(prom, "RayopsHeadAgentMissing", bool, timeout=30, what="absent cluster metrics")
    finally:
        os.kill(pid, signal.SIGCONT)
    prom.wait_for(
        'up{job="ray"}', lambda r: len(r) == 3 and all(v == 1 for v in _values(r)), timeout=30
    )


def test_killed_node_fires_node_down_and_leaves_discovery(
    cluster: Cluster, prom: PrometheusServer, agents: dict[str, str]
) -> None:
    victim = cluster.nodes[2]
    victim_agent = agents[victim.node_id]
    cluster.kill_raylet(victim)
    t0 = time.monotonic()
    down = _alert(prom, "RayopsNodeDown", bool, timeout=60, what="node down")
    assert _values(down) == [1.0]
    prom.wait_for(
        'up{job="ray"}',
        lambda r: {x["metric"]["instance"] for x in r} == set(agents.values()) - {victim_agent},
        timeout=30,
        what="dead node's agent leaves discovery",
    )
    print(f"node down alert expression and discovery drop {time.monotonic() - t0:.1f} s after kill")


def test_stopped_gcs_fires_gcs_unreachable(cluster: Cluster, prom: PrometheusServer) -> None:
    """Last: a GCS stopped this long may declare nodes dead when it resumes."""
    gcs_pid = cluster.gcs_pid()
    os.kill(gcs_pid, signal.SIGSTOP)
    try:
        _alert(prom, "RayopsGCSUnreachable", bool, timeout=60, what="GCS unreachable")
    finally:
        os.kill(gcs_pid, signal.SIGCONT)
    prom.wait_for(
        "min(ray_gcs_reachable) == 1",
        bool,
        timeout=60,
        what="the GCS answers the head's agent again",
    )


def test_every_alert_expression_returned_data() -> None:
    """Each alert of alerts.yml had its condition caused above and its expression answered."""
    assert set(ALERTS) == FIRED, f"alerts never exercised: {sorted(set(ALERTS) - FIRED)}"
