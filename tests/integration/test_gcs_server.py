"""The GCS as a real process on 127.0.0.1: its services, its token check, its lifecycle.

Each GCS here is `python -m rayops.gcs` started the way a node starts it (token file, log
file, ready pipe, optionally a watch pipe) and is stopped and reaped by the test that made it.
"""

from __future__ import annotations

import asyncio
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import psutil
import pytest

from rayops.exceptions import AuthenticationError, RpcError
from rayops.gcs.client import AsyncGcsClient, GcsClient, GcsUnreachableError
from rayops.gcs.types import NodeInfo, NodeState
from rayops.protocol import gcs_kv_pb2, gcs_kv_pb2_grpc, gcs_node_pb2, gcs_node_pb2_grpc
from rayops.rpc.auth import generate_token, write_token_file
from rayops.version import __version__

START_TIMEOUT_S = 20.0


@dataclass
class GcsProcess:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    token: str
    log_file: Path
    watch_w: int | None

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def log(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def stop(self) -> None:
        if self.watch_w is not None:
            os.close(self.watch_w)
            self.watch_w = None
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)


def _read_ready(fd: int, proc: subprocess.Popen[bytes], where: Path) -> bytes:
    """Everything written to the ready pipe until it closes, within START_TIMEOUT_S."""
    deadline = time.monotonic() + START_TIMEOUT_S
    data = b""
    while True:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            proc.kill()
            proc.wait()
            raise AssertionError(f"GCS not ready within {START_TIMEOUT_S} s; see {where}")
        readable, _, _ = select.select([fd], [], [], remaining)
        if readable:
            chunk = os.read(fd, 100)
            if not chunk:
                return data
            data += chunk


def start_gcs(
    tmp: Path,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    watch: bool = False,
    token_file: Path | None = None,
) -> tuple[GcsProcess | None, subprocess.Popen[bytes], bytes]:
    """Start a GCS; return (the process if it became ready, the Popen, what the ready pipe said)."""
    token = generate_token()
    if token_file is None:
        token_file = tmp / f"token-{time.monotonic_ns()}"
        write_token_file(token_file, token)
    log_file = tmp / f"gcs-{time.monotonic_ns()}.log"
    ready_r, ready_w = os.pipe()
    cmd = [
        sys.executable, "-m", "rayops.gcs",
        "--host", host, "--port", str(port),
        "--token-file", str(token_file), "--log-file", str(log_file),
        "--ready-fd", str(ready_w),
    ]  # fmt: skip
    pass_fds = [ready_w]
    watch_r = watch_w = None
    if watch:
        watch_r, watch_w = os.pipe()
        cmd += ["--watch-fd", str(watch_r)]
        pass_fds.append(watch_r)
    stderr_path = tmp / f"gcs-{time.monotonic_ns()}.stderr"
    with open(stderr_path, "wb") as stderr:
        proc = subprocess.Popen(cmd, pass_fds=pass_fds, stdin=subprocess.DEVNULL, stderr=stderr)
    os.close(ready_w)
    if watch_r is not None:
        os.close(watch_r)
    try:
        said = _read_ready(ready_r, proc, log_file)
    finally:
        os.close(ready_r)
    if not said:
        if watch_w is not None:
            os.close(watch_w)
        return None, proc, stderr_path.read_bytes()
    gcs = GcsProcess(proc, host, int(said), token, log_file, watch_w)
    assert said == f"{gcs.port}\n".encode()
    return gcs, proc, said


@pytest.fixture
def make_gcs(tmp_path: Path) -> Iterator[Callable[..., GcsProcess]]:
    started: list[GcsProcess] = []

    def make(**kwargs: object) -> GcsProcess:
        gcs, proc, said = start_gcs(tmp_path, **kwargs)  # type: ignore[arg-type]
        assert gcs is not None, f"GCS exited with {proc.wait()}: {said.decode()}"
        started.append(gcs)
        return gcs

    yield make
    for gcs in started:
        gcs.stop()


@pytest.fixture
def gcs(make_gcs: Callable[..., GcsProcess]) -> GcsProcess:
    return make_gcs()


@pytest.fixture
def client(gcs: GcsProcess) -> Iterator[GcsClient]:
    with GcsClient(gcs.address, gcs.token, timeout=10) as c:
        yield c


