"""The framed transport's two shortcuts: peers on one host talk over a Unix socket (and
never hand the token to another user's socket), and threads other than the loop's write
their own frames (in order, never torn, never lost on a closing connection)."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from rayops.protocol.framed_message import Message
from rayops.rpc import framed
from rayops.rpc.framed_settings import ENV_LOCAL_SOCKETS, FramedSettings, FramedSettingsError

TOKEN = b"local-and-threads-token"
TCP_ONLY = FramedSettings(local_sockets=False)


@dataclass(frozen=True, slots=True)
class Mark(Message):
    METHOD: ClassVar[str] = "test_mark"
    sender: str
    seq: int
    pad: bytes = b""


@dataclass(frozen=True, slots=True)
class Twice(Message):
    METHOD: ClassVar[str] = "test_twice"
    x: int


def run(coro: Any) -> Any:
    loop = framed.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def family(conn: framed.Connection) -> int:
    return int(conn._transport.get_extra_info("socket").family)  # type: ignore[union-attr]


# ---------------------------------------------------------------------- local sockets
@pytest.mark.parametrize(
    ("server", "client", "expected"),
    [
        (FramedSettings(), FramedSettings(), socket.AF_UNIX),
        (FramedSettings(), TCP_ONLY, socket.AF_INET),
        (TCP_ONLY, FramedSettings(), socket.AF_INET),  # no local socket: TCP, no error
    ],
    ids=["both-local", "client-tcp-only", "server-tcp-only"],
)
def test_peers_on_one_host_use_the_local_socket_when_both_allow_it(
    server: FramedSettings, client: FramedSettings, expected: int
) -> None:
    async def main() -> None:
        srv = await framed.serve(
            "127.0.0.1", 0, TOKEN, {Twice: lambda c, m: 2 * m.x}, settings=server
        )
        port = srv.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {}, settings=client)
        assert family(conn) == expected
        assert conn.peer == ("127.0.0.1", port)
        assert await conn.request(Twice(21)) == 42
        with pytest.raises(framed.HandshakeRefused):  # the token is checked on both paths
            await framed.connect("127.0.0.1", port, b"wrong", {}, settings=client)
        conn.close()
        srv.close()
        await srv.wait_closed()
        # Gone with the server: a new client finds neither socket.
        with pytest.raises(OSError):
            await framed.connect("127.0.0.1", port, TOKEN, {}, timeout=2.0)

    run(main())


def test_a_silent_peer_on_the_local_socket_is_closed_at_the_handshake_deadline() -> None:
    async def main() -> None:
        settings = FramedSettings(handshake_timeout_s=0.3)
        srv = await framed.serve("127.0.0.1", 0, TOKEN, {}, settings=settings)
        port = srv.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.setblocking(False)
        await loop.sock_connect(sock, framed.local_socket_name("127.0.0.1", port))
        t0 = time.monotonic()
        data = await asyncio.wait_for(loop.sock_recv(sock, 16), 5.0)
        assert data == b""  # closed, with nothing sent and nothing unpickled
        assert time.monotonic() - t0 < 3.0
        sock.close()
        srv.close()
        await srv.wait_closed()

    run(main())


SQUATTER = """
import socket, sys
squat = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
squat.bind("\\0" + sys.argv[1])
squat.listen(1)
print("ready", flush=True)
squat.settimeout(20)
peer, _ = squat.accept()
peer.settimeout(2)
received = b""
try:
    while chunk := peer.recv(4096):
        received += chunk
except OSError:
    pass
