"""The node's store bookkeeper, living in the raylet: capacity, LRU spilling, restore, deletion.

Owns which objects occupy shared memory and which sit on disk, and every decision about moving
them: reserving room before a client writes, spilling least-recently-used sealed objects to the
spill directory when room is short, restoring them on demand, and freeing files on delete.
Clients write and map files themselves (client.py); this class never touches object contents
except to copy whole files between the two tiers. Not thread-safe: the raylet calls it from one
event loop. No network I/O.

Two ways to move files: by default spilling and restoring copy whole files synchronously inside
`reserve`/`ensure_local` (a 100 MB object takes tens of milliseconds). With
`background_io=True` (the raylet) those calls never copy: they only evict objects whose disk copy
already exists, and the caller moves bytes in threads through the plan/done pairs
(`plan_spills`/`spill_done`, `plan_restore`/`restore_done`; see rayops/raylet/spilling.py). The
books stay here, on the one thread; the threads only copy files.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rayops.exceptions import ObjectStoreFullError, OutOfDiskError
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
    spill_pool_bytes: int = 0  # disk kept from freed spill files for the next spills


@dataclass(frozen=True)
class SpillJob:
    """Copy one object's shm file to its spill path in a thread (overwriting the pooled spill
    file `reuse` if given); then `spill_done`."""

    object_id: bytes
    size: int
    reuse: str | None = None


@dataclass(frozen=True)
class RestoreJob:
    """Copy one object's spill file back into shm (into pooled pages `reuse` if given) in a
    thread; then `restore_done`. Its bytes are already counted in shared memory."""

    object_id: bytes
    size: int
    reuse: str | None


# What plan_restore answers besides a RestoreJob.
RESTORE_UNKNOWN = "unknown"  # this node does not know the object
RESTORE_LOCAL = "local"  # in shared memory already (or being written there)
RESTORE_WAIT = "wait"  # room must first be made by spilling: plan_spills, then ask again
RESTORE_STAY = "stay"  # cannot fit in shared memory: readers map the spill file


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
        spill_dirs: Sequence[str] = (),
        fs_capacity_threshold: float = 1.0,
        background_io: bool = False,
        quiet_fallback: bool = False,
    ) -> None:
        """`max_pool_bytes` bounds the memory kept from freed objects for reuse; the default is
        a quarter of `capacity` (the raylet passes `capacity` and trims to a quarter when
        idle), 0 turns recycling off. The pool always fits in what the live objects leave free,
        so it never pushes the store past `capacity` (Ray's plasma likewise keeps the pages of
        its arena once touched); the raylet's memory monitor empties it before killing.

        Freed spill files are kept too, per spill directory, for later spills to overwrite
        (`_trim_spill_pools`): live disk copies plus pooled files never take more disk than the
        disk copies alone did at their peak, the pools are emptied before the disk threshold
        refuses anything, and `trim_spill_pool` empties them.

        `huge_pages` mounts a tmpfs with transparent huge pages on `shm_dir` (see _tmpfs.py:
        about twice the write speed and a tenth of the page-fault time of /dev/shm's 4 KiB
        pages). It needs CAP_SYS_ADMIN; without it the store logs why and uses plain
        shared memory. `cleanup` unmounts it. `quiet_fallback` logs that at INFO rather than
        WARNING (the operator asked for huge pages only where available).

        `spill_dirs` spreads spilled objects over several directories (by object id);
        `fs_capacity_threshold` (Ray's local_fs_capacity_threshold) refuses to write a spill
        file that would take a spill directory's filesystem past that fraction used.
        """
        if capacity <= 0:
            raise ValueError(f"object store capacity must be a positive byte count, got {capacity}")
        if not 0.0 < fs_capacity_threshold <= 1.0:
            raise ValueError(
                f"local_fs_capacity_threshold: expected a fraction in (0, 1], found "
                f"{fs_capacity_threshold}"
            )
        self._paths = StorePaths(shm_dir, spill_dir, spill_dirs)
        os.makedirs(shm_dir, mode=0o700, exist_ok=True)
        self._huge_pages = huge_pages and self._mount_huge_tmpfs(capacity, quiet_fallback)
        for directory in (self._paths.pool_dir, *self._paths.spill_dirs):
            os.makedirs(directory, mode=0o700, exist_ok=True)
        for directory in self._paths.spill_dirs:
            os.makedirs(self._paths.spill_pool_dir(directory), mode=0o700, exist_ok=True)
        self._threshold = fs_capacity_threshold
        self._background_io = background_io
        self._spilling: set[bytes] = set()  # copies to disk in flight (background_io)
        self._restoring: set[bytes] = set()  # copies back into shm in flight
        self._capacity = capacity
        self._min_spill_free = min_spill_free_bytes
        pool_limit = capacity // 4 if max_pool_bytes is None else max_pool_bytes
        self._pool = RecyclePool(self._paths.pool_dir, pool_limit)
        # Freed spill files, per spill directory, for later spills to overwrite (see
        # _trim_spill_pools for their bound: never more disk than the node's peak so far).
        self._spill_pools = {
            d: RecyclePool(self._paths.spill_pool_dir(d), 0) for d in self._paths.spill_dirs
        }
        self._disk_peak = 0  # the most bytes disk copies have held at once
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
        if size <= self._capacity and self._make_room(size, copy=not self._background_io):
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
        elif self._background_io:
            pass  # the caller restores through plan_restore
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
                self._set_disk(entry, None)
                self._release_spill_file(object_id)
            freed += entry.size
        self._pool.trim(self._capacity - self._used)
        self._trim_spill_pools()
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
            spill_pool_bytes=sum(p.bytes for p in self._spill_pools.values()),
        )

    def cleanup(self) -> None:
        """Remove every file and both directories (session shutdown)."""
        if self._huge_pages:
            unmount(self._paths.shm_dir)
            self._huge_pages = False
        shutil.rmtree(self._paths.shm_dir, ignore_errors=True)
        for directory in self._paths.spill_dirs:
            shutil.rmtree(directory, ignore_errors=True)
        self._pool.forget()
        for pool in self._spill_pools.values():
            pool.forget()
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
        for pool_dir in (
            self._paths.pool_dir,
            *map(self._paths.spill_pool_dir, self._paths.spill_dirs),
        ):
            for name in os.listdir(pool_dir):
                discard(os.path.join(pool_dir, name))
        for name, path in self._spill_files():
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

    def trim_spill_pool(self) -> int:
        """Unlink every pooled spill file (the raylet calls this once spilling has been idle
        for a while); bytes freed on disk."""
        return sum(pool.trim(0) for pool in self._spill_pools.values())

    # ---- room in shared memory -----------------------------------------------------------

    def _spill_files(self) -> list[tuple[str, str]]:
        return [
            (name, os.path.join(directory, name))
            for directory in self._paths.spill_dirs
            for name in os.listdir(directory)
            if name != POOL_SUBDIR
        ]

    def _make_room(self, size: int, copy: bool = True) -> bool:
        """Spill LRU sealed objects until `size` more bytes fit; False if they cannot.
        `copy=False`: evict only objects whose disk copy exists (no file copy here)."""
        if not copy:
            return self._evict_copied(size)
        while self._used + size > self._capacity:
            victim = next(iter(self._lru), None)
            if victim is None or not self._spill(victim):
                return False
        return True

    def _evict_copied(self, size: int) -> bool:
        short = self._used + size - self._capacity
        if short <= 0:
            return True
        victims = []
        for object_id in self._lru:
            entry = self._entries[object_id]
            if entry.disk is not None:
                victims.append(object_id)
                short -= entry.size
                if short <= 0:
                    break
        for object_id in victims:
            self._spill(object_id)  # no copy: the disk copy is there
        return short <= 0

    # ---- spilling and restoring in threads (background_io) -------------------------------

    def try_reserve(self, object_id: bytes, size: int) -> str | None:
        """`reserve` that never copies a file: None when room in shared memory must first be
        made by spilling (`plan_spills`, then ask again). Raises as `reserve` does."""
        entry = self._entries.get(object_id)
        if (
            entry is None
            and 0 <= size <= self._capacity
            and not self._evict_copied(size)
            and self._could_fit_by_spilling(size)
        ):
            return None
        return self.reserve(object_id, size)

    def _could_fit_by_spilling(self, size: int) -> bool:
        evictable = sum(self._entries[oid].size for oid in self._lru)
        return self._used - evictable + size <= self._capacity

    def plan_spills(self, size: int) -> list[SpillJob]:
        """Objects to copy to disk (least recently used first) so that `size` more bytes fit
        once they are evicted; they are marked in flight. Room already coming from copies in
        flight counts."""
        short = self._used + size - self._capacity
        if short <= 0:
            return []  # the common case, checked before the scans below
        short -= sum(self._entries[oid].size for oid in self._spilling if oid in self._entries)
        short -= sum(self._entries[oid].size for oid in self._lru if self._entries[oid].disk)
        jobs: list[SpillJob] = []
        for object_id in self._lru:
            if short <= 0:
                break
            entry = self._entries[object_id]
            if entry.disk is None and object_id not in self._spilling:
                jobs.append(SpillJob(object_id, entry.size, self._take_spill_file(object_id)))
                short -= entry.size
        self._spilling.update(job.object_id for job in jobs)
        growth = sum(job.size for job in jobs if job.reuse is None)
        if growth and not self._disk_has_room(growth, drop_copies=False):
            self.trim_spill_pool()  # the new files need the disk the pooled ones hold
        return jobs

    def plan_background_spills(self, headroom: float) -> list[SpillJob]:
        """Copy LRU objects to disk ahead of need, so that `headroom` (a fraction of capacity)
        can be made free by eviction alone (Ray starts spilling once the store is 80% full)."""
        return self.plan_spills(int(self._capacity * headroom))

    @property
    def spills_in_flight(self) -> int:
        return len(self._spilling)

    def check_spill_room(self, job: SpillJob) -> None:
        """Raise OSError(ENOSPC) if the job's spill file would break the disk limits (a pooled
        file it overwrites is already counted as used)."""
        growth = job.size
        if job.reuse is not None:
            try:
                growth -= os.stat(job.reuse).st_size
            except FileNotFoundError:
                pass
        if growth > 0 and not self._disk_has_room(growth, drop_copies=False):
            if job.reuse is not None:
                discard(job.reuse)
            raise OSError(errno.ENOSPC, "spill directory over its usage limit")

    def spill_copy(self, job: SpillJob) -> None:
        """The file copy of a SpillJob: with check_spill_room (read-only), the only methods a
        thread may call."""
        copy_to_spill(self._paths, job.object_id, job.reuse)

    def spill_done(self, job: SpillJob, error: BaseException | None) -> None:
        """A SpillJob's copy finished (or failed with `error`)."""
        self._spilling.discard(job.object_id)
        entry = self._entries.get(job.object_id)
        if entry is None:  # deleted meanwhile: its copy is garbage
            if error is None:
                self._release_spill_file(job.object_id)
                self._trim_spill_pools()
            return
        if error is not None:
            if not (isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)):
                logger.error("spilling object %s failed: %r", job.object_id.hex(), error)
            return
        if entry.disk is None:
            self._set_disk(entry, _SPILLED)

    def plan_restore(self, object_id: bytes) -> RestoreJob | str:
        """Make room for a spilled object in shared memory and count it there, returning the
        copy to run; or one of the RESTORE_* answers."""
        entry = self._entries.get(object_id)
        if entry is None:
            return RESTORE_UNKNOWN
        if entry.in_shm or not entry.sealed:
            self.touch(object_id)
            return RESTORE_LOCAL
        if entry.size > self._capacity:
            return RESTORE_STAY
        if not self._evict_copied(entry.size):
            return RESTORE_WAIT if self._could_fit_by_spilling(entry.size) else RESTORE_STAY
        reuse = self._claim_pooled(entry.size)
        self._enter_shm(object_id, entry)
        self._restoring.add(object_id)
        return RestoreJob(object_id, entry.size, reuse)

    def restore_copy(self, job: RestoreJob) -> None:
        """The file copy of a RestoreJob: the only method a thread may call."""
        restore_from_spill(self._paths, job.object_id, job.reuse)

    def restore_done(self, job: RestoreJob, error: BaseException | None) -> bool:
        """A RestoreJob's copy finished; True if the object is now in shared memory."""
        self._restoring.discard(job.object_id)
        entry = self._entries.get(job.object_id)
        if entry is None:  # deleted meanwhile
            discard(self._paths.shm(job.object_id))
            return False
        if error is not None:
            logger.warning(
                "could not restore object %s from %s into shared memory (%r); readers will map "
                "the spill file",
                job.object_id.hex(),
                self._paths.spill(job.object_id),
                error,
            )
            self._leave_shm(job.object_id, entry)
            return False
        self._lru[job.object_id] = None
        self._restored_count += 1
        return True

    def _take_spill_file(self, object_id: bytes) -> str | None:
        """A pooled spill file, in the object's spill directory, for its spill to overwrite."""
        pool = self._spill_pools[os.path.dirname(self._paths.spill(object_id))]
        return pool.take(self._entries[object_id].size)

    def _release_spill_file(self, object_id: bytes) -> None:
        """The object's spill file is no longer needed: keep it for a later spill to overwrite
        (its bytes stay counted by the disk's usage; see _trim_spill_pools)."""
        path = self._paths.spill(object_id)
        pool = self._spill_pools[os.path.dirname(path)]
        pool.limit = self._disk_peak  # the real bound is applied by _trim_spill_pools
        pool.release(path)

    def _trim_spill_pools(self, allowance: int | None = None) -> None:
        """Keep pooled spill files only within what the disk copies have already needed at
        their peak: live copies plus pool never take more disk than the node has used before
        (and the disk threshold empties the pool before it refuses a spill)."""
        if allowance is None:
            live = self._disk_bytes[_SPILLED] + self._disk_bytes[_FALLBACK]
            allowance = self._disk_peak - live
        pools = sorted(self._spill_pools.values(), key=lambda p: p.bytes, reverse=True)
        excess = sum(p.bytes for p in pools) - max(allowance, 0)
        for pool in pools:
            if excess <= 0:
                break
            before = pool.bytes
            pool.trim(before - excess)
            excess -= before - pool.bytes

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
                copy_to_spill(self._paths, object_id, self._take_spill_file(object_id))
            except FileNotFoundError:
                logger.warning(
                    "object %s is sealed but its file %s is gone; forgetting it",
                    object_id.hex(),
                    self._paths.shm(object_id),
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
                "the spill file",
                object_id.hex(),
                self._paths.spill(object_id),
                err,
            )
            return
        self._enter_shm(object_id, entry)
        self._lru[object_id] = None
        self._restored_count += 1

    # ---- room on disk --------------------------------------------------------------------

    def _disk_free(self) -> int:
        """Bytes the fullest spill directory may still take, keeping min_spill_free_bytes
        free."""
        return min(_free_bytes(d) for d in self._paths.spill_dirs) - self._min_spill_free

    def _over_threshold(self, size: int) -> str | None:
        """The spill directory that `size` more bytes would take past the usage threshold
        (Ray's local_fs_capacity_threshold: any directory over it refuses, as in Ray)."""
        if self._threshold >= 1.0:
            return None
        for directory in self._paths.spill_dirs:
            st = os.statvfs(directory)
            total = st.f_blocks * st.f_frsize
            used = total - st.f_bavail * st.f_frsize
            if total and used + size > total * self._threshold:
                return directory
        return None

    def _disk_has_room(self, size: int, drop_copies: bool = True) -> bool:
        if self._disk_free() >= size and self._over_threshold(size) is None:
            return True
        if not drop_copies:
            return False
        # Pooled spill files are only a shortcut for later spills: unlink them first.
        if self.trim_spill_pool() and (
            self._disk_free() >= size and self._over_threshold(size) is None
        ):
            return True
        # Disk copies of objects that are back in memory are only a shortcut for their next
        # eviction; drop them before giving up.
        for object_id, entry in self._entries.items():
            if entry.in_shm and entry.sealed and entry.disk is not None:
                discard(self._paths.spill(object_id))
                self._set_disk(entry, None)
        return self._disk_free() >= size and self._over_threshold(size) is None

    def _require_disk_room(self, object_id: bytes, size: int) -> None:
        if self._disk_has_room(size):
            return
        unsealed = sum(1 for e in self._entries.values() if e.in_shm and not e.sealed)
        full = self._over_threshold(size)
        if full is not None:
            raise OutOfDiskError(
                f"Object {object_id.hex()} ({size} bytes) does not fit in shared memory "
                f"(capacity {self._capacity} bytes, {self._used} used by {self._num_in_shm} "
                f"objects, {unsealed} of them still being written), and spilling it would take "
                f"the filesystem of {full} past local_fs_capacity_threshold="
                f"{self._threshold} ({_usage(full)}). Free disk space there, release ObjectRefs "
                "you no longer need, or spill to a larger disk (object_spilling_config)."
            )
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
            self._disk_peak = max(
                self._disk_peak, self._disk_bytes[_SPILLED] + self._disk_bytes[_FALLBACK]
            )


def _free_bytes(directory: str) -> int:
    st = os.statvfs(directory)
    return st.f_bavail * st.f_frsize


def _usage(directory: str) -> str:
    st = os.statvfs(directory)
    total = st.f_blocks * st.f_frsize
    used = total - st.f_bavail * st.f_frsize
    return f"{used} of {total} bytes used, {used / total:.1%}" if total else "size unknown"