def _node(node_id: str, *, head: bool = False) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        node_ip="127.0.0.1",
        raylet_port=7000 + len(node_id),
        node_name=f"host-{node_id}",
        resources_total={"CPU": 2.0, "memory": 1e9},
        labels={"role": "head" if head else "worker"},
        is_head_node=head,
        rayops_version=__version__,
    )


def _wait_exit(proc: subprocess.Popen[bytes], within_s: float) -> int:
    try:
        return proc.wait(within_s)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"GCS pid {proc.pid} still running after {within_s} s") from None


# Services.


def test_check_alive_names_version_and_a_stable_cluster_id(client: GcsClient) -> None:
    first = client.check_alive()
    assert first.rayops_version == __version__
    assert len(first.cluster_id) == 56 and int(first.cluster_id, 16) >= 0
    assert client.check_alive() == first


def test_node_registration_usage_and_death(client: GcsClient) -> None:
    head = client.register_node(_node("aa", head=True))
    worker = client.register_node(_node("bb"))
    assert head.state == "ALIVE" and head.start_time_ms > 0
    assert worker.resources_available == {"CPU": 2.0, "memory": 1e9}

    outcome = client.report_resource_usage("bb", {"CPU": 2.0}, {"CPU": 0.5}, 100, 1000, 7)
    assert outcome.accepted and outcome.state is NodeState.ALIVE
    nodes = {n.node_id: n for n in client.get_all_nodes()}
    assert list(nodes) == ["aa", "bb"]
    assert nodes["bb"].resources_available == {"CPU": 0.5}
    assert nodes["bb"].object_store_stats.spilled_bytes == 7
    assert nodes["aa"].is_head_node and nodes["aa"].labels == {"role": "head"}

    assert client.unregister_node("bb", "raylet stopped")
    dead = {n.node_id: n for n in client.get_all_nodes()}["bb"]
    assert (dead.state, dead.death_reason) == ("DEAD", "raylet stopped")
    assert dead.end_time_ms >= dead.start_time_ms
    assert [n.node_id for n in client.get_all_nodes(alive_only=True)] == ["aa"]

    late = client.report_resource_usage("bb", {}, {}, 0, 0, 0)
    assert not late.accepted and late.state is NodeState.DEAD
    with pytest.raises(ValueError, match="bb is DEAD"):
        client.register_node(_node("bb"))
    assert not client.unregister_node("cc", "never was")


def test_kv_round_trips(client: GcsClient) -> None:
    assert client.kv_put(b"fn:1", b"one")
    assert not client.kv_put(b"fn:1", b"uno", overwrite=False)
    assert client.kv_get(b"fn:1") == b"one"
    assert client.kv_put(b"fn:2", b"two", namespace="other")
    assert client.kv_get(b"fn:2") is None
    assert client.kv_get(b"fn:2", namespace="other") == b"two"
    assert client.kv_exists(b"fn:1") and not client.kv_exists(b"fn:9")
    client.kv_put(b"fn:3", b"three")
    client.kv_put(b"pkg:1", b"\x00\xff")
    assert client.kv_keys(b"fn:") == [b"fn:1", b"fn:3"]
    assert client.kv_multi_get([b"pkg:1", b"nope", b"fn:3"]) == {
        b"pkg:1": b"\x00\xff",
        b"fn:3": b"three",
    }
    assert client.kv_del(b"fn:", by_prefix=True) == 2
    assert client.kv_del(b"pkg:1") == 1
    assert client.kv_keys(b"") == []
    assert client.kv_keys(b"", namespace="other") == [b"fn:2"]
    with pytest.raises(ValueError, match="non-empty"):
        client.kv_put(b"", b"x")


def test_kv_carries_values_past_grpcs_default_4_mib_limit(client: GcsClient) -> None:
    big = os.urandom(16 * 2**20)
    client.kv_put(b"big", big)
    assert client.kv_get(b"big") == big


def test_job_ids_are_monotonic_and_unique_across_threads(client: GcsClient) -> None:
    first = client.next_job_id()
    per_thread: list[list[int]] = [[] for _ in range(4)]

    def take(out: list[int]) -> None:
        out.extend(client.next_job_id() for _ in range(25))

    threads = [threading.Thread(target=take, args=(out,)) for out in per_thread]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    every = [i for out in per_thread for i in out]
    assert all(out == sorted(out) for out in per_thread)
    assert sorted(every) == list(range(first + 1, first + 101))
    assert client.next_job_id() == first + 101


