"""An actor's liveness comes from its raylet's reports, not from the GCS's own connection to
the worker (issue 10): a connection cut while the worker lives changes nothing; the worker's
death, reported by its raylet, does."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

import psutil
import pytest

import rayops
from rayops import exceptions as rex
from rayops.gcs import calls
from rayops.gcs.client import GcsClient
from rayops.testing.cluster import Cluster
from rayops.testing.waiting import wait_for


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    # TCP between the GCS and the worker (not the same-host Unix socket), so that one
    # connection can be cut from outside with `ss -K`.
    os.environ["RAYOPS_FRAMED_LOCAL_SOCKETS"] = "0"
    try:
        c = Cluster(os.path.join(temp_dir, "liveness"), head_cpus=2)
        c.connect()
    finally:
        del os.environ["RAYOPS_FRAMED_LOCAL_SOCKETS"]
    yield c
    rayops.shutdown()
    c.shutdown()


@rayops.remote(max_restarts=0)
class Pinger:
    def where(self) -> tuple[int, int]:
        from rayops.core_worker import state

        return os.getpid(), state.require().address[1]

    def ping(self) -> str:
        return "pong"


def _cut(gcs_pid: int, worker_port: int) -> int:
    """Cut the GCS's TCP connections to the worker's port; how many were cut."""
    ports = [
        c.laddr.port
        for c in psutil.Process(gcs_pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == worker_port and c.status == psutil.CONN_ESTABLISHED
    ]
    for port in ports:
        out = subprocess.run(
            ["ss", "-K", "state", "established", f"( sport = :{port} and dport = :{worker_port} )"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        if out.returncode != 0:
            pytest.skip(f"ss -K cannot cut sockets here: {out.stderr.strip()}")
    return len(ports)


def test_a_cut_connection_is_not_a_death_but_the_reported_death_is(cluster: Cluster) -> None:
    if shutil.which("ss") is None or os.geteuid() != 0:
        pytest.skip("needs ss and root (CAP_NET_ADMIN) to cut a TCP connection")
    a = Pinger.remote()
    pid, port = rayops.get(a.where.remote(), timeout=30)
    gcs_pid = cluster.gcs_pid()
    assert _cut(gcs_pid, port) >= 1
    # Before issue 10 the GCS took its connection's end for the worker's death, and this
    # actor (no restarts) was declared DEAD although its process was alive.
    time.sleep(1.0)
    with GcsClient(cluster.address, cluster.token, timeout=10) as gcs:
        assert gcs.call(calls.get_actor_info(a._actor_id)).state == "ALIVE"
    for _ in range(10):
        assert rayops.get(a.ping.remote(), timeout=30) == "pong"
    assert psutil.pid_exists(pid)
    os.kill(pid, signal.SIGKILL)  # now it dies: its raylet tells the GCS

    def dead() -> bool:
        try:
            rayops.get(a.ping.remote(), timeout=30)
        except rex.ActorDiedError:
            return True
        return False

    wait_for("the actor's death, from its raylet's report", dead, timeout=30)
