"""The transfer data plane on real loopback sockets (raylet/transfer_data.py): tickets are
checked before a byte is sent, a refused or broken stripe leaves no file behind, and TLS
data connections are verified both ways."""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.raylet import transfer_data as data
from rayops.raylet import transfer_plan as plan
from rayops.rpc import tls
from rayops.testing.tls_files import loopback_certs

OID = b"\x07" * 20
SIZE = 5 * 2**20 + 12345


@pytest.fixture
def source(tmp_path: Path) -> tuple[str, bytes]:
    payload = os.urandom(SIZE)
    path = tmp_path / "src"
    path.write_bytes(payload)
    return str(path), payload


@pytest.fixture
def server() -> Iterator[data.DataServer]:
    srv = data.DataServer("127.0.0.1")
    try:
        yield srv
    finally:
        srv.close()


def _pull(
    srv: data.DataServer,
    tickets: list[bytes],
    ranges: list[tuple[int, int]],
    final: str,
    material: tls.Tls | None = None,
    object_id: bytes = OID,
) -> None:
    target = data.open_target(final, None, SIZE)
    errors: list[BaseException] = []

    def one(ticket: bytes, off: int, length: int) -> None:
        try:
            data.receive_stripe(
                target, "127.0.0.1", srv.port, ticket, object_id, off, length, material
            )
        except data.TransferFailed as err:
            errors.append(err)

    threads = [
        threading.Thread(target=one, args=(t, off, n))
        for t, (off, n) in zip(tickets, ranges, strict=True)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        data.abort(target)
        raise errors[0]
    data.commit(target)


# How a plain (non-TLS) stripe is received: spliced socket -> pipe -> file (the default where
# os.splice exists), or recv_into mappings as with TLS (whole stripe, or 1 MiB chunks mapped
# ahead by a helper thread).
RECEIVE_PATHS = ["splice", "mapped", "mapped-chunks"]


def _receive_path(monkeypatch: pytest.MonkeyPatch, how: str) -> None:
    if how != "splice":
        monkeypatch.setattr(data, "_HAVE_SPLICE", False)
    if how == "mapped-chunks":
        monkeypatch.setattr(data, "CHUNK_BYTES", 2**20)


def _leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name != "src")


