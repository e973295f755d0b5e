"""The launcher's own SSH: one paramiko connection per host (through fabric), kept for a command.

``SshPool`` owns the connections of one launcher command: a host's connection is opened on
first use, shared by every later call (facts, records, ``exec``, ``submit``, SFTP transfers),
and closed by ``close()`` when the command ends (the pool is a context manager). Work on
several hosts runs in threads (``run_many``); one connection serves several channels at once.

Host keys are always checked against the spec's known_hosts file and nothing else (no
``~/.ssh/config``, no system known_hosts): an unknown host is refused unless
``auth.host_key_policy: accept-new``, which appends its key to that file (under a lock,
through a temporary file and a rename); a changed key is always refused. The spec's key is
the only identity offered; the agent and ``~/.ssh/id_*`` are used only when the spec names no
key.

Every command has a deadline (``timeout``), the connect has ``connect_timeout``, and a dead
peer is noticed in bounded time: keepalives every ``keepalive_s`` and ``TCP_USER_TIMEOUT`` on
the socket close a connection whose packets go unacknowledged for ``keepalive_s *
keepalive_count`` seconds. A command is finished when its exit status arrived and its output
ended, or one second after its exit status if a background child still holds the output open
(TEST-HOSTS.md P4: ``cmd &`` over SSH).

Failures to connect become a ``HostFailure`` through ``classify_connect_error``, a pure
function of the exception paramiko or the socket raised; a remote command's own exit status
is returned untouched. This module blocks; callers run it in threads.
"""

from __future__ import annotations

import errno
import fcntl
import os
import select
import shlex
import signal
import socket
import termios
import threading
import time
import tty
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import paramiko
from fabric import Config, Connection
from paramiko.ssh_exception import NoValidConnectionsError

from rayops.launcher.errors import HostFailure

SSH_ERROR_EXIT = 255
TIMEOUT_EXIT = 124
TAIL_LINES = 20
_DRAIN_AFTER_EXIT_S = 1.0  # P4: output still held open by a background child
_POLL_S = 0.5

OutputCallback = Callable[[bytes], None]


@dataclass(frozen=True)
class SshConfig:
    """How to reach every host of one cluster (the spec's ``auth`` plus local paths)."""

    user: str
    port: int = 22
    key_file: str | None = None
    known_hosts: str = os.path.expanduser("~/.ssh/known_hosts")
    host_key_policy: str = "strict"
    connect_timeout: float = 10.0
    keepalive_s: float = 5.0
    keepalive_count: int = 3
    control_dir: str = "/tmp"  # Ansible's ControlMaster sockets (ansible_runner.py) only

    @property
    def dead_after_s(self) -> float:
        """How long a peer may stay silent before its connection counts as lost."""
        return self.keepalive_s * self.keepalive_count

    def known_hosts_name(self, address: str) -> str:
        """The name a host's key is filed under (``[addr]:port`` off port 22, as OpenSSH)."""
        return address if self.port == 22 else f"[{address}]:{self.port}"


@dataclass
class CommandResult:
    address: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    failure: HostFailure | None = None  # set when SSH itself failed (not the command)

    @property
    def ok(self) -> bool:
        return self.failure is None and self.exit_code == 0

    def tail(self, n: int = TAIL_LINES) -> list[str]:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()
        return text.splitlines()[-n:] if text else []


class UnknownHostKeyError(paramiko.SSHException):
    """The host's key is not in the known_hosts file and the policy is ``strict``."""

    def __init__(self, hostname: str, key_type: str, fingerprint: str) -> None:
        self.hostname = hostname
        self.key_type = key_type
        self.fingerprint = fingerprint
        super().__init__(f"no {key_type} host key is known for {hostname} ({fingerprint})")

    def __reduce__(self) -> tuple[type, tuple[str, str, str]]:
        return (type(self), (self.hostname, self.key_type, self.fingerprint))


class ConnectionLostError(paramiko.SSHException):
    """An open connection died (peer silent past the keepalive window, or reset)."""


class SshError(Exception):
    """A host could not be reached; ``failure`` says why."""

    def __init__(self, failure: HostFailure) -> None:
        self.failure = failure
        super().__init__(failure.message)


# --- classification (pure) ---------------------------------------------------------------------


def _errno_of(err: BaseException) -> int | None:
    if isinstance(err, NoValidConnectionsError):
        for sub in err.errors.values():
            if isinstance(sub, OSError) and sub.errno is not None:
                return sub.errno
        return None
    return err.errno if isinstance(err, OSError) else None


