"""The data-plane transport: length-framed messages over asyncio TCP connections.

Owns: connecting, the token handshake, message framing, write coalescing and
request/reply correlation. Used on the hot paths (owner -> worker task pushes,
worker -> owner replies, core worker <-> local raylet). The control plane (GCS)
uses gRPC instead; see docs/architecture.md for why the two differ.

Wire format: every frame is a 4-byte little-endian length followed by that many
bytes. The first frame a client sends is the handshake: ``MAGIC`` followed by the
cluster token. The server compares the token in constant time and, if it does not
match, answers ``b"NO"`` and closes the connection *without unpickling anything*.

With TLS on (``rpc/tls.py``) a TCP connection is TLS with certificates verified both ways
before the first frame; the handshake frame then travels encrypted, and the token is checked
as without TLS. A local Unix socket stays plaintext (same host, same user only).

Until then a connection trusts its peer with nothing: it holds a receive buffer just
big enough for the handshake, and a server closes it when no valid handshake arrives
within ``FramedSettings.handshake_timeout_s``. Refusals are logged at most once a
minute per peer address (``refusal_log.py``). After the handshake, a frame whose header
claims more than ``FramedSettings.max_frame_bytes`` closes the connection before
anything is allocated for it; a sender splits its batches to stay under the same bound.
Only after a successful handshake are frames decoded, as pickled lists of tuples:

    (REQUEST, request_id, code, values)   a registered message: its code and field values
    (NOTIFY, code, values)                one-way, no reply
    (REQUEST_OBJECT, request_id, message) a message class without a code (tests, tools)
    (NOTIFY_OBJECT, message)
    (REPLY, request_id, value)            the handler's reply
    (REFUSED, request_id, refusal)        a protocol Refusal: raised to the caller as Refused
    (ERROR, request_id, exception)        the handler raised

Messages are the frozen dataclasses of ``rayops/protocol/*_messages.py``; the receiver
rebuilds one from its code (``protocol/wire_codes.py``, one table) and field values, and
looks its handler up by class in the table the connection was created with:
``handler(conn, message)``. A request whose class has no handler, or whose code this end
does not know (a newer peer), is refused with ``RefusalCode.UNKNOWN_METHOD``.

Why (code, values) and not the pickled object: the C pickler resolves an extension-coded
class by importing its module on every occurrence, and calls a Python ``__reduce__``; for
the hottest request that cost ~3.6 us more per message than untyped tuples did, the coded
form ~1.7 us (both measured build + dumps + loads, 64 messages a frame). Messages nested in a
reply still pickle compactly: every message class has a one-byte copyreg extension code.

This module must not know about tasks, objects or any other runtime concept.
"""

from __future__ import annotations

import asyncio
import enum
import hmac
import itertools
import logging
import mmap
import os
import pickle
import socket
import ssl
import struct
import threading
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from rayops.protocol import wire_codes
from rayops.protocol.framed_message import Message, Refusal, RefusalCode
from rayops.rpc import tls
from rayops.rpc.framed_settings import FramedSettings
from rayops.rpc.refusal_log import RefusalLog

logger = logging.getLogger(__name__)

MAGIC = b"RAYOPS/1 "
_HEADER = struct.Struct("<I")
# The largest handshake frame (MAGIC + token) and so the whole pre-authentication buffer.
_MAX_HANDSHAKE = 512
# The shared receive buffer of an authenticated connection.
RECV_BUFFER = 256 * 1024
# Frames up to this size get a zero-filled buffer at once (object chunks are 8 MiB);
# larger ones, up to the configured maximum, get anonymous memory that the kernel only
# backs as the bytes arrive, so a header's claim alone costs no resident memory.
_EAGER_FRAME = 16 * 2**20
_DEFAULTS = FramedSettings()
# Both ends must know the extension codes before the first frame is decoded (idempotent).
wire_codes.register()

# Frame kinds. 0 and 3 were the untyped (method name, positional args) request and
# notification of earlier versions: never reused.
REPLY, ERROR, REQUEST, NOTIFY, REFUSED = 1, 2, 4, 5, 6
REQUEST_OBJECT, NOTIFY_OBJECT = 7, 8
_ENCODERS = wire_codes.ENCODERS
_CLASS_BY_CODE = wire_codes.CLASS_BY_CODE

# A TLS record starts with its type, an alert (21) or a handshake (22), then the major
# version 3; a rayops handshake frame's length (at most _MAX_HANDSHAKE, little-endian) may
# start with 21 or 22 but its second byte is 0 or 1.
_TLS_RECORD_TYPES = (0x15, 0x16)
_TLS_MAJOR = 0x03


class ProcessTls(enum.Enum):
    """``serve``/``connect``'s default: this process's TLS setting (``tls.current()``)."""

    CURRENT = 0


TlsChoice = tls.Tls | None | ProcessTls


def _tls_of(choice: TlsChoice) -> tls.Tls | None:
    return tls.current() if isinstance(choice, ProcessTls) else choice


Handler = Callable[..., Any]
HandlerTable = Mapping[type[Message], Handler]  # message class -> handler(conn, message)


class ConnectionLost(ConnectionError):
    """The peer closed the connection or it broke while a request was outstanding."""


class HandshakeRefused(ConnectionError):
    """The server refused the cluster token."""


class RemoteError(Exception):
    """A handler on the peer raised an exception that could not be sent back as itself."""


