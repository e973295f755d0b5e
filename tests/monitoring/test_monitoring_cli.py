"""``rayops metrics launch-prometheus`` against a running one-node cluster: it writes a
config that discovers the head's agent over HTTP SD with the session's token, starts a
real Prometheus that scrapes it, and without Prometheus installed it fails in one line.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from rayops.node.processes import free_port
from rayops.testing.cluster import Cluster
from rayops.testing.prometheus import prometheus_binary

pytestmark = pytest.mark.slow

RAYOPS = [sys.executable, "-m", "rayops.cli.main"]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("cli-cluster")), object_store_memory=64 * 2**20)
    try:
        yield c
    finally:
        c.shutdown()


def _run(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*RAYOPS, "metrics", "launch-prometheus", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


def _query(url: str, expr: str) -> list[dict[str, Any]]:
    import json
    import urllib.parse

    with urllib.request.urlopen(
        f"{url}/api/v1/query?{urllib.parse.urlencode({'query': expr})}", timeout=5
    ) as r:
        result: list[dict[str, Any]] = json.load(r)["data"]["result"]
        return result


@pytest.mark.skipif(prometheus_binary() is None, reason="no prometheus installed")
def test_launch_prometheus_scrapes_the_cluster(cluster: Cluster) -> None:
    port = free_port("127.0.0.1")
    r = _run(["--temp-dir", cluster.head.temp_dir, "--port", str(port)])
    assert r.returncode == 0, r.stderr
    m = re.search(r"pid (\d+)", r.stdout)
    assert m, r.stdout
    pid = int(m.group(1))
    try:
        assert f"Prometheus listening on http://127.0.0.1:{port}" in r.stdout
        session = cluster.head.started.record.session_dir
        config_path = Path(session) / "metrics" / "prometheus" / "prometheus.yml"
        config = yaml.safe_load(config_path.read_text())
        (job,) = [j for j in config["scrape_configs"] if j["job_name"] == "ray"]
        assert job["authorization"]["credentials_file"] == os.path.join(session, "cluster_token")
        assert job["http_sd_configs"][0]["url"].endswith("/api/prometheus/sd")
        assert config["rule_files"] == [str(config_path.parent / "alerts.yml")]
        # A second launch for the same session refuses rather than starting a twin.
        again = _run(["--temp-dir", cluster.head.temp_dir, "--port", str(free_port("127.0.0.1"))])
        assert again.returncode == 1 and "already running" in again.stderr
        deadline = time.monotonic() + 40
        url = f"http://127.0.0.1:{port}"
        while True:
            up = _query(url, 'up{job="ray"}')
            if up and float(up[0]["value"][1]) == 1:
                break
            assert time.monotonic() < deadline, f"head agent not scraped: {up}"
            time.sleep(0.5)
        # The packaged alert rules are loaded.
        with urllib.request.urlopen(f"{url}/api/v1/rules", timeout=5) as resp:
            assert b"RayopsNodeDown" in resp.read()
    finally:
        os.kill(pid, signal.SIGTERM)
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(timeout=15)


def test_without_prometheus_one_line_error_and_config_written(
    cluster: Cluster, tmp_path: Path
) -> None:
    env = dict(os.environ, PATH=str(tmp_path))  # no prometheus on PATH
    r = _run(["--temp-dir", cluster.head.temp_dir, "--port", "9"], env=env)
    assert r.returncode == 1
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "Prometheus is not installed" in line and "apt-get install prometheus" in line
    assert "Wrote " in r.stdout


def test_no_cluster_is_a_one_line_error(tmp_path: Path) -> None:
    r = _run(["--temp-dir", str(tmp_path)])
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "cluster token" in r.stderr