def classify_connect_error(cfg: SshConfig, address: str, err: BaseException) -> HostFailure:
    """The cause of a failed connection (or of a lost one), from the exception alone."""
    where = f"{address}:{cfg.port}"
    if isinstance(err, paramiko.BadHostKeyException):
        name = cfg.known_hosts_name(address)
        return HostFailure(
            "host-key-changed",
            f"host key of {address} changed: the {err.key.get_name()} key it sent "
            f"({err.key.fingerprint}) does not match {cfg.known_hosts} "
            f"({err.expected_key.fingerprint}). If the host was reinstalled, check the new key "
            f"out of band, remove the old one (ssh-keygen -R {shlex.quote(name)} -f "
            f"{shlex.quote(cfg.known_hosts)}) and connect again; otherwise someone may be "
            "intercepting the connection",
        )
    if isinstance(err, UnknownHostKeyError):
        port = f"-p {cfg.port} " if cfg.port != 22 else ""
        return HostFailure(
            "host-key-unknown",
            f"host key of {address} ({err.key_type} {err.fingerprint}) is not in "
            f"{cfg.known_hosts} and auth.host_key_policy is 'strict': add the key after "
            f"checking it out of band (ssh-keyscan {port}{address} >> {cfg.known_hosts}) or "
            "set auth.host_key_policy: accept-new",
        )
    if isinstance(err, paramiko.PasswordRequiredException):
        return HostFailure(
            "auth-rejected",
            f"the key {cfg.key_file} for user {cfg.user} on {address} is encrypted: the "
            "launcher cannot ask for its passphrase; use a key without one (or leave "
            "auth.ssh_private_key unset to use the SSH agent)",
        )
    if isinstance(err, paramiko.AuthenticationException):
        key = cfg.key_file or "(the SSH agent and ~/.ssh default keys)"
        return HostFailure(
            "auth-rejected",
            f"authentication rejected by {address} for user {cfg.user} with key {key}: {err}",
        )
    if isinstance(err, socket.gaierror):
        return HostFailure("name-unknown", f"cannot resolve host name {address}: {err.strerror}")
    if isinstance(err, ConnectionLostError):
        return HostFailure("timed-out", f"lost the connection to {where}: {err}")
    code = _errno_of(err)
    if isinstance(err, ConnectionRefusedError) or code == errno.ECONNREFUSED:
        return HostFailure(
            "connection-refused", f"connection refused by {where} (no sshd listening: is the "
            "host up?)",
        )  # fmt: skip
    if isinstance(err, (TimeoutError, socket.timeout)) or code == errno.ETIMEDOUT:
        return HostFailure(
            "timed-out",
            f"connection to {where} timed out after {cfg.connect_timeout:g} s "
            "(host down, or packets dropped on the way)",
        )
    if code in (errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN):
        return HostFailure("unreachable", f"{address} is unreachable: {os.strerror(code or 0)}")
    if isinstance(err, (paramiko.SSHException, EOFError, ConnectionError)):
        return HostFailure(
            "ssh-error",
            f"ssh to {where} failed during the handshake: {str(err) or type(err).__name__}",
        )
    return HostFailure("ssh-error", f"ssh to {where} failed: {type(err).__name__}: {err}")


# --- known_hosts -------------------------------------------------------------------------------

_KNOWN_HOSTS_LOCK = threading.Lock()


def known_hosts_line(name: str, key: paramiko.PKey) -> str:
    return f"{name} {key.get_name()} {key.get_base64()}\n"


