"""One node's log files as the agent serves them: names, categories, tails, followers.

Only plain names of regular files directly in the node's ``logs/`` directory are served: a
name is letters, digits and ``._-`` (never ``.`` or ``..``, no ``/``), the file is opened
with ``O_NOFOLLOW`` (a symlink is refused, wherever it points) and must be a regular file,
so a request can never read outside the directory. `categorize` and `tail_start` are pure
(tested as tables); `Follower` reads what is appended, across rotation (``x.log`` renamed to
``x.log.1`` and a new ``x.log`` opened: the old file is read to its end first).
"""

from __future__ import annotations

import errno
import fnmatch
import os
import re
import stat
from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "CATEGORIES",
    "Follower",
    "LogFileError",
    "categorize",
    "list_names",
    "open_log",
    "tail_start",
    "worker_log_of_pid",
]

_NAME = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,254}$")
_BLOCK = 64 * 1024

# (category, predicate on the name without a rotation suffix), first match wins. Ray's keys
# where the meaning is the same (worker_out, raylet, gcs_server, agent, dashboard, driver).
CATEGORIES: tuple[tuple[str, Callable[[str], bool]], ...] = (
    ("worker_out", lambda n: n.startswith("worker-") and n.endswith(".log")),
    ("driver", lambda n: n.startswith("job-driver-")),
    ("job_supervisor", lambda n: n.startswith("job-supervisor-")),
    ("raylet", lambda n: n.startswith("raylet.")),
    ("gcs_server", lambda n: n.startswith("gcs.")),
    ("agent", lambda n: n.startswith("agent.")),
    ("dashboard", lambda n: n.startswith("dashboard.")),
    ("internal", lambda n: True),
)
_ROTATED = re.compile(r"\.\d+$")


class LogFileError(Exception):
    """A request for a file the agent will not or cannot serve; ``status`` is the HTTP code."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def categorize(names: Iterable[str]) -> dict[str, list[str]]:
    """``{category: sorted names}`` (rotated backups ``x.log.N`` go with ``x.log``)."""
    out: dict[str, list[str]] = {}
    for name in sorted(names):
        base = _ROTATED.sub("", name)
        category = next(c for c, matches in CATEGORIES if matches(base))
        out.setdefault(category, []).append(name)
    return out


def check_name(name: str) -> None:
    if not _NAME.match(name) or name in (".", ".."):
        raise LogFileError(
            400,
            f"'filename' must be the plain name of a file in the node's logs directory "
            f"(letters, digits, '._-'; no '/' or '..'), got {name!r}",
        )


def list_names(logs_dir: str, glob: str = "*") -> list[str]:
    """Regular files (not symlinks) directly in ``logs_dir`` whose name matches ``glob``."""
    names = []
    try:
        entries = list(os.scandir(logs_dir))
    except FileNotFoundError:
        return []
    for entry in entries:
        if entry.is_file(follow_symlinks=False) and fnmatch.fnmatchcase(entry.name, glob):
            names.append(entry.name)
    return sorted(names)


def open_log(logs_dir: str, name: str) -> int:
    """An fd for reading ``logs_dir/name``; refuses anything but a regular file there."""
    check_name(name)
    dir_fd = os.open(logs_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=dir_fd)
    except FileNotFoundError as err:
        raise LogFileError(404, f"no log file {name!r} on this node") from err
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise LogFileError(403, f"{name!r} is a symbolic link; only files are served") from err
        raise LogFileError(404, f"cannot open {name!r}: {err.strerror}") from err
    finally:
        os.close(dir_fd)
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise LogFileError(403, f"{name!r} is not a regular file")
    return fd


def tail_start(read_at: Callable[[int, int], bytes], size: int, lines: int) -> int:
    """The offset where the last ``lines`` lines of a ``size``-byte file begin (-1: all; 0:
    none). A final line without a newline counts as a line. ``read_at(offset, n)``."""
    if lines < 0:
        return 0
    if lines == 0 or size == 0:
        return size
    end = size
    # A newline at the very end closes the last line; it does not start another one.
    if read_at(size - 1, 1) == b"\n":
        end -= 1
    found = 0
    pos = end
    while pos > 0:
        start = max(0, pos - _BLOCK)
        block = read_at(start, pos - start)
        i = len(block)
        while True:
            i = block.rfind(b"\n", 0, i)
            if i < 0:
                break
            found += 1
            if found == lines:
                return start + i + 1
        pos = start
    return 0


@dataclass
class _Open:
    fd: int
    inode: int
    offset: int


class Follower:
    """Reads ``logs_dir/name`` from ``offset`` on, then what is appended; after a rotation
    (the name now is another file) the old file is read to its end and the new one from its
    start; a file cut shorter than what was read is read again from its start."""

    def __init__(self, logs_dir: str, name: str, offset: int) -> None:
        self._dir = logs_dir
        self._name = name
        fd = open_log(logs_dir, name)
        self._cur = _Open(fd, os.fstat(fd).st_ino, offset)

    def close(self) -> None:
        if self._cur.fd >= 0:
            os.close(self._cur.fd)
            self._cur.fd = -1

    def read(self, limit: int = _BLOCK) -> bytes:
        """The next bytes (b"" when there is nothing new now)."""
        cur = self._cur
        size = os.fstat(cur.fd).st_size
        if size < cur.offset:  # truncated in place
            cur.offset = 0
        data = os.pread(cur.fd, limit, cur.offset)
        if data:
            cur.offset += len(data)
            return data
        try:
            fd = open_log(self._dir, self._name)
        except LogFileError:
            return b""  # between the rename and the new file: try again later
        inode = os.fstat(fd).st_ino
        if inode == cur.inode:
            os.close(fd)
            return b""
        # Rotated: the old file is read to its end above; continue with the new one.
        os.close(cur.fd)
        self._cur = _Open(fd, inode, 0)
        return self.read(limit)


def worker_log_of_pid(logs_dir: str, pid: int) -> str | None:
    """The log file name of the live worker ``pid`` of this node: its fds 1 and 2 point at
    it (``worker-<id>.log``). None if no such process writes to this node's logs."""
    try:
        target = os.readlink(f"/proc/{pid}/fd/1")
    except OSError:
        return None
    real_dir = os.path.realpath(logs_dir)
    name = os.path.basename(target)
    if os.path.dirname(target) != real_dir and os.path.dirname(target) != logs_dir:
        return None
    if not (name.startswith("worker-") and name.endswith(".log")):
        return None
    return name
