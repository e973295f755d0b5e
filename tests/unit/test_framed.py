"""The framed transport: handshake, refusal without the token, request/reply, batching,
and what a bad peer may cost (handshake deadline, pre-auth buffer, frame bound, logs)."""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import pickle
import socket
import struct
import tempfile
import time
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from rayops.protocol.framed_message import Message, Refusal, RefusalCode
from rayops.protocol.raylet_messages import Ping, Pong, RequestLease
from rayops.rpc import framed
from rayops.rpc.framed_settings import (
    ENV_HANDSHAKE_TIMEOUT_S,
    ENV_MAX_FRAME_BYTES,
    ENV_SYNC_LANE_SPIN_US,
    MIN_MAX_FRAME_BYTES,
    FramedSettings,
    FramedSettingsError,
)
from rayops.rpc.refusal_log import RefusalCounter

TOKEN = b"s3cret-token"


# Test-only messages (pickled by name: they have no extension code, which framed allows).
@dataclass(frozen=True, slots=True)
class Add(Message):
    METHOD: ClassVar[str] = "test_add"
    a: int
    b: int


@dataclass(frozen=True, slots=True)
class Slow(Message):
    METHOD: ClassVar[str] = "test_slow"
    x: int


@dataclass(frozen=True, slots=True)
class Note(Message):
    METHOD: ClassVar[str] = "test_note"
    x: int


@dataclass(frozen=True, slots=True)
class Fail(Message):
    METHOD: ClassVar[str] = "test_fail"


@dataclass(frozen=True, slots=True)
class Echo(Message):
    METHOD: ClassVar[str] = "test_echo"
    data: Any


ECHO: dict[type[Message], Callable[..., Any]] = {Echo: lambda c, m: m.data}


class _Boom:
    """Unpickling this creates a file: proof that a payload was (or was not) unpickled."""

    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (open, (self.path, "w"))


def run(coro):  # type: ignore[no-untyped-def]
    loop = framed.new_event_loop()
    try:
        return loop.run_until_complete(coro)
    finally:
        loop.close()


def test_request_reply_and_notify() -> None:
    async def main() -> None:
        got: list[int] = []

        def add(conn: framed.Connection, m: Add) -> int:
            return m.a + m.b

        async def slow(conn: framed.Connection, m: Slow) -> int:
            await asyncio.sleep(0.01)
            return m.x * 2

        def note(conn: framed.Connection, m: Note) -> None:
            got.append(m.x)

        def fail(conn: framed.Connection, m: Fail) -> None:
            raise KeyError("missing")

        handlers: dict[type[Message], Callable[..., Any]] = {
            Add: add,
            Slow: slow,
            Note: note,
            Fail: fail,
        }
        server = await framed.serve("127.0.0.1", 0, TOKEN, handlers)
        port = server.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {})
        assert await conn.request(Add(2, 3)) == 5
        assert await conn.request(Slow(21)) == 42
        results = await asyncio.gather(*(conn.request(Add(i, i)) for i in range(500)))
        assert results == [2 * i for i in range(500)]
        conn.notify(Note(7))
        with pytest.raises(KeyError):
            await conn.request(Fail())
        assert await conn.request(Add(0, 0)) == 0  # ordering: the notify was handled before
        assert got == [7]
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_typed_round_trip_with_protocol_messages() -> None:
    """A registered message crosses as its extension code; the reply is a message too."""

    async def main() -> None:
        seen: list[Ping] = []

        def ping(conn: framed.Connection, m: Ping) -> Pong:
            seen.append(m)
            return Pong()

        server = await framed.serve("127.0.0.1", 0, TOKEN, {Ping: ping})
        conn = await framed.connect("127.0.0.1", server.sockets[0].getsockname()[1], TOKEN, {})
        assert await conn.request(Ping()) == Pong()
        assert seen == [Ping()]
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_unknown_method_is_refused_with_its_code() -> None:
    async def main() -> None:
        server = await framed.serve("127.0.0.1", 0, TOKEN, ECHO)
        conn = await framed.connect("127.0.0.1", server.sockets[0].getsockname()[1], TOKEN, {})
        with pytest.raises(framed.Refused) as info:
            await conn.request(Ping())
        assert info.value.refusal.code is RefusalCode.UNKNOWN_METHOD
        assert "Ping" in info.value.refusal.message
        # The connection stays usable, and an unknown notification is dropped, not fatal.
        conn.notify(Note(1))
        assert await conn.request(Echo(3)) == 3
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_a_handlers_refusal_code_reaches_the_caller() -> None:
    """Raised at once or from a coroutine, the code arrives typed: no text is parsed."""

    async def main() -> None:
        def now(conn: framed.Connection, m: RequestLease) -> None:
            raise framed.Refused(Refusal(RefusalCode.UNSCHEDULABLE, "no node has GPU"))

        async def later(conn: framed.Connection, m: Slow) -> None:
            await asyncio.sleep(0)
            raise framed.Refused(Refusal(RefusalCode.NOT_HOSTED, "no actor here"))

        server = await framed.serve("127.0.0.1", 0, TOKEN, {RequestLease: now, Slow: later})
        conn = await framed.connect("127.0.0.1", server.sockets[0].getsockname()[1], TOKEN, {})
        with pytest.raises(framed.Refused) as info:
            await conn.request(RequestLease({"GPU": 1.0}))
        assert info.value.refusal == Refusal(RefusalCode.UNSCHEDULABLE, "no node has GPU")
        with pytest.raises(framed.Refused) as info:
            await conn.request(Slow(1))
        assert info.value.code is RefusalCode.NOT_HOSTED
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_a_registered_message_on_the_wire_carries_no_class_name() -> None:
    msg = RequestLease({"CPU": 1.0}, None, True, ())
    for item in (framed.request_tuple(1, msg), framed.notify_tuple(msg), (framed.REPLY, 1, msg)):
        data = b"".join(bytes(p) for p in framed._encode([item]))
        assert b"RequestLease" not in data and b"rayops" not in data, data
        assert b"request_lease" not in data
        (back,) = framed._decode(memoryview(data)[4:])
        assert back == item
    # The request itself is its code and field values, rebuilt by the receiver.
    assert framed.request_tuple(7, msg)[2:] == (252, ({"CPU": 1.0}, None, True, (), "", False))


