"""The data plane of object transfer: blocking sockets in threads, never the event loop.

Holder side (``DataServer``): a listening TCP socket on the node's address, one accept
thread and a bounded pool of sending threads. A connection must open with a ticket issued
over the authenticated framed plane (``transfer_plan.TicketBook``), bound to one object and
byte range; anything else is closed before a byte of the object is sent. The range goes out
with ``os.sendfile`` from the store file (the kernel moves the pages; Python never touches
them), or, with TLS on, ``SSLSocket.sendall`` of a read-only mapping of the file.

Puller side (``receive_object``): the object's temporary file is created at full size (the
store's recycled file when it left one), each stripe is received by its own thread and only
a complete object is renamed to its final name; on any failure the file is removed. Without
TLS a stripe is spliced: socket to a pipe (the kernel takes references to the received
pages, no copy) and pipe to the file at the stripe's offset (the one copy, in the kernel,
into the file's pages), so nothing is mapped and no page is faulted in this process. With
TLS the bytes must pass through user space: ``recv_into`` mappings of the range (no
intermediate buffer), the next chunk mapped and populated by a helper thread meanwhile.

With TLS on, both ends wrap the data connections with the node's contexts (verified both
ways, as the framed plane does), in blocking mode in their threads.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import mmap
import os
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from dataclasses import dataclass, field

from rayops.objectstore._paths import claim_recycled, discard, temp_path
from rayops.objectstore._recycle import lock_for_reading
from rayops.raylet import transfer_plan as plan
from rayops.rpc import tls
from rayops.rpc.refusal_log import RefusalLog

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 5.0  # a data connection must present its ticket within this
IO_TIMEOUT_S = 30.0  # no progress for this long fails the transfer
TICKET_TTL_S = 60.0
SEND_THREADS = 8
MAX_QUEUED_CONNECTIONS = 64
_SENDFILE_MAX = 1 << 30
_TLS_WRITE = 4 * 2**20  # bytes per SSLSocket.sendall call
_RECV_MAX = 64 * 2**20  # bytes asked per recv_into
REFUSAL_LOG_INTERVAL_S = 60.0  # at most one line per refusing peer address per interval


class TransferFailed(OSError):
    """A stripe could not be received in full (holder gone, refused, or timed out)."""


# ------------------------------------------------------------------ holder side
class Source:
    """An open store file shared by the tickets of one offer; closed with the last of them.
    It holds the store's reader lock (``lock_for_reading``), so even if the object is deleted
    or spilled meanwhile, its file is not recycled for another object until the last stripe
    is sent: the descriptor keeps the bytes readable and the lock keeps them unchanged.
    Raises FileNotFoundError when the file is gone or was recycled before it was locked."""

    def __init__(self, path: str, refs: int) -> None:
        self.fd = os.open(path, os.O_RDONLY)
        opened = os.fstat(self.fd)
        try:
            locked = lock_for_reading(self.fd, path, opened)
        except BaseException:
            os.close(self.fd)
            raise
        if not locked:
            os.close(self.fd)
            raise FileNotFoundError(f"{path} was recycled for another object")
        self.size = opened.st_size
        self._refs = refs
        self._lock = threading.Lock()
        self._map: mmap.mmap | None = None

    def mapping(self) -> mmap.mmap:
        with self._lock:
            if self._map is None:
                self._map = mmap.mmap(self.fd, self.size, prot=mmap.PROT_READ)
            return self._map

    def release(self) -> None:
        with self._lock:
            self._refs -= 1
            if self._refs > 0:
                return
            if self._map is not None:
                with contextlib.suppress(BufferError):
                    self._map.close()
                self._map = None
            os.close(self.fd)
            self.fd = -1


@dataclass
class ServeStats:
    served_bytes: int = 0
    refused: int = 0


class DataServer:
    """Serves ticketed byte ranges of store files. ``on_finished(grant, ok)`` is called
    (from a sending thread) when a stripe was sent, failed or its ticket expired."""

    def __init__(
        self,
        host: str,
        on_finished: Callable[[plan.Grant, bool], None] | None = None,
        tls_material: tls.Tls | None = None,
        port: int = 0,
    ) -> None:
        self._tls = tls_material
        self._on_finished = on_finished
        self._book = plan.TicketBook(TICKET_TTL_S)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.stats = ServeStats()
        # A scanner or a stale puller hammering the port costs one line a minute per address.
        self._refusals = RefusalLog(logger, logging.WARNING, REFUSAL_LOG_INTERVAL_S)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._listener = socket.socket(family, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind((host, port))
        self._listener.listen(128)
        self._listener.settimeout(0.5)
        self.port: int = self._listener.getsockname()[1]
        self._queued = 0
        self._open: set[socket.socket] = set()
        self._pool = ThreadPoolExecutor(SEND_THREADS, thread_name_prefix="rayops-xfer-send")
        self._acceptor = threading.Thread(
            target=self._accept_loop, name="rayops-xfer-accept", daemon=True
        )
        self._acceptor.start()
        logger.info(
            "object transfer data port %s:%d (TLS %s)",
            host,
            self.port,
            "on" if tls_material else "off",
        )

    # -- tickets (called on the event loop)
    def offer(
        self, object_id: bytes, puller: str, path: str, ranges: list[tuple[int, int]]
    ) -> list[bytes]:
        """Tickets for `ranges` of the file at `path` (raises OSError if it is gone)."""
        source = Source(path, max(len(ranges), 1))
        if not ranges:
            source.release()
            return []
        if sum(length for _, length in ranges) != source.size:  # replaced since it was sized
            source.release()
            raise FileNotFoundError(f"{path} changed size")
        now = time.monotonic()
        self._expire()
        with self._lock:
            return [
                self._book.issue(plan.Grant(object_id, puller, off, length, source), now)
                for off, length in ranges
            ]

    def _expire(self) -> None:
        with self._lock:
            gone = self._book.expire(time.monotonic())
        for grant in gone:
            self._expired(grant)

    def _expired(self, grant: plan.Grant) -> None:
        assert isinstance(grant.source, Source)
        grant.source.release()
        if self._on_finished is not None:
            self._on_finished(grant, False)

    # -- threads
    def _accept_loop(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                self._expire()  # tickets nobody came for release their files
                continue
            except OSError:
                if self._stopping.is_set():
                    return
                time.sleep(0.05)
                continue
            with self._lock:
                if self._queued >= MAX_QUEUED_CONNECTIONS:
                    sock.close()
                    continue
                self._queued += 1
            try:
                self._pool.submit(self._serve, sock)
            except RuntimeError:  # shutting down
                sock.close()
                return

    def _serve(self, raw: socket.socket) -> None:
        grant: plan.Grant | None = None
        sock: socket.socket = raw
        with self._lock:
            self._open.add(raw)
        try:
            raw.settimeout(HEADER_TIMEOUT_S)
            if self._tls is not None:
                sock = self._tls.server_context().wrap_socket(raw, server_side=True)
            grant = self._redeem(sock, _peer(raw))
            if grant is None:
                with self._lock:
                    self.stats.refused += 1
                return
            _blocking_with_timeout(sock, IO_TIMEOUT_S)
            self._send_range(sock, grant)
            with self._lock:
                self.stats.served_bytes += grant.length
            self._finish(grant, True)
            grant = None
            with contextlib.suppress(OSError):
                # Wait for the puller to close: our last bytes are then surely delivered.
                sock.recv(1)
        except (OSError, ssl.SSLError) as err:
            if not self._stopping.is_set():
                logger.info("data connection failed: %r", err)
            if grant is not None:
                self._finish(grant, False)
        finally:
            with self._lock:
                self._queued -= 1
                self._open.discard(raw)
            with contextlib.suppress(OSError):
                sock.close()

    def _finish(self, grant: plan.Grant, ok: bool) -> None:
        assert isinstance(grant.source, Source)
        grant.source.release()
        if self._on_finished is not None:
            self._on_finished(grant, ok)

    def _redeem(self, sock: socket.socket, peer: tuple[str, int] | None) -> plan.Grant | None:
        head = _recv_exact(sock, plan.request_head_size())
        if head is None:
            return None
        decoded = plan.decode_head(head)
        if decoded is None:
            self._refusals.refused(peer, "not a rayops object transfer request")
            return None
        ticket, oid_len = decoded
        tail = _recv_exact(sock, plan.tail_size(oid_len))
        if tail is None:
            return None
        object_id, offset, length = plan.decode_tail(tail, oid_len)
        with self._lock:
            grant = self._book.redeem(ticket, object_id, offset, length, time.monotonic())
        if grant is None:
            self._refusals.refused(
                peer, f"wrong, used or expired transfer ticket for {object_id.hex()[:12]}"
            )
        return grant

    def _send_range(self, sock: socket.socket, grant: plan.Grant) -> None:
        source = grant.source
        assert isinstance(source, Source)
        offset, end = grant.offset, grant.offset + grant.length
        if end > source.size:
            raise TransferFailed(f"range ends at {end}, file has {source.size} bytes")
        if isinstance(sock, ssl.SSLSocket):
            with memoryview(source.mapping()) as view:
                while offset < end:
                    step = min(_TLS_WRITE, end - offset)
                    sock.sendall(view[offset : offset + step])
                    offset += step
            return
        out = sock.fileno()
        while offset < end:
            sent = os.sendfile(out, source.fd, offset, min(end - offset, _SENDFILE_MAX))
            if sent == 0:
                raise TransferFailed(f"store file ended at {offset}; expected {end} bytes")
            offset += sent

    def close(self) -> None:
        self._stopping.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            grants = self._book.drain()
        for grant in grants:
            assert isinstance(grant.source, Source)
            grant.source.release()
        self._acceptor.join(timeout=2)
        self._pool.shutdown(wait=True, cancel_futures=True)


def _peer(sock: socket.socket) -> tuple[str, int] | None:
    try:
        name = sock.getpeername()
    except OSError:
        return None
    return (str(name[0]), int(name[1]))


def _blocking_with_timeout(sock: socket.socket, seconds: float) -> None:
    """A blocking socket whose sends and receives fail after `seconds` without progress
    (SO_SNDTIMEO/SO_RCVTIMEO): sendfile and recv_into then cost one syscall each, where a
    Python-level timeout would make the socket non-blocking and add a poll per call."""
    sock.settimeout(None)
    whole = int(seconds)
    timeval = struct.pack("ll", whole, int((seconds - whole) * 1e6))
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDTIMEO, timeval)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, timeval)


def _recv_exact(sock: socket.socket, n: int) -> bytes | None:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:])
        if k == 0:
            return None
        got += k
    return bytes(buf)


# ------------------------------------------------------------------ puller side
# Splice (no TLS): bytes per socket-to-pipe call, and the pipe's capacity asked for (the
# default 64 KiB pipe would take 16x the syscalls; 1 MiB is the unprivileged maximum by
# default, /proc/sys/fs/pipe-max-size). Measured on this 2-core VM (100 MB, one stripe,
# holder sendfile, alternated runs): into a recycled store file 1.1-4.0 GB/s against
# 0.8-2.1 for recv_into populated mappings; into a fresh file 0.8-1.6 against 0.5-0.7 (the
# write allocates pages as it goes; a populated mapping faults every page in first).
SPLICE_PIPE_BYTES = 2**20
_F_SETPIPE_SZ = getattr(fcntl, "F_SETPIPE_SZ", 1031)
_HAVE_SPLICE = hasattr(os, "splice")
# With TLS a stripe is received in chunks of this size, each mapped with MAP_POPULATE by a second
# thread while the previous one is being received: the pages of a fresh file are allocated
# (and, for any file, entered into the page table) on one CPU while the other copies bytes
# off the socket. One MAP_POPULATE of the whole stripe first would leave the socket idle for
# that long: measured here 1.3-2.1 s for a fresh 1 GiB file, 0.1-0.2 s for a recycled one.
CHUNK_BYTES = 32 * 2**20


@dataclass
class Target:
    """The file an incoming object is written to, hidden under a temporary name."""

    final: str
    tmp: str
    fd: int
    size: int
    sockets: list[socket.socket] = field(default_factory=list)
    failed: bool = False
    lock: threading.Lock = field(default_factory=threading.Lock)


def open_target(final: str, reserved: str | None, size: int) -> Target:
    """Create the temporary file at full size, reusing the store's recycled file (pages
    already allocated) when it left one at `reserved`."""
    tmp = temp_path(final)
    recycled = claim_recycled(reserved, tmp)
    flags = os.O_RDWR if recycled else os.O_RDWR | os.O_CREAT | os.O_EXCL
    fd = os.open(tmp, flags, 0o600)
    try:
        os.ftruncate(fd, size)
    except BaseException:
        os.close(fd)
        discard(tmp)
        raise
    return Target(final, tmp, fd, size)


def receive_stripe(
    target: Target,
    host: str,
    port: int,
    ticket: bytes,
    object_id: bytes,
    offset: int,
    length: int,
    tls_material: tls.Tls | None,
    connect_timeout: float = 10.0,
) -> None:
    """Receive bytes [offset, offset + length) of the object into its file
    (``_receive_range``). Raises TransferFailed (and
    makes the other stripes of the target give up) on any error."""
    sock: socket.socket | None = None
    try:
        if target.failed:
            raise TransferFailed("another stripe failed")
        raw = socket.create_connection((host, port), timeout=connect_timeout)
        sock = raw
        if tls_material is not None:
            sock = tls_material.client_context().wrap_socket(raw, server_hostname=host)
        with target.lock:
            target.sockets.append(sock)
        sock.sendall(plan.encode_request(ticket, object_id, offset, length))
        _blocking_with_timeout(sock, IO_TIMEOUT_S)
        _receive_range(sock, target, host, port, offset, length)
    except (OSError, ssl.SSLError) as err:
        fail(target)
        if isinstance(err, TransferFailed):
            raise
        raise TransferFailed(f"stripe at {offset} from {host}:{port}: {err!r}") from err
    finally:
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.close()


def _map(fd: int, offset: int, length: int) -> mmap.mmap:
    return mmap.mmap(fd, length, flags=mmap.MAP_SHARED | mmap.MAP_POPULATE, offset=offset)


def _chunks(offset: int, length: int) -> list[tuple[int, int]]:
    return [
        (o, min(CHUNK_BYTES, offset + length - o))
        for o in range(offset, offset + length, CHUNK_BYTES)
    ]


def _receive_range(
    sock: socket.socket, target: Target, host: str, port: int, offset: int, length: int
) -> None:
    """Fill [offset, offset + length) of the target's file from the socket: spliced in the
    kernel for a plain socket, else (TLS) received into mappings chunk by chunk."""
    if _HAVE_SPLICE and not isinstance(sock, ssl.SSLSocket):
        _splice_range(sock, target, host, port, offset, length)
    else:
        _receive_mapped(sock, target, host, port, offset, length)


def _splice_range(
    sock: socket.socket, target: Target, host: str, port: int, offset: int, length: int
) -> None:
    """Socket -> pipe -> file at `offset`: the pipe only carries references to the received
    pages, the copy into the file's pages happens once, in the kernel. The socket's
    SO_RCVTIMEO bounds each wait (a timeout raises BlockingIOError); a shutdown from
    ``fail`` makes the next splice return 0."""
    r, w = os.pipe()
    try:
        with contextlib.suppress(OSError):  # refused above pipe-max-size: keep the default
            fcntl.fcntl(w, _F_SETPIPE_SZ, SPLICE_PIPE_BYTES)
        src, dst = sock.fileno(), target.fd
        pos, end = offset, offset + length
        while pos < end:
            n = os.splice(src, w, min(end - pos, SPLICE_PIPE_BYTES))
            if n == 0:
                raise TransferFailed(
                    f"holder {host}:{port} closed the data connection after "
                    f"{pos - offset} of {length} bytes at offset {offset}"
                )
            while n:
                k = os.splice(r, dst, n, offset_dst=pos)
                if k == 0:
                    raise TransferFailed(f"could not write the object's file at {pos}")
                pos += k
                n -= k
    finally:
        os.close(r)
        os.close(w)


def _receive_mapped(
    sock: socket.socket, target: Target, host: str, port: int, offset: int, length: int
) -> None:
    """`recv_into` mappings of [offset, offset + length) of the target's file, chunk by chunk,
    the next chunk mapped (and populated) by a helper thread meanwhile."""
    chunks = _chunks(offset, length)
    if len(chunks) == 1:
        mapped = _map(target.fd, offset, length)
        try:
            _recv_into(sock, mapped, host, port, offset)
        finally:
            mapped.close()
        return
    with ThreadPoolExecutor(1, thread_name_prefix="rayops-xfer-map") as mapper:
        ahead: Future[mmap.mmap] | None = mapper.submit(_map, target.fd, *chunks[0])
        try:
            for i, (off, _) in enumerate(chunks):
                assert ahead is not None
                mapped = ahead.result()
                ahead = None
                if i + 1 < len(chunks):
                    ahead = mapper.submit(_map, target.fd, *chunks[i + 1])
                try:
                    _recv_into(sock, mapped, host, port, off)
                finally:
                    mapped.close()
        finally:
            if ahead is not None:  # failed with the next chunk mapped: unmap it
                with contextlib.suppress(Exception):
                    ahead.result().close()


def _recv_into(sock: socket.socket, mapped: mmap.mmap, host: str, port: int, offset: int) -> None:
    """Fill all of `mapped` (the file's bytes from `offset` on) from the socket."""
    length = len(mapped)
    with memoryview(mapped) as view:
        got = 0
        while got < length:
            n = sock.recv_into(view[got:], min(length - got, _RECV_MAX))
            if n == 0:
                raise TransferFailed(
                    f"holder {host}:{port} closed the data connection after "
                    f"{got} of {length} bytes at offset {offset}"
                )
            got += n


def receive_object(
    final: str,
    reserved: str | None,
    size: int,
    host: str,
    port: int,
    tickets: list[bytes],
    ranges: list[tuple[int, int]],
    object_id: bytes,
    tls_material: tls.Tls | None,
    extra_stripes: ThreadPoolExecutor,
) -> None:
    """The whole pull, blocking, in one thread: create the file, receive the first stripe
    here and the others in `extra_stripes` (a pool of its own, so waiting on them cannot
    starve it), then rename the complete file into place. On any failure every stripe
    stops and the file is removed before TransferFailed is raised."""
    target = open_target(final, reserved, size)
    futures: list[Future[None]] = []
    try:
        for ticket, (off, length) in list(zip(tickets, ranges, strict=True))[1:]:
            futures.append(
                extra_stripes.submit(
                    receive_stripe,
                    target,
                    host,
                    port,
                    ticket,
                    object_id,
                    off,
                    length,
                    tls_material,
                )
            )
        if ranges:
            off, length = ranges[0]
            receive_stripe(target, host, port, tickets[0], object_id, off, length, tls_material)
        for fut in futures:
            fut.result()
        commit(target)
    except BaseException:
        fail(target)
        wait_futures(futures)
        abort(target)
        raise


def fail(target: Target) -> None:
    """Make every stripe of `target` stop (a blocked recv returns at once)."""
    with target.lock:
        target.failed = True
        for sock in target.sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


def commit(target: Target) -> None:
    """Make the complete object visible under its final name."""
    os.close(target.fd)
    target.fd = -1
    os.rename(target.tmp, target.final)


def abort(target: Target) -> None:
    """Remove the half-written file; readers never saw it."""
    if target.fd >= 0:
        os.close(target.fd)
        target.fd = -1
    discard(target.tmp)


__all__ = [
    "DataServer",
    "Source",
    "Target",
    "TransferFailed",
    "abort",
    "commit",
    "open_target",
    "receive_object",
    "receive_stripe",
]