def add_known_host(path: str, name: str, key: paramiko.PKey) -> None:
    """Append ``name``'s key to ``path`` safely: under a lock (threads and processes), after
    re-reading the file (another run may have added the host meanwhile: a different key there
    is a changed key), through a temporary file and a rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    with _KNOWN_HOSTS_LOCK, open(f"{path}.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        current = p.read_text() if p.exists() else ""
        known = paramiko.HostKeys()
        if current:
            known.load(path)
        entry = known.lookup(name)
        if entry is not None:
            ours = entry.get(key.get_name())
            if ours == key:
                return
            raise paramiko.BadHostKeyException(name, key, ours or next(iter(entry.values())))
        mode = p.stat().st_mode & 0o777 if p.exists() else 0o600
        if current and not current.endswith("\n"):
            current += "\n"
        tmp = p.with_name(f".{p.name}.{os.getpid()}.tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
        with os.fdopen(fd, "w") as f:
            f.write(current + known_hosts_line(name, key))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, p)


class _KnownHostsPolicy(paramiko.MissingHostKeyPolicy):
    """Unknown host: refuse (``strict``) or record the key in the spec's file (``accept-new``).
    Changed keys never get here: paramiko raises BadHostKeyException before asking."""

    def __init__(self, cfg: SshConfig) -> None:
        self.cfg = cfg

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: Any) -> None:
        if self.cfg.host_key_policy != "accept-new":
            raise UnknownHostKeyError(hostname, key.get_name(), key.fingerprint)
        add_known_host(self.cfg.known_hosts, hostname, key)
        client.get_host_keys().add(hostname, key.get_name(), key)


# --- connections -------------------------------------------------------------------------------


def _open_socket(cfg: SshConfig, address: str) -> socket.socket:
    """A TCP connection with keepalive limits set, so a dead peer breaks it in bounded time."""
    last: OSError | None = None
    for family, kind, proto, _, sockaddr in socket.getaddrinfo(
        address, cfg.port, type=socket.SOCK_STREAM
    ):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(cfg.connect_timeout)
            sock.connect(sockaddr)
        except OSError as err:
            sock.close()
            last = err
            continue
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        if hasattr(socket, "TCP_USER_TIMEOUT"):
            ms = int(cfg.dead_after_s * 1000)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, ms)
        if hasattr(socket, "TCP_KEEPIDLE"):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, max(1, int(cfg.keepalive_s)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, max(1, int(cfg.keepalive_s)))
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, cfg.keepalive_count)
        return sock
    raise last if last is not None else OSError(errno.EHOSTUNREACH, "no address")


def _fabric_config() -> Config:
    # No ~/.ssh/config, no /etc/fabric.yml: the spec says everything.
    return Config(lazy=True, overrides={"load_ssh_configs": False})


@dataclass
class Terminal:
    """The local terminal an interactive session uses (the CLI passes its own)."""

    stdin_fd: int
    stdout_fd: int
    term: str = "xterm"

    def size(self) -> tuple[int, int]:
        try:
            sz = os.get_terminal_size(self.stdout_fd)
            return sz.columns, sz.lines
        except OSError:
            return 80, 24


@dataclass
class _Output:
    on_data: OutputCallback | None
    keep: bool
    data: bytearray = field(default_factory=bytearray)

    def add(self, chunk: bytes) -> None:
        if self.on_data is not None:
            self.on_data(chunk)
        self.data += chunk
        if not self.keep and len(self.data) > 16384:
            del self.data[:-8192]

    def text(self) -> str:
        return self.data.decode(errors="replace")


class SshPool:
    """The SSH connections of one launcher command: one per host, opened on first use.

    Thread-safe: several threads may use one host's connection at once (each call opens its
    own channel). Close it (or use it as a context manager) when the command ends.
    """

    def __init__(self, cfg: SshConfig, max_parallel: int = 32) -> None:
        self.cfg = cfg
        self.max_parallel = max_parallel
        self._conns: dict[str, Connection] = {}
        self._host_locks: dict[str, threading.Lock] = {}
        self._guard = threading.Lock()
        self._homes: dict[str, str] = {}
        self.connects = 0  # connections opened (a figure for tests and timings)

    def __enter__(self) -> SshPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _lock_for(self, address: str) -> threading.Lock:
        with self._guard:
            return self._host_locks.setdefault(address, threading.Lock())

    def connection(self, address: str) -> Connection:
        """The open connection to ``address`` (opened now if needed); raises SshError."""
        with self._lock_for(address):
            conn = self._conns.get(address)
            if conn is not None and conn.transport is not None and conn.transport.is_active():
                return conn
            if conn is not None:
                conn.close()
                self._homes.pop(address, None)
            conn = self._open(address)
            self._conns[address] = conn
            return conn

    def _open(self, address: str) -> Connection:
        cfg = self.cfg
        kwargs: dict[str, Any] = {
            "timeout": cfg.connect_timeout,
            "banner_timeout": cfg.connect_timeout,
            "auth_timeout": cfg.connect_timeout,
            "channel_timeout": cfg.connect_timeout,
        }
        if cfg.key_file:
            kwargs.update(key_filename=[cfg.key_file], look_for_keys=False, allow_agent=False)
        else:
            kwargs.update(look_for_keys=True, allow_agent=True)
        sock: socket.socket | None = None
        try:
            sock = _open_socket(cfg, address)
            conn = Connection(address, user=cfg.user, port=cfg.port, config=_fabric_config(),
                              connect_kwargs={**kwargs, "sock": sock})  # fmt: skip
            if os.path.exists(cfg.known_hosts):
                conn.client.load_host_keys(cfg.known_hosts)
            conn.client.set_missing_host_key_policy(_KnownHostsPolicy(cfg))
            conn.open()
        except Exception as err:  # every cause is classified; nothing escapes unnamed
            if sock is not None:
                sock.close()
            raise SshError(classify_connect_error(cfg, address, err)) from err
        assert conn.transport is not None
        conn.transport.set_keepalive(max(1, int(cfg.keepalive_s)))
        self.connects += 1
        return conn

    def _drop(self, address: str, conn: Connection) -> None:
        with self._lock_for(address):
            if self._conns.get(address) is conn:
                del self._conns[address]
                self._homes.pop(address, None)
        conn.close()

    def close(self) -> None:
        with self._guard:
            conns = list(self._conns.values())
            self._conns.clear()
            self._homes.clear()
        for conn in conns:
            conn.close()

    # --- commands ------------------------------------------------------------------------------

    def _channel(self, address: str) -> paramiko.Channel:
        conn = self.connection(address)
        assert conn.transport is not None
        try:
            return conn.transport.open_session(timeout=self.cfg.connect_timeout)
        except (paramiko.SSHException, OSError, EOFError):
            # The connection died since its last use (a rebooted host): one fresh try.
            self._drop(address, conn)
            conn = self.connection(address)
            assert conn.transport is not None
            return conn.transport.open_session(timeout=self.cfg.connect_timeout)

    def run(
        self,
        address: str,
        command: str,
        *,
        input_bytes: bytes | None = None,
        timeout: float | None = 120.0,
        on_stdout: OutputCallback | None = None,
        on_stderr: OutputCallback | None = None,
        pty: bool = False,
    ) -> CommandResult:
        """Run ``command`` in the login shell; output goes to the callbacks as it arrives and
        (the whole of it without callbacks, the last few KiB with them) into the result."""
        t0 = time.monotonic()
        out = _Output(on_stdout, keep=on_stdout is None)
        err = _Output(on_stderr, keep=on_stderr is None)
        try:
            chan = self._channel(address)
        except SshError as e:
            return CommandResult(address, SSH_ERROR_EXIT, "", "", time.monotonic() - t0, e.failure)
        except (paramiko.SSHException, OSError, EOFError) as e:
            failure = classify_connect_error(self.cfg, address, e)
            return CommandResult(address, SSH_ERROR_EXIT, "", "", time.monotonic() - t0, failure)
        try:
            if pty:
                chan.get_pty()
            chan.exec_command(command)
            if input_bytes:
                chan.sendall(input_bytes)
            chan.shutdown_write()
            deadline = None if timeout is None else t0 + timeout
            code = _pump(chan, deadline, out, err, self.cfg.dead_after_s)
        except ConnectionLostError as e:
            failure = classify_connect_error(self.cfg, address, e)
            return CommandResult(address, SSH_ERROR_EXIT, out.text(), err.text(),
                                 time.monotonic() - t0, failure)  # fmt: skip
        except (paramiko.SSHException, OSError, EOFError) as e:
            failure = HostFailure("ssh-error", f"the SSH session to {address} failed: {e}")
            return CommandResult(address, SSH_ERROR_EXIT, out.text(), err.text(),
                                 time.monotonic() - t0, failure)  # fmt: skip
        finally:
            chan.close()
        if code is None:
            msg = f"rayops: command timed out after {timeout:g} s on {address}"
            return CommandResult(address, TIMEOUT_EXIT, out.text(), err.text() + msg,
                                 time.monotonic() - t0)  # fmt: skip
        return CommandResult(address, code, out.text(), err.text(), time.monotonic() - t0)

    def run_many(
        self,
        addresses: Iterable[str],
        command: Callable[[str], str] | str,
        *,
        input_bytes: Callable[[str], bytes | None] | bytes | None = None,
        timeout: float | None = 120.0,
        on_line: Callable[[str, str], None] | None = None,
    ) -> dict[str, CommandResult]:
        """Run on every address in parallel; results keyed by address. With ``on_line``,
        each host's output lines (stdout and stderr) are passed on as they complete."""
        addrs = list(dict.fromkeys(addresses))
        if not addrs:
            return {}

        def one(addr: str) -> CommandResult:
            cmd = command(addr) if callable(command) else command
            data = input_bytes(addr) if callable(input_bytes) else input_bytes
            if on_line is None:
                return self.run(addr, cmd, input_bytes=data, timeout=timeout)
            lines_out, lines_err = _LineSplitter(addr, on_line), _LineSplitter(addr, on_line)
            res = self.run(addr, cmd, input_bytes=data, timeout=timeout,
                           on_stdout=lines_out, on_stderr=lines_err)  # fmt: skip
            lines_out.flush()
            lines_err.flush()
            return res

        with ThreadPoolExecutor(
            max_workers=min(self.max_parallel, len(addrs)), thread_name_prefix="rayops-ssh"
        ) as pool:
            return dict(zip(addrs, pool.map(one, addrs), strict=True))

    def connect_many(self, addresses: Iterable[str]) -> dict[str, HostFailure | None]:
        """Open the connections to every address in parallel (handshakes overlap)."""

        def one(addr: str) -> HostFailure | None:
            try:
                self.connection(addr)
            except SshError as e:
                return e.failure
            return None

        addrs = list(dict.fromkeys(addresses))
        if not addrs:
            return {}
        with ThreadPoolExecutor(
            max_workers=min(self.max_parallel, len(addrs)), thread_name_prefix="rayops-ssh"
        ) as pool:
            return dict(zip(addrs, pool.map(one, addrs), strict=True))

    def home(self, address: str) -> str:
        """The remote ``$HOME`` (what ``~`` means there; not necessarily the login directory
        the SFTP server starts in). Raises SshError."""
        if address in self._homes:
            return self._homes[address]
        res = self.run(address, 'printf %s "$HOME"', timeout=30)
        if res.failure is not None:
            raise SshError(res.failure)
        if res.exit_code != 0 or not res.stdout.startswith("/"):
            raise SshError(HostFailure(
                "command-failed", f"cannot read $HOME on {address}", exit_code=res.exit_code,
                output_tail=res.tail(),
            ))  # fmt: skip
        self._homes[address] = res.stdout
        return res.stdout

    def sftp(self, address: str) -> paramiko.SFTPClient:
        """The connection's SFTP client (one per connection). Raises SshError."""
        conn = self.connection(address)
        try:
            client: paramiko.SFTPClient = conn.sftp()
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise SshError(HostFailure(
                "ssh-error", f"cannot open an SFTP session on {address}: {e} (is the sftp "
                "subsystem enabled in its sshd_config?)",
            )) from e  # fmt: skip
        return client

    def interactive(self, address: str, command: str, terminal: Terminal) -> int:
        """Run ``command`` on a remote terminal wired to ``terminal`` (raw mode while it
        runs, window size followed); returns its exit code. Raises SshError."""
        try:
            chan = self._channel(address)
            cols, rows = terminal.size()
            chan.get_pty(term=terminal.term, width=cols, height=rows)
            chan.exec_command(command)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise SshError(classify_connect_error(self.cfg, address, e)) from e
        restore = _raw_mode(terminal.stdin_fd)
        old_winch = _follow_window_size(chan, terminal)
        try:
            return _pump_interactive(chan, terminal, self.cfg.dead_after_s)
        except (paramiko.SSHException, OSError, EOFError) as e:
            raise SshError(classify_connect_error(self.cfg, address, e)) from e
        finally:
            restore()
            if old_winch is not None:
                signal.signal(signal.SIGWINCH, old_winch)
            chan.close()