def test_a_message_code_the_receiver_does_not_know_is_refused() -> None:
    """A newer peer's message: refused with UNKNOWN_METHOD, the connection stays up."""

    async def main() -> None:
        server = await framed.serve("127.0.0.1", 0, TOKEN, ECHO)
        conn = await framed.connect("127.0.0.1", server.sockets[0].getsockname()[1], TOKEN, {})
        fut = asyncio.get_running_loop().create_future()
        conn._pending[10**6] = fut  # as request() would, with a code from the future
        conn._send((framed.REQUEST, 10**6, 191, ("new", "fields")))
        with pytest.raises(framed.Refused) as info:
            await fut
        assert info.value.code is RefusalCode.UNKNOWN_METHOD and "191" in str(info.value)
        assert await conn.request(Echo(5)) == 5
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_wrong_token_is_refused() -> None:
    async def main() -> None:
        server = await framed.serve("127.0.0.1", 0, TOKEN, {Add: lambda c, m: m.a + m.b})
        port = server.sockets[0].getsockname()[1]
        with pytest.raises(framed.HandshakeRefused):
            await framed.connect("127.0.0.1", port, b"wrong", {})
        server.close()
        await server.wait_closed()

    run(main())


def test_payload_without_token_is_never_unpickled() -> None:
    """A crafted client skips the handshake and sends a pickled request: nothing runs."""
    with tempfile.TemporaryDirectory() as tmp:
        marker = os.path.join(tmp, "unpickled")
        calls: list[str] = []

        async def main() -> None:
            server = await framed.serve(
                "127.0.0.1", 0, TOKEN, {Add: lambda c, m: calls.append("add")}
            )
            port = server.sockets[0].getsockname()[1]
            loop = asyncio.get_running_loop()

            def attack() -> bytes:
                payload = pickle.dumps([(framed.REQUEST_OBJECT, 1, Echo(_Boom(marker)))])
                frame = struct.pack("<I", len(payload)) + payload
                with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
                    s.sendall(frame)  # the pickled request where the token should be
                    data = b""
                    try:
                        s.sendall(frame)  # and again as an ordinary frame
                        while chunk := s.recv(100):
                            data += chunk
                    except ConnectionResetError:
                        pass  # the server hung up on us, as it should
                    return data

            answer = await loop.run_in_executor(None, attack)
            assert answer in (b"", struct.pack("<I", 2) + b"NO")
            server.close()
            await server.wait_closed()

        run(main())
        assert not os.path.exists(marker)
        assert calls == []