class Refused(Exception):
    """The peer declined the request: ``refusal.code`` says why, ``refusal.message`` in words.

    A handler raises it to refuse; the requester's future fails with it (its own instance,
    built from the ``Refusal`` that crossed the wire).
    """

    def __init__(self, refusal: Refusal) -> None:
        super().__init__(f"{refusal.code.name}: {refusal.message}")
        self.refusal = refusal

    @property
    def code(self) -> RefusalCode:
        return self.refusal.code

    def __reduce__(self) -> tuple[Any, ...]:
        return (Refused, (self.refusal,))


class FrameTooLarge(ValueError):
    """A single message does not fit in one frame under the configured maximum size.

    Raised to the requester instead of sending it (the peer would close the
    connection); raise ``RAYOPS_FRAMED_MAX_FRAME_BYTES`` on every node, or send less.
    """


class ReplySlot:
    """A request's answer delivered without a future: ``on_reply(value, error)`` runs as
    the reply frame is read (a future's done callbacks wait for the next loop iteration).
    Has the setter side of a future, so every failure path (connection lost, a message
    that cannot be sent) treats a slot and a future alike."""

    __slots__ = ("_done", "_on_reply")

    def __init__(self, on_reply: Callable[[Any, BaseException | None], None]) -> None:
        self._on_reply = on_reply
        self._done = False

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        if not self._done:
            self._done = True
            self._call(value, None)

    def set_exception(self, err: BaseException) -> None:
        if not self._done:
            self._done = True
            self._call(None, err)

    def _call(self, value: Any, err: BaseException | None) -> None:
        # Runs inside the connection's read path: a failing callback must not break it.
        try:
            self._on_reply(value, err)
        except Exception:
            logger.exception("reply callback %r failed", self._on_reply)


class DeferredReply:
    """What a request handler returns to answer later, on the connection's loop, without
    a future: ``set_result`` / ``set_exception`` queue the reply at once (a future's done
    callback would wait for the next loop iteration). Has the setter side of a future, so
    code that answers either kind stays the same. A ``Refused`` exception is sent as a
    refusal, any other as the handler's error; only the first answer counts."""

    __slots__ = ("_conn", "_done", "_early", "_req_id")

    def __init__(self) -> None:
        self._conn: Connection | None = None
        self._req_id = 0
        self._done = False
        self._early: tuple[Any, BaseException | None] | None = None

    @property
    def connection(self) -> Connection | None:
        """The connection the reply goes out on (None until the handler has returned)."""
        return self._conn

    def done(self) -> bool:
        return self._done

    def set_result(self, value: Any) -> None:
        if not self._done:
            self._done = True
            self._answer(value, None)

    def set_exception(self, err: BaseException) -> None:
        if not self._done:
            self._done = True
            self._answer(None, err)

    def send_from_thread(self, value: Any) -> bool:
        """Answer ``value`` from a thread other than the loop's, writing the reply at once
        (``Connection.send_threadsafe``). False, with nothing done, until the handler has
        returned (the caller then answers through the loop as usual). The caller makes sure
        only one thread answers at a time."""
        conn = self._conn  # set after _req_id (see _bind): a connection means the id is set
        if conn is None:
            return False
        if not self._done:
            self._done = True
            conn.send_threadsafe((REPLY, self._req_id, value))
        return True

    @classmethod
    def for_request(cls, conn: Connection, req_id: int) -> DeferredReply:
        """The reply slot of a request read by another thread than the loop's (a sync
        lane); answered with ``send_from_thread`` there, or ``set_result`` on the loop."""
        reply = cls()
        reply._req_id = req_id
        reply._conn = conn
        return reply

    def _bind(self, conn: Connection, req_id: int) -> None:
        self._req_id = req_id
        self._conn = conn
        if self._early is not None:  # answered before the handler returned it
            value, err = self._early
            self._early = None
            self._answer(value, err)

    def _answer(self, value: Any, err: BaseException | None) -> None:
        conn = self._conn
        if conn is None:
            self._early = (value, err)
        elif err is None:
            conn._send((REPLY, self._req_id, value))
        elif isinstance(err, Refused):
            conn._send((REFUSED, self._req_id, err.refusal))
        else:
            conn._send_error(self._req_id, err)


