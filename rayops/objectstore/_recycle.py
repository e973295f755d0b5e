"""Reusing the shared-memory pages of freed objects for new ones, without hurting readers.

Why: in this VM a fresh tmpfs page costs more than the copy into it. Writing 100 MB into a new
/dev/shm file runs at ~1.5-1.9 GB/s (page allocation); writing it into a file whose pages
already exist runs at ~3.2-3.7 GB/s (see client._write_file for all figures). So a freed or
spilled object's file is not unlinked but renamed into shm_dir/pool/, and the manager hands it
to the next object of a similar size (shm_dir/<id>.reserved); the client writes into those
pages. Ray's plasma gets the same effect
from its long-lived arena.

The same pool serves the spill directories (each its own pool/, see StoreManager): the file of
a freed spilled object is kept there and the next spill overwrites it in place, so its page
cache and disk blocks are reused instead of allocated (4.1-4.4 GB/s against 0.5-2.2 for a new
file on this VM, see _spill.py). Readers of a spill file take the same shared lock.

Safety: a reader holds a shared flock on the object file for as long as its mapping lives. The
lock belongs to the open file description, which Python's mmap keeps open (it dups the fd)
until the mapping is gone, i.e. until the last numpy array or memoryview on it is released.
The manager hands a pooled file out only if it can take an exclusive lock without waiting. A file
freed while a reader still maps it (a task's worker drops its argument a moment after the owner
freed it) is moved into the pool as "busy" and handed out only once a later attempt takes that
lock; busy files count in the pool's bytes and are trimmed first (unlinking one leaves the reader
its pages, POSIX semantics). Before, such a file was unlinked, so a task taking a large argument
by value got new pages for every call, not recycled ones. A
reader that opened the file just before it was recycled notices: after taking its lock it checks
that the path still names the inode it opened, and otherwise treats the object as gone.
"""

from __future__ import annotations

import bisect
import fcntl
import itertools
import os

from rayops.objectstore._paths import discard

# Pages of small objects are cheap to allocate; pooling them would only add bookkeeping. Files
# smaller than this are never pooled and never handed out, so a file that small is never
# recycled under a reader: readers skip the lock for it and writers skip looking for pages.
MIN_RECYCLE_BYTES = 256 * 1024
# Reuse a pooled file for a new object only when their sizes are this close, so a huge file
# is not truncated to hold a small object (its pages would be freed anyway) ...
_MAX_OVERSIZE_FACTOR = 2
# ... or a tiny file is not handed to a huge object (almost all its pages would be new).
_MIN_UNDERSIZE_FACTOR = 2


def lock_for_reading(fd: int, path: str, opened: os.stat_result) -> bool:
    """Take the reader's shared lock on `fd` (opened from `path`, fstat gave `opened`); False
    if the file was recycled in the meantime.

    Blocks only while the manager holds its exclusive lock, i.e. for the few microseconds of a
    rename into the pool.
    """
    if opened.st_size < MIN_RECYCLE_BYTES:
        return True
    fcntl.flock(fd, fcntl.LOCK_SH)
    try:
        named = os.stat(path)
    except FileNotFoundError:
        return False
    return (named.st_ino, named.st_dev) == (opened.st_ino, opened.st_dev)


class RecyclePool:
    """Files of freed objects kept in `directory` (shm_dir/pool/, or a spill directory's pool/)
    for reuse, at most `limit` bytes in all.

    Owned by the StoreManager (single-threaded). Oldest files are dropped first when the pool
    must shrink. `limit` may be changed later (the spill pools' limit moves with the disk
    usage); the next release or trim applies it.
    """

    def __init__(self, directory: str, limit: int) -> None:
        self._dir = directory + "/"
        self.limit = limit
        self._numbers = itertools.count()
        self._by_size: list[tuple[int, int]] = []  # sorted (size, number)
        self._by_age: dict[int, int] = {}  # number -> size, oldest first
        self._busy: dict[int, int] = {}  # number -> size of files a reader still maps
        self.bytes = 0

    def __len__(self) -> int:
        return len(self._by_age) + len(self._busy)

    def release(self, path: str) -> bool:
        """Give up the object file at `path`: move it into the pool, or unlink it; True if pooled.

        Unlinks it when it is too small or too big to be worth keeping. A file a reader still
        maps is pooled as busy (see the module docstring). A missing file is ignored.
        """
        try:
            fd = os.open(path, os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            size = os.fstat(fd).st_size
            if not MIN_RECYCLE_BYTES <= size <= self.limit:
                discard(path)
                return False
            free = _try_lock_exclusive(fd)
            number = next(self._numbers)
            os.rename(path, self._dir + str(number))
        finally:
            os.close(fd)  # releases the exclusive lock
        if free:
            self._add(number, size)
        else:
            self._busy[number] = size
            self.bytes += size
        self.trim(self.limit)
        return True

    def take(self, size: int) -> str | None:
        """Remove and return the path of the pooled file best suited to hold `size` bytes.

        The caller must rename it away at once; None if no file is close enough in size.
        """
        if size < MIN_RECYCLE_BYTES:
            return None
        self._free_busy()
        index = bisect.bisect_left(self._by_size, (size, -1))
        candidates = []
        if index < len(self._by_size):
            candidates.append(self._by_size[index])
        if index > 0:
            candidates.append(self._by_size[index - 1])
        for file_size, number in candidates:
            limit = _MAX_OVERSIZE_FACTOR * size + MIN_RECYCLE_BYTES
            fits = size <= file_size <= limit
            close = file_size < size and file_size * _MIN_UNDERSIZE_FACTOR >= size
            if fits or close:
                self._remove(file_size, number)
                return self._dir + str(number)
        return None

    def trim(self, max_bytes: int) -> int:
        """Unlink the oldest pooled files until the pool holds at most `max_bytes`; bytes freed."""
        freed = 0
        while self.bytes > max(max_bytes, 0) and self._busy:
            number, size = next(iter(self._busy.items()))
            del self._busy[number]
            self.bytes -= size
            discard(self._dir + str(number))
            freed += size
        while self.bytes > max(max_bytes, 0) and self._by_age:
            number, size = next(iter(self._by_age.items()))
            self._remove(size, number)
            discard(self._dir + str(number))
            freed += size
        return freed

    def forget(self) -> None:
        """Drop the bookkeeping after the files were removed wholesale (store cleanup)."""
        self._by_size.clear()
        self._by_age.clear()
        self._busy.clear()
        self.bytes = 0

    def _free_busy(self) -> None:
        """Make busy files whose readers are gone available (oldest first)."""
        for number, size in list(self._busy.items()):
            path = self._dir + str(number)
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                del self._busy[number]
                self.bytes -= size
                continue
            try:
                if not _try_lock_exclusive(fd):
                    continue
            finally:
                os.close(fd)
            del self._busy[number]
            self.bytes -= size
            self._add(number, size)

    def _add(self, number: int, size: int) -> None:
        bisect.insort(self._by_size, (size, number))
        self._by_age[number] = size
        self.bytes += size

    def _remove(self, size: int, number: int) -> None:
        index = bisect.bisect_left(self._by_size, (size, number))
        del self._by_size[index]
        del self._by_age[number]
        self.bytes -= size


def _try_lock_exclusive(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True
