"""The wheel is the product: `rayops up / exec / submit / down` from a wheel-installed rayops.

The rayops wheel is built from a copy of the source tree (the tree gets no build litter),
installed with pip into a fresh virtualenv outside the source tree, first alone (the launcher
commands then say to install the ``launcher`` extra) and then with ``[launcher]``. That
virtualenv's ``rayops`` runs from a directory outside the source tree, with no package index
(pip may not reach one while the node wheelhouse is made), against three fresh SSH hosts: the
hosts get the installed rayops and dependencies repacked into wheels. Once they are up, a
real Prometheus in the root namespace finds the three node agents through the head agent's
HTTP service discovery and scrapes them with a copy of the cluster token, on the metrics port
the spec fixes (``rayops.ports.metrics_export``, default 8080). A three-host cluster runs TLS
by default: discovery and scrapes are https, with the client certificate ``rayops up`` made
on this machine (its cluster CA stays here).
"""

from __future__ import annotations

import json
import os
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from rayops.monitoring.prometheus_config import PrometheusSetup
from rayops.testing.hosts import wait_until
from rayops.testing.prometheus import PrometheusServer, prometheus_binary

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
HINT = "pip install 'rayops[launcher]'"
METRICS_PORT = 8080  # rayops.ports.metrics_export's default: the spec does not set it


@dataclass
class WheelCli:
    """The ``rayops`` command of a virtualenv that has the built wheel installed."""

    launcher: Any  # tests/hosts/conftest.py's Launcher: the hosts and their specs
    venv: Path
    wheel: Path
    cwd: Path
    env: dict[str, str]
    figures: dict[str, float] = field(default_factory=dict)
    missing: dict[str, bool] = field(default_factory=dict)  # importable before [launcher]
    no_extra: subprocess.CompletedProcess[str] | None = None  # `up` before [launcher]
    connections: dict[str, int] = field(default_factory=dict)  # SSH logins it made, per host

    def run(self, *args: str, timeout: float = 400) -> subprocess.CompletedProcess[str]:
        t0 = time.monotonic()
        proc = subprocess.run(
            [str(self.venv / "bin" / "rayops"), *args],
            capture_output=True, text=True, env=self.env, cwd=self.cwd, timeout=timeout,
            check=False,
        )  # fmt: skip
        seconds = time.monotonic() - t0
        print(f"\n$ rayops {' '.join(args)}  -> rc {proc.returncode} in {seconds:.1f} s\n"
              f"{proc.stdout}{proc.stderr}")  # fmt: skip
        self.figures[f"{args[0]}_s"] = round(seconds, 2)
        return proc

    def tls_dir(self) -> Path:
        """Where `rayops up` keeps this cluster's CA and this machine's client certificate."""
        return Path(self.env["XDG_CACHE_HOME"]) / "rayops" / "tls" / "hosttest"

    def tls_files(self) -> tuple[str, str, str]:
        d = self.tls_dir()
        return str(d / "ca.pem"), str(d / "hosts/client/node.pem"), str(d / "hosts/client/node.key")

    def spec(self) -> Path:
        # The default source: the rayops that runs `up`, here the wheel-installed one.
        return Path(self.launcher.spec("wheel.yaml", rayops={"install": {"source": "project"}}))


def _pip(venv: Path, *args: str) -> float:
    t0 = time.monotonic()
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-compile", *args],
        capture_output=True, text=True, check=False, timeout=900,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return time.monotonic() - t0


@pytest.fixture(scope="module")
def cli(launcher: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WheelCli]:
    base = tmp_path_factory.mktemp("wheel")
    figures: dict[str, float] = {}
    # The wheel, built from the launcher fixture's snapshot (a copy of the tree), like a
    # release would be: `pip wheel` writes its build/ and egg-info there, not in the repo.
    t0 = time.monotonic()
    dist = base / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation",
         "-w", str(dist), str(launcher.source)],
        check=True, capture_output=True, timeout=300,
    )  # fmt: skip
    (wheel,) = dist.glob("rayops-*.whl")
    figures["wheel_build_s"] = round(time.monotonic() - t0, 1)
    t0 = time.monotonic()
    venv = base / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    figures["venv_s"] = round(time.monotonic() - t0, 1)
    figures["pip_install_s"] = round(_pip(venv, str(wheel)), 1)
    work = base / "work"
    work.mkdir()
    # The operator's machine: the venv's own tools, and no package index for pip at all.
    env = {k: v for k, v in launcher.env.items()
           if not k.startswith("PIP_") and k not in ("PYTHONPATH", "VIRTUAL_ENV")}  # fmt: skip
    env.update(PIP_CONFIG_FILE=os.devnull, PIP_NO_INDEX="1",
               PATH=f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}")  # fmt: skip
    cli = WheelCli(launcher, venv, wheel, work, env, figures)
    # Without the launcher extra first: what a user who ran `pip install rayops` sees.
    cli.missing = {m: _importable(venv, m) for m in ("ansible", "fabric", "paramiko")}
    before = {n: launcher.net.connections_logged(n) for n in launcher.net.hosts}
    cli.no_extra = cli.run("up", str(cli.spec()), "-y")
    cli.connections = {n: launcher.net.connections_logged(n) - before[n] for n in before}
    figures["pip_install_launcher_s"] = round(_pip(venv, f"{wheel}[launcher]"), 1)
    yield cli
    print("\nwheel-install figures: " + json.dumps(cli.figures, indent=1))


