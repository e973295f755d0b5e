"""The store as every driver and worker process sees it: write object files, map them back.

Owns the client side of the file protocol: writing an object under a temp name and renaming it
into place (so a reader never sees a half-written object), reusing pages the manager set aside
(<id>.reserved), and mapping an object read-only with zero-copy views into the mapping. It does
no capacity accounting and talks to nobody: the caller reserves room with the node's
StoreManager (through the raylet) before writing, and tells it when the object is sealed.
"""

from __future__ import annotations

import ctypes
import errno
import mmap
import os
import pickle
import resource
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rayops.exceptions import ObjectStoreFullError
from rayops.objectstore import layout
from rayops.objectstore._mapcache import MAPPINGS, MIN_KEPT_BYTES
from rayops.objectstore._mapped_write import (
    MIN_PARALLEL_WRITE_BYTES,
    can_write_parallel,
    copy_into,
    write_parallel,
)
from rayops.objectstore._paths import StorePaths, claim_recycled, discard, temp_path
from rayops.objectstore._recycle import MIN_RECYCLE_BYTES, lock_for_reading
from rayops.objectstore._tmpfs import is_huge_tmpfs
from rayops.objectstore._transfer import pwrite_all

_ZEROS = memoryview(bytes(layout.BUFFER_ALIGNMENT))
_LOCATIONS = ("shm", "disk")
# Files up to this size are read with one read() instead of mapped: setting up and tearing down
# a mapping costs more syscalls (~30 us here) than copying this much (~15 us for the whole read).
# Such files are below MIN_RECYCLE_BYTES, so they are immutable for as long as they exist.
_COPY_READ_BYTES = 64 * 1024
# Recycled files from this size on are written through a kept mapping (_mapcache.py). Below it
# pwritev is as fast or faster (300 KB: 50 us against 66: the mapped path's fixed costs);
# measured break-even ~1 MB, and from 4 MB on the mapping wins (4 MB: 9.6 -> 12 GB/s).
_MAPPED_WRITE_BYTES = 2 * 2**20


@dataclass
class StoredObject:
    """One object, read-only. The views keep the mapping alive on their own: a numpy array
    built on `buffers` stays valid after this object (and even the file) is gone. Objects of
    up to 64 KiB are copied into one bytes object instead of mapped (cheaper at that size);
    their views are just as read-only."""

    metadata: bytes
    pickled: memoryview
    buffers: list[memoryview]
    size: int  # file size in bytes
    location: str  # "shm" or "disk" (mapped straight from the spill directory)


class StoreClient:
    """Writes and maps object files directly, with no copy through the raylet. Thread-safe."""

    def __init__(self, shm_dir: str, spill_dir: str, spill_dirs: Sequence[str] = ()) -> None:
        self._paths = StorePaths(shm_dir, spill_dir, spill_dirs)
        # Large recycled files on the store's huge-page tmpfs are written by two threads
        # (_mapped_write.py); the raylet mounts it before any client exists.
        self._two_cpus = can_write_parallel()
        self._parallel = is_huge_tmpfs(shm_dir) and self._two_cpus
        _raise_open_file_limit()

    @staticmethod
    def encoded_size(metadata: bytes, pickled_len: int, buffer_lens: Sequence[int]) -> int:
        """The size in bytes of the file that `write` makes for an object with these parts."""
        return layout.plan(len(metadata), pickled_len, buffer_lens).total

    def write(
        self,
        object_id: bytes,
        metadata: bytes,
        pickled: bytes | memoryview,
        buffers: Sequence[memoryview | pickle.PickleBuffer],
        *,
        location: str = "shm",
    ) -> int:
        """Write the object and make it visible atomically; return its size in bytes.

        `location` is what StoreManager.reserve answered: "shm" (shared memory) or "disk" (the
        spill directory, for objects that cannot fit in memory).
        """
        if location not in _LOCATIONS:
            raise ValueError(f"location must be one of {_LOCATIONS}, got {location!r}")
        pickled_view = _byte_view(pickled, -1)
        raws = [_byte_view(b, i) for i, b in enumerate(buffers)]
        plan = layout.plan(len(metadata), pickled_view.nbytes, [r.nbytes for r in raws])
        header = layout.pack_header(object_id, plan)
        segments = _segments(header, metadata, pickled_view, raws, plan)
        reserved = None
        if location == "shm":
            final = self._paths.shm(object_id)
            if plan.total >= MIN_RECYCLE_BYTES:
                reserved = self._paths.reserved(object_id)
        else:
            final = self._paths.spill(object_id)
        tmp = temp_path(final)
        try:
            _write_file(
                tmp,
                reserved,
                segments,
                plan.total,
                parallel=self._parallel,
                two_cpus=self._two_cpus,
            )
            os.rename(tmp, final)
        except BaseException as err:
            discard(tmp)
            if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
                raise ObjectStoreFullError(
                    f"Writing object {object_id.hex()} ({plan.total} bytes) to {final} failed: "
                    f"{err.strerror}. The filesystem holding the store is full; free objects or "
                    "give the node a smaller object store capacity than the filesystem size."
                ) from err
            raise
        return plan.total

    def path_of(self, object_id: bytes) -> str | None:
        """The file holding the complete object (shared memory first), or None."""
        for path in (self._paths.shm(object_id), self._paths.spill(object_id)):
            if os.path.exists(path):
                return path
        return None

    def raw_writer(self, object_id: bytes, size: int, location: str = "shm") -> RawWriter:
        """Write an object file byte for byte (a copy pulled from another node)."""
        if location not in _LOCATIONS:
            raise ValueError(f"location must be one of {_LOCATIONS}, got {location!r}")
        final = self._paths.shm(object_id) if location == "shm" else self._paths.spill(object_id)
        return RawWriter(final, size)

    def read(self, object_id: bytes) -> StoredObject | None:
        """Map the object read-only from shared memory, else from the spill directory.

        Costs a few syscalls and no copy, whatever the size. None if neither directory has it
        (the caller may then ask the manager to `ensure_local` and read again).
        """
        found = _map(self._paths.shm(object_id), object_id, "shm", lock=True)
        if found is None:
            # Spill files are recycled too (the manager's spill pools): lock them the same way.
            found = _map(self._paths.spill(object_id), object_id, "disk", lock=True)
        return found

    def contains(self, object_id: bytes) -> bool:
        """True if the object is complete in shared memory or in the spill directory."""
        return os.path.exists(self._paths.shm(object_id)) or os.path.exists(
            self._paths.spill(object_id)
        )


