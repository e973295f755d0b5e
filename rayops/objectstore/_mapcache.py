"""Keeping a process's mappings of recycled object files, so their page tables stay filled.

Why: every object is its own file, and a fresh mapping of a 100 MB file costs the reader ~1,530
minor faults (the kernel maps 16 pages of 4 KiB per read fault) before it has read a byte;
a write through a fresh mapping costs one fault per page. Profiled on this 2-core VM, that is
most of a `get` + read of a fresh 100 MB object (map-and-sum 2.4 GB/s, of which ~14 ms faults)
and of a by-value argument. `MAP_POPULATE` or `madvise(MADV_POPULATE_READ)` do the same per-page
work up front, without fault-around, and measured slower (38 ms for 100 MB). Ray's plasma maps
one arena per client once, so its later reads hit page tables that are already there.

What this does instead: the pages of freed objects are recycled (_recycle.py) under a new name
but with the same inode. A mapping whose views are all released is not unmapped but kept here,
keyed by (device, inode) and size, with its reader lock dropped; the next read or write of that
inode in this process (the next object given those pages) reuses the mapping, whose page table
entries still point at the same pages: reading or copying runs at memory speed, with no fault.

Safety:
- A kept mapping holds no lock and no view, so the manager may recycle, truncate or unlink its
  file at any time; a kept mapping is only reused after the caller (re)checked the file: a reader
  takes its shared lock on the kept file description and checks that the path still names that
  inode (as _recycle.lock_for_reading does), and both check the size is unchanged.
- A write goes through the mapping only after posix_fallocate, so a full tmpfs answers ENOSPC
  instead of SIGBUS (as _mapped_write.py does), unless every page of the file is already
  allocated (its st_blocks cover its size: a recycled file written whole before), where there
  is nothing left to allocate.
- Exported views are read-only; the writable mapping is never handed out.
- A kept mapping of a file that was unlinked would pin its pages: a helper thread
  (``rayops-store-maps``, alive only while something is kept) drops such mappings within
  `_REAP_SECONDS`, and mappings unused for `_IDLE_SECONDS`; at most `_MAX_KEPT` mappings and
  `_MAX_KEPT_BYTES` are kept.
- After a fork the child forgets the parent's mappings (without touching their locks).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import fcntl
import mmap
import os
import threading
import time
import weakref
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field

# Files below this are not worth keeping a mapping for (and are never recycled anyway).
MIN_KEPT_BYTES = 256 * 1024
_MAX_KEPT = 32
_MAX_KEPT_BYTES = 2 * 2**30
_IDLE_SECONDS = 30.0
_REAP_SECONDS = 0.5

_libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
_libc.mmap.argtypes = [
    ctypes.c_void_p,
    ctypes.c_size_t,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_int,
    ctypes.c_long,
]
_libc.mmap.restype = ctypes.c_void_p
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.munmap.restype = ctypes.c_int
_MAP_FAILED = ctypes.c_void_p(-1).value


@dataclass(eq=False)
class Mapping:
    """One shared read-write mapping of a whole object file, with its own file description."""

    key: tuple[int, int]  # (st_dev, st_ino)
    size: int
    fd: int
    address: int
    last_used: float = field(default_factory=time.monotonic)


def _fully_allocated(st: os.stat_result, size: int) -> bool:
    """Whether every page of a `size`-byte tmpfs file is already allocated, so a write through
    a mapping cannot fault on a page the filesystem has yet to give (SIGBUS when it is full).

    tmpfs counts a page in st_blocks from its allocation (resident or swapped) until it is
    truncated away, and a truncation to `size` leaves no page wholly past it: blocks covering
    the page-rounded size mean no hole. A recycled object file is that case (it was written
    whole and only trimmed to its new size), and posix_fallocate would still walk every page:
    4.0-4.9 ms per 100 MB on this VM, a third of a put's copy into kept pages (12-15 ms).
    """
    return st.st_blocks * 512 >= -(-size // mmap.PAGESIZE) * mmap.PAGESIZE


def _mmap(fd: int, size: int, *, populate: bool) -> int:
    flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
    address = _libc.mmap(None, size, mmap.PROT_READ | mmap.PROT_WRITE, flags, fd, 0)
    if address in (None, _MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of {size} bytes failed: {os.strerror(err)}")
    return int(address)


def _unmap(mapping: Mapping) -> None:
    _libc.munmap(mapping.address, mapping.size)
    os.close(mapping.fd)


class MappingCache:
    """The mappings of one process. Thread-safe; callbacks come from whichever thread drops the
    last view (the garbage collector's)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kept: OrderedDict[int, Mapping] = OrderedDict()  # id -> mapping, oldest first
        self._kept_bytes = 0
        # Released by a finalizer that could not take the lock (another thread holds it, or the
        # garbage collector ran inside this cache's own locked code): kept at the next call.
        self._pending: deque[Mapping] = deque()
        self._pid = os.getpid()
        self._reaper: threading.Thread | None = None
        self.hits = 0  # reads and writes that reused a kept mapping (for tests and probes)

    # -- reading -------------------------------------------------------------------------

    def read(self, path: str, opened: os.stat_result) -> memoryview | None:
        """A read-only view of the whole file at `path` (fstat gave `opened`), holding the
        reader's shared lock until the last view derived from it is released; None if the
        file was recycled or removed in the meantime."""
        key = (opened.st_dev, opened.st_ino)
        mapping = self._take(key, opened.st_size)
        if mapping is not None:
            fcntl.flock(mapping.fd, fcntl.LOCK_SH)
            if not _names(path, key) or os.fstat(mapping.fd).st_size != mapping.size:
                self._unlock_and_keep(mapping)
                return None
            self.hits += 1
            return self._export(mapping)
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH)
            now = os.fstat(fd)
            same = (now.st_dev, now.st_ino) == key and now.st_size == opened.st_size
            if not same or not _names(path, key):
                os.close(fd)
                return None
            mapping = Mapping(key, now.st_size, fd, _mmap(fd, now.st_size, populate=False))
        except BaseException:
            os.close(fd)
            raise
        return self._export(mapping)

    def holds(self, opened: os.stat_result) -> bool:
        """True if a mapping of the file `opened` describes (same inode, same size) is kept,
        i.e. `read` or `write` would find its page table filled (unless dropped meanwhile)."""
        key = (opened.st_dev, opened.st_ino)
        with self._lock:
            return any(m.key == key and m.size == opened.st_size for m in self._kept.values())

    def _export(self, mapping: Mapping) -> memoryview:
        pages = (ctypes.c_char * mapping.size).from_address(mapping.address)
        finalizer = weakref.finalize(pages, self._released, mapping, self._pid)
        finalizer.atexit = False
        return memoryview(pages).cast("B").toreadonly()

    def _released(self, mapping: Mapping, pid: int) -> None:
        """The last view of `mapping` is gone: drop the reader lock and keep the mapping."""
        if pid != os.getpid():
            return  # a forked child's copy of a parent's view: not ours to unlock
        try:
            fcntl.flock(mapping.fd, fcntl.LOCK_UN)
        except OSError:
            return  # never raise from a finalizer; the mapping is leaked at worst
        self._pending.append(mapping)
        # Never block here: this may run inside this cache's own locked code (a collection
        # triggered by an allocation there), and the lock is not reentrant.
        if self._lock.acquire(blocking=False):
            try:
                drop = self._absorb_pending()
            finally:
                self._lock.release()
            for gone in drop:
                _unmap(gone)
        else:
            self._start_reaper()  # takes the pending mapping in within _REAP_SECONDS

    def _unlock_and_keep(self, mapping: Mapping) -> None:
        fcntl.flock(mapping.fd, fcntl.LOCK_UN)
        self.keep(mapping)

    # -- writing -------------------------------------------------------------------------

    def write(
        self,
        fd: int,
        size: int,
        copy: Callable[[int], None],
    ) -> None:
        """Fill the file open read-write as `fd` (exactly `size` bytes long, and private to the
        caller: not yet under its final name) by `copy(address)` through a mapping kept from an
        earlier use of the same pages, or a new populated one that is kept afterwards."""
        st = os.fstat(fd)
        if st.st_size != size:
            raise ValueError(f"file is {st.st_size} bytes, expected {size}")
        key = (st.st_dev, st.st_ino)
        if not _fully_allocated(st, size):
            os.posix_fallocate(fd, 0, size)  # ENOSPC now rather than SIGBUS in the copy
        mapping = self._take(key, size)
        if mapping is not None:
            self.hits += 1
        else:
            own = os.dup(fd)
            try:
                mapping = Mapping(key, size, own, _mmap(own, size, populate=True))
            except BaseException:
                os.close(own)
                raise
        try:
            copy(mapping.address)
        finally:
            self.keep(mapping)

    # -- the kept set --------------------------------------------------------------------

    def _take(self, key: tuple[int, int], size: int) -> Mapping | None:
        found = None
        with self._lock:
            self._check_fork()
            drop = self._absorb_pending()
            for ident, mapping in self._kept.items():
                if mapping.key == key:
                    del self._kept[ident]
                    self._kept_bytes -= mapping.size
                    if mapping.size == size:
                        found = mapping
                    else:
                        drop.append(mapping)  # the file was resized: its page table is gone
                    break
        for gone in drop:
            _unmap(gone)
        return found

    def keep(self, mapping: Mapping) -> None:
        """Keep `mapping` (no view of it exists and its fd holds no lock) for reuse."""
        with self._lock:
            self._check_fork()
            drop = self._absorb_pending()
            self._keep_locked(mapping, drop)
        for gone in drop:
            _unmap(gone)

    def _absorb_pending(self) -> list[Mapping]:
        """With the lock held: keep the mappings finalizers left pending; those to unmap."""
        drop: list[Mapping] = []
        while True:
            try:
                mapping = self._pending.popleft()
            except IndexError:
                return drop
            self._keep_locked(mapping, drop)

    def _keep_locked(self, mapping: Mapping, drop: list[Mapping]) -> None:
        mapping.last_used = time.monotonic()
        try:
            dead = os.fstat(mapping.fd).st_nlink == 0
        except OSError:
            dead = True
        if dead or mapping.size > _MAX_KEPT_BYTES:
            drop.append(mapping)
            return
        for ident, other in list(self._kept.items()):
            if other.key == mapping.key:  # two mappings of one file: keep the newer
                del self._kept[ident]
                self._kept_bytes -= other.size
                drop.append(other)
        self._kept[id(mapping)] = mapping
        self._kept_bytes += mapping.size
        while len(self._kept) > _MAX_KEPT or self._kept_bytes > _MAX_KEPT_BYTES:
            _, oldest = self._kept.popitem(last=False)
            self._kept_bytes -= oldest.size
            drop.append(oldest)
        self._start_reaper()

    def kept(self) -> int:
        """How many mappings are kept (for tests)."""
        with self._lock:
            self._check_fork()
            drop = self._absorb_pending()
            count = len(self._kept)
        for gone in drop:
            _unmap(gone)
        return count

    def clear(self) -> None:
        """Unmap everything kept (views in use are not affected)."""
        with self._lock:
            self._check_fork()
            drop = self._absorb_pending()
            drop.extend(self._kept.values())
            self._kept.clear()
            self._kept_bytes = 0
        for mapping in drop:
            _unmap(mapping)

    def reap(self, now: float | None = None) -> int:
        """Unmap kept mappings whose file is gone or that were unused too long; how many."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._check_fork()
            drop = self._absorb_pending()
            for ident, mapping in list(self._kept.items()):
                try:
                    dead = os.fstat(mapping.fd).st_nlink == 0
                except OSError:
                    dead = True
                if dead or now - mapping.last_used > _IDLE_SECONDS:
                    del self._kept[ident]
                    self._kept_bytes -= mapping.size
                    drop.append(mapping)
        for mapping in drop:
            _unmap(mapping)
        return len(drop)

    def _start_reaper(self) -> None:
        if self._reaper is None or not self._reaper.is_alive():
            self._reaper = threading.Thread(
                target=self._reap_loop, name="rayops-store-maps", daemon=True
            )
            self._reaper.start()

    def _reap_loop(self) -> None:
        while True:
            time.sleep(_REAP_SECONDS)
            self.reap()
            with self._lock:
                if not self._kept and not self._pending:
                    self._reaper = None
                    return

    def _check_fork(self) -> None:
        """Called with the lock held: in a forked child, forget the parent's mappings (their
        file descriptions and locks are shared with the parent, and stay the parent's)."""
        if self._pid != os.getpid():
            self._pid = os.getpid()
            self._kept.clear()
            self._pending.clear()
            self._kept_bytes = 0
            self._reaper = None


def _names(path: str, key: tuple[int, int]) -> bool:
    """True if `path` still names the file `key` (it was not recycled under us)."""
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    return (named.st_dev, named.st_ino) == key


MAPPINGS = MappingCache()