class Connection(asyncio.BufferedProtocol):
    """One framed, authenticated, bidirectional connection.

    Not thread-safe: every method must be called on the connection's event loop, except
    ``send_threadsafe``, which any thread may call.
    """

    def __init__(
        self,
        handlers: HandlerTable,
        *,
        token: bytes,
        server_side: bool,
        on_close: Callable[[Connection], None] | None = None,
        settings: FramedSettings = _DEFAULTS,
        refusals: RefusalLog | None = None,
    ) -> None:
        self._handlers = handlers
        self._token = token
        self._server_side = server_side
        # Whether this connection runs over TLS (set by connection_made).
        self._tls = False
        self._closing = False  # close() was called here (not the peer closing)
        self._authenticated = False
        self._on_close = on_close
        self._settings = settings
        self._max_frame = settings.max_frame_bytes
        self._refusals = refusals
        self._deadline: asyncio.TimerHandle | None = None
        self._transport: asyncio.Transport | None = None
        # Receiving: frames that fit go through one reusable buffer; a larger frame gets
        # a buffer of its own that the kernel fills in place (no joins, no extra copies).
        # Until the handshake succeeds the buffer only holds the handshake frame.
        self._rbuf = bytearray(4 + _MAX_HANDSHAKE)
        self._rview = memoryview(self._rbuf)
        self._rlen = 0
        self._big: memoryview | None = None
        self._big_len = 0
        self._out: list[bytes] = []
        self._flush_scheduled = False
        self._corked = False  # cork(): hold messages until uncork()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._ids = itertools.count(1)
        # Writes from other threads (send_threadsafe). Every write to the transport takes
        # _wlock; _wfd is our own duplicate of the socket (so a closing transport never
        # leaves us a number the process may reuse), -1 when writes must go through the
        # loop; _handed holds bytes that must be written before anything else, in order.
        self._wlock = threading.RLock()
        self._wfd = -1
        self._handed: list[bytes | memoryview | tuple[Any, ...]] = []
        self._loop = asyncio.get_event_loop()
        self.handshake_done: asyncio.Future[None] = self._loop.create_future()
        # A failed handshake is reported to whoever awaits it (connect) or not at all
        # (a server's refused peer): never as "Future exception was never retrieved".
        self.handshake_done.add_done_callback(_retrieve)
        self.closed = False
        self.peer: tuple[str, int] | None = None
        # The server's host and port, for a client connected over its local socket.
        self.local_peer: tuple[str, int] | None = None
        # Free-form slot for the owner of the connection (e.g. which worker it is).
        self.context: dict[str, Any] = {}

    # ------------------------------------------------------------------ protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]
        self._tls = transport.get_extra_info("sslcontext") is not None
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self.peer = transport.get_extra_info("peername")
        elif sock is not None and sock.family == socket.AF_UNIX:
            self.peer = self.local_peer or ("local", 0)
        else:
            self.peer = transport.get_extra_info("peername")
        if self._server_side:
            self._deadline = self._loop.call_later(
                self._settings.handshake_timeout_s, self._handshake_expired
            )
        else:
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
        if self._authenticated:
            self._parse()
        else:
            self._parse_handshake()

    def _parse_handshake(self) -> None:
        """The first frame, in the small pre-authentication buffer; then switch buffers."""
        buf, end = self._rbuf, self._rlen
        if end < 4 or self.closed:
            return
        if buf[0] in _TLS_RECORD_TYPES and buf[1] == _TLS_MAJOR and not self._tls:
            self._tls_mismatch()
            return
        (size,) = _HEADER.unpack_from(buf, 0)
        if size > _MAX_HANDSHAKE:
            self._refuse(f"handshake frame of {size} bytes (at most {_MAX_HANDSHAKE})")
            return
        if end < 4 + size:
            return  # it fits in the buffer: wait for the rest
        frame, rest = bytes(buf[4 : 4 + size]), bytes(buf[4 + size : end])
        if not self._handshake(frame):
            return
        self._rbuf = bytearray(RECV_BUFFER)
        self._rview = memoryview(self._rbuf)
        self._rbuf[: len(rest)] = rest
        self._rlen = len(rest)
        if rest:
            self._parse()

    def _parse(self) -> None:
        buf, view, end = self._rbuf, self._rview, self._rlen
        offset = 0
        frames: list[Any] = []
        while end - offset >= 4:
            (size,) = _HEADER.unpack_from(buf, offset)
            if size > self._max_frame:
                self._fail(
                    f"a frame header claims {size} bytes, over the limit of "
                    f"{self._max_frame} (RAYOPS_FRAMED_MAX_FRAME_BYTES); nothing was allocated"
                )
                return
            total = 4 + size
            if end - offset < total:
                if total > len(buf):
                    # Too big for the shared buffer: move what we have to its own.
                    big = _frame_buffer(total)
                    have = end - offset
                    big[:have] = view[offset:end]
                    self._big, self._big_len = big, have
                    offset = end
                break
            frame = bytes(view[offset + 4 : offset + total])
            offset += total
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
        with self._wlock:  # atomic with register_threadsafe: every request is answered
            self.closed = True
            pending, self._pending = self._pending, {}
        self._close_direct_writes()
        if self._deadline is not None:
            self._deadline.cancel()
            self._deadline = None
        if not self._authenticated and self._server_side and not self.handshake_done.done():
            self._note_refusal("closed by the peer before the handshake")
        if not self._server_side and not self.handshake_done.done() and not self._closing:
            refused = _client_refusal(self.peer, exc, self._tls, self.is_local)
            if refused is not None:
                self.handshake_done.set_exception(refused)
        # Return the receive buffers now, not when the last reference to us goes.
        self._rbuf = bytearray()
        self._rview = memoryview(self._rbuf)
        self._rlen = 0
        self._big = None
        err = ConnectionLost(f"connection to {self.peer} lost" + (f": {exc}" if exc else ""))
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
                self._refuse(
                    "bad cluster token" if frame.startswith(MAGIC) else "not a rayops handshake"
                )
                return False
            self._authenticated = True
            if self._deadline is not None:
                self._deadline.cancel()
                self._deadline = None
            self._raw_write(_HEADER.pack(2) + b"OK")
            self._open_direct_writes()
            self.handshake_done.set_result(None)
            return True
        if frame == b"OK":
            self._authenticated = True
            self._open_direct_writes()
            self.handshake_done.set_result(None)
            return True
        self.handshake_done.set_exception(
            HandshakeRefused(f"{self.peer} refused the cluster token (wrong or missing token)")
        )
        self.close()
        return False

    def _tls_mismatch(self) -> None:
        """The peer's first bytes are a TLS record and this end speaks plaintext."""
        if self._server_side:
            self._refuse("a TLS client, but this server has TLS off")
            return
        self.handshake_done.set_exception(
            HandshakeRefused(tls.describe_mismatch(f"the server at {_show(self.peer)}", False))
        )
        self.close()

    def _refuse(self, why: str) -> None:
        self._note_refusal(why)
        self._raw_write(_HEADER.pack(2) + b"NO")
        self.close()

    def _handshake_expired(self) -> None:
        self._deadline = None
        if self._authenticated or self.closed:
            return
        self._note_refusal(
            f"no valid handshake within {self._settings.handshake_timeout_s:g} s "
            "(RAYOPS_FRAMED_HANDSHAKE_TIMEOUT_S)"
        )
        self.close()

    def _note_refusal(self, why: str) -> None:
        if self._refusals is not None:
            self._refusals.refused(self.peer, why)
        else:
            logger.debug("refusing connection from %s: %s", self.peer, why)
        # connection_lost must not log this connection a second time.
        if not self.handshake_done.done():
            self.handshake_done.set_exception(
                ConnectionLost(f"connection from {self.peer} refused: {why}")
            )

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
        elif kind == REQUEST:
            req = _rebuild(msg[2], msg[3])
            if isinstance(req, Refusal):
                self._send((REFUSED, msg[1], req))
            else:
                self._handle_request(msg[1], req)
        elif kind == NOTIFY:
            note = _rebuild(msg[1], msg[2])
            if isinstance(note, Refusal):
                logger.error("dropping a notification: %s", note.message)
            else:
                self._handle_notify(note)
        elif kind == REQUEST_OBJECT:
            self._handle_request(msg[1], msg[2])
        elif kind == NOTIFY_OBJECT:
            self._handle_notify(msg[1])
        elif kind == REFUSED:
            fut = self._pending.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_exception(Refused(msg[2]))
        elif kind == ERROR:
            fut = self._pending.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_exception(msg[2])

    def _handle_request(self, req_id: int, msg: Message) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            why = f"no handler for {type(msg).__name__} ({msg.METHOD!r})"
            self._send((REFUSED, req_id, Refusal(RefusalCode.UNKNOWN_METHOD, why)))
            return
        try:
            result = handler(self, msg)
        except Refused as err:
            self._send((REFUSED, req_id, err.refusal))
            return
        except Exception as err:
            self._send_error(req_id, err)
            return
        if type(result) is DeferredReply:
            result._bind(self, req_id)
            return
        if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
            task = asyncio.ensure_future(result)
            task.add_done_callback(lambda t: self._finish(req_id, t))
        else:
            self._send((REPLY, req_id, result))

    def _handle_notify(self, msg: Message) -> None:
        handler = self._handlers.get(type(msg))
        if handler is None:
            logger.error("no handler for notification %s", type(msg).__name__)
            return
        try:
            result = handler(self, msg)
            if asyncio.iscoroutine(result):
                self._loop.create_task(result)
        except Exception:
            logger.exception("notification handler for %s failed", type(msg).__name__)

    def _finish(self, req_id: int, task: asyncio.Future[Any]) -> None:
        if task.cancelled():
            self._send_error(req_id, ConnectionLost("request cancelled"))
            return
        err = task.exception()
        if isinstance(err, Refused):
            self._send((REFUSED, req_id, err.refusal))
        elif err is not None:
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
    def request(self, msg: Message) -> asyncio.Future[Any]:
        """Send a request message; the future resolves to the peer handler's reply.

        It fails with ``Refused`` when the peer declines (``.refusal.code`` says why),
        with the handler's exception when it raised, and with ``ConnectionLost``.
        """
        fut: asyncio.Future[Any] = self._loop.create_future()
        if self.closed:
            fut.set_exception(ConnectionLost(f"connection to {self.peer} is closed"))
            return fut
        req_id = next(self._ids)
        self._pending[req_id] = fut
        self._send(request_tuple(req_id, msg))
        return fut

    def request_to(self, slot: ReplySlot, msg: Message) -> None:
        """``request``, answered through ``slot`` as soon as the reply frame is read."""
        if self.closed:  # answered from the loop, as a future's callback would be
            err = ConnectionLost(f"connection to {self.peer} is closed")
            self._loop.call_soon(slot.set_exception, err)
            return
        req_id = next(self._ids)
        self._pending[req_id] = slot  # type: ignore[assignment]
        self._send(request_tuple(req_id, msg))

    def cork(self) -> None:
        """Hold what is sent from now on until ``uncork``, which writes it at once, rather
        than at the end of this loop iteration: a caller that sends a batch and knows when
        it is complete saves a loop iteration per round trip. Call ``uncork`` before
        returning to the loop (nothing else writes a corked connection's messages)."""
        self._corked = True

    def uncork(self) -> None:
        """Write what was held since ``cork`` now, as one frame; sending is as usual again."""
        self._corked = False
        if self._out:
            self._write_out()

    def notify(self, msg: Message) -> None:
        """Send a one-way message."""
        self._send(notify_tuple(msg))

    def _send(self, msg: tuple[Any, ...]) -> None:
        if self.closed:
            return
        self._out.append(msg)  # type: ignore[arg-type]
        if not self._flush_scheduled and not self._corked:
            self._flush_scheduled = True
            self._loop.call_soon(self._flush)

    def _flush(self) -> None:
        """Write every message queued in this loop iteration as one frame."""
        self._flush_scheduled = False
        if not self._corked:  # else uncork() writes
            self._write_out()

    def _write_out(self) -> None:
        out, self._out = self._out, []
        if not out or self.closed:
            return
        try:
            parts = _encode(out)
        except Exception:
            # One bad message must not take the others down with it.
            for msg in out:
                self._write_bounded([msg])
            return
        if _HEADER.unpack_from(parts[0])[0] > self._max_frame:
            self._write_bounded(out)
            return
        self._raw_write(*parts)

    def _write_bounded(self, out: list[Any]) -> None:
        """Write ``out`` in as few frames as fit under the maximum (the rare path)."""
        try:
            parts = _encode(out)
            size = _HEADER.unpack_from(parts[0])[0]
            if size > self._max_frame:
                if len(out) > 1:
                    half = len(out) // 2
                    self._write_bounded(out[:half])
                    self._write_bounded(out[half:])
                    return
                raise FrameTooLarge(
                    f"a message of {size} bytes does not fit in one frame (the limit is "
                    f"{self._max_frame} bytes, RAYOPS_FRAMED_MAX_FRAME_BYTES)"
                )
        except Exception as err:
            for msg in out:
                self._drop(msg, err)
            return
        self._raw_write(*parts)

    def _drop(self, msg: tuple[Any, ...], err: Exception) -> None:
        """A message that cannot be sent: its requester or the peer hears why."""
        logger.error("dropping a message %r that cannot be sent: %r", msg[:3], err)
        if msg[0] in (REQUEST, REQUEST_OBJECT):
            fut = self._pending.pop(msg[1], None)
            if fut is not None and not fut.done():
                fut.set_exception(err)
        elif msg[0] in (REPLY, REFUSED):
            self._send_error(msg[1], err)
        elif msg[0] == ERROR and not isinstance(msg[2], RemoteError):
            what = repr(msg[2])[:500]
            self._send((ERROR, msg[1], RemoteError(f"{what} could not be sent: {err!r}")))

    def _raw_write(self, *parts: bytes | memoryview) -> None:
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        with self._wlock:
            if self._handed:
                self._write_handed()
            if len(parts) == 1:
                transport.write(parts[0])
            else:
                transport.writelines(parts)

    # ------------------------------------------------------- other threads' writes
    def register_threadsafe(self, slot: ReplySlot) -> int | None:
        """From any thread: a request id whose reply goes to ``slot`` (answered with
        ConnectionLost if the connection closes first); None if it is closed already.
        Send the request with ``send_threadsafe(request_tuple(id, msg))``."""
        with self._wlock:
            if self.closed:
                return None
            req_id = next(self._ids)
            self._pending[req_id] = slot  # type: ignore[assignment]
            return req_id

    def send_threadsafe(self, msg: tuple[Any, ...]) -> None:
        """Send a frame tuple (``request_tuple``, ``notify_tuple``, a reply) from any
        thread but the loop's, written by this thread at once when the socket takes it.

        A thread that answers a call or streams its items saves the loop a wake-up and an
        iteration per message. Frames from one thread keep their order; a frame the socket
        does not take whole, and everything after it, is written by the loop.
        """
        if self.closed:
            return
        try:
            parts = _encode([msg])
        except Exception:
            parts = []
        if len(parts) != 1 or len(parts[0]) - 4 > self._max_frame:
            # Out-of-band buffers, too large, or unpicklable: the loop's path handles it,
            # in its turn (what this thread sends next waits behind it).
            with self._wlock:
                self._hand_to_loop(msg)
            return
        data = parts[0]
        with self._wlock:
            transport = self._transport
            if (
                self._wfd < 0
                or self._handed
                or transport is None
                or transport.get_write_buffer_size()
            ):
                self._hand_to_loop(data)
                return
            try:
                n = os.write(self._wfd, data)
            except BlockingIOError:
                n = 0
            except OSError:
                return  # the connection is breaking: the loop's reader says so to everyone
            if n < len(data):
                self._hand_to_loop(memoryview(data)[n:])

    def _hand_to_loop(self, item: bytes | memoryview | tuple[Any, ...]) -> None:
        """Queue bytes, or a message to encode, for the loop to write before anything
        else (under _wlock)."""
        self._handed.append(item)
        if len(self._handed) == 1:
            self._loop.call_soon_threadsafe(self._write_handed_locked)

    def _write_handed_locked(self) -> None:
        with self._wlock:
            self._write_handed()

    def _write_handed(self) -> None:
        """Write what other threads handed over, in order (under _wlock, on the loop)."""
        handed, self._handed = self._handed, []
        transport = self._transport
        if not handed or transport is None or transport.is_closing():
            return
        run: list[bytes | memoryview] = []  # consecutive frames: one write (one TLS record)
        for item in handed:
            if isinstance(item, tuple):
                if run:
                    transport.write(b"".join(run))
                    run = []
                self._write_bounded([item])  # re-enters _wlock (an RLock) to write
            else:
                run.append(item)
        if len(run) == 1:
            transport.write(run[0])
        elif run:
            transport.write(b"".join(run))

    def _open_direct_writes(self) -> None:
        """After the handshake: other threads may write this socket (see send_threadsafe).
        Only for a plain socket transport; TLS (later) writes through the loop."""
        transport = self._transport
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return
        sock = transport.get_extra_info("socket")
        if sock is None:
            return
        try:
            self._wfd = os.dup(sock.fileno())
        except OSError:
            self._wfd = -1

    def _close_direct_writes(self) -> None:
        with self._wlock:
            fd, self._wfd = self._wfd, -1
            self._handed = []
        if fd >= 0:
            os.close(fd)

    @property
    def is_local(self) -> bool:
        """Whether this connection runs over a Unix socket (same host)."""
        transport = self._transport
        sock = None if transport is None else transport.get_extra_info("socket")
        return sock is not None and sock.family == socket.AF_UNIX

    def take_reply_slot(self, req_id: int) -> Any:
        """From any thread: the slot (or future) waiting for request ``req_id``'s reply,
        taken out so that nothing else answers it; None if it is gone (answered already, or
        answered with ConnectionLost when the connection closed)."""
        with self._wlock:
            return self._pending.pop(req_id, None)

    def deliver(self, msg: tuple[Any, ...]) -> None:
        """On the loop: a frame element another thread read from this connection (see
        ``detach_reading``), handled as if the loop had read it."""
        if not self.closed:
            self._dispatch(msg)

    def detach_reading(self) -> int:
        """Stop the loop reading this connection and return a duplicate of its socket,
        for another thread to read from (a sync lane: see ``core_worker/sync_lane``).
        Writes (the loop's and ``send_threadsafe``) go on as before. Call on the loop, when
        the peer sends nothing until it hears from us, so nothing is half read here."""
        transport = self._transport
        if transport is None or self.closed or self._rlen or self._big is not None:
            raise ConnectionLost("cannot hand over the reading of this connection")
        sock = transport.get_extra_info("socket")
        if sock is None:
            raise ConnectionLost("no socket to hand over")
        transport.pause_reading()
        return os.dup(sock.fileno())

    def close(self) -> None:
        self._closing = True
        with self._wlock:  # what other threads sent before the close still goes out
            self._write_handed()
        self._close_direct_writes()
        if self._transport is not None:
            self._transport.close()
        self.closed = True