# --------------------------------------------------------------------------- hardening
# What an unauthenticated or misbehaving peer may cost: time (the handshake deadline),
# memory (the small pre-auth buffer, the frame bound), log lines (one per peer per
# interval) -- and never a "Future exception was never retrieved".

FAST = FramedSettings(handshake_timeout_s=0.3, max_frame_bytes=32 * 2**20)


class _Records(logging.Handler):
    """Every record logged through the loggers it is attached to."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._attached: list[tuple[logging.Logger, int]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def attach(self, *names: str) -> _Records:
        for name in names:
            lg = logging.getLogger(name)
            self._attached.append((lg, lg.level))
            lg.addHandler(self)
            lg.setLevel(logging.DEBUG)
        return self

    def detach(self) -> None:
        for lg, level in self._attached:
            lg.removeHandler(self)
            lg.setLevel(level)

    def messages(self, level: int = logging.DEBUG) -> list[str]:
        return [r.getMessage() for r in self.records if r.levelno >= level]


@pytest.fixture
def records() -> Iterator[_Records]:
    rec = _Records().attach("rayops.rpc.framed", "asyncio")
    try:
        yield rec
    finally:
        rec.detach()


def _assert_no_unretrieved(records: _Records, stderr: str) -> None:
    gc.collect()  # an unretrieved exception is reported when its future is collected
    text = "\n".join(records.messages()) + stderr
    assert "never retrieved" not in text, text


def _wait_closed_by_server(
    sock: socket.socket, timeout: float, since: float | None = None
) -> tuple[bytes, float]:
    """Read until the server hangs up; what it sent, and how long after ``since`` (now)."""
    t0 = time.monotonic() if since is None else since
    sock.settimeout(timeout)
    data = b""
    try:
        while chunk := sock.recv(4096):
            data += chunk
    except ConnectionResetError:
        pass
    except TimeoutError:
        pytest.fail(f"the server kept the connection open for more than {timeout} s")
    return data, time.monotonic() - t0


def _handshake(sock: socket.socket, token: bytes = TOKEN) -> None:
    body = framed.MAGIC + token
    sock.sendall(struct.pack("<I", len(body)) + body)
    answer = b""
    while len(answer) < 6:
        chunk = sock.recv(6 - len(answer))
        assert chunk, "the server closed instead of answering the handshake"
        answer += chunk
    assert answer == struct.pack("<I", 2) + b"OK"


def test_idle_peers_are_closed_at_the_handshake_deadline(
    records: _Records, capfd: pytest.CaptureFixture[str]
) -> None:
    async def main() -> None:
        closed: list[framed.Connection] = []
        server = await framed.serve(
            "127.0.0.1", 0, TOKEN, {}, settings=FAST, on_close=closed.append
        )
        port = server.sockets[0].getsockname()[1]
        loop = asyncio.get_running_loop()

        def idle_peers() -> list[tuple[bytes, float]]:
            t0 = time.monotonic()
            socks = [socket.create_connection(("127.0.0.1", port)) for _ in range(20)]
            try:
                return [_wait_closed_by_server(s, 10.0, since=t0) for s in socks]
            finally:
                for s in socks:
                    s.close()

        results = await loop.run_in_executor(None, idle_peers)
        for data, elapsed in results:
            assert data == b""  # nothing was said, nothing is answered
            assert 0.2 <= elapsed < 5.0, elapsed
        deadline = time.monotonic() + 5
        while len(closed) < 20 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(closed) == 20
        # Their buffers went back at once, not when the objects are collected.
        assert all(len(c.get_buffer(-1)) == 0 for c in closed)
        server.close()
        await server.wait_closed()

    run(main())
    # One line for the 20 refusals from one address, at WARNING, naming the deadline.
    lines = records.messages(logging.WARNING)
    assert len(lines) == 1, lines
    assert "127.0.0.1" in lines[0] and "no valid handshake within 0.3 s" in lines[0]
    _assert_no_unretrieved(records, capfd.readouterr().err)


def test_pre_auth_buffer_is_small_until_the_handshake() -> None:
    async def main() -> None:
        conns: list[framed.Connection] = []

        def factory() -> framed.Connection:
            conn = framed.Connection(ECHO, token=TOKEN, server_side=True)
            conns.append(conn)
            return conn

        loop = asyncio.get_running_loop()
        server = await loop.create_server(factory, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(50)]
        client = await framed.connect("127.0.0.1", port, TOKEN, {})
        deadline = time.monotonic() + 5
        while len(conns) < 51 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        assert len(conns) == 51
        authed = [c for c in conns if c.handshake_done.done()]
        assert len(authed) == 1
        for conn in conns:
            room = len(conn.get_buffer(-1))
            if conn in authed:
                assert room == framed.RECV_BUFFER
            else:
                assert room <= 4 + 512, room
        # The handshake's buffer switch loses nothing: a large request goes through.
        assert await client.request(Echo(b"x" * 1_000_000)) == b"x" * 1_000_000
        client.close()
        for s in idle:
            s.close()
        server.close()
        await server.wait_closed()

    run(main())


@pytest.mark.parametrize(
    "opening, why",
    [
        (struct.pack("<I", 7) + b"garbage", "not a rayops handshake"),
        (struct.pack("<I", 2**31), "handshake frame of 2147483648 bytes"),
        (struct.pack("<I", len(framed.MAGIC) + 5) + framed.MAGIC + b"wrong", "bad cluster token"),
    ],
    ids=["garbage", "huge-claim", "wrong-token"],
)
def test_bad_handshakes_are_refused_once_per_peer(
    opening: bytes, why: str, records: _Records, capfd: pytest.CaptureFixture[str]
) -> None:
    async def main() -> None:
        # A long deadline, so "refused at once" cannot be mistaken for "timed out".
        settings = FramedSettings(handshake_timeout_s=10.0)
        server = await framed.serve("127.0.0.1", 0, TOKEN, {}, settings=settings)
        port = server.sockets[0].getsockname()[1]

        def attack() -> list[tuple[bytes, float]]:
            out = []
            for _ in range(5):
                with socket.create_connection(("127.0.0.1", port)) as s:
                    s.sendall(opening)
                    out.append(_wait_closed_by_server(s, 5.0))
            return out

        for data, elapsed in await asyncio.get_running_loop().run_in_executor(None, attack):
            assert data == struct.pack("<I", 2) + b"NO"
            assert elapsed < 5.0  # refused at once, not at the deadline
        server.close()
        await server.wait_closed()

    tracemalloc.start()
    try:
        run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak  # a 2 GiB claim allocates nothing
    lines = records.messages(logging.WARNING)
    assert len(lines) == 1 and why in lines[0], lines
    _assert_no_unretrieved(records, capfd.readouterr().err)


def test_refusals_in_a_driver_stay_at_debug(
    records: _Records, capfd: pytest.CaptureFixture[str]
) -> None:
    async def main() -> None:
        settings = FAST.for_driver()
        server = await framed.serve("127.0.0.1", 0, TOKEN, {}, settings=settings)
        port = server.sockets[0].getsockname()[1]

        def attack() -> None:
            with socket.create_connection(("127.0.0.1", port)) as s:
                s.sendall(struct.pack("<I", 7) + b"garbage")
                _wait_closed_by_server(s, 5.0)

        await asyncio.get_running_loop().run_in_executor(None, attack)
        server.close()
        await server.wait_closed()

    run(main())
    assert records.messages(logging.INFO) == []
    assert any("not a rayops handshake" in m for m in records.messages())
    assert capfd.readouterr().err == ""


def test_frame_header_over_the_bound_closes_without_allocating(records: _Records) -> None:
    async def main() -> None:
        server = await framed.serve("127.0.0.1", 0, TOKEN, ECHO, settings=FAST)
        port = server.sockets[0].getsockname()[1]

        def claim_2_gib() -> tuple[bytes, float]:
            with socket.create_connection(("127.0.0.1", port)) as s:
                _handshake(s)
                s.sendall(struct.pack("<I", 2**31) + b"\0" * 100)
                return _wait_closed_by_server(s, 5.0)

        data, elapsed = await asyncio.get_running_loop().run_in_executor(None, claim_2_gib)
        assert data == b"" and elapsed < 1.0
        server.close()
        await server.wait_closed()

    tracemalloc.start()
    try:
        run(main())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 16 * 2**20, peak
    lines = [m for m in records.messages(logging.WARNING) if "claims" in m]
    assert len(lines) == 1, records.messages()
    assert "2147483648" in lines[0] and str(FAST.max_frame_bytes) in lines[0]


def test_large_frames_under_the_bound_and_batches_over_it() -> None:
    """20 MiB goes through (its buffer filled as it arrives); 40 MiB in one message is
    refused locally with FrameTooLarge; five 10 MiB replies are split across frames."""

    async def main() -> None:
        server = await framed.serve("127.0.0.1", 0, TOKEN, ECHO, settings=FAST)
        port = server.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {}, settings=FAST)
        big = os.urandom(20 * 2**20)
        assert await conn.request(Echo(big)) == big
        with pytest.raises(framed.FrameTooLarge, match="RAYOPS_FRAMED_MAX_FRAME_BYTES"):
            await conn.request(Echo(b"y" * (40 * 2**20)))
        assert not conn.closed
        parts = [bytes([i]) * (10 * 2**20) for i in range(5)]
        assert await asyncio.gather(*(conn.request(Echo(p)) for p in parts)) == parts
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())


def test_connect_to_a_silent_server_times_out_and_closes(
    records: _Records, capfd: pytest.CaptureFixture[str]
) -> None:
    async def main() -> None:
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        with pytest.raises(TimeoutError):
            await framed.connect("127.0.0.1", port, TOKEN, {}, timeout=0.3)
        accepted, _ = listener.accept()
        with accepted:
            data, _ = await asyncio.get_running_loop().run_in_executor(
                None, _wait_closed_by_server, accepted, 5.0
            )
        assert data.startswith(struct.pack("<I", len(framed.MAGIC) + len(TOKEN)))
        listener.close()
        pool = framed.ConnectionPool(TOKEN, {}, timeout=0.3)
        with pytest.raises(OSError):
            await pool.get(("127.0.0.1", port))  # nothing listens any more

    run(main())
    _assert_no_unretrieved(records, capfd.readouterr().err)


def test_refusal_counter_one_line_per_peer_per_interval() -> None:
    now = [0.0]
    counter = RefusalCounter(60.0, clock=lambda: now[0])
    assert counter.refused("10.0.0.1") == 1
    assert counter.refused("10.0.0.2") == 1  # another peer has its own line
    for _ in range(9):
        now[0] += 1
        assert counter.refused("10.0.0.1") == 0
    now[0] = 60.0
    assert counter.refused("10.0.0.1") == 10  # the 9 suppressed, plus this one
    assert counter.refused("10.0.0.1") == 0
    now[0] = 200.0
    assert counter.refused("10.0.0.1") == 2  # the one suppressed at 60 s, plus this one
    now[0] = 400.0
    assert counter.refused("10.0.0.1") == 1  # quiet for an interval: a fresh count


def test_framed_settings_from_env() -> None:
    assert FramedSettings.from_env({}) == FramedSettings()
    s = FramedSettings.from_env(
        {
            ENV_HANDSHAKE_TIMEOUT_S: "2.5",
            ENV_MAX_FRAME_BYTES: str(64 * 2**20),
            ENV_SYNC_LANE_SPIN_US: "0",
        }
    )
    assert (s.handshake_timeout_s, s.max_frame_bytes) == (2.5, 64 * 2**20)
    assert s.sync_lane_spin_us == 0
    assert FramedSettings.from_env(s.to_env()) == s
    assert s.for_driver().refusal_log_level == logging.DEBUG
    for name, bad in [
        (ENV_HANDSHAKE_TIMEOUT_S, "0"),
        (ENV_HANDSHAKE_TIMEOUT_S, "soon"),
        (ENV_HANDSHAKE_TIMEOUT_S, "inf"),
        (ENV_MAX_FRAME_BYTES, "1024"),  # too small for an object chunk
        (ENV_MAX_FRAME_BYTES, str(2**32)),  # does not fit the 4-byte header
        (ENV_MAX_FRAME_BYTES, "64MiB"),
        (ENV_SYNC_LANE_SPIN_US, "-1"),
        (ENV_SYNC_LANE_SPIN_US, "20000"),  # a get() spinning 20 ms would waste a CPU
        (ENV_SYNC_LANE_SPIN_US, "1.5"),
    ]:
        with pytest.raises(FramedSettingsError, match=name):
            FramedSettings.from_env({name: bad})
    with pytest.raises(FramedSettingsError, match="max_frame_bytes"):
        FramedSettings(max_frame_bytes=1)


def test_object_chunks_fit_the_smallest_allowed_frame() -> None:
    from rayops.raylet.object_manager import CHUNK_BYTES

    assert CHUNK_BYTES + 64 * 1024 <= MIN_MAX_FRAME_BYTES


def test_a_deferred_reply_answers_later_and_a_reply_slot_hears_it_as_read() -> None:
    async def main() -> None:
        later: list[framed.DeferredReply] = []

        def slow(conn: framed.Connection, m: Slow) -> framed.DeferredReply:
            d = framed.DeferredReply()
            if m.x == 0:  # answered before the handler returns: still sent once bound
                d.set_result("early")
            elif m.x == 1:
                d.set_exception(framed.Refused(Refusal(RefusalCode.UNKNOWN_METHOD, "no")))
            elif m.x == 2:
                d.set_exception(KeyError("gone"))
            else:
                later.append(d)
            return d

        server = await framed.serve("127.0.0.1", 0, TOKEN, {Slow: slow})
        port = server.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {})
        assert await conn.request(Slow(0)) == "early"
        with pytest.raises(framed.Refused) as refused:
            await conn.request(Slow(1))
        assert refused.value.code == RefusalCode.UNKNOWN_METHOD
        with pytest.raises(KeyError):
            await conn.request(Slow(2))

        heard: list[tuple[Any, BaseException | None]] = []
        done = asyncio.Event()

        def on_reply(value: Any, err: BaseException | None) -> None:
            heard.append((value, err))
            done.set()

        conn.request_to(framed.ReplySlot(on_reply), Slow(3))
        deadline = time.monotonic() + 10
        while not later:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        d = later.pop()
        assert d.connection is not None and not d.done()
        d.set_result(42)
        d.set_result(43)  # only the first answer counts
        await asyncio.wait_for(done.wait(), 10)
        assert heard == [(42, None)]

        # A slot whose request is outstanding hears of the lost connection.
        heard.clear()
        done.clear()
        conn.request_to(framed.ReplySlot(on_reply), Slow(4))
        while not later:
            assert time.monotonic() < deadline
            await asyncio.sleep(0.001)
        conn.close()
        await asyncio.wait_for(done.wait(), 10)
        assert heard[0][0] is None and isinstance(heard[0][1], framed.ConnectionLost)
        # ... and one sent on a closed connection too, from the loop (not re-entrantly).
        heard.clear()
        done.clear()
        conn.request_to(framed.ReplySlot(on_reply), Slow(5))
        assert heard == []
        await asyncio.wait_for(done.wait(), 10)
        assert isinstance(heard[0][1], framed.ConnectionLost)
        server.close()
        await server.wait_closed()

    run(main())


def test_a_corked_connection_writes_on_uncork_as_one_frame() -> None:
    async def main() -> None:
        frames: list[int] = []
        server = await framed.serve("127.0.0.1", 0, TOKEN, ECHO)
        port = server.sockets[0].getsockname()[1]
        conn = await framed.connect("127.0.0.1", port, TOKEN, {})
        real_write = conn._raw_write

        def counting_write(*parts: bytes | memoryview) -> None:
            frames.append(len(parts))
            real_write(*parts)

        conn._raw_write = counting_write  # type: ignore[method-assign]
        conn.cork()
        futs = [conn.request(Echo(i)) for i in range(5)]
        await asyncio.sleep(0.01)  # (a contract breach, to show nothing is written meanwhile)
        assert frames == [] and not any(f.done() for f in futs)
        conn.uncork()
        assert len(frames) == 1  # written at once, not at the end of the loop iteration
        assert await asyncio.gather(*futs) == list(range(5))
        assert await conn.request(Echo("after")) == "after"  # uncorked: as usual again
        assert len(frames) == 2
        conn.close()
        server.close()
        await server.wait_closed()

    run(main())
