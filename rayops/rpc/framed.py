"""The data-plane transport: length-framed messages over asyncio TCP connections.

Owns: connecting, the token handshake, message framing, write coalescing and
request/reply correlation. Used on the hot paths (owner -> worker task pushes,
worker -> owner replies, core worker <-> local raylet). The control plane (GCS)
uses gRPC instead; see docs/architecture.md for why the two differ.

Wire format: every frame is a 4-byte little-endian length followed by that many
bytes. The first frame a client sends is the handshake: ``MAGIC`` followed by the
cluster token. The server compares the token in constant time and, if it does not
match, answers ``b"NO"`` and closes the connection *without unpickling anything*.
Only after a successful handshake are frames decoded, as pickled message tuples:

    (REQUEST, request_id, method, args)
    (REPLY, request_id, value)
    (ERROR, request_id, exception)
    (NOTIFY, 0, method, args)          one-way, no reply

Both ends of a connection can send requests; handlers are looked up by method
name in the handler table the connection was created with.

This module must not know about tasks, objects or any other runtime concept.
"""

from __future__ import annotations

import asyncio
import hmac
import itertools
import logging
import pickle
import socket
import struct
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

logger = logging.getLogger(__name__)

MAGIC = b"RAYOPS/1 "
_HEADER = struct.Struct("<I")
_MAX_HANDSHAKE = 512
MAX_FRAME = 1 << 31
RECV_BUFFER = 256 * 1024

REQUEST, REPLY, ERROR, NOTIFY = 0, 1, 2, 3

Handler = Callable[..., Any]
HandlerTable = Mapping[str, Handler]


class ConnectionLost(ConnectionError):
    """The peer closed the connection or it broke while a request was outstanding."""


class HandshakeRefused(ConnectionError):
    """The server refused the cluster token."""


class RemoteError(Exception):
    """A handler on the peer raised an exception that could not be sent back as itself."""


