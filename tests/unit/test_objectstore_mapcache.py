"""Kept mappings of recycled object files (_mapcache.py), with real /dev/shm files and a real
StoreManager: reuse without page faults, read-only views, and safety when files change."""

from __future__ import annotations

import errno
import fcntl
import gc
import os
import resource
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rayops.objectstore import StoreClient, StoreManager
from rayops.objectstore._mapcache import MAPPINGS, _fully_allocated
from rayops.objectstore._mapped_write import copy_into

MiB = 2**20
PAYLOAD = 32 * MiB  # 8,192 pages of 4 KiB: ~512 read faults when freshly mapped


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[str, str]]:
    shm_dir = f"/dev/shm/rayops-test-{uuid.uuid4().hex}"
    MAPPINGS.clear()  # mappings other tests of this process left: counts below start at 0
    yield shm_dir, str(tmp_path / "spill")
    MAPPINGS.clear()
    StoreManager(shm_dir, str(tmp_path / "spill"), 1).cleanup()
    assert not os.path.exists(shm_dir)


def _size(payload: int = PAYLOAD) -> int:
    return StoreClient.encoded_size(b"m", 1, [payload])


def _put(manager: StoreManager, client: StoreClient, payload: np.ndarray) -> bytes:
    oid = os.urandom(20)
    where = manager.reserve(oid, _size(payload.nbytes))
    client.write(oid, b"m", b"p", [memoryview(payload)], location=where)
    manager.seal(oid)
    return oid


def _faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def _read_sum(client: StoreClient, oid: bytes) -> tuple[int, int]:
    """(sum of every 8-byte word of the object's buffer, minor faults taken to read it)."""
    stored = client.read(oid)
    assert stored is not None
    before = _faults()
    total = int(np.frombuffer(stored.buffers[0], dtype=np.uint64).sum(dtype=np.uint64))
    taken = _faults() - before
    del stored
    gc.collect()
    return total, taken


def _payload(seed: int, nbytes: int = PAYLOAD) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, nbytes, dtype=np.uint8)


def _expected(payload: np.ndarray) -> int:
    return int(payload.view(np.uint64).sum(dtype=np.uint64))


def test_recycled_pages_are_read_and_written_through_the_kept_mapping(
    dirs: tuple[str, str],
) -> None:
    manager = StoreManager(*dirs, 4 * _size())
    client = StoreClient(*dirs)
    first = _payload(1)
    oid = _put(manager, client, first)  # new file: pwritev, nothing kept yet
    total, fresh_faults = _read_sum(client, oid)
    assert total == _expected(first)
    assert MAPPINGS.kept() == 1  # the view is gone, the mapping stays
    manager.delete([oid])  # its pages go to the pool
    hits = MAPPINGS.hits
    for seed in range(2, 5):
        payload = _payload(seed)
        oid = _put(manager, client, payload)  # same pages: written through the kept mapping
        total, faults = _read_sum(client, oid)
        assert total == _expected(payload)
        # A fresh mapping takes a fault per 16 pages or so; the kept one almost none.
        assert faults < fresh_faults // 4, (faults, fresh_faults)
        manager.delete([oid])
    assert MAPPINGS.hits - hits == 6  # every write and every read reused it


def test_views_of_a_kept_mapping_are_read_only(dirs: tuple[str, str]) -> None:
    manager = StoreManager(*dirs, 4 * _size())
    client = StoreClient(*dirs)
    oid = _put(manager, client, _payload(1))
    stored = client.read(oid)
    assert stored is not None
    assert stored.buffers[0].readonly
    array = np.frombuffer(stored.buffers[0], dtype=np.uint8)
    assert not array.flags.writeable
    with pytest.raises(ValueError):
        array[0] = 1


def test_a_held_view_keeps_its_pages_and_lock(dirs: tuple[str, str]) -> None:
    manager = StoreManager(*dirs, 4 * _size(), max_pool_bytes=4 * _size())
    client = StoreClient(*dirs)
    payload = _payload(1)
    oid = _put(manager, client, payload)
    stored = client.read(oid)
    assert stored is not None
    held = np.frombuffer(stored.buffers[0], dtype=np.uint8)
    inode = os.stat(os.path.join(dirs[0], oid.hex())).st_ino
    del stored
    gc.collect()
    assert MAPPINGS.kept() == 0  # in use: not kept for reuse yet
    manager.delete([oid])
    other = _put(manager, client, _payload(2))  # must not get the held pages
    assert os.stat(os.path.join(dirs[0], other.hex())).st_ino != inode
    assert np.array_equal(held, payload)
    del held
    gc.collect()
    assert MAPPINGS.kept() == 1


