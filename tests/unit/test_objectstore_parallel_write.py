"""Two-thread writes of recycled files on the store's huge-page tmpfs (_mapped_write.py), with
real files and real tmpfs mounts (the mount tests skip without CAP_SYS_ADMIN)."""

from __future__ import annotations

import errno
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.objectstore import StoreClient, StoreManager
from rayops.objectstore._mapped_write import MIN_PARALLEL_WRITE_BYTES, write_parallel
from rayops.objectstore._tmpfs import remove_store_dir

MiB = 2**20


@pytest.fixture
def huge_dirs(tmp_path: Path) -> Iterator[tuple[str, str]]:
    shm_dir = f"/dev/shm/rayops-test-{uuid.uuid4().hex}"
    yield shm_dir, str(tmp_path / "spill")
    remove_store_dir(shm_dir)  # unmounts the test's tmpfs too
    assert not os.path.exists(shm_dir)


def _write(path: Path, parts: list[bytes | memoryview], old: bytes) -> bytes:
    size = sum(memoryview(p).nbytes for p in parts)
    path.write_bytes(old)
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, size)
        write_parallel(fd, parts, size)
    finally:
        os.close(fd)
    return path.read_bytes()


def test_segments_of_every_kind_land_back_to_back_across_the_split(tmp_path: Path) -> None:
    big = os.urandom(3 * MiB + 5)
    parts: list[bytes | memoryview] = [
        b"header",
        b"",  # empty metadata
        memoryview(bytearray(b"pickle" * 7)).toreadonly(),
        memoryview(big)[1:],  # read-only, starts mid-buffer, crosses the midpoint
        bytes(59),
        memoryview(bytearray(os.urandom(4097))),
    ]
    want = b"".join(bytes(p) for p in parts)
    assert _write(tmp_path / "f", parts, b"old" * len(want)) == want  # longer file: trimmed
    assert _write(tmp_path / "g", parts, b"x") == want  # shorter file: grown


def test_recycled_objects_of_shrinking_and_growing_sizes_read_back_exactly(
    huge_dirs: tuple[str, str],
) -> None:
    manager = StoreManager(*huge_dirs, 256 * MiB, huge_pages=True)
    if not manager.huge_pages:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    client = StoreClient(*huge_dirs)
    if not client._parallel:
        pytest.skip("this process may use only one CPU")
    sizes = [40 * MiB, 30 * MiB + 1, 24 * MiB + 4095, 36 * MiB - 7, MIN_PARALLEL_WRITE_BYTES]
    previous = None
    for size in sizes:
        payload = os.urandom(size)
        oid = os.urandom(20)
        where = manager.reserve(oid, StoreClient.encoded_size(b"meta", 6, [size]))
        assert where == "shm"
        client.write(oid, b"meta", b"pickle", [memoryview(payload)], location=where)
        manager.seal(oid)
        stored = client.read(oid)
        assert stored is not None
        assert stored.size == StoreClient.encoded_size(b"meta", 6, [size])
        assert stored.metadata == b"meta" and bytes(stored.pickled) == b"pickle"
        assert bytes(stored.buffers[0]) == payload
        del stored
        if previous is not None:
            manager.delete([previous])
        previous = oid
    assert manager.stats().pool_bytes > 0, "nothing was recycled"
    manager.cleanup()


def test_a_full_tmpfs_gives_enospc_not_sigbus(tiny_tmpfs: Path) -> None:
    path = tiny_tmpfs / "f"
    path.write_bytes(b"x" * (4 * MiB))
    fd = os.open(path, os.O_RDWR)
    try:
        os.ftruncate(fd, 32 * MiB)
        with pytest.raises(OSError) as info:
            write_parallel(fd, [os.urandom(32 * MiB)], 32 * MiB)
        assert info.value.errno == errno.ENOSPC
    finally:
        os.close(fd)


def test_segments_shorter_than_the_file_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(bytes(100))
    fd = os.open(path, os.O_RDWR)
    try:
        with pytest.raises(ValueError, match="segments hold 10 bytes, expected 100"):
            write_parallel(fd, [bytes(10)], 100)
    finally:
        os.close(fd)