def _rebuild(code: int, values: tuple[Any, ...]) -> Message | Refusal:
    """The message a peer sent as (code, values), or why it cannot be rebuilt."""
    cls = _CLASS_BY_CODE.get(code)
    if cls is None:
        why = f"unknown message code {code} (is the peer a newer rayops?)"
        return Refusal(RefusalCode.UNKNOWN_METHOD, why)
    try:
        return cls(*values)
    except TypeError as err:  # a field count this version does not know
        return Refusal(RefusalCode.BAD_REQUEST, f"malformed {cls.__name__}: {err}")


def request_tuple(req_id: int, msg: Message) -> tuple[Any, ...]:
    """What goes in a frame for a request (see the module docstring)."""
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        return (REQUEST_OBJECT, req_id, msg)
    return (REQUEST, req_id, enc[0], enc[1](msg))


def requests_in(payload: bytes) -> list[tuple[int, Message]]:
    """The requests in a frame's payload (after its header), as (request id, message), for a
    thread that reads an authenticated connection itself (a sync lane). Anything else in
    the frame raises ValueError."""
    out: list[tuple[int, Message]] = []
    for msg in _decode(memoryview(payload)):
        kind = msg[0]
        if kind == REQUEST:
            req = _rebuild(msg[2], msg[3])
            if isinstance(req, Refusal):
                raise ValueError(req.message)
            out.append((msg[1], req))
        elif kind == REQUEST_OBJECT:
            out.append((msg[1], msg[2]))
        else:
            raise ValueError(f"a frame element of kind {kind} where requests were expected")
    return out