def _importable(venv: Path, module: str) -> bool:
    probe = subprocess.run([str(venv / "bin" / "python"), "-c", f"import {module}"],
                           capture_output=True, check=False)  # fmt: skip
    return probe.returncode == 0


def test_the_installed_wheel_runs_outside_the_source_tree(cli: WheelCli) -> None:
    code = (
        "import json, rayops; from rayops.launcher.assets import launcher_assets\n"
        "with launcher_assets() as root: print(json.dumps([rayops.__file__, str(root)]))"
    )
    res = subprocess.run(
        [str(cli.venv / "bin" / "python"), "-c", code],
        capture_output=True, text=True, cwd=cli.cwd, env=cli.env, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    module, assets = json.loads(res.stdout)
    assert module.startswith(str(cli.venv)) and assets.startswith(str(cli.venv))
    assert not str(cli.cwd).startswith(str(REPO)) and not str(cli.venv).startswith(str(REPO))
    assert not (REPO / "build").exists(), "the wheel build left build/ in the source tree"


def test_without_the_launcher_extra_up_says_how_to_install_it(cli: WheelCli) -> None:
    assert cli.missing == {"ansible": False, "fabric": False, "paramiko": False}
    res = cli.no_extra
    assert res is not None
    assert res.returncode == 1, res.stdout + res.stderr
    assert HINT in res.stderr and "Traceback" not in res.stderr, res.stderr
    assert set(cli.connections.values()) == {0}, "without its extra, up must reach no host"


def test_up_from_the_wheel_brings_three_hosts_up(cli: WheelCli) -> None:
    launcher = cli.launcher
    for name in launcher.net.hosts:
        assert not launcher.rayops_processes(name)
    res = cli.run("up", str(cli.spec()), "-y")
    cli.figures["first_up_s"] = cli.figures.pop("up_s")
    assert res.returncode == 0, res.stdout + res.stderr
    assert "Summary: 3 of 3 host(s) up" in res.stdout
    # The node wheelhouse was made from this virtualenv's install: rayops repacked from it,
    # every dependency at the version installed here (no index was reachable to pip).
    (wheelhouse,) = (Path(cli.env["XDG_CACHE_HOME"]) / "rayops" / "wheelhouse").iterdir()
    pins = (wheelhouse / "requirements.txt").read_text().split()
    listed = subprocess.run(
        [str(cli.venv / "bin" / "python"), "-m", "pip", "list", "--format", "json"],
        capture_output=True, text=True, check=True, env=cli.env,
    )  # fmt: skip
    here = {d["name"].lower().replace("_", "-"): d["version"] for d in json.loads(listed.stdout)}
    for pin in pins:
        name, version = pin.split("==")
        assert here[name.lower().replace("_", "-")] == version, pin
    assert {p.split("==")[0].lower() for p in pins} >= {"rayops", "grpcio", "psutil", "uvloop"}
    status = cli.run("status", str(cli.spec()), "--json")
    assert status.returncode == 0, status.stderr
    nodes = json.loads(status.stdout)["nodes"]
    alive = sorted(n["node_ip"] for n in nodes if n["state"] == "ALIVE")
    assert alive == sorted(launcher.ips.values())
    # Every agent listens on the spec's metrics port, and status says where.
    head_ip = launcher.ips["h1"]
    sd_url = f"https://{head_ip}:{METRICS_PORT}/api/prometheus/sd"
    assert json.loads(status.stdout)["prometheus_sd_url"] == sd_url
    endpoints = {r["host"]: r["metrics_endpoint"] for r in json.loads(status.stdout)["hosts"]}
    assert endpoints == {ip: f"https://{ip}:{METRICS_PORT}/metrics" for ip in launcher.ips.values()}
    text = cli.run("status", str(cli.spec()))
    assert text.returncode == 0, text.stderr
    assert text.stdout.count(sd_url) == 1, text.stdout
    for ip in launcher.ips.values():
        assert f"https://{ip}:{METRICS_PORT}/metrics" in text.stdout
    # TLS is on (three hosts): the CA stays here; each host got its own certificate.
    assert (cli.tls_dir() / "ca.key").stat().st_mode & 0o777 == 0o600
    for name in launcher.net.hosts:  # the hosts run their own install, not this machine's
        check = launcher.net.ssh(
            name, "~/rayops/hosttest/venv/bin/python -c 'import rayops; print(rayops.__file__)'"
        )
        assert check.returncode == 0, check.stderr
        assert check.stdout.strip().startswith(str(launcher.net.hosts[name].home))


def _head_token(cli: WheelCli, dest: Path) -> Path:
    """A copy (mode 0600) of the cluster token the head keeps in its install dir."""
    src = cli.launcher.net.hosts["h1"].home / "rayops" / "hosttest" / "cluster_token"
    shutil.copyfile(src, dest)
    dest.chmod(0o600)
    return dest


def _tls_context(files: tuple[str, str, str], client_cert: bool = True) -> ssl.SSLContext:
    ca, cert, key = files
    ctx = ssl.create_default_context(cafile=ca)
    if client_cert:
        ctx.load_cert_chain(cert, key)
    return ctx


def _get(url: str, ctx: ssl.SSLContext, token: str | None = None) -> tuple[int, bytes]:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    req = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=3, context=ctx) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def test_agents_refuse_a_scrape_without_the_token(cli: WheelCli, tmp_path: Path) -> None:
    token = _head_token(cli, tmp_path / "token").read_text().strip()
    ctx = _tls_context(cli.tls_files())
    for ip in cli.launcher.ips.values():
        url = f"https://{ip}:{METRICS_PORT}/metrics"
        for wrong in (None, "not-the-token"):
            code, body = _get(url, ctx, wrong)
            assert code == 401 and b"ray_" not in body, (url, wrong, code, body[:200])
        code, body = _get(url, ctx, token)
        assert code == 200 and b"ray_node_cpu_count" in body, (url, code)
        # The token alone is not enough: without a certificate of the cluster CA the TLS
        # handshake itself fails.
        with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
            _get(url, _tls_context(cli.tls_files(), client_cert=False), token)
    sd = f"https://{cli.launcher.ips['h1']}:{METRICS_PORT}/api/prometheus/sd"
    code, body = _get(sd, ctx)
    assert code == 401 and b"targets" not in body, (code, body[:200])


