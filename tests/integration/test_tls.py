"""TLS on every port (rpc/tls.py): a two-node cluster with TLS on, doing real work, and
every kind of port refusing a plaintext client and a client whose certificate is from
another CA, with a clear error and no traceback in the servers' logs.

The framed data plane between the nodes and the driver goes over TCP (local sockets off),
so every framed byte in this cluster crosses TLS, as between hosts."""

from __future__ import annotations

import asyncio
import glob
import json
import os
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import rayops
from rayops.gcs import probe
from rayops.gcs.client import GcsClient
from rayops.launcher.tls_certs import CA_CERT, host_files, make_certs
from rayops.rpc import framed, tls
from rayops.rpc.framed_settings import FramedSettings
from rayops.testing.cluster import Cluster

TCP_ONLY = FramedSettings(local_sockets=False)


def _write(root: Path, files: dict[str, bytes]) -> None:
    for rel, data in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        path.chmod(0o600)


def _files(root: Path, host: str = "127.0.0.1") -> tls.TlsFiles:
    cert, key = host_files(host)
    return tls.TlsFiles(str(root / cert), str(root / key), str(root / CA_CERT))


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tls.TlsFiles]:
    base = tmp_path_factory.mktemp("certs")
    _write(base / "cluster", make_certs({"127.0.0.1": ["127.0.0.1"]}, cluster_name="t"))
    _write(base / "other", make_certs({"127.0.0.1": ["127.0.0.1"]}, cluster_name="other"))
    cluster, other = _files(base / "cluster"), _files(base / "other")
    return {
        "cluster": cluster,
        # the cluster's CA trusted, but a certificate signed by another CA
        "foreign_cert": tls.TlsFiles(other.cert, other.key, cluster.ca),
        # another CA altogether (it does not trust the servers either)
        "other": other,
    }


@pytest.fixture(scope="module")
def cluster(temp_dir: str, certs: dict[str, tls.TlsFiles]) -> Iterator[Cluster]:
    mp = pytest.MonkeyPatch()
    mp.setenv("RAYOPS_FRAMED_LOCAL_SOCKETS", "0")  # every framed byte over TCP, so TLS
    c = Cluster(os.path.join(temp_dir, "tls"), head_cpus=1, tls=certs["cluster"])
    try:
        c.add_node(num_cpus=2, resources={"far": 4})
        c.wait_for_nodes(2)
        c.connect()
        yield c
    finally:
        rayops.shutdown()
        c.shutdown()
        tls.configure(None)
        mp.undo()


def _session(c: Cluster) -> str:
    return os.path.realpath(os.path.join(c.head.temp_dir, "session_latest"))


def _record(c: Cluster) -> dict[str, object]:
    with open(os.path.join(_session(c), "node.json")) as f:
        data: dict[str, object] = json.load(f)
    return data


@rayops.remote
def make(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.int64)


@rayops.remote
def total(a: np.ndarray) -> tuple[int, str]:
    return int(a.sum()), rayops.get_runtime_context().get_node_id()


@rayops.remote
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def add(self, k: int) -> int:
        self.n += k
        return self.n


def test_tasks_actors_and_objects_between_two_nodes(cluster: Cluster) -> None:
    assert tls.current() is not None  # the driver adopted the session's tls.json
    far = cluster.nodes[1].node_id
    ref = make.remote(3_000_000)  # 24 MB: several chunks of the object transfer
    got, node = rayops.get(total.options(resources={"far": 1}).remote(ref), timeout=60)
    assert got == sum(range(3_000_000)) and node == far
    back = rayops.get(make.options(resources={"far": 1}).remote(1000), timeout=60)
    assert int(back.sum()) == sum(range(1000))
    c = Counter.options(resources={"far": 1}).remote()
    assert rayops.get([c.add.remote(i) for i in range(1, 11)], timeout=60)[-1] == 55
    put = rayops.put(np.ones(2_000_000))
    assert rayops.get(total.options(resources={"far": 1}).remote(put), timeout=60)[0] == 2_000_000


def test_jobs_api_over_https(cluster: Cluster, tmp_path: Path) -> None:
    from rayops.job_submission import JobStatus, JobSubmissionClient

    rec = _record(cluster)
    headers = {"Authorization": f"Bearer {cluster.token}"}
    client = JobSubmissionClient(f"https://{rec['dashboard_url']}", headers=headers)
    script = tmp_path / "job.py"
    script.write_text(
        "import rayops\nrayops.init()\n"
        "@rayops.remote\ndef f(x):\n    return x + 1\n"
        "print('job says', sum(rayops.get([f.remote(i) for i in range(10)])))\n"
    )
    job = client.submit_job(entrypoint=f"{sys.executable} {script}")
    deadline = time.monotonic() + 90
    while client.get_job_status(job) not in (JobStatus.SUCCEEDED, JobStatus.FAILED):
        assert time.monotonic() < deadline, client.get_job_logs(job)
        time.sleep(0.3)
    logs = client.get_job_logs(job)
    assert client.get_job_status(job) == JobStatus.SUCCEEDED, logs
    assert "job says 55" in logs


def test_metrics_scrape_over_https_with_a_client_certificate(
    cluster: Cluster, certs: dict[str, tls.TlsFiles]
) -> None:
    ctx = certs["cluster"].load().client_context()
    ports = _agent_ports(cluster)
    assert len(ports) == 2
    for port in ports:
        url = f"https://127.0.0.1:{port}/metrics"
        req = urllib.request.Request(url, headers={"Authorization": f"Bearer {cluster.token}"})
        deadline = time.monotonic() + 30  # an agent starts a moment after its raylet
        while True:
            try:
                with urllib.request.urlopen(req, timeout=10, context=ctx) as resp:
                    assert resp.status == 200
                    assert b"ray_node_cpu_utilization" in resp.read()
                break
            except urllib.error.URLError as err:
                if not isinstance(err.reason, ConnectionRefusedError):
                    raise
                assert time.monotonic() < deadline, f"no agent at {url}"
                time.sleep(0.2)


