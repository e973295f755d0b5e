"""StoreManager with real /dev/shm and disk files: capacity, LRU spilling, restore, delete."""

from __future__ import annotations

import gc
import os
import pickle
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rayops.exceptions import ObjectStoreFullError
from rayops.objectstore import StoreClient, StoreManager, StoreStats
from rayops.objectstore._recycle import lock_for_reading

MiB = 2**20
PAYLOAD = MiB  # big enough for freed pages to be recycled


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[str, str]]:
    shm_dir = f"/dev/shm/rayops-test-{uuid.uuid4().hex}"
    spill_dir = str(tmp_path / "spill")
    yield shm_dir, spill_dir
    StoreManager(shm_dir, spill_dir, 1).cleanup()
    assert not os.path.exists(shm_dir)


@pytest.fixture
def client(dirs: tuple[str, str]) -> StoreClient:
    return StoreClient(*dirs)


def _object_size(payload: int = PAYLOAD) -> int:
    return StoreClient.encoded_size(b"m", 1, [payload])


def _manager(
    dirs: tuple[str, str],
    objects: float,
    *,
    max_pool_bytes: int | None = None,
    min_spill_free_bytes: int = 0,
) -> StoreManager:
    """A manager whose capacity holds `objects` objects of PAYLOAD bytes."""
    return StoreManager(
        *dirs,
        int(objects * _object_size()),
        max_pool_bytes=max_pool_bytes,
        min_spill_free_bytes=min_spill_free_bytes,
    )


def _put(manager: StoreManager, client: StoreClient, payload: bytes, *, seal: bool = True) -> bytes:
    oid = os.urandom(20)
    where = manager.reserve(oid, StoreClient.encoded_size(b"m", 1, [len(payload)]))
    client.write(oid, b"m", b"p", [memoryview(payload)], location=where)
    if seal:
        manager.seal(oid)
    return oid


def _payload() -> bytes:
    return os.urandom(PAYLOAD)


def _objects_in(directory: str) -> dict[str, int]:
    """Final object files in `directory` and their sizes (pool, temp and reserved files aside)."""
    return {
        entry.name: entry.stat().st_size
        for entry in os.scandir(directory)
        if entry.is_file() and "." not in entry.name
    }


def _assert_books_match_files(manager: StoreManager, dirs: tuple[str, str]) -> None:
    stats = manager.stats()
    in_shm, on_disk = _objects_in(dirs[0]), _objects_in(dirs[1])
    assert stats.num_objects == len(in_shm)
    assert stats.used_bytes == sum(in_shm.values())
    assert stats.num_spilled + stats.num_fallback == len(on_disk)
    assert stats.spilled_bytes + stats.fallback_bytes == sum(on_disk.values())
    assert stats.used_bytes + stats.pool_bytes <= stats.capacity


def _assert_payload(client: StoreClient, oid: bytes, payload: bytes, location: str) -> None:
    stored = client.read(oid)
    assert stored is not None, f"object {oid.hex()} should be readable"
    assert stored.location == location
    assert stored.metadata == b"m" and bytes(stored.pickled) == b"p"
    assert bytes(stored.buffers[0]) == payload


def test_reserve_within_capacity_is_shm_and_idempotent(dirs: tuple[str, str]) -> None:
    manager = _manager(dirs, 3)
    oid = os.urandom(20)
    assert manager.reserve(oid, _object_size()) == "shm"
    assert manager.reserve(oid, _object_size()) == "shm"
    stats = manager.stats()
    assert (stats.used_bytes, stats.num_objects) == (_object_size(), 1)


def test_reserve_beyond_capacity_spills_least_recently_used(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 3.5)
    payloads = [_payload() for _ in range(4)]
    a, b, c = (_put(manager, client, p) for p in payloads[:3])
    manager.touch(a)
    d = _put(manager, client, payloads[3])
    assert set(_objects_in(dirs[0])) == {a.hex(), c.hex(), d.hex()}
    assert set(_objects_in(dirs[1])) == {b.hex()}
    stats = manager.stats()
    assert (stats.spilled_count, stats.num_spilled, stats.spilled_bytes) == (1, 1, _object_size())
    assert (stats.num_objects, stats.used_bytes) == (3, 3 * _object_size())
    _assert_books_match_files(manager, dirs)
    _assert_payload(client, b, payloads[1], "disk")