def take_frames(buf: bytearray, max_frame: int) -> list[bytes]:
    """The payloads of the whole frames at the front of ``buf``, taken out of it (what is
    left is a frame in part), for a thread that reads an authenticated connection itself
    (both ends of a sync lane). A header claiming more than ``max_frame`` raises
    ValueError before anything is allocated for it."""
    out: list[bytes] = []
    offset = 0
    while len(buf) - offset >= 4:
        (size,) = _HEADER.unpack_from(buf, offset)
        if size > max_frame:
            raise ValueError(f"a frame header claims {size} bytes, over the limit")
        end = offset + 4 + size
        if len(buf) < end:
            break
        out.append(bytes(buf[offset + 4 : end]))
        offset = end
    if offset:
        del buf[:offset]
    return out


def elements_in(payload: bytes | memoryview) -> list[tuple[Any, ...]]:
    """The elements of a frame's payload (after its header) as the loop dispatches them,
    for a thread that reads an authenticated connection itself (``Connection.deliver``
    hands one back to the loop)."""
    return list(_decode(memoryview(payload)))


def reply_value(element: tuple[Any, ...]) -> tuple[int, Any] | None:
    """(request id, value) of a frame element that is a plain reply; None for anything
    else (a refusal, an error, a request)."""
    if element[0] == REPLY:
        return element[1], element[2]
    return None


