"""File names inside a node's store directories; the one place that spells them.

shm_dir/
    <hex id>            a complete object; readers map it
    <hex id>.reserved   pages recycled from a freed object, set aside by the manager for the
                        client about to write <hex id> (the client renames it to its temp name)
    <hex id>.<tag>.tmp  an object being written; renamed to <hex id> when complete
    pool/<n>            pages of freed objects kept for reuse (see _recycle.py)
spill_dir/ (one of several when spilling to several directories: the object id picks one)
    <hex id>            a complete object on disk (spilled, or written there because it did
                        not fit in shared memory)
    <hex id>.<tag>.tmp  being written
    pool/<n>            files of freed spilled objects kept for the next spills to overwrite

Only final names are ever mapped by readers, and a final name only ever appears through
rename(), so a reader never sees a half-written object.
"""

from __future__ import annotations

import itertools
import os
import zlib
from collections.abc import Sequence

POOL_SUBDIR = "pool"
_tmp_counter = itertools.count()


class StorePaths:
    """The two directories of one node's store and the names of files in them.

    Names are built by plain concatenation: they are computed on every read and write, where
    os.path.join's generality costs more than the rest of the bookkeeping.
    """

    __slots__ = ("_shm", "_spill", "_spills", "shm_dir", "spill_dir", "spill_dirs")

    def __init__(self, shm_dir: str, spill_dir: str, spill_dirs: Sequence[str] = ()) -> None:
        """`spill_dirs`: several spill directories (`spill_dir` is then the first); every
        process computes the same directory for an object from its id, so none has to ask."""
        dirs = tuple(spill_dirs) or (spill_dir,)
        self.shm_dir = shm_dir
        self.spill_dir = dirs[0]
        self.spill_dirs = dirs
        self._shm = os.path.join(shm_dir, "")
        self._spill = os.path.join(dirs[0], "")
        self._spills = tuple(os.path.join(d, "") for d in dirs)

    @property
    def pool_dir(self) -> str:
        return self._shm + POOL_SUBDIR

    def shm(self, object_id: bytes) -> str:
        return self._shm + object_id.hex()

    def spill(self, object_id: bytes) -> str:
        if len(self._spills) == 1:
            return self._spill + object_id.hex()
        return self._spills[zlib.crc32(object_id) % len(self._spills)] + object_id.hex()

    def reserved(self, object_id: bytes) -> str:
        return self._shm + object_id.hex() + ".reserved"

    def spill_pool_dir(self, spill_dir: str) -> str:
        """Where freed spill files of `spill_dir` (one of spill_dirs) wait for reuse."""
        return os.path.join(spill_dir, POOL_SUBDIR)


def temp_path(final_path: str) -> str:
    """A name next to `final_path` no other writer (process or thread) uses at the same time."""
    return f"{final_path}.{os.getpid()}-{next(_tmp_counter)}.tmp"


def claim_recycled(reserved: str | None, tmp: str) -> bool:
    """Rename the recycled file the manager left at `reserved` (if any) to `tmp`; True when
    there was one, so `tmp` already has pages to reuse."""
    if reserved is None:
        return False
    try:
        os.rename(reserved, tmp)
    except FileNotFoundError:
        return False
    return True


def is_object_name(name: str) -> bool:
    """True for the final name of an object (hex id), not temp, reserved or pool entries."""
    if not name or len(name) % 2:
        return False
    try:
        bytes.fromhex(name)
    except ValueError:
        return False
    return True


def discard(path: str) -> None:
    """Remove the store file at `path` if it is there (another party may have beaten us to it)."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass
