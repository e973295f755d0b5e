"""Log files that rotate by size, and a total cap on a node's log directory.

Owns: the rotation settings (``LogRotationConfig``, parsed once from the environment
at a process's edge), one rotating file (``RotatingFile``), the process-level set-up
that points a process's Python logging and its file descriptors 1 and 2 at rotating
files (``setup_process_logging``), and the per-node cap (``plan_cap_deletions``, a
decision without I/O, and ``scan_log_dir``/``delete_log_files``, its shell; the
raylet runs them for its node). It must not decide *where* a process logs (callers
pass paths) and must not read settings anywhere but ``LogRotationConfig.from_env``.

Settings (the first two are Ray's ``RAY_ROTATION_*`` with Ray's defaults; Ray has no cap)::

    RAYOPS_ROTATION_MAX_BYTES     512 MiB  a file rotates before it would pass this size (0: never)
    RAYOPS_ROTATION_BACKUP_COUNT  5        rotated files kept per log: x.log.1 (newest) .. x.log.5
    RAYOPS_LOGS_MAX_TOTAL_BYTES   4 GiB    disk use of a node's logs/ (0: no cap); when over,
                                           the oldest rotated files and logs of exited workers
                                           are deleted first; files being written never are

How output written to fd 1/2 rotates (prints, C extensions, tracebacks of a dying
process): the fds point straight at the log file, opened ``O_APPEND``, and the process
itself rotates it: rename ``x.log`` to ``x.log.1`` (shifting older backups), open a
fresh ``x.log`` and ``dup2`` it onto fds 1 and 2. ``dup2`` swaps the fd atomically, so
a concurrent writer lands in the old or the new file and nothing is lost. The trigger:

* Python-level writes (``print`` in a worker, whose ``sys.stdout`` is wrapped by
  ``core_worker/output.py``; Python logging) go through ``RotatingFile.write``, which
  counts bytes and rotates *before* a write would pass the limit, so these files never
  exceed it (a single write larger than the limit is split across files).
* Writes that bypass Python (C extensions, ``faulthandler``, a subprocess sharing the
  fds) are caught by a periodic check that ``fstat``s the file every
  ``CHECK_PERIOD_S``: a watchdog thread in the daemons, a timer on the IO loop in
  workers (no extra thread per worker), the select loop in the zygote (which must stay
  single-threaded to fork). Such a file can pass the limit by what was written since
  the last check.

Why not a pipe drained by a thread that writes a rotating file: bytes sitting in the
pipe die with the process, so a SIGKILLed or segfaulting process would lose exactly
its last output, the traceback one needs. With the fd on the file, a byte is in the
page cache the moment ``write`` returns. The hot path stays one ``write`` syscall
plus an integer compare, and no extra copy or thread hop per line.

Known limit: a child process that inherited fds 1/2 keeps writing to the file it
inherited after its parent rotated; the per-node cap may then delete that file by name
while the child still holds it open (its space is freed when the child exits).
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import stat
import threading
import weakref
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass

MiB = 2**20
GiB = 2**30

ENV_MAX_BYTES = "RAYOPS_ROTATION_MAX_BYTES"
ENV_BACKUP_COUNT = "RAYOPS_ROTATION_BACKUP_COUNT"
ENV_MAX_TOTAL_BYTES = "RAYOPS_LOGS_MAX_TOTAL_BYTES"

DEFAULT_MAX_BYTES = 512 * MiB  # Ray's logging_rotate_bytes
DEFAULT_BACKUP_COUNT = 5  # Ray's logging_rotate_backup_count
DEFAULT_MAX_TOTAL_BYTES = 4 * GiB
CHECK_PERIOD_S = 0.5  # how often writes that bypass RotatingFile.write are caught up

_BACKUP_RE = re.compile(r"\.[0-9]+$")
_NEVER = 2**63


class LogRotationConfigError(ValueError):
    """A rotation setting in the environment is not a valid value; names the variable."""


@dataclass(frozen=True)
class LogRotationConfig:
    """Rotation settings of one node; every process of the node uses the same."""

    max_bytes: int = DEFAULT_MAX_BYTES
    backup_count: int = DEFAULT_BACKUP_COUNT
    max_total_bytes: int = DEFAULT_MAX_TOTAL_BYTES

    def __post_init__(self) -> None:
        for name in ("max_bytes", "backup_count", "max_total_bytes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise LogRotationConfigError(
                    f"LogRotationConfig.{name} must be an int >= 0, got {value!r}"
                )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> LogRotationConfig:
        """Read the ``RAYOPS_ROTATION_*`` / ``RAYOPS_LOGS_*`` variables (unset: default)."""
        env = os.environ if env is None else env
        return cls(
            max_bytes=_env_int(
                env, ENV_MAX_BYTES, DEFAULT_MAX_BYTES, "bytes (0 turns rotation off)"
            ),
            backup_count=_env_int(env, ENV_BACKUP_COUNT, DEFAULT_BACKUP_COUNT, "rotated files"),
            max_total_bytes=_env_int(
                env, ENV_MAX_TOTAL_BYTES, DEFAULT_MAX_TOTAL_BYTES, "bytes (0 turns the cap off)"
            ),
        )

    def to_env(self) -> dict[str, str]:
        """The environment that makes a child process read this same config."""
        return {
            ENV_MAX_BYTES: str(self.max_bytes),
            ENV_BACKUP_COUNT: str(self.backup_count),
            ENV_MAX_TOTAL_BYTES: str(self.max_total_bytes),
        }


def _env_int(env: Mapping[str, str], name: str, default: int, unit: str) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw.strip())
    except ValueError:
        value = -1
    if value < 0:
        raise LogRotationConfigError(
            f"{name}={raw!r} is not valid: expected a whole number >= 0 of {unit}, "
            f"e.g. {name}={default} (the default)"
        )
    return value


def backup_path(path: str, n: int) -> str:
    return f"{path}.{n}"


def is_backup_name(name: str) -> bool:
    """``x.log.3`` is a rotated backup; ``x.log`` is a file being written."""
    return _BACKUP_RE.search(name) is not None


# Rotating files of this process, so a forked child can disown them (see _after_fork).
_instances: weakref.WeakSet[RotatingFile] = weakref.WeakSet()
_fork_hook_registered = False


def _after_fork_in_child() -> None:
    for f in list(_instances):
        f._disown()


class RotatingFile:
    """One log file ``path`` rotated by size into ``path.1`` .. ``path.<backup_count>``.

    ``bind_fds`` (e.g. ``(1, 2)``) are made to point at the current file, now and after
    every rotation. Thread-safe. A child forked from this process keeps writing to
    the same file but never rotates it (only the process that made the object does).
    """

    def __init__(
        self, path: str, config: LogRotationConfig, *, bind_fds: Sequence[int] = ()
    ) -> None:
        global _fork_hook_registered
        self.path = path
        self._max = config.max_bytes
        self._backups = config.backup_count
        self._bind = tuple(bind_fds)
        # Writes go to the first bound fd without taking the lock (see write).
        self._fast_fd = self._bind[0] if self._bind else -1
        self._lock = threading.Lock()
        self._owner = True
        # The size past which a write rotates first; never, when not ours to rotate.
        self._limit = self._max if self._max > 0 else _NEVER
        self._fd = self._open()
        self._size = os.fstat(self._fd).st_size
        for target in self._bind:
            os.dup2(self._fd, target)
        _instances.add(self)
        if not _fork_hook_registered:
            os.register_at_fork(after_in_child=_after_fork_in_child)
            _fork_hook_registered = True

    def _open(self) -> int:
        return os.open(
            self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_CLOEXEC, 0o644
        )

    @property
    def fd(self) -> int:
        return self._fd

    def write(self, data: bytes) -> None:
        """Append ``data``, rotating first if it would take the file past the limit."""
        fd = self._fast_fd
        if fd >= 0 and self._size + len(data) <= self._limit:
            # The hot path (a worker's prints), without the lock: a bound fd is swapped
            # by dup2 and never closed, so a concurrent rotation only decides which file
            # this lands in. ``_size`` may miss a racing update; ``check`` resyncs it.
            n = os.write(fd, data)
            if n < len(data):  # rare for a regular file (a signal, a full disk)
                _write_all(fd, memoryview(data)[n:])
            self._size += len(data)
            return
        with self._lock:
            if self._size + len(data) > self._limit:
                self._write_rotating(memoryview(data))
                return
            _write_all(self._fd, data)
            self._size += len(data)

    def _write_rotating(self, view: memoryview) -> None:
        while view:
            due = self._size > 0 and self._size + len(view) > self._max
            if due and not self._rotate_locked():
                _write_all(self._fd, view)  # could not rotate: keep the output
                self._size += len(view)
                return
            chunk = view[: max(self._max - self._size, 1)]
            _write_all(self._fd, chunk)
            self._size += len(chunk)
            view = view[len(chunk) :]

    def check(self) -> None:
        """Catch up with writes that bypassed ``write`` (fd 1/2 from C code); rotate if due."""
        with self._lock:
            if not self._owner:
                return
            try:
                self._size = os.fstat(self._fd).st_size
            except OSError:
                return
            if self._max > 0 and self._size >= self._max:
                self._rotate_locked()

    def _rotate_locked(self) -> bool:
        _shift_backups(self.path, self._backups)
        try:
            fd = self._open()
        except OSError:
            return False  # e.g. the directory is gone: keep writing to the old file
        for target in self._bind:
            os.dup2(fd, target)
        os.close(self._fd)
        self._fd = fd
        self._size = 0
        return True

    def _disown(self) -> None:
        self._lock = threading.Lock()
        self._owner = False
        self._limit = _NEVER

    def close(self) -> None:
        with self._lock:
            _instances.discard(self)
            try:
                os.close(self._fd)
            except OSError:
                pass


def _shift_backups(path: str, backup_count: int) -> None:
    """``path`` becomes ``path.1``, ``path.1`` becomes ``path.2`` ...; the oldest drops."""
    try:
        if backup_count <= 0:
            os.unlink(path)
            return
        for n in range(backup_count - 1, 0, -1):
            src = backup_path(path, n)
            if os.path.exists(src):
                os.replace(src, backup_path(path, n + 1))
        os.replace(path, backup_path(path, 1))
    except FileNotFoundError:
        pass  # removed by hand: start a fresh file all the same


def rotate_if_due(path: str, config: LogRotationConfig) -> bool:
    """Rotate ``path`` if it reached ``max_bytes``; for a parent about to (re)open it.

    A process that restarts a child with its output appended to the same file (the
    raylet restarting the agent) calls this first: a child that crashes before it
    could set up its own rotation must not grow the file forever.
    """
    try:
        size = os.stat(path).st_size
    except OSError:
        return False
    if config.max_bytes <= 0 or size < config.max_bytes:
        return False
    _shift_backups(path, config.backup_count)
    return True


def _write_all(fd: int, data: bytes | memoryview) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


class RotatingLogHandler(logging.Handler):
    """A logging handler that appends formatted records to a ``RotatingFile``."""

    def __init__(self, target: RotatingFile) -> None:
        super().__init__()
        self.target = target

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.target.write((self.format(record) + "\n").encode("utf-8", "replace"))
        except Exception:
            self.handleError(record)


class ProcessLogs:
    """The rotating files of one process, checked every ``period_s`` for writes made
    around Python: by a daemon thread of its own, or (``attach``) by a timer on an
    event loop the process already runs, which spares a worker a thread and its
    start-up."""

    def __init__(
        self,
        files: Sequence[RotatingFile],
        period_s: float = CHECK_PERIOD_S,
        *,
        thread: bool = True,
    ) -> None:
        self.files = list(files)
        self._period = period_s
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        if thread:
            self._thread = threading.Thread(
                target=self._watch, name="rayops-log-rotation", daemon=True
            )
            self._thread.start()

    def check(self) -> None:
        for f in self.files:
            f.check()

    def _watch(self) -> None:
        while not self._stop.wait(self._period):
            self.check()

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        """Run the periodic check as a timer on ``loop`` (callable from any thread)."""

        def tick() -> None:
            if self._stop.is_set():
                return
            self.check()
            loop.call_later(self._period, tick)

        loop.call_soon_threadsafe(tick)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=2)


def setup_process_logging(
    log_path: str | None,
    config: LogRotationConfig,
    *,
    name: str,
    stdio_path: str | None = None,
    level: int = logging.INFO,
    thread: bool = True,
) -> ProcessLogs:
    """Point this process's logs at rotating files; call once, early in ``main``.

    ``log_path``: Python logging (root logger, records prefixed with ``name``).
    ``stdio_path``: fds 1 and 2 from now on, so prints, C-level output and a crash's
    traceback rotate too. With ``log_path`` None, logging goes to ``stdio_path``.
    Starts one daemon thread that catches writes made around Python, unless
    ``thread`` is False: then the caller must ``attach`` the result to its event loop.
    """
    files: list[RotatingFile] = []
    stdio = None
    if stdio_path is not None:
        stdio = RotatingFile(stdio_path, config, bind_fds=(1, 2))
        files.append(stdio)
    target = stdio
    if log_path is not None:
        target = RotatingFile(log_path, config)
        files.append(target)
    if target is not None:
        handler = RotatingLogHandler(target)
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s")
        )
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(level)
    return ProcessLogs(files, thread=thread)


def same_file(fd: int, path: str) -> bool:
    """Does ``fd`` refer to the regular file at ``path``?"""
    try:
        a = os.fstat(fd)
        b = os.stat(path)
    except OSError:
        return False
    return stat.S_ISREG(a.st_mode) and (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)


# ----------------------------------------------------------------- the per-node cap


@dataclass(frozen=True)
class LogFileEntry:
    name: str
    disk_bytes: int  # what the file takes on disk (at least its size)
    mtime: float


def plan_cap_deletions(
    entries: Sequence[LogFileEntry], max_total_bytes: int, protected: Collection[str]
) -> list[str]:
    """Names to delete so the directory fits in ``max_total_bytes``; no I/O.

    Candidates are rotated backups and files not in ``protected`` (the files live
    processes write), deleted oldest modification first. Protected files are never
    chosen, so the floor is what live processes hold (each at most max_bytes).
    """
    if max_total_bytes <= 0:
        return []
    total = sum(e.disk_bytes for e in entries)
    if total <= max_total_bytes:
        return []
    candidates = sorted(
        (e for e in entries if is_backup_name(e.name) or e.name not in protected),
        key=lambda e: (e.mtime, e.name),
    )
    doomed = []
    for e in candidates:
        if total <= max_total_bytes:
            break
        doomed.append(e.name)
        total -= e.disk_bytes
    return doomed


def scan_log_dir(log_dir: str) -> list[LogFileEntry]:
    out: list[LogFileEntry] = []
    try:
        it = os.scandir(log_dir)
    except OSError:
        return out
    with it:
        for de in it:
            try:
                st = de.stat(follow_symlinks=False)
            except OSError:
                continue
            if not stat.S_ISREG(st.st_mode):
                continue
            out.append(LogFileEntry(de.name, max(st.st_size, st.st_blocks * 512), st.st_mtime))
    return out


def delete_log_files(log_dir: str, names: Sequence[str]) -> int:
    """Delete ``names`` in ``log_dir``; returns how many were deleted (gone ones are fine)."""
    n = 0
    for name in names:
        try:
            os.unlink(os.path.join(log_dir, name))
            n += 1
        except OSError:
            pass  # gone already, or not ours to delete: the next sweep sees it again
    return n