def notify_tuple(msg: Message) -> tuple[Any, ...]:
    """What goes in a frame for a notification."""
    enc = _ENCODERS.get(type(msg))
    if enc is None:
        return (NOTIFY_OBJECT, msg)
    return (NOTIFY, enc[0], enc[1](msg))


def map_reply(result: Any, fn: Callable[[Any], Any]) -> Any:
    """A handler's ``result`` passed through ``fn``: at once, or when it is an awaitable, once
    it completes (for handler tables that wrap an existing function's value in a reply)."""
    if asyncio.iscoroutine(result) or isinstance(result, asyncio.Future):
        inner = asyncio.ensure_future(result)
        outer: asyncio.Future[Any] = inner.get_loop().create_future()

        def done(f: asyncio.Future[Any]) -> None:
            if outer.done():
                return
            if f.cancelled():
                outer.cancel()
            elif f.exception() is not None:
                outer.set_exception(f.exception())  # type: ignore[arg-type]
            else:
                outer.set_result(fn(f.result()))

        inner.add_done_callback(done)
        return outer
    return fn(result)


def _frame(payload: bytes) -> bytes:
    return _HEADER.pack(len(payload)) + payload


def _frame_buffer(total: int) -> memoryview:
    """A writable buffer for one large incoming frame (see ``_EAGER_FRAME``)."""
    if total <= _EAGER_FRAME:
        return memoryview(bytearray(total))
    return memoryview(mmap.mmap(-1, total))