class Connection(asyncio.BufferedProtocol):
    """One framed, authenticated, bidirectional connection.

    Not thread-safe: every method must be called on the connection's event loop.
    """

    def __init__(
        self,
        handlers: HandlerTable,
        *,
        token: bytes,
        server_side: bool,
        on_close: Callable[[Connection], None] | None = None,
    ) -> None:
        self._handlers = handlers
        self._token = token
        self._server_side = server_side
        self._authenticated = False
        self._on_close = on_close
        self._transport: asyncio.Transport | None = None
        # Receiving: frames that fit go through one reusable buffer; a larger frame gets
        # a buffer of its own that the kernel fills in place (no joins, no extra copies).
        self._rbuf = bytearray(RECV_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._rlen = 0
        self._big: memoryview | None = None
        self._big_len = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        self._loop = asyncio.get_event_loop()
        self.handshake_done: asyncio.Future[None] = self._loop.create_future()
        self.closed = False
        self.peer: tuple[str, int] | None = None
        # Free-form slot for the owner of the connection (e.g. which worker it is).
        self.context: dict[str, Any] = {}

    # ------------------------------------------------------------------ protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.peer = transport.get_extra_info("peername")
        if not self._server_side:
            self._raw_write(_HEADER.pack(len(MAGIC) + len(self._token)) + MAGIC + self._token)

    def get_buffer(self, sizehint: int) -> memoryview:
        if self._big is not None:
            return self._big[self._big_len :]
        return self._rview[self._rlen :]

    def buffer_updated(self, nbytes: int) -> None:
        if self._big is not None:
            self._big_len += nbytes
            if self._big_len < len(self._big):
                return
            frame = self._big[4:]
            self._big = None
            self._big_len = 0
            self._deliver([frame])
            return
        self._rlen += nbytes
        self._parse()

    def _parse(self) -> None:
        buf, view, end = self._rbuf, self._rview, self._rlen
        offset = 0
        frames: list[Any] = []
        while end - offset >= 4:
            (size,) = _HEADER.unpack_from(buf, offset)
            if not self._authenticated and size > _MAX_HANDSHAKE:
                self._refuse("handshake frame too large")
                return
            if size > MAX_FRAME:
                self._fail(f"frame of {size} bytes exceeds the limit")
                return
            total = 4 + size
            if end - offset < total:
                if total > len(buf):
                    # Too big for the shared buffer: move what we have to its own.
                    big = memoryview(bytearray(total))
                    have = end - offset
                    big[:have] = view[offset:end]
                    self._big, self._big_len = big, have
                    offset = end
                break
            frame = bytes(view[offset + 4 : offset + total])
            offset += total
            if not self._authenticated:
                if not self._handshake(frame):
                    return
                continue
            frames.append(frame)
        if offset:
            rest = end - offset
            if rest:
                buf[:rest] = view[offset:end]
            self._rlen = rest
        if frames:
            self._deliver(frames)

    def _deliver(self, frames: list[Any]) -> None:
        for frame in frames:
            if self.closed:
                return
            try:
                msgs = _decode(memoryview(frame))
            except Exception as err:  # a corrupt frame from an authenticated peer
                self._fail(f"undecodable frame: {err!r}")
                return
            for msg in msgs:
                self._dispatch(msg)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        err = ConnectionLost(f"connection to {self.peer} lost" + (f": {exc}" if exc else ""))
        pending, self._pending = self._pending, {}
        for fut in pending.values():
            if not fut.done():
                fut.set_exception(err)
        if not self.handshake_done.done():
            self.handshake_done.set_exception(err)
        if self._on_close is not None:
            try:
                self._on_close(self)
            except Exception:
                logger.exception("on_close callback failed")

    # ----------------------------------------------------------------- handshake
    def _handshake(self, frame: bytes) -> bool:
        if self._server_side:
            ok = frame.startswith(MAGIC) and hmac.compare_digest(frame[len(MAGIC) :], self._token)
            if not ok:
                self._refuse("bad cluster token")
                return False
            self._authenticated = True
            self._raw_write(_HEADER.pack(2) + b"OK")
            self.handshake_done.set_result(None)
            return True
        if frame == b"OK":
            self._authenticated = True
            self.handshake_done.set_result(None)
            return True
        self.handshake_done.set_exception(
            HandshakeRefused(f"{self.peer} refused the cluster token (wrong or missing token)")
        )
        self.close()
        return False

    def _refuse(self, why: str) -> None:
        logger.warning("refusing connection from %s: %s", self.peer, why)
        self._raw_write(_HEADER.pack(2) + b"NO")
        self.close()

    def _fail(self, why: str) -> None:
        logger.error("closing connection to %s: %s", self.peer, why)
        self.close()

    # ------------------------------------------------------------------ dispatch
    def _dispatch(self, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == REPLY:
            fut = self._pending.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_result(msg[2])
        elif kind == ERROR:
            fut = self._pending.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_exception(msg[2])
        elif kind == REQUEST:
            self._handle_request(msg[1], msg[2], msg[3])
        elif kind == NOTIFY:
            handler = self._handlers.get(msg[2])
            if handler is None:
                logger.error("no handler for notification %r", msg[2])
                return
            try:
                result = handler(self, *msg[3])
                if asyncio.iscoroutine(result):
                    self._loop.create_task(result)
            except Exception:
                logger.exception("notification handler %r failed", msg[2])

    def _handle_request(self, req_id: int, method: str, args: tuple[Any, ...]) -> None:
        handler = self._handlers.get(method)
        if handler is None:
            self._send((ERROR, req_id, RemoteError(f"unknown method {method!r}")))
            return
        try:
            result = handler(self, *args)
        except Exception as err:
            self._send_error(req_id, err)
            return
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t: self._finish(req_id, t))
        else:
            self._send((REPLY, req_id, result))

    def _finish(self, req_id: int, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            self._send_error(req_id, ConnectionLost("request cancelled"))
            return
        err = task.exception()
        if err is not None:
            self._send_error(req_id, err)
        else:
            self._send((REPLY, req_id, task.result()))

    def _send_error(self, req_id: int, err: BaseException) -> None:
        try:
            pickle.dumps(err)
        except Exception:
            err = RemoteError(repr(err))
        self._send((ERROR, req_id, err))

    # ------------------------------------------------------------------- sending
    def request(self, method: str, *args: Any) -> asyncio.Future[Any]:
        """Send a request; the returned future resolves to the peer handler's result."""
        fut: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:
            fut.set_exception(ConnectionLost(f"connection to {self.peer} is closed"))
            return fut
        req_id = next(self._ids)
        self._pending[req_id] = fut
        self._send((REQUEST, req_id, method, args))
        return fut

    def notify(self, method: str, *args: Any) -> None:
        """Send a one-way message."""
        self._send((NOTIFY, 0, method, args))

    def _send(self, msg: tuple[Any, ...]) -> None:
        if self.closed:
            return
        self._out.append(msg)  # type: ignore[arg-type]
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write every message queued in this loop iteration as one frame."""
        self._flush_scheduled = False
        out, self._out = self._out, []
        if not out or self.closed:
            return
        try:
            parts = _encode(out)
        except Exception:
            # One bad message must not take the others down with it.
            for msg in out:
                try:
                    self._raw_write(*_encode([msg]))
                except Exception as err:
                    logger.error("dropping unpicklable message %r: %r", msg[:3], err)
                    if msg[0] == REQUEST:
                        fut = self._pending.pop(msg[1], None)
                        if fut is not None and not fut.done():
                            fut.set_exception(err)
            return
        self._raw_write(*parts)

    def _raw_write(self, *parts: bytes | memoryview) -> None:
        if self._transport is not None and not self._transport.is_closing():
            if len(parts) == 1:
                self._transport.write(parts[0])
            else:
                self._transport.writelines(parts)

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self.closed = True


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")
_SMALL = 65536


def _encode(msgs: list[Any]) -> list[bytes | memoryview]:
    """A frame's parts: header, buffer table, pickled messages, out-of-band buffers.

    Payloads wrapped in pickle.PickleBuffer (e.g. object chunks) travel out of band:
    they are neither copied into the pickle nor copied out of it on the other side.
    """
    buffers: list[pickle.PickleBuffer] = []
    pickled = pickle.dumps(msgs, protocol=5, buffer_callback=buffers.append)
    raws = [b.raw() for b in buffers]
    table = _COUNT.pack(len(raws)) + b"".join(_LEN.pack(r.nbytes) for r in raws)
    size = len(table) + len(pickled) + sum(r.nbytes for r in raws)
    if size <= _SMALL and not raws:
        return [_HEADER.pack(size) + table + pickled]
    return [_HEADER.pack(size) + table, pickled, *raws]


def _decode(frame: memoryview) -> Any:
    (count,) = _COUNT.unpack_from(frame, 0)
    pos = 4 + 8 * count
    lens = [_LEN.unpack_from(frame, 4 + 8 * i)[0] for i in range(count)]
    end = len(frame) - sum(lens)
    buffers = []
    off = end
    for n in lens:
        buffers.append(frame[off : off + n])
        off += n
    return pickle.loads(frame[pos:end], buffers=buffers)


async def connect(
    host: str,
    port: int,
    token: bytes,
    handlers: HandlerTable,
    *,
    timeout: float = 10.0,
    on_close: Callable[[Connection], None] | None = None,
) -> Connection:
    """Open an authenticated connection; raises HandshakeRefused or OSError."""
    loop = asyncio.get_running_loop()
    _, conn = await asyncio.wait_for(
        loop.create_connection(
            lambda: Connection(handlers, token=token, server_side=False, on_close=on_close),
            host,
            port,
        ),
        timeout,
    )
    await asyncio.wait_for(conn.handshake_done, timeout)
    return conn


async def serve(
    host: str,
    port: int,
    token: bytes,
    handlers: HandlerTable,
    *,
    on_connect: Callable[[Connection], Awaitable[None] | None] | None = None,
    on_close: Callable[[Connection], None] | None = None,
) -> asyncio.Server:
    """Listen on host:port (0 picks a free port). Every connection must pass the handshake."""
    loop = asyncio.get_running_loop()

    def factory() -> Connection:
        conn = Connection(handlers, token=token, server_side=True, on_close=on_close)
        if on_connect is not None:
            conn.handshake_done.add_done_callback(
                lambda f: None if f.exception() else on_connect(conn)
            )
        return conn

    return await loop.create_server(factory, host, port, reuse_address=True, backlog=1024)


class ConnectionPool:
    """Outgoing connections cached by address, one per peer.

    Concurrent callers share one connect; a connection that closed or failed to open
    is replaced on the next ``get``. Use from the event loop only.
    """

    def __init__(self, token: bytes, handlers: HandlerTable, *, timeout: float = 10.0) -> None:
        self._token = token
        self._handlers = handlers
        self._timeout = timeout
        self._conns: dict[tuple[str, int], asyncio.Future[Connection]] = {}

    async def get(self, address: tuple[str, int]) -> Connection:
        fut = self._conns.get(address)
        if fut is not None and fut.done() and (fut.exception() or fut.result().closed):
            fut = None
        if fut is None:
            fut = asyncio.ensure_future(
                connect(
                    address[0],
                    address[1],
                    self._token,
                    self._handlers,
                    timeout=self._timeout,
                    on_close=lambda c: self._forget(address, c),
                )
            )
            self._conns[address] = fut
        return await asyncio.shield(fut)

    def _forget(self, address: tuple[str, int], conn: Connection) -> None:
        fut = self._conns.get(address)
        if fut is not None and fut.done() and not fut.exception() and fut.result() is conn:
            del self._conns[address]

    def drop(self, address: tuple[str, int]) -> None:
        """Close the connection to ``address`` (if open); the next ``get`` reconnects."""
        fut = self._conns.pop(address, None)
        if fut is not None and fut.done() and not fut.exception():
            fut.result().close()

    def close_all(self) -> None:
        for address in list(self._conns):
            self.drop(address)


def new_event_loop() -> asyncio.AbstractEventLoop:
    """An event loop for daemons and core workers: uvloop when installed."""
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        return asyncio.new_event_loop()
    loop: asyncio.AbstractEventLoop = uvloop.new_event_loop()
    return loop