@pytest.mark.skipif(
    prometheus_binary() is None, reason="no prometheus: run scripts/bootstrap-monitoring.sh"
)
def test_prometheus_discovers_the_three_agents_over_http_sd(cli: WheelCli, tmp_path: Path) -> None:
    ips = cli.launcher.ips
    agents = {f"{ip}:{METRICS_PORT}" for ip in ips.values()}
    setup = PrometheusSetup(
        token_file=str(_head_token(cli, tmp_path / "cluster_token")),
        head_agent=f"{ips['h1']}:{METRICS_PORT}",
        scrape_interval_s=1,
        evaluation_interval_s=1,
        sd_refresh_s=1,
        tls_files=cli.tls_files(),
    )
    t0 = time.monotonic()
    with PrometheusServer(str(tmp_path / "prometheus"), setup) as prom:
        up = prom.wait_for(
            'up{job="ray"}',
            lambda r: len(r) == 3 and all(float(x["value"][1]) == 1 for x in r),
            timeout=40,
            what="the 3 agents up",
        )
        cli.figures["prometheus_all_up_s"] = round(time.monotonic() - t0, 1)
        assert {r["metric"]["instance"] for r in up} == agents
        targets = [t for t in prom.targets() if t["scrapePool"] == "ray"]
        assert len(targets) == 3 and all(t["health"] == "up" for t in targets), targets
        for t in targets:  # the job has no static targets: each came from the head's HTTP SD
            assert t["discoveredLabels"]["__meta_url"] == (
                f"https://{ips['h1']}:{METRICS_PORT}/api/prometheus/sd"
            ), t
        roles = sorted(t["labels"]["ray_io_node_type"] for t in targets)
        assert roles == ["head", "worker", "worker"]
        cpus = prom.wait_for(
            "ray_node_cpu_count", lambda r: len(r) == 3, timeout=20, what="3 node CPU counts"
        )
        assert sorted(r["metric"]["NodeAddress"] for r in cpus) == sorted(ips.values())


def test_exec_and_submit_from_the_wheel(cli: WheelCli, tmp_path: Path) -> None:
    spec = str(cli.spec())
    res = cli.run("exec", spec, "hostname", "--node", "all")
    assert res.returncode == 0, res.stdout + res.stderr
    for name, ip in cli.launcher.ips.items():
        assert f"[{ip}] {name}" in res.stdout
    script = tmp_path / "driver.py"
    script.write_text(
        "import socket\n"
        "import rayops as ray\n"
        "ray.init()\n"
        "@ray.remote(scheduling_strategy='SPREAD')\n"
        "def square(x):\n"
        "    return x * x, socket.gethostname()\n"
        "out = ray.get([square.remote(i) for i in range(30)])\n"
        "print('SUM', sum(v for v, _ in out))\n"
        "print('HOSTS', ','.join(sorted({h for _, h in out})))\n"
    )
    res = cli.run("submit", spec, str(script))
    assert res.returncode == 0, res.stdout + res.stderr
    assert f"SUM {sum(i * i for i in range(30))}" in res.stdout
    assert res.stdout.split("HOSTS ", 1)[1].split()[0] == "h1,h2,h3"


def test_down_from_the_wheel_leaves_no_rayops_process(cli: WheelCli) -> None:
    res = cli.run("down", str(cli.spec()), "-y")
    assert res.returncode == 0, res.stdout + res.stderr
    for name in cli.launcher.net.hosts:
        wait_until(lambda n=name: not cli.launcher.rayops_processes(n), f"rayops left on {name}")