def test_a_resized_file_is_mapped_afresh(dirs: tuple[str, str]) -> None:
    manager = StoreManager(*dirs, 4 * _size())
    client = StoreClient(*dirs)
    oid = _put(manager, client, _payload(1))
    _read_sum(client, oid)
    manager.delete([oid])
    smaller = _payload(2, PAYLOAD * 3 // 4)  # recycled pages, truncated to a new size
    oid = _put(manager, client, smaller)
    total, _ = _read_sum(client, oid)
    assert total == _expected(smaller)
    stored = client.read(oid)
    assert stored is not None and stored.size == _size(smaller.nbytes)


def test_mappings_of_unlinked_files_are_dropped(dirs: tuple[str, str]) -> None:
    manager = StoreManager(*dirs, 4 * _size(), max_pool_bytes=0)  # deleted files are unlinked
    client = StoreClient(*dirs)
    oid = _put(manager, client, _payload(1))
    _read_sum(client, oid)
    assert MAPPINGS.kept() == 1
    manager.delete([oid])
    assert MAPPINGS.reap() == 1  # the helper thread does this within half a second
    assert MAPPINGS.kept() == 0


def test_a_reader_of_a_file_recycled_under_it_sees_it_gone(dirs: tuple[str, str]) -> None:
    manager = StoreManager(*dirs, 4 * _size())
    client = StoreClient(*dirs)
    oid = _put(manager, client, _payload(1))
    _read_sum(client, oid)  # kept
    path = os.path.join(dirs[0], oid.hex())
    opened = os.stat(path)  # a reader between its fstat and its lock ...
    manager.delete([oid])  # ... while the file is moved to the pool
    assert MAPPINGS.read(path, opened) is None
    assert MAPPINGS.kept() == 1  # still kept for the pages' next object


def test_a_forked_child_does_not_touch_the_parents_mappings(dirs: tuple[str, str]) -> None:
    manager = StoreManager(*dirs, 4 * _size())
    client = StoreClient(*dirs)
    payload = _payload(1)
    oid = _put(manager, client, payload)
    stored = client.read(oid)
    assert stored is not None
    pid = os.fork()
    if pid == 0:  # the child drops its copy of the view and reads the object itself
        code = 0
        try:
            del stored
            gc.collect()
            total, _ = _read_sum(client, oid)
            code = 0 if total == _expected(payload) and MAPPINGS.kept() == 1 else 1
        except BaseException:
            code = 2
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    # The child's finalizer left the parent's reader lock alone: nobody may lock it exclusively.
    fd = os.open(os.path.join(dirs[0], oid.hex()), os.O_RDONLY)
    try:
        with pytest.raises(BlockingIOError):
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    assert bytes(stored.buffers[0]) == payload.tobytes()


def test_a_view_released_while_the_cache_is_busy_never_deadlocks(dirs: tuple[str, str]) -> None:
    manager = StoreManager(*dirs, 4 * _size())
    client = StoreClient(*dirs)
    oid = _put(manager, client, _payload(1))
    stored = client.read(oid)
    assert stored is not None
    with MAPPINGS._lock:  # as if the collector freed the last view inside the cache's own code
        del stored
        gc.collect()
    # The reader lock went at once (the manager may recycle the file) ...
    fd = os.open(os.path.join(dirs[0], oid.hex()), os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    finally:
        os.close(fd)
    # ... and the mapping is kept by the next call.
    assert MAPPINGS.kept() == 1


def test_fully_allocated_sees_holes_in_tmpfs_files(dirs: tuple[str, str]) -> None:
    """posix_fallocate is skipped only for a file with every page allocated."""
    shm_dir, _ = dirs
    os.makedirs(shm_dir, exist_ok=True)
    path = os.path.join(shm_dir, "f")
    size = 3 * 2**20 + 100
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        os.ftruncate(fd, size)
        assert not _fully_allocated(os.fstat(fd), size)  # all hole
        os.pwrite(fd, b"x" * size, 0)
        assert _fully_allocated(os.fstat(fd), size)  # written whole
        os.ftruncate(fd, size - 2**20)
        assert _fully_allocated(os.fstat(fd), size - 2**20)  # trimmed: still no hole
        os.ftruncate(fd, size + 2**20)
        assert not _fully_allocated(os.fstat(fd), size + 2**20)  # grown: a hole at the end
    finally:
        os.close(fd)


def test_writes_through_a_mapping_on_a_full_tmpfs(tiny_tmpfs: Path) -> None:
    """A file with holes on a full tmpfs: ENOSPC before the copy (not SIGBUS in it). A file
    whose pages all exist (recycled) is written without allocating anything, full or not."""
    mount = tiny_tmpfs
    try:
        whole = mount / "whole"
        whole.write_bytes(b"x" * (6 * MiB))  # 6 of the 8 MiB: what is left cannot hold 4
        payload = np.random.default_rng(3).integers(0, 255, 6 * MiB, dtype=np.uint8)
        fd = os.open(whole, os.O_RDWR)
        try:
            assert _fully_allocated(os.fstat(fd), 6 * MiB)
            MAPPINGS.write(fd, 6 * MiB, lambda a: copy_into(a, [payload.data], 6 * MiB, threads=1))
        finally:
            os.close(fd)
        assert whole.read_bytes() == payload.tobytes()
        sparse = mount / "sparse"
        fd = os.open(sparse, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            os.ftruncate(fd, 4 * MiB)
            with pytest.raises(OSError) as info:
                MAPPINGS.write(
                    fd,
                    4 * MiB,
                    lambda a: copy_into(a, [payload[: 4 * MiB].data], 4 * MiB, threads=1),
                )
            assert info.value.errno == errno.ENOSPC
        finally:
            os.close(fd)
    finally:
        MAPPINGS.clear()  # the kept mapping of "whole" would keep the mount busy