def test_unsealed_objects_are_never_spilled(dirs: tuple[str, str], client: StoreClient) -> None:
    manager = _manager(dirs, 2.5)
    writing = _put(manager, client, _payload(), seal=False)
    sealed = _put(manager, client, _payload())
    third = _put(manager, client, _payload())
    assert set(_objects_in(dirs[0])) == {writing.hex(), third.hex()}
    assert set(_objects_in(dirs[1])) == {sealed.hex()}


def test_ensure_local_restores_spilled_object_when_there_is_room(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 2.5)
    first_payload = _payload()
    first = _put(manager, client, first_payload)
    second = _put(manager, client, _payload())
    third = _put(manager, client, _payload())
    _assert_payload(client, first, first_payload, "disk")
    manager.delete([second])
    assert manager.ensure_local(first)
    _assert_payload(client, first, first_payload, "shm")
    stats = manager.stats()
    assert stats.restored_count == 1
    assert stats.num_objects == 2 and stats.used_bytes == 2 * _object_size()
    assert third.hex() in _objects_in(dirs[0])
    _assert_books_match_files(manager, dirs)


def test_ensure_local_spills_others_to_restore(dirs: tuple[str, str], client: StoreClient) -> None:
    manager = _manager(dirs, 1.5)
    first_payload, second_payload = _payload(), _payload()
    first = _put(manager, client, first_payload)
    second = _put(manager, client, second_payload)
    assert manager.ensure_local(first)
    _assert_payload(client, first, first_payload, "shm")
    _assert_payload(client, second, second_payload, "disk")
    stats = manager.stats()
    assert (stats.restored_count, stats.spilled_count) == (1, 2)
    # `first` kept its spill copy, so spilling it again needs no copy and stays identical.
    assert manager.ensure_local(second)
    _assert_payload(client, first, first_payload, "disk")
    _assert_payload(client, second, second_payload, "shm")
    _assert_books_match_files(manager, dirs)


def test_ensure_local_leaves_object_on_disk_when_nothing_can_move(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 1.5)
    spilled_payload = _payload()
    spilled = _put(manager, client, spilled_payload)
    _put(manager, client, _payload(), seal=False)  # fills memory, cannot be spilled
    assert manager.ensure_local(spilled)
    _assert_payload(client, spilled, spilled_payload, "disk")
    assert manager.stats().restored_count == 0


def test_ensure_local_of_unknown_object_is_false(dirs: tuple[str, str]) -> None:
    assert not _manager(dirs, 1).ensure_local(os.urandom(20))