def _retrieve(fut: asyncio.Future[Any]) -> None:
    if not fut.cancelled():
        fut.exception()


_COUNT = struct.Struct("<I")
_LEN = struct.Struct("<Q")
_SMALL = 65536
_NO_BUFFERS = _COUNT.pack(0)  # the buffer table of a frame without out-of-band buffers


def _encode(msgs: list[Any]) -> list[bytes | memoryview]:
    """A frame's parts: header, buffer table, pickled messages, out-of-band buffers.

    Payloads wrapped in pickle.PickleBuffer (e.g. object chunks) travel out of band:
    they are neither copied into the pickle nor copied out of it on the other side.
    """
    buffers: list[pickle.PickleBuffer] = []
    pickled = pickle.dumps(msgs, protocol=5, buffer_callback=buffers.append)
    if not buffers:  # the common case: an empty buffer table
        size = _COUNT.size + len(pickled)
        if size <= _SMALL:
            return [_HEADER.pack(size) + _NO_BUFFERS + pickled]
        return [_HEADER.pack(size) + _NO_BUFFERS, pickled]
    raws = [b.raw() for b in buffers]
    table = _COUNT.pack(len(raws)) + b"".join(_LEN.pack(r.nbytes) for r in raws)
    size = len(table) + len(pickled) + sum(r.nbytes for r in raws)
    if size <= _SMALL and not raws:
        return [_HEADER.pack(size) + table + pickled]
    return [_HEADER.pack(size) + table, pickled, *raws]


def _decode(frame: memoryview) -> Any:
    (count,) = _COUNT.unpack_from(frame, 0)
    if not count:  # the common case: no out-of-band buffers
        return pickle.loads(frame[_COUNT.size :])
    pos = 4 + 8 * count
    lens = [_LEN.unpack_from(frame, 4 + 8 * i)[0] for i in range(count)]
    end = len(frame) - sum(lens)
    buffers = []
    off = end
    for n in lens:
        buffers.append(frame[off : off + n])
        off += n
    return pickle.loads(frame[pos:end], buffers=buffers)


def local_socket_name(host: str, port: int) -> str:
    """The abstract Unix socket a framed server on ``host:port`` also listens on.

    Abstract names live in the network namespace, like the TCP port itself, and vanish
    with the socket: nothing to clean up after a crash, and nodes in other namespaces
    (test hosts, containers) never see each other's names.
    """
    return f"\0rayops-framed/{host}:{port}"


def _same_user(sock: Any) -> bool:
    """Whether the process at the other end of a Unix socket runs as our user."""
    try:
        creds = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _PEERCRED.size)
    except OSError:
        return False
    _pid, uid, _gid = _PEERCRED.unpack(creds)
    return bool(uid == os.getuid())


_PEERCRED = struct.Struct("3i")


async def connect(
    host: str,
    port: int,
    token: bytes,
    handlers: HandlerTable,
    *,
    timeout: float = 10.0,
    on_close: Callable[[Connection], None] | None = None,
    settings: FramedSettings = _DEFAULTS,
    tls_material: TlsChoice = ProcessTls.CURRENT,
) -> Connection:
    """Open an authenticated connection; raises HandshakeRefused, TimeoutError or OSError.

    Over TCP with TLS on (``tls_material``, by default this process's), the connection is
    TLS verified both ways before the token handshake; a certificate or TLS/plaintext
    mismatch raises HandshakeRefused saying which.

    A server on this host is reached over its local socket when it has one (see
    ``FramedSettings.local_sockets``), else, and for every other host, over TCP.
    """
    loop = asyncio.get_running_loop()

    def factory() -> Connection:
        return Connection(
            handlers, token=token, server_side=False, on_close=on_close, settings=settings
        )

    if settings.local_sockets:
        local = await _connect_local(loop, factory, host, port, timeout)
        if local is not None:
            return local
    material = _tls_of(tls_material)
    if material is None:
        _, conn = await asyncio.wait_for(loop.create_connection(factory, host, port), timeout)
        return await _handshake_of(conn, timeout)
    try:
        _, conn = await asyncio.wait_for(
            loop.create_connection(
                factory, host, port, ssl=material.client_context(), server_hostname=host
            ),
            timeout,
        )
    except ssl.SSLError as err:
        raise HandshakeRefused(_tls_failure(f"{host}:{port}", err)) from None
    except ConnectionResetError as err:
        raise HandshakeRefused(
            f"{host}:{port} closed the connection during the TLS handshake ({err}): "
            + tls.describe_mismatch(f"{host}:{port}", True)
        ) from None
    return await _handshake_of(conn, timeout)


def _show(peer: tuple[str, int] | None) -> str:
    return "?" if peer is None else f"{peer[0]}:{peer[1]}"


def _tls_failure(where: str, err: ssl.SSLError) -> str:
    reason = str(err.reason or err)
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"TLS with {where} failed: its certificate did not verify ({err.verify_message}): "
            "is it signed by this cluster's CA, and does it name that address?"
        )
    if "WRONG_VERSION_NUMBER" in reason.upper() or "RECORD_LAYER" in reason.upper():
        return tls.describe_mismatch(where, True)
    return f"TLS with {where} failed: {reason}"