def _raise_open_file_limit() -> None:
    """Lift the soft limit on open files to the hard one.

    Every live mapping holds one file descriptor (Python's mmap keeps a dup of the fd until it
    unmaps, and that fd carries the reader lock), so a program holding thousands of arrays from
    the store would hit a soft limit of 1024 with EMFILE.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        except (ValueError, OSError):
            pass  # e.g. an unlimited hard limit the kernel's nr_open refuses: keep the soft one


def _byte_view(data: bytes | memoryview | pickle.PickleBuffer, index: int) -> memoryview:
    """A flat unsigned-byte view of `data` (no copy); C- or Fortran-contiguous data only.
    `index` names the buffer in errors (-1: the pickle stream)."""
    if isinstance(data, memoryview) and data.ndim == 1 and data.format == "B":
        return data
    try:
        buffer = data if isinstance(data, pickle.PickleBuffer) else pickle.PickleBuffer(data)
        raw = buffer.raw()
    except BufferError as err:
        what = "the pickle stream" if index < 0 else f"buffer {index}"
        raise ValueError(
            f"{what} must be a contiguous buffer (C or Fortran order) to be stored without a copy; "
            "got a strided one"
        ) from err
    return raw


def _segments(
    header: bytes,
    metadata: bytes,
    pickled: memoryview,
    raws: list[memoryview],
    plan: layout.Layout,
) -> list[bytes | memoryview]:
    """The pieces of the file in order, padding included, ready for one gathered write."""
    segments: list[bytes | memoryview] = [header, metadata, pickled]
    end = plan.pickled_offset + plan.pickled_len
    for raw, (offset, length) in zip(raws, plan.buffers, strict=True):
        if offset > end:
            # Written explicitly: recycled pages still hold the previous object's bytes.
            segments.append(_ZEROS[: offset - end])
        segments.append(raw)
        end = offset + length
    return segments


def _write_file(
    tmp: str,
    reserved: str | None,
    segments: list[bytes | memoryview],
    size: int,
    *,
    parallel: bool = False,
    two_cpus: bool = False,
) -> None:
    """Write the object to `tmp`, reusing the pages of `reserved` when the manager left one.

    Recycled pages are written through this process's kept mapping of that file
    (_mapcache.py): once this process has mapped those pages, its page table already points at
    them and the write is a plain memory copy (two threads for 16 MiB and more when this
    process may use two CPUs). The first time, the mapping is made with MAP_POPULATE and kept.
    New files and objects under 2 MiB keep pwritev (populating a new file's pages would zero
    them before the copy; for small objects the mapping's fixed costs outweigh the copy).

    One pwritev: the kernel copies from the caller's buffers into the file's pages. Measured
    for one 100 MB buffer on this 2-core VM (GB/s, best runs; bench/objectstore_bench.py
    --alternatives), against glibc memcpy between warm buffers at 5.8-6.6:

        into /dev/shm (4 KiB pages)         new pages   recycled pages
        pwritev                             1.5-1.9     3.2-3.7 (4.4 best seen)
        ftruncate or fallocate + pwritev    1.4-1.8     3.1-3.6
        mmap + copy                         0.7-0.9     1.1-1.5 (a fault per page)
        mmap MAP_POPULATE + copy            0.8-0.9     2.7-2.9 (populate ~16 ms)
        2 threads, mmap + POPULATE_READ     1.3         4.1 (and it takes the other core)
        into a huge=within_size tmpfs       5.5-7.2     5.5-7.2 (StoreManager huge_pages)

    New tmpfs pages cost more than the copy (allocating 100 MB alone takes ~31 ms here), hence
    the recycling of freed objects' pages (_recycle.py) and the huge-page option (_tmpfs.py).
    With `parallel` (the store is on that huge-page tmpfs and we have two CPUs), a large
    recycled file is written by two threads through a mapping (_mapped_write.py: 21 GB/s
    against pwritev's 11 there).
    """
    recycled = claim_recycled(reserved, tmp)
    kept = recycled and size >= _MAPPED_WRITE_BYTES
    two_threads = parallel and recycled and size >= MIN_PARALLEL_WRITE_BYTES
    if kept or two_threads:
        flags = os.O_RDWR
    else:
        flags = os.O_WRONLY if recycled else os.O_WRONLY | os.O_CREAT | os.O_EXCL
    fd = os.open(tmp, flags, 0o600)
    try:
        if size >= MIN_RECYCLE_BYTES:
            # Sets the final size up front: trims recycled pages we will not use, and lets a
            # huge=within_size tmpfs (see _tmpfs.py) use huge pages from the first byte.
            os.ftruncate(fd, size)
        if kept:
            threads = 2 if two_cpus and size >= MIN_PARALLEL_WRITE_BYTES else 1
            MAPPINGS.write(fd, size, lambda base: copy_into(base, segments, size, threads=threads))
        elif two_threads:
            write_parallel(fd, segments, size)
        else:
            pwrite_all(fd, segments, 0)
    finally:
        os.close(fd)


def _map(path: str, object_id: bytes, location: str, *, lock: bool) -> StoredObject | None:
    """Map the object file at `path`, or None if there is none (or it was just recycled)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    try:
        opened = os.fstat(fd)
        if opened.st_size <= _COPY_READ_BYTES:
            view = _read_aligned(fd, opened.st_size)
        elif lock and location == "shm" and opened.st_size >= MIN_KEPT_BYTES:
            # Reuses this process's mapping of these pages if it has one (_mapcache.py).
            kept_view = MAPPINGS.read(path, opened)
            if kept_view is None:
                return None
            view = kept_view
        elif lock and not lock_for_reading(fd, path, opened):
            return None
        else:
            # ACCESS_READ (not just PROT_READ) is what makes the exported buffers read-only.
            view = memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
    finally:
        os.close(fd)  # an mmap keeps its own dup of fd, and with it the reader lock
    try:
        plan = layout.parse(view, object_id)
    except layout.LayoutError as err:
        raise layout.LayoutError(f"{path}: {err}") from err
    pickled_end = plan.pickled_offset + plan.pickled_len
    return StoredObject(
        metadata=bytes(view[plan.metadata_offset : plan.pickled_offset]),
        pickled=view[plan.pickled_offset : pickled_end],
        buffers=[view[offset : offset + length] for offset, length in plan.buffers],
        size=view.nbytes,
        location=location,
    )


def _read_aligned(fd: int, size: int) -> memoryview:
    """The file's bytes in a private copy whose start is 64-byte aligned (as a mapping's would
    be, so buffer offsets keep their alignment), as a read-only view."""
    block = bytearray(size + layout.BUFFER_ALIGNMENT - 1)
    anchor = ctypes.c_char.from_buffer(block)
    start = -ctypes.addressof(anchor) % layout.BUFFER_ALIGNMENT
    del anchor  # release the export so only our views pin the bytearray
    view = memoryview(block)[start : start + size]
    got = os.readv(fd, [view])
    return view[:got].toreadonly()


class RawWriter:
    """Writes a whole object file at offsets, then makes it visible with one rename."""

    def __init__(self, final: str, size: int) -> None:
        self._final = final
        self._tmp = temp_path(final)
        self._fd = os.open(self._tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.ftruncate(self._fd, size)

    def write_at(self, offset: int, data: Any) -> None:
        view = memoryview(data).cast("B")
        while view:
            n = os.pwrite(self._fd, view, offset)
            view = view[n:]
            offset += n

    def commit(self) -> None:
        os.close(self._fd)
        self._fd = -1
        os.rename(self._tmp, self._final)

    def abort(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
        discard(self._tmp)


def transfer_paths(client: StoreClient, object_id: bytes, location: str) -> tuple[str, str | None]:
    """Where a copy pulled from another node is written: its final path for `location`
    ("shm" or "disk") and the recycled file the manager reserved for it (shm only)."""
    if location not in _LOCATIONS:
        raise ValueError(f"location must be one of {_LOCATIONS}, got {location!r}")
    if location == "shm":
        return client._paths.shm(object_id), client._paths.reserved(object_id)
    return client._paths.spill(object_id), None