print("got", received.hex(), flush=True)
"""


# The system's interpreter: another user cannot run the one in this checkout's venv.
SYSTEM_PYTHON = "/usr/bin/python3"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a process as another user")
@pytest.mark.skipif(not os.access(SYSTEM_PYTHON, os.X_OK), reason="no /usr/bin/python3")
def test_the_token_never_goes_to_a_local_socket_of_another_user() -> None:
    """Anyone on the host can bind an abstract name first. A client checks the peer's
    user (SO_PEERCRED) before the handshake and uses TCP instead."""
    nobody = 65534

    async def main() -> None:
        srv = await framed.serve(
            "127.0.0.1", 0, TOKEN, {Twice: lambda c, m: 2 * m.x}, settings=TCP_ONLY
        )
        port = srv.sockets[0].getsockname()[1]
        # Another user holding the server's local name.
        squatter = subprocess.Popen(
            [SYSTEM_PYTHON, "-c", SQUATTER, framed.local_socket_name("127.0.0.1", port)[1:]],
            stdout=subprocess.PIPE,
            user=nobody,
            group=nobody,
            text=True,
        )
        try:
            assert squatter.stdout is not None
            line = await asyncio.to_thread(squatter.stdout.readline)
            assert line.strip() == "ready"
            conn = await framed.connect("127.0.0.1", port, TOKEN, {})
            assert family(conn) == socket.AF_INET
            assert await conn.request(Twice(4)) == 8
            conn.close()
            out, _ = await asyncio.to_thread(squatter.communicate, timeout=20)
        finally:
            if squatter.poll() is None:
                squatter.kill()
                squatter.wait()
            srv.close()
            await srv.wait_closed()
        assert out.split() == ["got"]  # it was connected to, and sent nothing at all

    run(main())


def test_the_local_sockets_setting_from_the_environment() -> None:
    assert FramedSettings.from_env({}).local_sockets is True
    assert FramedSettings.from_env({ENV_LOCAL_SOCKETS: "0"}).local_sockets is False
    assert FramedSettings.from_env({ENV_LOCAL_SOCKETS: " Yes "}).local_sockets is True
    off = FramedSettings(local_sockets=False)
    assert FramedSettings.from_env(off.to_env()) == off
    with pytest.raises(FramedSettingsError, match=ENV_LOCAL_SOCKETS):
        FramedSettings.from_env({ENV_LOCAL_SOCKETS: "maybe"})
    with pytest.raises(FramedSettingsError, match="local_sockets"):
        FramedSettings(local_sockets=1)  # type: ignore[arg-type]


# ---------------------------------------------------------------- writes from threads
@pytest.mark.parametrize("transport", ["local", "tcp"])
def test_frames_from_many_threads_and_the_loop_arrive_whole_and_in_order(transport: str) -> None:
    """Four threads and the loop write at once; some frames are too large for a direct
    write (the loop writes those, in their thread's order) and the socket buffer fills,
    so writes are also cut short and finished by the loop."""
    per_thread = 600
    got: dict[str, list[int]] = defaultdict(list)
    big = b"x" * (200 * 1024)

    async def main() -> None:
        done = asyncio.Event()
        total = 5 * per_thread

        def mark(conn: framed.Connection, m: Mark) -> None:
            got[m.sender].append(m.seq)
            if m.pad and len(m.pad) != len(big):
                raise AssertionError("a torn frame")
            if sum(map(len, got.values())) == total:
                done.set()

        settings = FramedSettings() if transport == "local" else TCP_ONLY
        srv = await framed.serve("127.0.0.1", 0, TOKEN, {Mark: mark}, settings=settings)
        port = srv.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {}, settings=settings)

        def writer(name: str) -> None:
            for i in range(per_thread):
                pad = big if i % 50 == 7 else b""
                conn.send_threadsafe(framed.notify_tuple(Mark(name, i, pad)))

        threads = [threading.Thread(target=writer, args=(f"t{k}",)) for k in range(4)]
        for t in threads:
            t.start()
        for i in range(per_thread):  # the loop's own writes, interleaved
            conn.notify(Mark("loop", i))
            if i % 20 == 0:
                await asyncio.sleep(0)
        for t in threads:
            await asyncio.to_thread(t.join)
        await asyncio.wait_for(done.wait(), 30)
        conn.close()
        srv.close()
        await srv.wait_closed()

    run(main())
    for name in ("t0", "t1", "t2", "t3", "loop"):
        assert got[name] == list(range(per_thread)), name


def test_a_request_registered_from_a_thread_is_answered_or_fails_with_the_connection() -> None:
    async def main() -> None:
        release = asyncio.Event()

        async def twice(conn: framed.Connection, m: Twice) -> int:
            if m.x < 0:
                await release.wait()  # never answered: the server goes away first
            return 2 * m.x

        srv = await framed.serve("127.0.0.1", 0, TOKEN, {Twice: twice})
        port = srv.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {})
        loop = asyncio.get_running_loop()
        answers: list[tuple[Any, Any]] = []
        answered = asyncio.Event()

        def on_reply(value: Any, err: BaseException | None) -> None:
            answers.append((value, err))
            answered.set()

        def from_thread(x: int) -> int | None:
            def answer(value: Any, err: BaseException | None) -> None:
                loop.call_soon_threadsafe(on_reply, value, err)

            slot = framed.ReplySlot(answer)
            req_id = conn.register_threadsafe(slot)
            if req_id is not None:
                conn.send_threadsafe(framed.request_tuple(req_id, Twice(x)))
            return req_id

        assert await asyncio.to_thread(from_thread, 5) is not None
        await asyncio.wait_for(answered.wait(), 10)
        assert answers == [(10, None)]
        answered.clear()
        assert await asyncio.to_thread(from_thread, -1) is not None
        await asyncio.sleep(0.05)
        srv.close()
        # Closing our end fails the outstanding request with ConnectionLost.
        conn.close()
        await asyncio.wait_for(answered.wait(), 10)
        assert isinstance(answers[1][1], framed.ConnectionLost)
        # A closed connection registers nothing and sends nothing.
        assert await asyncio.to_thread(from_thread, 1) is None
        release.set()
        await srv.wait_closed()

    run(main())
