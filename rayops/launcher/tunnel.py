"""A local port forwarded to an address seen from a host, over that host's SSH connection.

What ``ssh -L 127.0.0.1:LOCAL:HOST:PORT`` does, on the launcher's own paramiko connection
(no second login): ``LocalForward`` listens on 127.0.0.1 (a free port unless one is given),
and each accepted connection gets its own ``direct-tcpip`` channel to ``remote`` as the
remote sshd sees it (the head's API server listens on the head's 127.0.0.1). Bytes are
pumped both ways by one thread per connection; closing the forward closes the listener and
every connection. Thread-safe; owns its threads.
"""

from __future__ import annotations

import contextlib
import logging
import select
import socket
import threading
from typing import Any

import paramiko

from rayops.launcher.errors import LauncherError

__all__ = ["LocalForward"]

logger = logging.getLogger(__name__)

_POLL_S = 0.2
_CHUNK = 64 * 1024


class LocalForward:
    """``127.0.0.1:<port>`` here -> ``remote`` on the other end of ``transport``."""

    def __init__(
        self,
        transport: paramiko.Transport,
        remote: tuple[str, int],
        *,
        local_port: int = 0,
        open_timeout: float = 10.0,
    ) -> None:
        self._transport = transport
        self.remote = remote
        self._open_timeout = open_timeout
        # Fail now, naming the target, rather than on the first request through the forward.
        probe = self._open_channel(("127.0.0.1", 0))
        probe.close()
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            self._listener.bind(("127.0.0.1", local_port))
        except OSError as err:
            self._listener.close()
            raise LauncherError(f"cannot listen on 127.0.0.1:{local_port}: {err}") from err
        self._listener.listen(64)
        self._listener.settimeout(_POLL_S)
        self.port: int = self._listener.getsockname()[1]
        self._closed = threading.Event()
        self._lock = threading.Lock()
        self._pairs: list[tuple[socket.socket, paramiko.Channel]] = []
        self._threads: list[threading.Thread] = []
        self._acceptor = threading.Thread(
            target=self._accept_loop, name=f"forward-{self.port}", daemon=True
        )
        self._acceptor.start()

    def __enter__(self) -> LocalForward:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _open_channel(self, origin: tuple[str, int]) -> paramiko.Channel:
        host, port = self.remote
        try:
            return self._transport.open_channel(
                "direct-tcpip", (host, port), origin, timeout=self._open_timeout
            )
        except (paramiko.SSHException, OSError, EOFError) as err:
            raise LauncherError(
                f"cannot reach {host}:{port} through the SSH connection: {err} (is the "
                "server running there, and does the host's sshd allow TCP forwarding?)"
            ) from err

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, peer = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                chan = self._open_channel(peer)
            except LauncherError as err:
                logger.warning("port forward %d: %s", self.port, err)
                conn.close()
                continue
            thread = threading.Thread(
                target=self._pump, args=(conn, chan), name=f"forward-{self.port}-conn", daemon=True
            )
            with self._lock:
                if self._closed.is_set():
                    conn.close()
                    chan.close()
                    return
                self._pairs.append((conn, chan))
                self._threads.append(thread)
            thread.start()

    def _pump(self, conn: socket.socket, chan: paramiko.Channel) -> None:
        ends: list[Any] = [conn, chan]
        try:
            while not self._closed.is_set():
                readable, _, _ = select.select(ends, [], [], _POLL_S)
                if conn in readable:
                    data = conn.recv(_CHUNK)
                    if not data:
                        break
                    chan.sendall(data)
                if chan in readable:
                    data = chan.recv(_CHUNK)
                    if not data:
                        break
                    conn.sendall(data)
        except (OSError, EOFError, paramiko.SSHException):
            pass
        finally:
            chan.close()
            with contextlib.suppress(OSError):
                conn.close()
            with self._lock, contextlib.suppress(ValueError):
                self._pairs.remove((conn, chan))

    def close(self) -> None:
        """Stop listening and close every forwarded connection."""
        if self._closed.is_set():
            return
        self._closed.set()
        self._listener.close()
        with self._lock:
            pairs, threads = list(self._pairs), list(self._threads)
        for conn, chan in pairs:
            chan.close()
            with contextlib.suppress(OSError):
                conn.close()
        self._acceptor.join(2 * _POLL_S + 1)
        for t in threads:
            t.join(2 * _POLL_S + 1)
