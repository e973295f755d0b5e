"""The node's store bookkeeper, living in the raylet: capacity, LRU spilling, restore, deletion.

Owns which objects occupy shared memory and which sit on disk, and every decision about moving
them: reserving room before a client writes, spilling least-recently-used sealed objects to the
spill directory when room is short, restoring them on demand, and freeing files on delete.
Clients write and map files themselves (client.py); this class never touches object contents
except to copy whole files between the two tiers. Not thread-safe: the raylet calls it from one
event loop. No network I/O. Spilling and restoring copy whole files synchronously (a 100 MB
object takes tens of milliseconds); a caller that cannot block that long runs it in a thread.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass

from rayops.exceptions import ObjectStoreFullError
from rayops.objectstore._paths import POOL_SUBDIR, StorePaths, discard, is_object_name
from rayops.objectstore._recycle import RecyclePool
from rayops.objectstore._spill import copy_to_spill, restore_from_spill
from rayops.objectstore._tmpfs import mount_huge_tmpfs, unmount

logger = logging.getLogger(__name__)

_SPILLED = "spilled"  # the disk copy was made by spilling (or kept after a restore)
_FALLBACK = "fallback"  # the client wrote it straight to disk: it did not fit in memory


@dataclass
class StoreStats:
    """A snapshot of one node's store. Every object is counted once per tier it occupies."""

    capacity: int
    used_bytes: int  # shared memory held by objects (reserved or sealed)
    num_objects: int  # objects in shared memory
    spilled_bytes: int  # disk held by spilled copies (including copies of restored objects)
    num_spilled: int
    restored_count: int  # restores so far
    spilled_count: int  # evictions from shared memory so far
    fallback_bytes: int  # disk held by objects written straight to disk
    num_fallback: int = 0
    pool_bytes: int = 0  # shared memory kept from freed objects for reuse (within capacity)


@dataclass
class _Entry:
    size: int
    sealed: bool = False
    in_shm: bool = False  # a file in shm_dir (or a reservation for one) counts against capacity
    disk: str | None = None  # None, _SPILLED or _FALLBACK: why a file is in spill_dir


