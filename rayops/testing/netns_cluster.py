"""A cluster whose nodes each run in their own Linux network namespace, with their own
address, started with the real CLI (``rayops start``) inside the namespace.

Built on :class:`rayops.testing.hosts.HostNetwork` (namespaces on a private bridge). The
test process reaches every node through the bridge; a driver runs inside the head's
namespace. Used by tests/hosts; later issues reuse it.
"""

from __future__ import annotations

import contextlib
import json
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rayops.testing.hosts import HostNetwork

PY = sys.executable


@contextlib.contextmanager
def running_cluster(base: Path, count: int = 3) -> Iterator[NsCluster]:
    """``count`` namespace hosts under ``base`` with an ``NsCluster`` started on them;
    stopped, and the namespaces removed, on the way out."""
    with HostNetwork(base / "net", count=count) as net:
        cluster = NsCluster(net, base)
        try:
            cluster.start()
            yield cluster
        finally:
            cluster.stop()


def _in_ns(
    net: HostNetwork, host: str, *argv: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    ns = net.hosts[host].ns
    # cwd "/": run from /tmp, `python -c` would import the session root /tmp/rayops (a
    # directory, hence a namespace package) instead of an editable install's rayops.
    return subprocess.run(
        ["ip", "netns", "exec", ns, *argv],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd="/",
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

    def driver(self, code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        script = f"import rayops\nrayops.init('auto', _temp_dir={self.temp_dir('h1')!r})\n"
        return _in_ns(self.net, "h1", PY, "-c", script + textwrap.dedent(code), timeout=timeout)

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


# -- measuring the veth path between two namespace nodes ---------------------------------

_TCP_RECEIVER = """
import socket, sys
ip, n = sys.argv[1], int(sys.argv[2])
buf = bytearray(b"\\0") * n  # written once: the receive buffer's pages are real already
srv = socket.create_server((ip, 0))
print(srv.getsockname()[1], flush=True)
conn, _ = srv.accept()
view, got = memoryview(buf), 0
while got < n:
    k = conn.recv_into(view[got:])
    if not k:
        sys.exit(f"sender closed after {got} of {n} bytes")
    got += k
conn.sendall(b"k")
print(got, flush=True)
"""

_TCP_SENDER = """
import socket, sys, time
ip, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
buf = bytearray(b"\\x5a") * n
s = socket.create_connection((ip, port), timeout=600)
t0 = time.perf_counter()
s.sendall(memoryview(buf))
ack = s.recv(1)
t1 = time.perf_counter()
if ack != b"k":
    sys.exit("receiver did not acknowledge")
print(t1 - t0, flush=True)
"""


def tcp_seconds(net: HostNetwork, src: str, dst: str, nbytes: int) -> float:
    """Seconds for one raw TCP connection to move ``nbytes`` from a process in ``src``'s
    namespace to one in ``dst``'s (``sendall`` of one buffer, ``recv_into`` one buffer,
    until the receiver's one-byte acknowledgement is back): the physical limit of the veth
    path the cluster's transfers take."""
    dst_ip = net.hosts[dst].ip
    receiver = subprocess.Popen(
        ["ip", "netns", "exec", net.hosts[dst].ns, PY, "-c", _TCP_RECEIVER, dst_ip, str(nbytes)],
        cwd="/",
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert receiver.stdout is not None and receiver.stderr is not None
        port = receiver.stdout.readline().strip()
        if not port.isdigit():
            raise RuntimeError(f"TCP receiver in {dst} did not start: {receiver.stderr.read()}")
        sender = _in_ns(net, src, PY, "-c", _TCP_SENDER, dst_ip, port, str(nbytes), timeout=600)
        if sender.returncode != 0:
            raise RuntimeError(f"TCP sender in {src} failed: {sender.stderr.strip()}")
        got = receiver.stdout.readline().strip()
        if got != str(nbytes):
            raise RuntimeError(f"TCP receiver in {dst} got {got!r} bytes, expected {nbytes}")
        return float(sender.stdout.strip())
    finally:
        receiver.kill()
        receiver.wait(timeout=30)


def tcp_retransmits(net: HostNetwork, host: str) -> int:
    """TCP segments retransmitted so far by the host's network namespace (``RetransSegs``
    of its /proc/net/snmp): proof that packets really were lost on its links."""
    r = _in_ns(net, host, "cat", "/proc/net/snmp", timeout=30)
    rows = [line.split() for line in r.stdout.splitlines() if line.startswith("Tcp:")]
    if len(rows) != 2:
        raise RuntimeError(f"no Tcp rows in {host}'s /proc/net/snmp: {r.stdout!r} {r.stderr!r}")
    return int(dict(zip(rows[0][1:], rows[1][1:], strict=True))["RetransSegs"])


def link_bytes(net: HostNetwork, host: str) -> tuple[int, int]:
    """Bytes received and sent so far on the host's link (``eth0`` in its namespace's
    /proc/net/dev; received counts packets later dropped by a firewall rule too)."""
    r = _in_ns(net, host, "cat", "/proc/net/dev", timeout=30)
    for line in r.stdout.splitlines():
        name, _, counters = line.partition(":")
        if name.strip() == "eth0":
            fields = counters.split()
            return int(fields[0]), int(fields[8])
    raise RuntimeError(f"no eth0 in {host}'s /proc/net/dev: {r.stdout!r} {r.stderr!r}")
