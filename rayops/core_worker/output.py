"""Worker output: what tasks print goes to the worker's log file and, line by
line, to the driver of the task's job (printed there as ``(name pid=..., ip=...)``).

The worker's file descriptors 1 and 2 already point at its log file (the raylet
opened it); this module wraps ``sys.stdout``/``sys.stderr`` so Python-level
output is also forwarded. Output of C extensions that write to the fds directly
lands in the log file only. ``raw_write`` (the worker's rotating log file, see
``node/log_rotation.py``) writes the bytes to the file; without it they go to the fd.
"""

from __future__ import annotations

import io
import os
import threading
from collections.abc import Callable
from typing import Any

Sink = Callable[[list[Any]], None]

_streams: list[_ForwardingStream] = []


class _ForwardingStream(io.TextIOBase):
    def __init__(
        self,
        fd: int,
        is_err: bool,
        context: Callable[[], tuple[int, str]],
        sink: Sink,
        ip: str,
        raw_write: Callable[[bytes], object] | None = None,
    ) -> None:
        self._fd = fd
        self._raw_write = raw_write or (lambda data: os.write(fd, data))
        self._is_err = is_err
        self._context = context
        self._sink = sink
        self._ip = ip
        self._pid = os.getpid()
        self._partial = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def fileno(self) -> int:
        return self._fd

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return "utf-8"

    def isatty(self) -> bool:
        return False

    def write(self, s: str) -> int:
        if not s:
            return 0
        data = s.encode("utf-8", "replace")
        try:
            self._raw_write(data)
        except OSError:
            pass
        with self._lock:
            text = self._partial + s
            cut = text.rfind("\n")
            if cut < 0:
                self._partial = text
                return len(s)
            self._partial = text[cut + 1 :]
            complete = text[: cut + 1]
        self._emit(complete)
        return len(s)

    def _emit(self, text: str) -> None:
        job_id, name = self._context()
        if not name:
            return
        self._sink([(job_id, (self._pid, self._ip, name, self._is_err, text))])

    def flush(self) -> None:
        if not self._partial:  # the common case, without the lock: nothing held back
            return
        with self._lock:
            rest, self._partial = self._partial, ""
        if rest:
            self._emit(rest)


def install(
    context: Callable[[], tuple[int, str]],
    sink: Sink,
    ip: str,
    raw_write: Callable[[bytes], object] | None = None,
) -> None:
    import sys

    out = _ForwardingStream(1, False, context, sink, ip, raw_write)
    err = _ForwardingStream(2, True, context, sink, ip, raw_write)
    _streams[:] = [out, err]
    sys.stdout = out
    sys.stderr = err


def flush() -> None:
    for s in _streams:
        s.flush()