class StoreManager:
    """Capacity accounting, spilling, restoring and deletion for one node's store."""

    def __init__(
        self,
        shm_dir: str,
        spill_dir: str,
        capacity: int,
        *,
        min_spill_free_bytes: int = 256 * 2**20,
        max_pool_bytes: int | None = None,
        huge_pages: bool = False,
        quiet_fallback: bool = False,
    ) -> None:
        """`max_pool_bytes` bounds the memory kept from freed objects for reuse; the default is
        a quarter of `capacity`, 0 turns recycling off. The pool always fits in what the live
        objects leave free, so it never pushes the store past `capacity`.

        `huge_pages` mounts a tmpfs with transparent huge pages on `shm_dir` (see _tmpfs.py:
        about twice the write speed and a tenth of the page-fault time of /dev/shm's 4 KiB
        pages). It needs CAP_SYS_ADMIN; without it the store logs why and uses plain
        shared memory. `cleanup` unmounts it. `quiet_fallback` logs that at INFO rather than
        WARNING (the operator asked for huge pages only where available).
        """
        if capacity <= 0:
            raise ValueError(f"object store capacity must be a positive byte count, got {capacity}")
        self._paths = StorePaths(shm_dir, spill_dir)
        os.makedirs(shm_dir, mode=0o700, exist_ok=True)
        self._huge_pages = huge_pages and self._mount_huge_tmpfs(capacity, quiet_fallback)
        for directory in (self._paths.pool_dir, spill_dir):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        self._capacity = capacity
        self._min_spill_free = min_spill_free_bytes
        pool_limit = capacity // 4 if max_pool_bytes is None else max_pool_bytes
        self._pool = RecyclePool(self._paths, pool_limit)
        self._entries: dict[bytes, _Entry] = {}
        self._lru: OrderedDict[bytes, None] = OrderedDict()  # sealed, in shm; oldest first
        self._used = 0
        self._num_in_shm = 0
        self._disk_bytes = {_SPILLED: 0, _FALLBACK: 0}
        self._disk_count = {_SPILLED: 0, _FALLBACK: 0}
        self._restored_count = 0
        self._spilled_count = 0

    @property
    def huge_pages(self) -> bool:
        """True if shm_dir is a huge-page tmpfs this store mounted (or adopted)."""
        return self._huge_pages

    def _mount_huge_tmpfs(self, capacity: int, quiet: bool) -> bool:
        # Headroom over capacity: files being rewritten and pooled pages come and go around the
        # accounted bytes; the size limit is only a backstop against runaway writers.
        size = capacity + capacity // 4 + 64 * 2**20
        reason = mount_huge_tmpfs(self._paths.shm_dir, size)
        if reason is not None:
            logger.log(
                logging.INFO if quiet else logging.WARNING,
                "object store: no huge-page tmpfs at %s (%s); using plain shared memory",
                self._paths.shm_dir,
                reason,
            )
        return reason is None

    # ---- the contract -------------------------------------------------------------------

    def reserve(self, object_id: bytes, size: int) -> str:
        """Make room for a new object of `size` bytes; return where the client must write it.

        "shm" when it fits in shared memory (after spilling least-recently-used sealed objects
        if needed), "disk" when only the spill directory can take it. Raises
        ObjectStoreFullError when the disk cannot either. Idempotent for a known id.
        """
        entry = self._entries.get(object_id)
        if entry is not None:
            return "shm" if entry.in_shm else "disk"
        if size < 0:
            raise ValueError(f"object size must be >= 0 bytes, got {size} for {object_id.hex()}")
        if size <= self._capacity and self._make_room(size):
            pooled = self._claim_pooled(size)
            if pooled is not None:
                os.rename(pooled, self._paths.reserved(object_id))
            entry = _Entry(size)
            self._entries[object_id] = entry
            self._enter_shm(object_id, entry)
            return "shm"
        self._require_disk_room(object_id, size)
        entry = _Entry(size)
        self._entries[object_id] = entry
        self._set_disk(entry, _FALLBACK)
        return "disk"

    def seal(self, object_id: bytes) -> None:
        """The client finished writing the object; it becomes spillable."""
        entry = self._entries.get(object_id)
        if entry is None:
            # Deleted while its write was in flight: the writer's final rename came after the
            # delete and left a file nobody accounts for.
            discard(self._paths.shm(object_id))
            discard(self._paths.spill(object_id))
            return
        if entry.sealed:
            return
        entry.sealed = True
        if entry.in_shm:
            self._lru[object_id] = None

    def ensure_local(self, object_id: bytes) -> bool:
        """Bring a spilled object back into shared memory if room can be made; else leave it on
        disk, where readers map the spill file. False if this node does not know the object."""
        entry = self._entries.get(object_id)
        if entry is None:
            return False
        if entry.in_shm:
            self.touch(object_id)
        elif entry.sealed and entry.size <= self._capacity and self._make_room(entry.size):
            self._restore(object_id, entry)
        return True

    def touch(self, object_id: bytes) -> None:
        """Mark the object recently used, so it is spilled last."""
        if object_id in self._lru:
            self._lru.move_to_end(object_id)

    def delete(self, object_ids: Iterable[bytes]) -> int:
        """Remove the objects' files from both tiers; return the bytes of objects freed.

        Readers that still map an object keep their pages (the file is unlinked, not reused).
        Unknown ids are ignored.
        """
        freed = 0
        for object_id in object_ids:
            entry = self._entries.pop(object_id, None)
            if entry is None:
                continue
            if entry.in_shm:
                self._pool.release(self._paths.shm(object_id))
                self._pool.release(self._paths.reserved(object_id))  # if never claimed
                self._leave_shm(object_id, entry)
            if entry.disk is not None:
                discard(self._paths.spill(object_id))
                self._set_disk(entry, None)
            freed += entry.size
        self._pool.trim(self._capacity - self._used)
        return freed

    def entries(self) -> list[tuple[bytes, int, bool, bool, bool]]:
        """Every object held: (id, size, sealed, in shared memory, has a disk copy)."""
        return [
            (oid, e.size, e.sealed, e.in_shm, e.disk is not None)
            for oid, e in self._entries.items()
        ]

    def stats(self) -> StoreStats:
        return StoreStats(
            capacity=self._capacity,
            used_bytes=self._used,
            num_objects=self._num_in_shm,
            spilled_bytes=self._disk_bytes[_SPILLED],
            num_spilled=self._disk_count[_SPILLED],
            restored_count=self._restored_count,
            spilled_count=self._spilled_count,
            fallback_bytes=self._disk_bytes[_FALLBACK],
            num_fallback=self._disk_count[_FALLBACK],
            pool_bytes=self._pool.bytes,
        )

    def cleanup(self) -> None:
        """Remove every file and both directories (session shutdown)."""
        if self._huge_pages:
            unmount(self._paths.shm_dir)
            self._huge_pages = False
        shutil.rmtree(self._paths.shm_dir, ignore_errors=True)
        shutil.rmtree(self._paths.spill_dir, ignore_errors=True)
        self._pool.forget()
        self._entries.clear()
        self._lru.clear()
        self._used = self._num_in_shm = 0
        self._disk_bytes = {_SPILLED: 0, _FALLBACK: 0}
        self._disk_count = {_SPILLED: 0, _FALLBACK: 0}

    def adopt_existing(self) -> None:
        """Account the complete objects already in both directories (a restarted raylet), drop
        partial writes and pooled pages, then spill down to capacity if needed."""
        for name in os.listdir(self._paths.shm_dir):
            if name == POOL_SUBDIR:
                continue
            path = os.path.join(self._paths.shm_dir, name)
            if not is_object_name(name):
                discard(path)
                continue
            object_id = bytes.fromhex(name)
            if object_id not in self._entries:
                entry = _Entry(os.stat(path).st_size, sealed=True)
                self._entries[object_id] = entry
                self._enter_shm(object_id, entry)
                self._lru[object_id] = None
        for name in os.listdir(self._paths.pool_dir):
            discard(os.path.join(self._paths.pool_dir, name))
        for name in os.listdir(self._paths.spill_dir):
            path = os.path.join(self._paths.spill_dir, name)
            if not is_object_name(name):
                discard(path)
                continue
            object_id = bytes.fromhex(name)
            entry = self._entries.setdefault(object_id, _Entry(os.stat(path).st_size, sealed=True))
            if entry.disk is None:
                self._set_disk(entry, _SPILLED)
        self._make_room(0)
        self._pool.trim(self._capacity - self._used)

    def trim_pool(self, max_bytes: int = 0) -> int:
        """Give pooled pages back to the system until at most `max_bytes` remain; bytes freed.
        For the raylet to call when the node is idle or short of memory."""
        return self._pool.trim(max_bytes)

    # ---- room in shared memory -----------------------------------------------------------

    def _make_room(self, size: int) -> bool:
        """Spill LRU sealed objects until `size` more bytes fit; False if they cannot."""
        while self._used + size > self._capacity:
            victim = next(iter(self._lru), None)
            if victim is None or not self._spill(victim):
                return False
        return True

    def _claim_pooled(self, size: int) -> str | None:
        """Take the pooled file best suited to a new `size`-byte object (after _make_room), and
        shrink the rest of the pool into what is left of the capacity."""
        pooled = self._pool.take(size)
        self._pool.trim(self._capacity - self._used - size)
        return pooled

    def _spill(self, object_id: bytes) -> bool:
        """Evict one sealed object from shared memory, copying it to disk unless a copy is
        there already; False if the disk cannot take it."""
        entry = self._entries[object_id]
        if entry.disk is None:
            if not self._disk_has_room(entry.size):
                return False
            try:
                copy_to_spill(self._paths, object_id)
            except FileNotFoundError:
                logger.warning(
                    "object %s is sealed but its file %s is gone; forgetting it",
                    object_id.hex(), self._paths.shm(object_id),
                )
                del self._entries[object_id]
                self._leave_shm(object_id, entry)
                return True
            except OSError as err:
                if err.errno not in (errno.ENOSPC, errno.EDQUOT):
                    raise
                return False
            self._set_disk(entry, _SPILLED)
        self._pool.release(self._paths.shm(object_id))
        self._leave_shm(object_id, entry)
        self._spilled_count += 1
        return True

    def _restore(self, object_id: bytes, entry: _Entry) -> None:
        """Copy a spilled object back into shared memory; on failure it stays on disk."""
        reuse = self._claim_pooled(entry.size)
        try:
            restore_from_spill(self._paths, object_id, reuse)
        except OSError as err:
            logger.warning(
                "could not restore object %s from %s into shared memory (%s); readers will map "
                "the spill file", object_id.hex(), self._paths.spill(object_id), err,
            )
            return
        self._enter_shm(object_id, entry)
        self._lru[object_id] = None
        self._restored_count += 1

    # ---- room on disk --------------------------------------------------------------------

    def _disk_free(self) -> int:
        """Bytes the spill directory may still take, keeping min_spill_free_bytes free."""
        st = os.statvfs(self._paths.spill_dir)
        return st.f_bavail * st.f_frsize - self._min_spill_free

    def _disk_has_room(self, size: int) -> bool:
        if self._disk_free() >= size:
            return True
        # Disk copies of objects that are back in memory are only a shortcut for their next
        # eviction; drop them before giving up.
        for object_id, entry in self._entries.items():
            if entry.in_shm and entry.sealed and entry.disk is not None:
                discard(self._paths.spill(object_id))
                self._set_disk(entry, None)
        return self._disk_free() >= size

    def _require_disk_room(self, object_id: bytes, size: int) -> None:
        if self._disk_has_room(size):
            return
        unsealed = sum(1 for e in self._entries.values() if e.in_shm and not e.sealed)
        raise ObjectStoreFullError(
            f"Object {object_id.hex()} ({size} bytes) fits neither in shared memory (capacity "
            f"{self._capacity} bytes, {self._used} used by {self._num_in_shm} objects, "
            f"{unsealed} of them still being written) nor on disk (spill directory "
            f"{self._paths.spill_dir} has {max(self._disk_free() + self._min_spill_free, 0)} "
            f"bytes free, min_spill_free_bytes={self._min_spill_free} of them must stay free). "
            "Release ObjectRefs you no longer need, give the node more object store memory, or "
            "spill to a larger disk."
        )

    # ---- bookkeeping ---------------------------------------------------------------------

    def _enter_shm(self, object_id: bytes, entry: _Entry) -> None:
        entry.in_shm = True
        self._used += entry.size
        self._num_in_shm += 1

    def _leave_shm(self, object_id: bytes, entry: _Entry) -> None:
        entry.in_shm = False
        self._used -= entry.size
        self._num_in_shm -= 1
        self._lru.pop(object_id, None)

    def _set_disk(self, entry: _Entry, kind: str | None) -> None:
        if entry.disk is not None:
            self._disk_bytes[entry.disk] -= entry.size
            self._disk_count[entry.disk] -= 1
        entry.disk = kind
        if kind is not None:
            self._disk_bytes[kind] += entry.size
            self._disk_count[kind] += 1
