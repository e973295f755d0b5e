"""A real Prometheus server for tests: start, query, stop.

    prom = PrometheusServer(base_dir, PrometheusSetup(token_file=..., head_agent=...),
                            rules={"alerts.yml": asset_text("alerts.yml")})
    prom.start()                   # free 127.0.0.1 port, waits for /-/ready
    prom.wait_for("up", lambda r: len(r) == 3, timeout=30)
    prom.stop()                    # stops the process, removes its files

The binary is Debian's ``prometheus`` package (``scripts/bootstrap-monitoring.sh``).
The server dies with the process that started it (PR_SET_PDEATHSIG), so a crashed
test run leaves no Prometheus behind. Nothing here sleeps a fixed time: callers poll
with a deadline (Prometheus takes ~6 s to hold its first samples).
"""

from __future__ import annotations

import ctypes
import dataclasses
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from typing import Any

from rayops.monitoring.prometheus_config import PrometheusSetup, render_prometheus_config
from rayops.node.processes import free_port
from rayops.testing.waiting import stop_process

Result = list[dict[str, Any]]


def prometheus_binary() -> str | None:
    return shutil.which("prometheus")


def promtool_binary() -> str | None:
    return shutil.which("promtool")


class PrometheusError(RuntimeError):
    """Prometheus did not start, or a query failed."""


# Resolved here, not in the forked child: the child of a threaded parent should do as little
# as possible before exec.
_prctl = ctypes.CDLL(None, use_errno=True).prctl
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


class PrometheusServer:
    def __init__(
        self,
        base_dir: str,
        setup: PrometheusSetup,
        *,
        rules: dict[str, str] | None = None,
        binary: str | None = None,
    ) -> None:
        self.base_dir = base_dir
        self.binary = binary or prometheus_binary()
        if self.binary is None:
            raise PrometheusError("no `prometheus` on PATH: run scripts/bootstrap-monitoring.sh")
        self.port = free_port("127.0.0.1")
        self.address = f"127.0.0.1:{self.port}"
        self.url = f"http://{self.address}"
        self.rules = dict(rules or {})
        self.setup = dataclasses.replace(
            setup,
            listen_address=self.address,
            rule_files=tuple(os.path.join(base_dir, n) for n in self.rules),
        )
        self.config_path = os.path.join(base_dir, "prometheus.yml")
        self.log_path = os.path.join(base_dir, "prometheus.log")
        self.proc: subprocess.Popen[bytes] | None = None

    def write_config(self) -> str:
        os.makedirs(self.base_dir, exist_ok=True)
        for name, text in self.rules.items():
            with open(os.path.join(self.base_dir, name), "w", encoding="utf-8") as f:
                f.write(text)
        with open(self.config_path, "w", encoding="utf-8") as f:
            f.write(render_prometheus_config(self.setup))
        return self.config_path

    def start(self, timeout: float = 20.0) -> None:
        assert self.binary is not None
        self.write_config()
        # Prometheus dies with this process: setpriv sets the parent-death signal, so nothing
        # runs in the child between fork and exec (Popen then uses vfork). Python code there
        # (preexec_fn forces a plain fork) runs the fork handlers of a gRPC event engine this
        # process may hold, whose restarted poller broke the child before it could exec.
        setpriv = shutil.which("setpriv")
        wrapper = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        with open(self.log_path, "wb") as log:
            self.proc = subprocess.Popen(
                [
                    *wrapper,
                    self.binary,
                    f"--config.file={self.config_path}",
                    f"--storage.tsdb.path={os.path.join(self.base_dir, 'data')}",
                    f"--web.listen-address={self.address}",
                    "--web.enable-lifecycle",
                    "--storage.tsdb.retention.time=1h",
                ],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                preexec_fn=None if setpriv else _die_with_parent,
            )
        deadline = time.monotonic() + timeout
        while True:
            if self.proc.poll() is not None:
                raise PrometheusError(f"prometheus exited at start: {self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/-/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            if time.monotonic() > deadline:
                raise PrometheusError(f"prometheus not ready after {timeout} s: {self.log_tail()}")
            time.sleep(0.05)

    def log_tail(self, lines: int = 15) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def api(self, path: str, params: dict[str, str] | None = None) -> Any:
        """GET /api/v1/<path>; the ``data`` of a successful answer."""
        url = f"{self.url}/api/v1/{path}"
        if params:
            url += "?" + urllib.parse.urlencode(params)
        try:
            with urllib.request.urlopen(url, timeout=10) as r:
                body = json.load(r)
        except urllib.error.HTTPError as err:
            detail = err.read().decode(errors="replace")
            raise PrometheusError(f"{path} {params}: HTTP {err.code}: {detail}") from err
        if body.get("status") != "success":
            raise PrometheusError(f"{path} {params}: {body}")
        return body["data"]

    def query(self, expr: str) -> Result:
        """An instant query; the result list (vector elements, or one scalar)."""
        data = self.api("query", {"query": expr})
        if data["resultType"] in ("scalar", "string"):
            return [{"metric": {}, "value": data["result"]}]
        result: Result = data["result"]
        return result

    def wait_for(
        self,
        expr: str,
        predicate: Callable[[Result], bool] = bool,
        *,
        timeout: float = 30.0,
        what: str = "",
    ) -> Result:
        """Poll ``expr`` until ``predicate(result)`` holds; the result that passed."""
        deadline = time.monotonic() + timeout
        result: Result = []
        while True:
            result = self.query(expr)
            if predicate(result):
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{what or expr}: not satisfied after {timeout} s; last result {result}"
                )
            time.sleep(0.25)

    def targets(self) -> list[dict[str, Any]]:
        active: list[dict[str, Any]] = self.api("targets", {"state": "active"})["activeTargets"]
        return active

    def stop(self) -> None:
        stop_process(self.proc, grace=10)
        self.proc = None
        shutil.rmtree(os.path.join(self.base_dir, "data"), ignore_errors=True)

    def __enter__(self) -> PrometheusServer:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
