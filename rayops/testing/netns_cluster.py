"""A cluster whose nodes each run in their own Linux network namespace, with their own
address, started with the real CLI (``rayops start``) inside the namespace.

Built on :class:`rayops.testing.hosts.HostNetwork` (namespaces on a private bridge). The
test process reaches every node through the bridge; a driver runs inside the head's
namespace. Used by tests/hosts; later issues reuse it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from rayops.testing.hosts import HostNetwork

PY = sys.executable


def _in_ns(
    net: HostNetwork, host: str, *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    ns = net.hosts[host].ns
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv], capture_output=True, text=True, timeout=timeout
    )


class NsCluster:
    def __init__(self, net: HostNetwork, base: Path) -> None:
        self.net = net
        self.base = base
        self.head_ip = net.hosts["h1"].ip
        self.gcs = f"{self.head_ip}:6379"

    def temp_dir(self, host: str) -> str:
        return str(self.base / host)

    def start(self) -> None:
        cli = [PY, "-m", "rayops.cli.main", "start"]
        r = _in_ns(
            self.net,
            "h1",
            *cli,
            "--head",
            "--port",
            "6379",
            "--num-cpus",
            "1",
            "--node-ip-address",
            self.head_ip,
            "--temp-dir",
            self.temp_dir("h1"),
        )
        assert r.returncode == 0, r.stderr
        self.token_file = os.path.join(self.temp_dir("h1"), "session_latest", "cluster_token")
        for host in ("h2", "h3"):
            self.start_worker(host)

    def start_worker(self, host: str) -> None:
        """Start (or start again, as a new node) the worker node on ``host``."""
        r = _in_ns(
            self.net,
            host,
            PY,
            "-m",
            "rayops.cli.main",
            "start",
            "--address",
            self.gcs,
            "--token-file",
            self.token_file,
            "--num-cpus",
            "1",
            "--node-ip-address",
            self.net.hosts[host].ip,
            "--temp-dir",
            self.temp_dir(host),
        )
        assert r.returncode == 0, r.stderr

    def restart_node(self, host: str) -> None:
        """After its raylet died: stop what is left of the node and start it again."""
        _in_ns(
            self.net, host, PY, "-m", "rayops.cli.main", "stop", "--temp-dir", self.temp_dir(host)
        )
        self.start_worker(host)

    def wait_nodes(self, alive: int, timeout: float = 60.0) -> None:
        """Wait until ``alive`` nodes are ALIVE (bounded)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                n = sum(1 for node in self.status() if node["state"] == "ALIVE")
            except AssertionError:
                n = -1  # the GCS is restarting
            if n >= alive:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} of {alive} nodes alive after {timeout:.0f}s")
            time.sleep(0.5)

    def status(self) -> list[dict[str, Any]]:
        r = subprocess.run(
            [PY, "-m", "rayops.cli.main", "status", "--address", self.gcs, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            env={**os.environ, "RAYOPS_TOKEN_FILE": self.token_file},
        )  # from the root namespace, through the bridge
        assert r.returncode == 0, r.stderr
        nodes: list[dict[str, Any]] = json.loads(r.stdout)
        return nodes

    def driver(self, code: str) -> subprocess.CompletedProcess[str]:
        script = f"import rayops\nrayops.init('auto', _temp_dir={self.temp_dir('h1')!r})\n"
        return _in_ns(self.net, "h1", PY, "-c", script + textwrap.dedent(code))

    def raylet_pid(self, host: str) -> int | None:
        from rayops.node.session import NodeRecord, latest_session

        session = latest_session(self.temp_dir(host))
        if session is None:
            return None
        pid = NodeRecord.load(session).pids.get("raylet")
        if pid is None:
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        return pid

    def stop(self) -> None:
        for host in ("h3", "h2", "h1"):
            _in_ns(
                self.net,
                host,
                PY,
                "-m",
                "rayops.cli.main",
                "stop",
                "--temp-dir",
                self.temp_dir(host),
            )
