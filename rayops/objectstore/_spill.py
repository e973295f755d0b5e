"""Moving whole object files between shared memory and the spill directory.

Owns the file operations of spilling and restoring: copy under a temp name, then rename, so the
destination name only ever holds a complete object. Decides nothing: the StoreManager picks
what to move (and which pooled file to overwrite) and keeps the books. A spill file is a
read-only snapshot: objects are immutable, so a spilled copy stays valid after a restore and a
later eviction needs no second copy.

How the bytes move (measured on the 2-core VM, 32 MiB files, GB/s): sendfile from the tmpfs
file into the spill file, 2.2-3.2 into a new ext4 file whose page-cache memory was recently
used, 0.1-0.5 when that memory is new to the VM (the host faults every page in: this VM hands
freed memory back to its host), 2.0-4.4 overwriting a pooled spill file in place (its pages
and blocks exist); pwrite from a mapping of the tmpfs file whose page table this process has
already filled (MAPPINGS, _mapcache.py) into a pooled file, 4.0-4.7: what large spills do when
this process keeps that mapping. write() from a fresh mapping: 0.9-1.7 (a fault per page);
copy_file_range refuses tmpfs to ext4 (EXDEV); O_DIRECT runs at the disk's own ~1.0 and
leaves restores to read the disk (0.8) instead of the page cache (4+). Restores of large
objects preadv the spill file into a kept mapping of the recycled shm file, 7.5-9 (sendfile
3.8-5.7; into new pages 1.6-1.9). No fsync, as Ray: a spill file only has to outlive the
session, not a crash of the machine.
"""

from __future__ import annotations

import ctypes
import os

from rayops.objectstore._mapcache import MAPPINGS
from rayops.objectstore._paths import StorePaths, discard, temp_path
from rayops.objectstore._transfer import copy_file

# Spills and restores of files this size and up copy through a mapping of the shm file that
# this process keeps (below it the mapping's fixed costs outweigh the copy, as for the
# client's writes).
_MAPPED_BYTES = 2 * 2**20


def copy_to_spill(paths: StorePaths, object_id: bytes, reuse: str | None = None) -> int:
    """Copy the object's shm file into the spill directory; return its size.

    `reuse` is a pooled spill file (same directory's pool/) to overwrite in place: its pages
    are already in the page cache and its blocks allocated, so the copy allocates nothing (it
    is consumed either way). Raises FileNotFoundError if the shm file is gone, OSError (ENOSPC)
    if the disk is full; the spill directory is left without a partial file either way.
    """
    final = paths.spill(object_id)
    shm = paths.shm(object_id)
    with _opened(shm, os.O_RDONLY) as src:
        opened = os.fstat(src)
        size = opened.st_size
        # Through a kept mapping (_mapcache.py, reader lock included): pwrite from pages whose
        # page table this process already filled copies at 4.0-4.7 GB/s into a pooled spill
        # file here, sendfile at 2.0-2.6 (tmpfs's splice read goes page by page). Only when
        # the mapping is kept (pages this raylet restored into before): a new mapping would
        # fault page by page during the copy, slower than sendfile.
        mapped = size >= _MAPPED_BYTES and MAPPINGS.holds(opened)
        view = MAPPINGS.read(shm, opened) if mapped else None
        try:
            _copy_into_new(src, final, size, reuse=reuse, view=view)
        finally:
            if view is not None:
                view.release()
    return size


def restore_from_spill(paths: StorePaths, object_id: bytes, reuse: str | None) -> int:
    """Copy the object's spill file back into shared memory; return its size.

    `reuse` is a pooled shm file whose pages to write into (it is consumed either way).
    Raises FileNotFoundError if the spill file is gone, OSError if shm is full.
    """
    final = paths.shm(object_id)
    with _opened(paths.spill(object_id), os.O_RDONLY) as src:
        size = os.fstat(src).st_size
        if reuse is not None and size >= _MAPPED_BYTES:
            _read_into_recycled(src, final, size, reuse)
        else:
            _copy_into_new(src, final, size, reuse=reuse)
    return size


def _read_into_recycled(src: int, final: str, size: int, reuse: str) -> None:
    """preadv the spill file into a mapping of the recycled shm file that this process keeps
    (_mapcache.py): once its page table is filled, the read is one copy at memory speed
    (7.5-9 GB/s for 32 MiB here, against sendfile's 3.8-5.7, which goes through tmpfs's write
    path page by page). The first restore into given pages populates the mapping (about what
    sendfile costs); MAPPINGS fallocates first unless every page of the file exists, so a
    full tmpfs answers ENOSPC, not SIGBUS."""
    tmp = temp_path(final)
    try:
        os.rename(reuse, tmp)
        with _opened(tmp, os.O_RDWR) as dst:
            os.ftruncate(dst, size)
            MAPPINGS.write(dst, size, lambda address: _pread_into(src, address, size))
        os.rename(tmp, final)
    except BaseException:
        discard(tmp)
        discard(reuse)
        raise


def _pwrite_from(dst: int, view: memoryview) -> None:
    offset = 0
    while offset < view.nbytes:
        written = os.pwrite(dst, view[offset:], offset)
        if written <= 0:
            raise OSError(f"pwrite wrote {written} bytes at offset {offset}; expected progress")
        offset += written


def _pread_into(src: int, address: int, size: int) -> None:
    with memoryview((ctypes.c_char * size).from_address(address)).cast("B") as view:
        offset = 0
        while offset < size:
            got = os.preadv(src, [view[offset:]], offset)
            if got <= 0:
                raise OSError(f"spill file ended after {offset} bytes; expected {size}")
            offset += got


def _copy_into_new(
    src: int, final: str, size: int, reuse: str | None, view: memoryview | None = None
) -> None:
    tmp = temp_path(final)
    try:
        if reuse is not None:
            os.rename(reuse, tmp)
            flags = os.O_WRONLY
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        with _opened(tmp, flags) as dst:
            if view is not None:
                _pwrite_from(dst, view)
            else:
                copy_file(src, dst, size)
            if reuse is not None and os.fstat(dst).st_size > size:
                os.ftruncate(dst, size)
        os.rename(tmp, final)
    except BaseException:
        discard(tmp)
        if reuse is not None:
            discard(reuse)
        raise


class _opened:
    """An fd closed on exit; `with _opened(path, flags) as fd`."""

    def __init__(self, path: str, flags: int) -> None:
        self._fd = os.open(path, flags, 0o600)

    def __enter__(self) -> int:
        return self._fd

    def __exit__(self, *exc: object) -> None:
        os.close(self._fd)
