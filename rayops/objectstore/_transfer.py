"""Moving bytes into and between store files with as few copies and syscalls as possible.

Owns the write loop (gathered pwritev, resuming after short writes) and the file-to-file copy
used by spill and restore (sendfile: the kernel moves the pages, Python never touches them).
Knows nothing about object layout or store policy.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

# Linux refuses more than IOV_MAX (1024) segments per call.
_IOV_MAX = 1024
# sendfile moves at most ~2 GiB per call; ask for 1 GiB at a time.
_SENDFILE_CHUNK = 1 << 30


def pwrite_all(fd: int, segments: Sequence[bytes | memoryview], offset: int) -> int:
    """Write `segments` (bytes or flat byte views) back to back from file `offset`; return the
    bytes written.

    One pwritev per up to 1024 segments: the kernel copies straight from the caller's buffers
    into the file's pages (no Python-side copy). Short writes (over 2 GiB per call) resume where
    the kernel stopped.
    """
    total = sum(len(s) for s in segments)
    if len(segments) <= _IOV_MAX:
        written = os.pwritev(fd, segments, offset)  # the usual case: everything in one call
        if written == total:
            return written
    else:
        written = 0
    pending = _drop_written([memoryview(s) for s in segments], written)
    offset += written
    while pending:
        batch = pending[:_IOV_MAX]
        written = os.pwritev(fd, batch, offset)
        if written <= 0:
            raise OSError(f"pwritev wrote {written} bytes at offset {offset}; expected progress")
        offset += written
        pending = _drop_written(pending, written)
    return total


def _drop_written(pending: list[memoryview], written: int) -> list[memoryview]:
    """The segments still to write after the first `written` bytes of `pending` went out."""
    index = 0
    while index < len(pending) and written >= pending[index].nbytes:
        written -= pending[index].nbytes
        index += 1
    rest = pending[index:]
    if written and rest:
        rest[0] = rest[0][written:]
    return rest


def copy_file(src_fd: int, dst_fd: int, size: int) -> None:
    """Copy the first `size` bytes of `src_fd` to `dst_fd` (from its current position).

    sendfile works between tmpfs and a disk filesystem, where copy_file_range refuses
    cross-filesystem copies (EXDEV).
    """
    offset = 0
    while offset < size:
        sent = os.sendfile(dst_fd, src_fd, offset, min(size - offset, _SENDFILE_CHUNK))
        if sent == 0:
            raise OSError(f"source file ended after {offset} bytes; expected {size}")
        offset += sent
