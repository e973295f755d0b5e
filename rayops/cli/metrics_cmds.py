"""``rayops metrics launch-prometheus``: write a Prometheus config for a running cluster
and start Prometheus with it. Parse, call, render.

The config is the packaged template (``rayops/monitoring/assets``) filled in by
:func:`rayops.monitoring.render_prometheus_config`: HTTP service discovery against the
head's agent (found in the GCS node table) and the session's cluster token as the
``credentials_file``. It is written with the packaged alert rules to
``<session dir>/metrics/prometheus/``. Prometheus itself is not a dependency: when no
``prometheus`` binary is on PATH the command says so in one line, after writing the
config so it can be used elsewhere.

``register(subparsers)`` adds the command; ``HANDLERS`` maps it to its handler.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable

from rayops.node import session as sess

Handler = Callable[[argparse.Namespace], int]
READY_TIMEOUT_S = 20.0


class MetricsCommandError(Exception):
    """A user-facing failure of ``rayops metrics``: one line, exit code 1."""


def _temp_dir(args: argparse.Namespace) -> str:
    return args.temp_dir or os.environ.get("RAYOPS_TEMP_DIR") or sess.DEFAULT_TEMP_DIR


def _cluster(args: argparse.Namespace) -> tuple[str, str, str]:
    """(GCS address, token file, directory for the config) of the cluster to watch."""
    temp_dir = _temp_dir(args)
    session_dir = sess.latest_session(temp_dir)
    token_file = args.token_file or os.environ.get("RAYOPS_TOKEN_FILE")
    if not token_file and session_dir:
        token_file = os.path.join(session_dir, sess.TOKEN_FILE)
    if not token_file or not os.path.exists(token_file):
        raise MetricsCommandError(
            f"no cluster token found (no session under {temp_dir}): pass --token-file PATH "
            "or set RAYOPS_TOKEN_FILE to a copy of the head's cluster_token"
        )
    address = args.address
    if not address:
        try:
            address = sess.NodeRecord.load(session_dir).gcs_address if session_dir else None
        except (OSError, ValueError, TypeError):
            address = None
        if not address:
            raise MetricsCommandError(
                f"no rayops node found under {temp_dir}: pass --address HEAD:PORT (the GCS) "
                "or --temp-dir of a running node"
            )
    out_dir = os.path.join(session_dir or temp_dir, "metrics", "prometheus")
    return address, os.path.abspath(token_file), out_dir


def _find_head_agent(address: str, token_file: str) -> str:
    from rayops.gcs.client import GcsClient
    from rayops.monitoring import head_agent_address
    from rayops.rpc.auth import read_token_file

    token = read_token_file(token_file)
    try:
        with GcsClient(address, token, timeout=5.0) as gcs:
            nodes = gcs.get_all_nodes(alive_only=True)
    except ConnectionError as err:
        raise MetricsCommandError(str(err)) from err
    try:
        return head_agent_address(nodes)
    except LookupError as err:
        raise MetricsCommandError(f"{err} (GCS {address})") from err


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return True
    return False


def _running_pid(pid_file: str, config_path: str) -> int | None:
    """The pid of a Prometheus this command started earlier with ``config_path``, if alive."""
    import psutil

    try:
        with open(pid_file) as f:
            pid = int(f.read().strip())
        if config_path in " ".join(psutil.Process(pid).cmdline()):
            return pid
    except (OSError, ValueError, psutil.Error):
        pass
    return None


def _wait_ready(proc: subprocess.Popen[bytes], url: str, log_path: str) -> None:
    deadline = time.monotonic() + READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            with open(log_path, errors="replace") as f:
                last = (f.read().strip().splitlines() or ["(empty log)"])[-1]
            raise MetricsCommandError(f"prometheus exited at start (log {log_path}): {last}")
        try:
            with urllib.request.urlopen(f"{url}/-/ready", timeout=2) as r:
                if r.status == 200:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.1)
    raise MetricsCommandError(
        f"prometheus (pid {proc.pid}) not ready after {READY_TIMEOUT_S:g} s; see {log_path}"
    )


def cmd_launch_prometheus(args: argparse.Namespace) -> int:
    from rayops.monitoring import ALERTS_FILE, PrometheusSetup, asset_text
    from rayops.monitoring import render_prometheus_config as render
    from rayops.rpc import tls

    address, token_file, out_dir = _cluster(args)
    # A TLS cluster: its files sit next to the token (the session's tls.json).
    material = tls.adopt_beside_token(token_file, override=False)
    head_agent = _find_head_agent(address, token_file)
    listen = f"{args.host}:{args.port}"
    os.makedirs(out_dir, exist_ok=True)
    rules_path = os.path.join(out_dir, ALERTS_FILE)
    config_path = os.path.join(out_dir, "prometheus.yml")
    pid_file = os.path.join(out_dir, "prometheus.pid")
    running = _running_pid(pid_file, config_path)
    if running is not None:
        raise MetricsCommandError(
            f"a Prometheus started for this session is already running (pid {running}, "
            f"config {config_path}); stop it with `kill {running}` first"
        )
    setup = PrometheusSetup(
        token_file=token_file,
        head_agent=head_agent,
        rule_files=(rules_path,),
        listen_address=listen,
        tls_files=(
            None
            if material is None
            else (material.files.ca, material.files.cert, material.files.key)
        ),
    )
    with open(rules_path, "w", encoding="utf-8") as f:
        f.write(asset_text(ALERTS_FILE))
    with open(config_path, "w", encoding="utf-8") as f:
        f.write(render(setup))
    scheme = "https" if material is not None else "http"
    print(f"Wrote {config_path} (agents discovered through {scheme}://{head_agent})")
    binary = args.prometheus or shutil.which("prometheus")
    if not binary:
        raise MetricsCommandError(
            "Prometheus is not installed (no `prometheus` on PATH): install it "
            f"(Debian/Ubuntu: apt-get install prometheus), then run "
            f"`prometheus --config.file={config_path}`"
        )
    if _port_in_use(args.host, args.port):
        raise MetricsCommandError(
            f"port {args.port} on {args.host} is in use: pass --port with a free one"
        )
    log_path = os.path.join(out_dir, "prometheus.log")
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={os.path.join(out_dir, 'data')}",
                f"--web.listen-address={listen}",
                "--web.enable-lifecycle",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # outlives this command, like `rayops start`
        )
    url_host = "127.0.0.1" if args.host in ("0.0.0.0", "") else args.host
    _wait_ready(proc, f"http://{url_host}:{args.port}", log_path)
    with open(pid_file, "w") as f:
        f.write(f"{proc.pid}\n")
    print(f"Prometheus listening on http://{listen} (pid {proc.pid}, log {log_path})")
    print(f"  To stop it: kill {proc.pid}")
    return 0


def cmd_metrics(args: argparse.Namespace) -> int:
    try:
        return METRICS_HANDLERS[args.metrics_command](args)
    except (MetricsCommandError, ValueError, PermissionError, FileNotFoundError) as err:
        print(f"rayops metrics {args.metrics_command}: error: {err}", file=sys.stderr)
        return 1


METRICS_HANDLERS: dict[str, Handler] = {"launch-prometheus": cmd_launch_prometheus}
HANDLERS: dict[str, Handler] = {"metrics": cmd_metrics}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rayops metrics ...`` to the main parser's subparsers."""
    m = sub.add_parser("metrics", help="Prometheus for a running cluster")
    msub = m.add_subparsers(dest="metrics_command", required=True)
    p = msub.add_parser(
        "launch-prometheus",
        help="write a Prometheus config for this cluster and start Prometheus",
    )
    p.add_argument("--address", help="GCS address HEAD:PORT (default: the node of --temp-dir)")
    p.add_argument("--port", type=int, default=9090, help="Prometheus port (default 9090)")
    p.add_argument(
        "--host", default="127.0.0.1", help="address Prometheus binds to (default 127.0.0.1)"
    )
    p.add_argument("--temp-dir", default=None, help=f"default {sess.DEFAULT_TEMP_DIR}")
    p.add_argument("--token-file", help="cluster token file (default: the session's)")
    p.add_argument("--prometheus", help="the prometheus binary (default: from PATH)")