def test_jobs_are_added_finished_and_listed(client: GcsClient) -> None:
    job_id = client.next_job_id()
    job = client.add_job(job_id, os.getpid(), "127.0.0.1", "ns", "python train.py")
    assert (job.job_id_hex, job.is_dead, job.namespace) == ("01000000", False, "ns")
    assert job.start_time_ms > 0
    with pytest.raises(ValueError, match="already recorded"):
        client.add_job(job_id, 1, "127.0.0.1", "", "")
    assert client.mark_job_finished(job_id)
    assert not client.mark_job_finished(4242)
    [listed] = client.get_all_jobs()
    assert listed.is_dead and listed.end_time_ms >= listed.start_time_ms


def test_async_client(gcs: GcsProcess) -> None:
    async def scenario() -> None:
        async with AsyncGcsClient(gcs.address, gcs.token) as aclient:
            await aclient.register_node(_node("cafe"))
            assert [n.node_id for n in await aclient.get_all_nodes()] == ["cafe"]
            assert await aclient.kv_put(b"k", b"v", namespace="n")
            assert await aclient.kv_get(b"k", namespace="n") == b"v"
            assert await aclient.next_job_id() == 1
            assert (await aclient.check_alive()).rayops_version == __version__
            assert await aclient.unregister_node("cafe", "done")

    asyncio.run(scenario())


# The token check.


def _raw_put(address: str, key: bytes, metadata: tuple[tuple[str, str], ...] | None) -> None:
    with grpc.insecure_channel(address) as channel:
        stub = gcs_kv_pb2_grpc.InternalKVGcsServiceStub(channel)
        request = gcs_kv_pb2.InternalKVPutRequest(key=key, value=b"evil", overwrite=True)
        stub.InternalKVPut(request, metadata=metadata, timeout=10)


@pytest.mark.parametrize(
    "metadata",
    [
        None,
        (("authorization", "Bearer wrong-token"),),
        (("authorization", "wrong-token"),),
        (("x-token", "Bearer wrong-token"),),
    ],
    ids=["no-metadata", "wrong-token", "no-bearer", "other-key"],
)
def test_calls_without_the_token_are_refused_and_run_nothing(
    gcs: GcsProcess, client: GcsClient, metadata: tuple[tuple[str, str], ...] | None
) -> None:
    with pytest.raises(grpc.RpcError) as info:
        _raw_put(gcs.address, b"planted", metadata)
    assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
    with grpc.insecure_channel(gcs.address) as channel:
        stub = gcs_node_pb2_grpc.NodeInfoGcsServiceStub(channel)
        with pytest.raises(grpc.RpcError) as node_info:
            stub.RegisterNode(gcs_node_pb2.RegisterNodeRequest(), metadata=metadata, timeout=10)
    assert node_info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]

    assert client.kv_get(b"planted") is None
    assert client.get_all_nodes() == []
    assert "without a valid cluster token" in gcs.log()


def test_the_raw_protocol_with_the_token_works(gcs: GcsProcess, client: GcsClient) -> None:
    _raw_put(gcs.address, b"raw", (("authorization", f"Bearer {gcs.token}"),))
    assert client.kv_get(b"raw") == b"evil"


def test_unknown_methods_and_silent_streams_are_refused_without_the_token(
    gcs: GcsProcess,
) -> None:
    with grpc.insecure_channel(gcs.address) as channel:
        unary = channel.unary_unary("/rayops.protocol.Nope/Nothing", None, None)
        with pytest.raises(grpc.RpcError) as info:
            unary(b"", timeout=10)
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]

        # A stream that never sends a message is refused at once, not left waiting.
        stream = channel.stream_stream(
            "/rayops.protocol.InternalKVGcsService/InternalKVPut", None, None
        )
        never_sends = threading.Event()

        def requests() -> Iterator[bytes]:
            never_sends.wait(30)
            yield from ()

        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as stream_info:
            list(stream(requests(), timeout=10))
        never_sends.set()
        assert stream_info.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]
        assert time.monotonic() - started < 5


def test_client_with_a_wrong_token_raises_authentication_error(gcs: GcsProcess) -> None:
    with (
        GcsClient(gcs.address, "not-the-token") as bad,
        pytest.raises(AuthenticationError, match=gcs.address),
    ):
        bad.kv_get(b"x")

    async def scenario() -> None:
        async with AsyncGcsClient(gcs.address, "not-the-token") as abad:
            await abad.check_alive()

    with pytest.raises(AuthenticationError):
        asyncio.run(scenario())


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
    return port