def test_numpy_array_survives_spill_and_restore(dirs: tuple[str, str], client: StoreClient) -> None:
    manager = _manager(dirs, 1.5)
    array = np.random.default_rng(1).random(PAYLOAD // 8)
    buffers: list[pickle.PickleBuffer] = []
    pickled = pickle.dumps(array, protocol=5, buffer_callback=buffers.append)
    oid = os.urandom(20)
    size = StoreClient.encoded_size(b"", len(pickled), [b.raw().nbytes for b in buffers])
    client.write(oid, b"", pickled, buffers, location=manager.reserve(oid, size))
    manager.seal(oid)
    stored = client.read(oid)
    assert stored is not None
    held = pickle.loads(stored.pickled, buffers=stored.buffers)
    del stored
    _put(manager, client, _payload())  # spills the array
    stored = client.read(oid)
    assert stored is not None and stored.location == "disk"
    assert np.array_equal(pickle.loads(stored.pickled, buffers=stored.buffers), array)
    assert np.array_equal(held, array)  # the reader's mapping outlived the spill


def test_delete_frees_capacity_and_files_in_both_tiers(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 1.5, max_pool_bytes=0)
    spilled = _put(manager, client, _payload())
    resident = _put(manager, client, _payload())
    assert manager.delete([spilled, resident, os.urandom(20)]) == 2 * _object_size()
    assert _objects_in(dirs[0]) == {} and _objects_in(dirs[1]) == {}
    assert os.listdir(dirs[1]) == ["pool"]  # the spill file kept there for the next spill
    stats = manager.stats()
    assert (stats.used_bytes, stats.num_objects, stats.spilled_bytes, stats.num_spilled) == (
        0,
        0,
        0,
        0,
    )
    assert not client.contains(spilled) and not client.contains(resident)


def test_object_bigger_than_capacity_goes_to_disk(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 0.5)
    payload = _payload()
    oid = _put(manager, client, payload)
    _assert_payload(client, oid, payload, "disk")
    stats = manager.stats()
    assert (stats.fallback_bytes, stats.num_fallback, stats.used_bytes) == (_object_size(), 1, 0)
    assert manager.ensure_local(oid)  # cannot come into memory; stays readable on disk
    _assert_payload(client, oid, payload, "disk")
    _assert_books_match_files(manager, dirs)


def test_object_goes_to_disk_when_nothing_is_spillable(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 1.5)
    _put(manager, client, _payload(), seal=False)
    assert manager.reserve(os.urandom(20), _object_size()) == "disk"


def _disk_free(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bavail * st.f_frsize


def test_store_full_error_when_disk_cannot_take_it_either(dirs: tuple[str, str]) -> None:
    too_much = _disk_free(os.path.dirname(dirs[1])) + 2**30
    manager = StoreManager(*dirs, 4 * MiB, min_spill_free_bytes=too_much)
    oid = os.urandom(20)
    with pytest.raises(ObjectStoreFullError) as caught:
        manager.reserve(oid, 8 * MiB)
    message = str(caught.value)
    for expected in (oid.hex(), str(8 * MiB), str(4 * MiB), dirs[1], "min_spill_free_bytes"):
        assert expected in message
    assert manager.stats().num_objects == 0 and manager.stats().fallback_bytes == 0


def test_store_full_when_spilling_needs_disk_that_is_not_there(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    too_much = _disk_free(os.path.dirname(dirs[1])) + 2**30
    manager = _manager(dirs, 1.5, min_spill_free_bytes=too_much)
    payload = _payload()
    resident = _put(manager, client, payload)
    with pytest.raises(ObjectStoreFullError):
        manager.reserve(os.urandom(20), _object_size())
    _assert_payload(client, resident, payload, "shm")
    assert manager.stats().spilled_count == 0


def test_freed_pages_are_reused_by_the_next_object(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 4)
    old = _put(manager, client, _payload())
    old_inode = os.stat(os.path.join(dirs[0], old.hex())).st_ino
    manager.delete([old])
    assert manager.stats().pool_bytes == _object_size()
    payload = _payload()
    new = _put(manager, client, payload)
    assert os.stat(os.path.join(dirs[0], new.hex())).st_ino == old_inode
    assert manager.stats().pool_bytes == 0
    _assert_payload(client, new, payload, "shm")
    _assert_books_match_files(manager, dirs)


def test_smaller_object_in_recycled_pages_has_its_own_size(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 4)
    manager.delete([_put(manager, client, _payload())])
    payload = os.urandom(PAYLOAD * 3 // 4)
    oid = _put(manager, client, payload)
    assert _objects_in(dirs[0])[oid.hex()] == StoreClient.encoded_size(b"m", 1, [len(payload)])
    _assert_payload(client, oid, payload, "shm")


def test_mapped_object_is_never_recycled(dirs: tuple[str, str], client: StoreClient) -> None:
    manager = _manager(dirs, 4, max_pool_bytes=3 * _object_size())
    payload = _payload()
    oid = _put(manager, client, payload)
    stored = client.read(oid)
    assert stored is not None
    held = np.frombuffer(stored.buffers[0], dtype=np.uint8)
    inode = os.stat(os.path.join(dirs[0], oid.hex())).st_ino
    del stored
    manager.delete([oid])
    # Pooled as busy (a reader still maps it): counted, but never handed out while mapped.
    assert manager.stats().pool_bytes == _object_size()
    for _ in range(3):
        new = _put(manager, client, os.urandom(PAYLOAD))
        assert os.stat(os.path.join(dirs[0], new.hex())).st_ino != inode
        manager.delete([new])
    assert held.tobytes() == payload
    del held
    gc.collect()
    new = _put(manager, client, os.urandom(PAYLOAD))
    inodes = {os.stat(os.path.join(dirs[0], new.hex())).st_ino}
    new = _put(manager, client, os.urandom(PAYLOAD))
    inodes.add(os.stat(os.path.join(dirs[0], new.hex())).st_ino)
    assert inode in inodes  # once released, its pages are reused


def test_dropping_the_last_view_lets_pages_be_recycled(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 4)
    oid = _put(manager, client, _payload())
    stored = client.read(oid)
    assert stored is not None
    view = stored.buffers[0]
    del stored
    del view
    gc.collect()
    manager.delete([oid])
    assert manager.stats().pool_bytes == _object_size()


def test_reader_that_opened_a_file_just_before_it_was_recycled_sees_it_gone(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 4)
    oid = _put(manager, client, _payload())
    path = os.path.join(dirs[0], oid.hex())
    fd = os.open(path, os.O_RDONLY)  # a reader between its open() and its lock
    try:
        manager.delete([oid])
        assert manager.stats().pool_bytes == _object_size()  # nobody held the lock yet
        assert not lock_for_reading(fd, path, os.fstat(fd))
    finally:
        os.close(fd)


def test_pool_stays_within_capacity_left_by_live_objects(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 3, max_pool_bytes=10 * _object_size())
    oids = [_put(manager, client, _payload()) for _ in range(3)]
    manager.delete(oids[:2])
    assert manager.stats().pool_bytes == 2 * _object_size()
    small = os.urandom(PAYLOAD // 8)  # too small to reuse a pooled file
    _put(manager, client, small)
    _put(manager, client, small)
    stats = manager.stats()
    assert stats.used_bytes + stats.pool_bytes <= stats.capacity
    assert manager.trim_pool() == stats.pool_bytes
    assert os.listdir(os.path.join(dirs[0], "pool")) == []


def test_seal_after_delete_removes_the_late_writers_file(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = _manager(dirs, 2)
    oid = os.urandom(20)
    manager.reserve(oid, _object_size())
    manager.delete([oid])
    client.write(oid, b"m", b"p", [memoryview(_payload())])
    manager.seal(oid)
    assert not client.contains(oid)
    assert manager.stats().used_bytes == 0


def test_adopt_existing_accounts_files_of_a_previous_manager(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    first = _manager(dirs, 1.5)
    spilled_payload = _payload()
    resident_payload = _payload()
    spilled = _put(first, client, spilled_payload)
    resident = _put(first, client, resident_payload)
    successor = _manager(dirs, 1.5)
    successor.adopt_existing()
    assert successor.stats() == StoreStats(
        capacity=first.stats().capacity,
        used_bytes=_object_size(),
        num_objects=1,
        spilled_bytes=_object_size(),
        num_spilled=1,
        restored_count=0,
        spilled_count=0,
        fallback_bytes=0,
    )
    assert successor.ensure_local(spilled)
    _assert_payload(client, spilled, spilled_payload, "shm")
    _assert_payload(client, resident, resident_payload, "disk")


def test_cleanup_leaves_no_files_behind(dirs: tuple[str, str], client: StoreClient) -> None:
    manager = _manager(dirs, 1.5)
    for _ in range(3):
        _put(manager, client, _payload())
    manager.delete([_put(manager, client, _payload())])
    manager.cleanup()
    assert not os.path.exists(dirs[0]) and not os.path.exists(dirs[1])
    assert manager.stats().used_bytes == 0


def test_huge_pages_mount_a_private_tmpfs_that_cleanup_removes(
    dirs: tuple[str, str], client: StoreClient
) -> None:
    manager = StoreManager(*dirs, 64 * MiB, huge_pages=True)
    if not manager.huge_pages:
        manager.cleanup()
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    try:
        assert os.path.ismount(dirs[0])
        payload = os.urandom(8 * MiB)
        oid = _put(manager, client, payload)
        _assert_payload(client, oid, payload, "shm")
        stored = client.read(oid)
        assert stored is not None
        held = np.frombuffer(stored.buffers[0], dtype=np.uint8)
    finally:
        manager.cleanup()
    assert not os.path.ismount(dirs[0]) and not os.path.exists(dirs[0])
    assert held.tobytes() == payload  # a reader's mapping outlives the unmount


def test_huge_pages_never_cover_existing_files(
    dirs: tuple[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    os.makedirs(dirs[0])
    Path(dirs[0], "someone-elses-file").write_bytes(b"x")
    manager = StoreManager(*dirs, 64 * MiB, huge_pages=True)
    assert not manager.huge_pages and not os.path.ismount(dirs[0])
    assert "not empty" in caplog.text
    assert Path(dirs[0], "someone-elses-file").read_bytes() == b"x"
