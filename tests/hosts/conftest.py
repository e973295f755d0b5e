"""Host-tier fixtures: three SSH hosts in network namespaces and a way to run the launcher.

Skips (with the reason) when this machine cannot make test hosts: not root, no ``ip netns``,
no sshd/ansible-playbook. On CI (root, scripts/bootstrap-hosts.sh run) they run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from rayops.testing.hosts import HostNetwork, kill_ssh_masters, unavailable_reason


def _skip_reason() -> str | None:
    reason = unavailable_reason()
    if reason:
        return reason
    bindir = Path(sys.executable).parent
    if not (bindir / "ansible-playbook").exists() and shutil.which("ansible-playbook") is None:
        return "ansible-playbook is not installed (pip install ansible-core)"
    return None


def _cli_module() -> str:
    """`rayops` itself once the launcher is wired into rayops/cli/main.py."""
    from rayops.cli import main

    wired = "up" in getattr(main, "COMMANDS", {})
    return "rayops.cli.main" if wired else "rayops.cli.launcher_cmds"


@dataclass
class CliResult:
    rc: int
    out: str
    err: str
    seconds: float

    @property
    def text(self) -> str:
        return self.out + self.err


class Launcher:
    """Writes cluster specs for the test hosts and runs the real CLI as a subprocess."""

    def __init__(self, net: HostNetwork, base: Path, control_dir: str) -> None:
        self.net = net
        self.base = base
        self.control_dir = control_dir
        self.ips = {name: h.ip for name, h in net.hosts.items()}
        self.app = base / "app"
        self.app.mkdir(exist_ok=True)
        (self.app / "data.txt").write_text("mounted\n")
        self.env = dict(os.environ)
        # pip's own download cache follows XDG_CACHE_HOME: keep using the usual one.
        self.env.setdefault("PIP_CACHE_DIR", os.path.expanduser("~/.cache/pip"))
        self.env.update(
            XDG_CACHE_HOME=str(base / "cache"),
            RAYOPS_SSH_CONTROL_DIR=control_dir,
            PYTHONUNBUFFERED="1",
        )
        self.module = _cli_module()
        self.figures: dict[str, float] = {}
        self.source = self._snapshot_source(base / "src")

    @staticmethod
    def _snapshot_source(dest: Path) -> Path:
        """A copy of the rayops source tree taken once: what the hosts install stays the same
        for the whole module even if the working tree changes meanwhile."""
        repo = Path(__file__).resolve().parents[2]
        shutil.copytree(repo / "rayops", dest / "rayops",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))  # fmt: skip
        for name in ("pyproject.toml", "README.md"):
            shutil.copy2(repo / name, dest / name)
        return dest

    def spec_data(self, **overrides: Any) -> dict[str, Any]:
        data: dict[str, Any] = {
            "cluster_name": "hosttest",
            "provider": {
                "type": "local",
                "head_ip": self.ips["h1"],
                "worker_ips": [self.ips["h2"], self.ips["h3"]],
            },
            "auth": {
                "ssh_user": "root",
                "ssh_private_key": str(self.net.key),
                "known_hosts_file": str(self.net.known_hosts),
                "connect_timeout": 3,
            },
            "available_node_types": {
                "head.default": {"resources": {"CPU": 1}},
                "worker.default": {"resources": {"CPU": 1}},
            },
            "head_node_type": "head.default",
            "file_mounts": {"~/app": str(self.app)},
            "setup_commands": ["echo setup on $(hostname)"],
            "rayops": {"install": {"source": "project", "path": str(self.source)}},
        }
        for key, value in overrides.items():
            if isinstance(value, dict) and isinstance(data.get(key), dict):
                data[key] = {**data[key], **value}
            else:
                data[key] = value
        return data

    def spec(self, name: str = "cluster.yaml", **overrides: Any) -> Path:
        return self.write_spec(name, self.spec_data(**overrides))

    def write_spec(self, name: str, data: dict[str, Any]) -> Path:
        path = self.base / name
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    def run(self, *args: str, timeout: float = 400) -> CliResult:
        t0 = time.monotonic()
        proc = subprocess.run(
            [sys.executable, "-m", self.module, *args],
            capture_output=True,
            text=True,
            env=self.env,
            cwd=self.base,
            timeout=timeout,
            check=False,
        )
        res = CliResult(proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
        print(f"\n$ rayops {' '.join(args)}  -> rc {res.rc} in {res.seconds:.1f} s\n{res.text}")
        return res

    def up(self, spec: Path | None = None, *extra: str) -> CliResult:
        return self.run("up", str(spec or self.spec()), "-y", *extra)

    def ensure_up(self) -> None:
        res = self.up()
        assert res.rc == 0, res.text

    def rayops_processes(self, name: str) -> list[str]:
        """Command lines of rayops processes on a host (sshd and its sessions excluded)."""
        return [
            c
            for c in self.net.processes(name)
            if "rayops" in c and not c.startswith(("sshd", "unshare"))
        ]

    def raylet_pid(self, name: str) -> str:
        res = self.net.ssh(name, "cat ~/rayops/hosttest/run/raylet.pid 2>/dev/null")
        return res.stdout.strip()

    def cluster_status(self) -> dict[str, Any]:
        res = self.run("status", str(self.spec()), "--json")
        assert res.rc == 0, res.text
        data: dict[str, Any] = json.loads(res.out)
        return data


@pytest.fixture(scope="module")
def launcher(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("hosts")
    control_dir = f"/tmp/rayops-ssh-t{os.getpid()}"
    net = HostNetwork(base / "net", count=3)
    try:
        net.start()
        launcher = Launcher(net, base, control_dir)
        yield launcher
        if launcher.figures:
            print("\nlauncher figures: " + json.dumps(launcher.figures, indent=1))
    finally:
        net.close()
        kill_ssh_masters(control_dir)
        shutil.rmtree(control_dir, ignore_errors=True)