def test_unreachable_gcs_is_a_connection_error_naming_the_address() -> None:
    address = f"127.0.0.1:{_closed_port()}"
    started = time.monotonic()
    with (
        GcsClient(address, "token", timeout=0.5) as c,
        pytest.raises(GcsUnreachableError) as info,
    ):
        c.check_alive()
    assert time.monotonic() - started < 5
    assert isinstance(info.value, ConnectionError) and isinstance(info.value, RpcError)
    assert f"could not reach the GCS at {address} within 0.5 s" in str(info.value)
    assert "rayops status" in str(info.value)


# The process.


def test_listens_on_exactly_the_host_given(make_gcs: Callable[..., GcsProcess]) -> None:
    gcs = make_gcs(host="127.0.0.2")
    listening = [
        c.laddr
        for c in psutil.Process(gcs.proc.pid).net_connections(kind="inet")
        if c.status == psutil.CONN_LISTEN
    ]
    # gRPC may listen on a dual-stack socket: 127.0.0.2 then shows as ::ffff:127.0.0.2.
    bound = [(addr.ip.removeprefix("::ffff:"), addr.port) for addr in listening]
    assert bound == [("127.0.0.2", gcs.port)]
    with socket.socket() as s, pytest.raises(ConnectionRefusedError):
        s.connect(("127.0.0.1", gcs.port))
    with GcsClient(gcs.address, gcs.token) as c:
        assert c.check_alive().rayops_version == __version__


def test_a_taken_port_is_an_error_not_a_shared_socket(
    tmp_path: Path, make_gcs: Callable[..., GcsProcess]
) -> None:
    first = make_gcs()
    second, proc, stderr = start_gcs(tmp_path, port=first.port)
    assert second is None
    assert _wait_exit(proc, 10) == 1
    assert f"127.0.0.1:{first.port}" in stderr.decode()


def test_refuses_a_token_file_others_can_read(tmp_path: Path) -> None:
    token_file = tmp_path / "loose_token"
    token_file.write_text("some-token\n")
    token_file.chmod(0o644)
    gcs, proc, stderr = start_gcs(tmp_path, token_file=token_file)
    assert gcs is None
    assert _wait_exit(proc, 10) == 2
    assert str(token_file) in stderr.decode() and "chmod 600" in stderr.decode()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signals_stop_the_gcs_gracefully(
    make_gcs: Callable[..., GcsProcess], sig: signal.Signals
) -> None:
    gcs = make_gcs()
    gcs.proc.send_signal(sig)
    assert _wait_exit(gcs.proc, 5) == 0
    log = gcs.log()
    assert f"received {sig.name}" in log and "GCS stopped" in log


def test_exits_when_the_watch_pipe_closes(make_gcs: Callable[..., GcsProcess]) -> None:
    gcs = make_gcs(watch=True)
    assert gcs.watch_w is not None
    os.write(gcs.watch_w, b"bytes on the pipe are not EOF\n")
    with GcsClient(gcs.address, gcs.token) as c:
        c.check_alive()  # answered after the bytes were read: still serving
    assert gcs.proc.poll() is None
    os.close(gcs.watch_w)
    gcs.watch_w = None
    started = time.monotonic()
    assert _wait_exit(gcs.proc, 5) == 0
    assert time.monotonic() - started < 2
    assert "the parent is gone" in gcs.log()


def test_log_lines_carry_timestamps(gcs: GcsProcess, client: GcsClient) -> None:
    client.register_node(_node("d00d"))
    line = next(ln for ln in gcs.log().splitlines() if "node d00d registered" in ln)
    assert time.strptime(line[:19], "%Y-%m-%d %H:%M:%S")


def test_a_node_with_another_major_minor_version_is_refused(client: GcsClient) -> None:
    from dataclasses import replace

    from rayops.version import __version__

    major, minor, *_ = __version__.split(".")
    other = f"{major}.{int(minor) + 1}.0"
    node = replace(_node("ab" * 28), rayops_version=other)
    with pytest.raises(ValueError) as info:
        client.register_node(node)
    assert other in str(info.value) and __version__ in str(info.value)
    assert not [n for n in client.get_all_nodes() if n.node_id == node.node_id]
    patch = replace(_node("cd" * 28), rayops_version=f"{major}.{minor}.99")
    assert client.register_node(patch).node_id == patch.node_id