# ------------------------------------------------------------------ refusals, per port
def test_grpc_refuses_plaintext_and_foreign_certificates(
    cluster: Cluster, certs: dict[str, tls.TlsFiles]
) -> None:
    saved = tls.current()
    try:
        tls.configure(None)
        with pytest.raises(ConnectionError, match="requires TLS, but this process has TLS off"):
            probe.check_reachable(cluster.address)
        for name in ("foreign_cert", "other"):
            tls.configure(certs[name])
            gcs = GcsClient(cluster.address, cluster.token, timeout=3.0)
            try:
                with pytest.raises(ConnectionError):
                    gcs.get_all_nodes()
            finally:
                gcs.close()
    finally:
        tls.configure(saved.files if saved is not None else None)
    assert rayops.cluster_resources()["CPU"] == 3.0  # the driver is still served


def _agent_ports(c: Cluster) -> list[int]:
    gcs = GcsClient(c.address, c.token)  # this process's TLS: the cluster's
    try:
        return [n.metrics_export_port for n in gcs.get_all_nodes() if n.state == "ALIVE"]
    finally:
        gcs.close()


def _raylet_port(c: Cluster) -> int:
    port = _record(c)["raylet_port"]
    assert isinstance(port, int)
    return port


def _framed(c: Cluster, material: tls.Tls | None) -> None:
    async def go() -> None:
        conn = await framed.connect(
            "127.0.0.1",
            _raylet_port(c),
            c.token.encode(),
            {},
            timeout=5.0,
            settings=TCP_ONLY,
            tls_material=material,
        )
        conn.close()

    asyncio.run(go())


def test_framed_refuses_plaintext_and_foreign_certificates(
    cluster: Cluster, certs: dict[str, tls.TlsFiles]
) -> None:
    saved = tls.current()
    try:
        tls.configure(None)
        with pytest.raises(framed.HandshakeRefused, match="requires TLS"):
            _framed(cluster, None)
    finally:
        tls.configure(saved.files if saved is not None else None)
    with pytest.raises(framed.HandshakeRefused, match="refuse this process's certificate"):
        _framed(cluster, certs["foreign_cert"].load())
    with pytest.raises(framed.HandshakeRefused, match="certificate did not verify"):
        _framed(cluster, certs["other"].load())
    _framed(cluster, certs["cluster"].load())  # and the cluster's own certificate passes


def test_http_refuses_plaintext_and_foreign_certificates(
    cluster: Cluster, certs: dict[str, tls.TlsFiles]
) -> None:
    from rayops.job_submission import JobSubmissionClient

    rec = _record(cluster)
    headers = {"Authorization": f"Bearer {cluster.token}"}
    saved = tls.current()
    try:
        tls.configure(None)
        with pytest.raises(ConnectionError, match="requires TLS, but this process has TLS off"):
            JobSubmissionClient(f"http://{rec['dashboard_url']}", headers=headers)
    finally:
        tls.configure(saved.files if saved is not None else None)
    agent = _agent_ports(cluster)[0]
    for port in (int(str(rec["dashboard_url"]).rsplit(":", 1)[1]), agent):
        plain = urllib.request.Request(f"http://127.0.0.1:{port}/", headers=headers)
        with pytest.raises((ConnectionError, urllib.error.URLError)):
            urllib.request.urlopen(plain, timeout=5)
        secure = urllib.request.Request(f"https://127.0.0.1:{port}/", headers=headers)
        foreign = certs["foreign_cert"].load().client_context()
        with pytest.raises((ssl.SSLError, ConnectionError, urllib.error.URLError)):
            urllib.request.urlopen(secure, timeout=5, context=foreign).read()


def test_no_traceback_in_the_servers_logs(cluster: Cluster) -> None:
    """Runs after the refusals above: a refused peer costs at most a line, never a trace."""
    for node in cluster.nodes:
        session = os.path.realpath(os.path.join(node.temp_dir, "session_latest"))
        for path in glob.glob(os.path.join(session, "logs", "*")):
            if not os.path.isfile(path) or "worker-" in os.path.basename(path):
                continue
            text = Path(path).read_text(errors="replace")
            assert "Traceback" not in text, f"{path}:\n{text[-3000:]}"


# ---------------------------------------------------------------------------- the CLI
def test_start_with_a_bad_certificate_path_is_one_message(
    tmp_path: Path, certs: dict[str, tls.TlsFiles]
) -> None:
    good = certs["cluster"]
    cmd = [
        sys.executable, "-m", "rayops.cli.main", "start", "--head", "--port", "0",
        "--node-ip-address", "127.0.0.1", "--temp-dir", str(tmp_path / "t"),
        "--tls", "--tls-cert", str(tmp_path / "missing.pem"), "--tls-key", good.key,
        "--tls-ca", good.ca,
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1, res.stderr
    assert "missing.pem" in lines[0] and "does not exist" in lines[0]
    assert not (tmp_path / "t").exists() or not list((tmp_path / "t").glob("session_*"))
    # A certificate given without --tls is refused, not ignored.
    res = subprocess.run(
        [*cmd[:11], "--tls-cert", good.cert], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 1 and "without --tls" in res.stderr
    assert "Traceback" not in res.stderr