@pytest.mark.parametrize("how", RECEIVE_PATHS)
@pytest.mark.parametrize("stripes", [1, 3])
def test_striped_pull_is_byte_identical(
    server: data.DataServer,
    source: tuple[str, bytes],
    tmp_path: Path,
    stripes: int,
    how: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Spliced stripes, whole stripes in one mapping, and each stripe in several chunks
    mapped ahead by a helper thread."""
    _receive_path(monkeypatch, how)
    path, payload = source
    ranges = plan.stripes(SIZE, stripes, 1)
    assert len(ranges) == stripes
    tickets = server.offer(OID, "puller", path, ranges)
    _pull(server, tickets, ranges, str(tmp_path / "dst"))
    got = (tmp_path / "dst").read_bytes()
    assert hashlib.sha256(got).digest() == hashlib.sha256(payload).digest()
    assert server.stats.served_bytes == SIZE and server.stats.refused == 0


def _raw_request(port: int, request: bytes) -> bytes:
    """Send `request` on a fresh data connection; everything the server sends back."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        out = b""
        try:
            sock.sendall(request)
            sock.shutdown(socket.SHUT_WR)
            while chunk := sock.recv(65536):
                out += chunk
        except OSError:  # closed with our request unread (reset): refused all the same
            pass
        return out


def test_wrong_absent_reused_or_mismatched_ticket_gets_no_byte(
    server: data.DataServer, source: tuple[str, bytes]
) -> None:
    path, _ = source
    [ticket] = server.offer(OID, "puller", path, [(0, SIZE)])
    wrong = ticket[: plan.TICKET_ID_BYTES] + bytes(plan.TICKET_SECRET_BYTES)
    assert _raw_request(server.port, plan.encode_request(wrong, OID, 0, SIZE)) == b""
    # A wrong secret burns the ticket: the right one no longer works either.
    assert _raw_request(server.port, plan.encode_request(ticket, OID, 0, SIZE)) == b""
    [ticket] = server.offer(OID, "puller", path, [(0, SIZE)])
    # Bound to the object and the range.
    assert _raw_request(server.port, plan.encode_request(ticket, b"x" * 20, 0, SIZE)) == b""
    [ticket] = server.offer(OID, "puller", path, [(0, SIZE)])
    assert _raw_request(server.port, plan.encode_request(ticket, OID, 0, SIZE + 1)) == b""
    # No ticket at all, or not our protocol.
    assert _raw_request(server.port, b"") == b""
    assert _raw_request(server.port, b"GET / HTTP/1.1\r\n\r\n" + b" " * 80) == b""
    assert server.stats.served_bytes == 0
    assert server.stats.refused >= 4
    # A valid ticket is used once.
    [ticket] = server.offer(OID, "puller", path, [(0, SIZE)])
    assert len(_raw_request(server.port, plan.encode_request(ticket, OID, 0, SIZE))) == SIZE
    assert _raw_request(server.port, plan.encode_request(ticket, OID, 0, SIZE)) == b""


def test_refused_pull_leaves_no_file(
    server: data.DataServer, source: tuple[str, bytes], tmp_path: Path
) -> None:
    path, _ = source
    ranges = plan.stripes(SIZE, 2, 1)
    tickets = server.offer(OID, "puller", path, ranges)
    bad = [tickets[0], bytes(plan.TICKET_BYTES)]
    with pytest.raises(data.TransferFailed):
        _pull(server, bad, ranges, str(tmp_path / "dst"))
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize("how", RECEIVE_PATHS)
def test_holder_gone_mid_stripe_fails_and_removes_the_file(
    tmp_path: Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A fake holder that accepts, sends part of the range, then dies (closes)."""
    _receive_path(monkeypatch, how)
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def half_holder() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.recv(plan.MAX_REQUEST_BYTES)
            conn.sendall(b"\xab" * (SIZE // 2))

    thread = threading.Thread(target=half_holder)
    thread.start()
    target = data.open_target(str(tmp_path / "dst"), None, SIZE)
    with pytest.raises(data.TransferFailed, match="closed the data connection"):
        data.receive_stripe(target, "127.0.0.1", port, bytes(48), OID, 0, SIZE, None)
    data.abort(target)
    thread.join()
    listener.close()
    assert _leftovers(tmp_path) == []
    assert not [t for t in threading.enumerate() if t.name.startswith("rayops-xfer-map")]


def test_tls_pull_verified_both_ways(source: tuple[str, bytes], tmp_path: Path) -> None:
    path, payload = source
    material = loopback_certs(tmp_path / "certs").load()
    other = loopback_certs(tmp_path / "other").load()  # another CA
    srv = data.DataServer("127.0.0.1", tls_material=material)
    try:
        ranges = plan.stripes(SIZE, 2, 1)
        tickets = srv.offer(OID, "puller", path, ranges)
        _pull(srv, tickets, ranges, str(tmp_path / "dst"), material)
        assert (tmp_path / "dst").read_bytes() == payload
        # A client of another CA, or a plaintext one, gets nothing.
        tickets = srv.offer(OID, "puller", path, ranges)
        with pytest.raises(data.TransferFailed):
            _pull(srv, tickets, ranges, str(tmp_path / "dst2"), other)
        tickets = srv.offer(OID, "puller", path, [(0, SIZE)])
        assert _raw_request(srv.port, plan.encode_request(tickets[0], OID, 0, SIZE)) == b""
        assert srv.stats.served_bytes == SIZE
        assert not (tmp_path / "dst2").exists()
    finally:
        srv.close()


def test_refusals_are_logged_once_per_address(
    server: data.DataServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger=data.logger.name)
    for _ in range(20):
        assert _raw_request(server.port, b"GET / HTTP/1.1\r\n\r\n" + b" " * 80) == b""
    deadline = time.monotonic() + 10
    while server.stats.refused < 20 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert server.stats.refused == 20
    lines = [r for r in caplog.records if r.name == data.logger.name and "refused" in r.message]
    assert len(lines) == 1, [r.message for r in lines]
    assert "127.0.0.1" in lines[0].message and "not a rayops" in lines[0].message


def test_a_file_being_served_is_not_recycled_until_sent(
    server: data.DataServer, source: tuple[str, bytes], tmp_path: Path
) -> None:
    """The object is freed (or spilled) while its tickets are out: the store's recycle pool
    must not hand its file to another object before the pull read it."""
    from rayops.objectstore._recycle import RecyclePool

    path, payload = source
    pool_dir = tmp_path / "pool"
    pool_dir.mkdir()
    pool = RecyclePool(str(pool_dir), 10 * SIZE)
    ranges = plan.stripes(SIZE, 1, 1)
    tickets = server.offer(OID, "puller", path, ranges)
    assert pool.release(path)  # freed: pooled, but busy while the server holds it
    assert pool.take(SIZE) is None
    _pull(server, tickets, ranges, str(tmp_path / "dst"))  # sent from the open descriptor
    assert (tmp_path / "dst").read_bytes() == payload
    deadline = time.monotonic() + 10
    while pool.take(SIZE) is None:  # the last stripe sent: the lock is gone
        assert time.monotonic() < deadline, "the served file stayed locked"
        time.sleep(0.02)