def _client_refusal(
    peer: tuple[str, int] | None, exc: Exception | None, over_tls: bool, local: bool
) -> HandshakeRefused | None:
    """Why a server closed a client's connection before answering the handshake, when the
    cause is TLS (a refused certificate, or a TLS server met in plaintext); else None."""
    if local:
        return None
    where = _show(peer)
    if over_tls:
        why = f" ({exc.reason or exc})" if isinstance(exc, ssl.SSLError) else ""
        return HandshakeRefused(
            f"{where} closed the TLS connection before answering the handshake{why}: did it "
            "refuse this process's certificate (is it signed by the cluster's CA)?"
        )
    if not over_tls and tls.current() is None:
        return HandshakeRefused(
            f"{where} closed the connection before the handshake; if it requires TLS: "
            + tls.describe_mismatch(f"the server at {where}", False)
        )
    return None


async def _connect_local(
    loop: asyncio.AbstractEventLoop,
    factory: Callable[[], Connection],
    host: str,
    port: int,
    timeout: float,
) -> Connection | None:
    """The connection over ``host:port``'s local socket; None when there is none (or it
    is not ours), so the caller goes over TCP. A refused token is final either way."""

    def local_factory() -> Connection:
        conn = factory()
        conn.local_peer = (host, port)
        return conn

    # The socket is made here: libuv takes a path as a C string and cannot name an
    # abstract socket.
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.setblocking(False)
    try:
        await asyncio.wait_for(loop.sock_connect(sock, local_socket_name(host, port)), timeout)
    except (ConnectionRefusedError, FileNotFoundError):
        sock.close()
        return None  # no server of that name on this host: the common case for remote peers
    except BaseException:
        sock.close()
        raise
    if not _same_user(sock):
        # Anyone on the host may bind a name in the abstract namespace first: the token goes
        # only to a process of our own user.
        logger.warning(
            "the local socket of %s:%s belongs to another user; connecting over TCP", host, port
        )
        sock.close()
        return None
    _, conn = await loop.create_unix_connection(local_factory, sock=sock)
    try:
        return await _handshake_of(conn, timeout)
    except HandshakeRefused:
        raise
    except (ConnectionError, OSError):
        return None


async def _handshake_of(conn: Connection, timeout: float) -> Connection:
    try:
        await asyncio.wait_for(conn.handshake_done, timeout)
    except BaseException:
        conn.close()  # a server that never answered must not keep the socket open
        raise
    return conn


class FramedServer:
    """A framed server's listeners: TCP on host:port, and the local socket of the same
    name (``local_socket_name``) when ``FramedSettings.local_sockets`` is on.
    ``sockets`` are the TCP listener's (its port is the server's address)."""

    def __init__(self, tcp: asyncio.AbstractServer, local: asyncio.AbstractServer | None) -> None:
        self._tcp = tcp
        self._local = local

    @property
    def sockets(self) -> Any:
        return self._tcp.sockets  # type: ignore[attr-defined]

    def close(self) -> None:
        self._tcp.close()
        if self._local is not None:
            self._local.close()

    async def wait_closed(self) -> None:
        await self._tcp.wait_closed()
        if self._local is not None:
            await self._local.wait_closed()


async def serve(
    host: str,
    port: int,
    token: bytes,
    handlers: HandlerTable,
    *,
    on_connect: Callable[[Connection], Awaitable[None] | None] | None = None,
    on_close: Callable[[Connection], None] | None = None,
    settings: FramedSettings = _DEFAULTS,
    tls_material: TlsChoice = ProcessTls.CURRENT,
) -> FramedServer:
    """Listen on host:port (0 picks a free port), and on its local socket. Every
    connection must pass the handshake.

    ``settings`` bounds what an unauthenticated peer may cost (time, memory, log lines)
    and the frame size; refusals are logged once per peer address per interval.
    """
    loop = asyncio.get_running_loop()
    refusals = RefusalLog(logger, settings.refusal_log_level, settings.refusal_log_interval_s)

    def factory() -> Connection:
        conn = Connection(
            handlers,
            token=token,
            server_side=True,
            on_close=on_close,
            settings=settings,
            refusals=refusals,
        )
        if on_connect is not None:
            conn.handshake_done.add_done_callback(
                lambda f: None if f.exception() else on_connect(conn)
            )
        return conn

    material = _tls_of(tls_material)
    tcp = await loop.create_server(
        factory,
        host,
        port,
        reuse_address=True,
        backlog=1024,
        ssl=None if material is None else material.server_context(),
        ssl_handshake_timeout=settings.handshake_timeout_s if material is not None else None,
    )
    local = None
    if settings.local_sockets:
        bound = tcp.sockets[0].getsockname()[1]
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(local_socket_name(host, bound))  # abstract: see _connect_local
            sock.setblocking(False)
            local = await loop.create_unix_server(factory, sock=sock, backlog=1024)
        except OSError as err:  # the name is taken: peers on this host use TCP
            sock.close()
            logger.warning(
                "no local socket for the framed server on %s:%s (%s); local peers use TCP",
                host,
                bound,
                err,
            )
    return FramedServer(tcp, local)


class ConnectionPool:
    """Outgoing connections cached by address, one per peer.

    Concurrent callers share one connect; a connection that closed or failed to open
    is replaced on the next ``get``. Use from the event loop only.
    """

    def __init__(
        self,
        token: bytes,
        handlers: HandlerTable,
        *,
        timeout: float = 10.0,
        settings: FramedSettings = _DEFAULTS,
    ) -> None:
        self._token = token
        self._handlers = handlers
        self._timeout = timeout
        self._settings = settings
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
                    settings=self._settings,
                )
            )
            # Its failure reaches every awaiting caller; if they all went away, no one.
            fut.add_done_callback(_retrieve)
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
