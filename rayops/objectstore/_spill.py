"""Moving whole object files between shared memory and the spill directory.

Owns the file operations of spilling and restoring: copy under a temp name, then rename, so the
destination name only ever holds a complete object. Decides nothing: the StoreManager picks
what to move and keeps the books. A spill file is a read-only snapshot: objects are immutable,
so a spilled copy stays valid after a restore and a later eviction needs no second copy.
"""

from __future__ import annotations

import os

from rayops.objectstore._paths import StorePaths, discard, temp_path
from rayops.objectstore._transfer import copy_file


def copy_to_spill(paths: StorePaths, object_id: bytes) -> int:
    """Copy the object's shm file into the spill directory; return its size.

    Raises FileNotFoundError if the shm file is gone, OSError (ENOSPC) if the disk is full; the
    spill directory is left without a partial file either way.
    """
    final = paths.spill(object_id)
    with _opened(paths.shm(object_id), os.O_RDONLY) as src:
        size = os.fstat(src).st_size
        _copy_into_new(src, final, size, reuse=None)
    return size


def restore_from_spill(paths: StorePaths, object_id: bytes, reuse: str | None) -> int:
    """Copy the object's spill file back into shared memory; return its size.

    `reuse` is a pooled shm file whose pages to write into (it is consumed either way).
    Raises FileNotFoundError if the spill file is gone, OSError if shm is full.
    """
    final = paths.shm(object_id)
    with _opened(paths.spill(object_id), os.O_RDONLY) as src:
        size = os.fstat(src).st_size
        _copy_into_new(src, final, size, reuse=reuse)
    return size


def _copy_into_new(src: int, final: str, size: int, reuse: str | None) -> None:
    tmp = temp_path(final)
    try:
        if reuse is not None:
            os.rename(reuse, tmp)
            flags = os.O_WRONLY
        else:
            flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
        with _opened(tmp, flags) as dst:
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