class _LineSplitter:
    def __init__(self, address: str, on_line: Callable[[str, str], None]) -> None:
        self.address = address
        self.on_line = on_line
        self.buf = b""

    def __call__(self, chunk: bytes) -> None:
        self.buf += chunk
        *lines, self.buf = self.buf.split(b"\n")
        for ln in lines:
            self.on_line(self.address, ln.decode(errors="replace").rstrip("\r"))

    def flush(self) -> None:
        if self.buf:
            self.on_line(self.address, self.buf.decode(errors="replace"))
            self.buf = b""


def _read_ready(chan: paramiko.Channel, out: _Output, err: _Output) -> None:
    while chan.recv_ready():
        out.add(chan.recv(65536))
    while chan.recv_stderr_ready():
        err.add(chan.recv_stderr(65536))


def _check_alive(chan: paramiko.Channel, dead_after_s: float) -> None:
    transport = chan.get_transport()
    if transport is None or not transport.is_active():
        raise ConnectionLostError(
            f"the connection closed (no answer for {dead_after_s:g} s, or reset by the peer)"
        )


def _pump(
    chan: paramiko.Channel, deadline: float | None, out: _Output, err: _Output, dead_after: float
) -> int | None:
    """Read until the command ends; its exit code, or None at the deadline."""
    exited_at: float | None = None
    while True:
        _read_ready(chan, out, err)
        if chan.eof_received or chan.closed:
            break
        now = time.monotonic()
        if chan.exit_status_ready():
            exited_at = exited_at or now
            if now - exited_at >= _DRAIN_AFTER_EXIT_S:
                break
        _check_alive(chan, dead_after)
        if deadline is not None and now >= deadline:
            return None
        wait = _POLL_S if deadline is None else max(0.0, min(_POLL_S, deadline - now))
        if exited_at is not None:
            wait = min(wait, 0.05)
        select.select([chan], [], [], wait)
    _read_ready(chan, out, err)
    while not chan.status_event.wait(_POLL_S):
        _check_alive(chan, dead_after)
        if deadline is not None and time.monotonic() >= deadline:
            return None
    _read_ready(chan, out, err)
    return _exit_code(chan, dead_after)


def _exit_code(chan: paramiko.Channel, dead_after: float) -> int:
    status = chan.recv_exit_status()
    if status < 0:  # no exit status: the connection died, or a signal killed the command
        _check_alive(chan, dead_after)
        return SSH_ERROR_EXIT  # like ssh
    return status


def _raw_mode(fd: int) -> Callable[[], None]:
    if not os.isatty(fd):
        return lambda: None
    old = termios.tcgetattr(fd)
    tty.setraw(fd, termios.TCSADRAIN)  # TCSAFLUSH would drop what was typed ahead
    return lambda: termios.tcsetattr(fd, termios.TCSADRAIN, old)


def _follow_window_size(chan: paramiko.Channel, terminal: Terminal) -> Any:
    if threading.current_thread() is not threading.main_thread():
        return None

    def on_winch(signum: int, frame: FrameType | None) -> None:
        cols, rows = terminal.size()
        chan.resize_pty(width=cols, height=rows)

    return signal.signal(signal.SIGWINCH, on_winch)


def _pump_interactive(chan: paramiko.Channel, terminal: Terminal, dead_after: float) -> int:
    stdin_open = True
    exited_at: float | None = None
    while not (chan.eof_received or chan.closed):
        fds: list[Any] = [chan] + ([terminal.stdin_fd] if stdin_open else [])
        try:
            ready, _, _ = select.select(fds, [], [], 0.05 if exited_at else _POLL_S)
        except InterruptedError:
            continue
        _drain_to(chan, terminal.stdout_fd)
        if stdin_open and terminal.stdin_fd in ready:
            data = os.read(terminal.stdin_fd, 4096)
            if data:
                chan.sendall(data)
            else:
                stdin_open = False
                chan.shutdown_write()
        if chan.exit_status_ready():
            exited_at = exited_at or time.monotonic()
            if time.monotonic() - exited_at >= _DRAIN_AFTER_EXIT_S:
                break
        _check_alive(chan, dead_after)
    _drain_to(chan, terminal.stdout_fd)
    return _exit_code(chan, dead_after)


def _drain_to(chan: paramiko.Channel, fd: int) -> None:
    while chan.recv_ready():
        _write_all(fd, chan.recv(65536))
    while chan.recv_stderr_ready():
        _write_all(fd, chan.recv_stderr(65536))


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def detached_command(command: str, log: str, cwd: str | None = None) -> str:
    """A shell line that starts ``command`` as a daemon and returns at once (TEST-HOSTS.md P4:
    ``cd X && cmd &`` backgrounds the whole list, and the forked shell keeps the session's
    output open). Here ``&`` applies to one simple command inside a subshell, and every
    standard stream of the daemon is redirected away from the session."""
    start = f"(nohup sh -c {shlex.quote(command)} >{shlex.quote(log)} 2>&1 </dev/null &)"
    return f"cd {shlex.quote(cwd)} && {start}" if cwd else start


def remote_env_prefix(env: Mapping[str, str]) -> str:
    """``export A='x' B='y';`` for a remote shell (sshd drops env without AcceptEnv)."""
    if not env:
        return ""
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "; "
