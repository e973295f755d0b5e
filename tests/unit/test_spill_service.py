"""Spilling off the event loop: the StoreManager's plan/done pairs (tables), the SpillService
running them in threads against real /dev/shm and disk files, and the spilling settings."""

from __future__ import annotations

import asyncio
import json
import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.exceptions import OutOfDiskError
from rayops.objectstore import (
    RESTORE_LOCAL,
    RESTORE_STAY,
    RESTORE_UNKNOWN,
    RESTORE_WAIT,
    RestoreJob,
    StoreClient,
    StoreManager,
)
from rayops.objectstore._mapcache import MAPPINGS
from rayops.raylet import spilling
from rayops.raylet.spilling import (
    SpillConfigError,
    SpillService,
    SpillSettings,
    node_spill_dirs,
    parse_spilling_config,
    system_config_env,
)

MiB = 2**20
SIZE = StoreClient.encoded_size(b"m", 1, [MiB])


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[str, str, tuple[str, str]]]:
    shm_dir = f"/dev/shm/rayops-test-{uuid.uuid4().hex}"
    spills = (str(tmp_path / "a"), str(tmp_path / "b"))
    yield shm_dir, spills[0], spills
    StoreManager(shm_dir, spills[0], 1, spill_dirs=spills).cleanup()
    assert not os.path.exists(shm_dir)


def _manager(dirs: tuple[str, str, tuple[str, str]], objects: int, **kw: object) -> StoreManager:
    shm_dir, spill_dir, spills = dirs
    return StoreManager(
        shm_dir,
        spill_dir,
        objects * SIZE,
        min_spill_free_bytes=0,
        spill_dirs=spills,
        background_io=True,
        **kw,  # type: ignore[arg-type]
    )


def _put(manager: StoreManager, client: StoreClient, fill: int) -> bytes:
    oid = os.urandom(20)
    where = manager.try_reserve(oid, SIZE)
    assert where == "shm"
    client.write(oid, b"m", b"p", [memoryview(bytes([fill]) * MiB)], location=where)
    manager.seal(oid)
    return oid


def _spill_all(manager: StoreManager, size: int) -> list[bytes]:
    jobs = manager.plan_spills(size)
    for job in jobs:
        manager.check_spill_room(job)
        manager.spill_copy(job)
        manager.spill_done(job, None)
    return [job.object_id for job in jobs]


def test_background_io_never_copies_and_plans_lru(dirs: tuple[str, str, tuple[str, str]]) -> None:
    manager = _manager(dirs, 2)
    client = StoreClient(dirs[0], dirs[1], dirs[2])
    first, second = _put(manager, client, 1), _put(manager, client, 2)
    manager.touch(first)  # second is now the least recently used
    assert manager.try_reserve(os.urandom(20), SIZE) is None  # room needs a disk copy first
    assert manager.stats().spilled_bytes == 0
    assert _spill_all(manager, SIZE) == [second]
    assert manager.plan_spills(SIZE) == []  # nothing more needed: the copy is there
    third = os.urandom(20)
    assert manager.try_reserve(third, SIZE) == "shm"  # evicts the copied object, no copy
    stats = manager.stats()
    assert (stats.num_objects, stats.num_spilled, stats.spilled_count) == (2, 1, 1)
    assert client.read(second).location == "disk"  # type: ignore[union-attr]


def test_restore_plan_table(dirs: tuple[str, str, tuple[str, str]]) -> None:
    manager = _manager(dirs, 2)
    client = StoreClient(dirs[0], dirs[1], dirs[2])
    a, b = _put(manager, client, 7), _put(manager, client, 8)
    assert manager.plan_restore(os.urandom(20)) == RESTORE_UNKNOWN
    assert manager.plan_restore(b) == RESTORE_LOCAL  # and b is now used most recently
    _spill_all(manager, SIZE)  # a copied
    c = _put(manager, client, 9)  # a evicted
    # a needs room, and b and c have no disk copy yet: spill first.
    assert manager.plan_restore(a) == RESTORE_WAIT
    _spill_all(manager, SIZE)
    job = manager.plan_restore(a)
    assert isinstance(job, RestoreJob)
    assert manager.stats().used_bytes <= 2 * SIZE  # counted before the copy runs
    manager.restore_copy(job)
    assert manager.restore_done(job, None)
    found = client.read(a)
    assert found is not None and found.location == "shm"
    assert bytes(found.buffers[0]) == bytes([7]) * MiB  # every byte back
    del found
    assert {b, c} & {oid for oid, _s, _sealed, in_shm, _d in manager.entries() if not in_shm}


def test_restore_failure_leaves_it_on_disk(dirs: tuple[str, str, tuple[str, str]]) -> None:
    manager = _manager(dirs, 1)
    client = StoreClient(dirs[0], dirs[1], dirs[2])
    a = _put(manager, client, 3)
    _spill_all(manager, SIZE)
    _put(manager, client, 4)
    _spill_all(manager, SIZE)
    job = manager.plan_restore(a)
    assert isinstance(job, RestoreJob)
    assert not manager.restore_done(job, OSError(28, "No space left on device"))
    assert manager.stats().used_bytes == 0
    assert client.read(a).location == "disk"  # type: ignore[union-attr]


def test_object_larger_than_store_stays(dirs: tuple[str, str, tuple[str, str]]) -> None:
    manager = _manager(dirs, 1)
    oid = os.urandom(20)
    assert manager.try_reserve(oid, 2 * SIZE) == "disk"
    manager.seal(oid)
    assert manager.plan_restore(oid) == RESTORE_STAY


def test_spill_service_puts_past_capacity_and_restores(
    dirs: tuple[str, str, tuple[str, str]],
) -> None:
    manager = _manager(dirs, 3)
    client = StoreClient(dirs[0], dirs[1], dirs[2])

    async def scenario() -> None:
        service = SpillService(manager, SpillSettings())
        try:
            oids = []
            for i in range(9):  # three times the capacity
                oid = os.urandom(20)
                where = await service.reserve(oid, SIZE)
                assert where == "shm"
                client.write(oid, b"m", b"p", [memoryview(bytes([i]) * MiB)], location=where)
                manager.seal(oid)
                service.kick()
                oids.append(oid)
                assert manager.stats().used_bytes <= 3 * SIZE
            assert manager.stats().num_spilled >= 6
            # Both directories hold spill files.
            assert all(os.listdir(d) for d in dirs[2])
            for i, oid in enumerate(oids):
                assert await service.ensure_local(oid)
                found = client.read(oid)
                assert found is not None and found.location == "shm"
                assert bytes(found.buffers[0]) == bytes([i]) * MiB
                del found
                assert manager.stats().used_bytes <= 3 * SIZE
            assert service.restored_bytes > 0 and service.spilled_bytes > 0
        finally:
            service.close()

    asyncio.run(scenario())


def test_disk_threshold_raises_out_of_disk(dirs: tuple[str, str, tuple[str, str]]) -> None:
    manager = _manager(dirs, 1, fs_capacity_threshold=1e-9)  # any use is over the threshold
    client = StoreClient(dirs[0], dirs[1], dirs[2])

    async def scenario() -> None:
        service = SpillService(manager, SpillSettings())
        try:
            first = os.urandom(20)
            where = await service.reserve(first, SIZE)
            client.write(first, b"m", b"p", [memoryview(b"x" * MiB)], location=where)
            manager.seal(first)
            with pytest.raises(OutOfDiskError, match="local_fs_capacity_threshold"):
                await service.reserve(os.urandom(20), SIZE)
            assert bytes(client.read(first).buffers[0]) == b"x" * MiB  # type: ignore[union-attr]
        finally:
            service.close()

    asyncio.run(scenario())


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('{"type": "filesystem", "params": {"directory_path": "/a"}}', ("/a",)),
        ('{"type": "filesystem", "params": {"directory_path": ["/a", "/b"]}}', ("/a", "/b")),
        ({"type": "filesystem", "params": {"directory_path": ["/c"]}}, ("/c",)),
    ],
)
def test_parse_spilling_config(text: str, expected: tuple[str, ...]) -> None:
    assert parse_spilling_config(text, "X") == expected


@pytest.mark.parametrize(
    ("text", "error", "names"),
    [
        ("{nope", SpillConfigError, "expected JSON"),
        ('{"type": "smart_open", "params": {"uri": "s3://b"}}', NotImplementedError, "smart_open"),
        (
            '{"type": "filesystem", "params": {"directory_path": "/a", "buffer_size": 1}}',
            NotImplementedError,
            "buffer_size",
        ),
        ('{"type": "filesystem", "params": {"directory_path": []}}', SpillConfigError, "list"),
        ('{"type": "filesystem", "params": {"path": "/a"}}', SpillConfigError, "directory_path"),
        ('{"type": "filesystem", "params": {}, "x": 1}', SpillConfigError, "'x'"),
    ],
)
def test_parse_spilling_config_errors(text: str, error: type[Exception], names: str) -> None:
    with pytest.raises(error, match="RAY_object_spilling_config") as caught:
        parse_spilling_config(text, "RAY_object_spilling_config")
    assert names in str(caught.value)


def test_settings_from_env() -> None:
    config = json.dumps({"type": "filesystem", "params": {"directory_path": ["/x", "/y"]}})
    s = SpillSettings.from_env(
        {"RAY_object_spilling_config": config, "RAY_local_fs_capacity_threshold": "0.5"}
    )
    assert s == SpillSettings(("/x", "/y"), 0.5, 0.8)
    assert SpillSettings.from_env({}) == SpillSettings()
    direct = SpillSettings.from_env({"RAY_object_spilling_directory": "/d"})
    assert direct.directories == ("/d",)
    with pytest.raises(SpillConfigError, match="RAY_local_fs_capacity_threshold"):
        SpillSettings.from_env({"RAY_local_fs_capacity_threshold": "1.5"})
    with pytest.raises(SpillConfigError, match="RAY_object_spilling_threshold"):
        SpillSettings.from_env({"RAY_object_spilling_threshold": "x"})
    assert node_spill_dirs(s, "/session/spill", "n1") == (
        "/x/rayops_spilled_objects_n1",
        "/y/rayops_spilled_objects_n1",
    )
    assert node_spill_dirs(SpillSettings(), "/session/spill", "n1") == ("/session/spill",)


def test_system_config_keys() -> None:
    config = {"type": "filesystem", "params": {"directory_path": ["/x"]}}
    env = system_config_env(
        {"object_spilling_config": config, "local_fs_capacity_threshold": 0.9}, "init"
    )
    assert env == {
        "RAY_object_spilling_config": json.dumps(config),
        "RAY_local_fs_capacity_threshold": "0.9",
    }
    with pytest.raises(NotImplementedError, match="'max_io_workers'"):
        system_config_env({"max_io_workers": 8}, "init(_system_config=...)")
    with pytest.raises(SpillConfigError, match="RAY_object_spilling_threshold"):
        system_config_env({"object_spilling_threshold": 3}, "init(_system_config=...)")
    with pytest.raises(TypeError, match="dict"):
        system_config_env(["x"], "init(_system_config=...)")


def test_delete_while_copies_are_in_flight(dirs: tuple[str, str, tuple[str, str]]) -> None:
    manager = _manager(dirs, 1)
    client = StoreClient(dirs[0], dirs[1], dirs[2])
    a = _put(manager, client, 1)
    (job,) = manager.plan_spills(SIZE)
    manager.spill_copy(job)
    manager.delete([a])  # deleted while its copy ran: the copy is garbage
    manager.spill_done(job, None)
    assert not os.path.exists(manager._paths.spill(a))
    b = _put(manager, client, 2)
    _spill_all(manager, SIZE)
    _put(manager, client, 3)  # b evicted
    _spill_all(manager, SIZE)
    restore = manager.plan_restore(b)
    assert isinstance(restore, RestoreJob)
    manager.restore_copy(restore)
    manager.delete([b])
    assert not manager.restore_done(restore, None)
    assert not os.path.exists(manager._paths.shm(b))
    assert manager.stats().used_bytes == 0


def _one_dir_manager(dirs: tuple[str, str, tuple[str, str]], objects: float) -> StoreManager:
    shm_dir, spill_dir, _ = dirs
    return StoreManager(
        shm_dir, spill_dir, int(objects * SIZE), min_spill_free_bytes=0, background_io=True
    )


def _inodes(directory: str) -> set[int]:
    return {e.inode() for e in os.scandir(directory) if e.is_file()}


def test_freed_spill_files_are_overwritten_by_later_spills(
    dirs: tuple[str, str, tuple[str, str]],
) -> None:
    manager = _one_dir_manager(dirs, 2)
    client = StoreClient(dirs[0], dirs[1])
    first = [_put(manager, client, fill) for fill in (1, 2)]
    assert len(_spill_all(manager, 2 * SIZE)) == 2
    spilled_inodes = {os.stat(manager._paths.spill(oid)).st_ino for oid in first}
    manager.delete(first)
    pool_dir = manager._paths.spill_pool_dir(dirs[1])
    assert _inodes(pool_dir) == spilled_inodes  # kept, not unlinked
    assert manager.stats().spill_pool_bytes == 2 * SIZE

    second = [_put(manager, client, fill) for fill in (3, 4)]
    jobs = manager.plan_spills(2 * SIZE)
    assert len(jobs) == 2 and all(job.reuse is not None for job in jobs)
    for job in jobs:
        manager.check_spill_room(job)
        manager.spill_copy(job)
        manager.spill_done(job, None)
    assert {os.stat(manager._paths.spill(oid)).st_ino for oid in second} == spilled_inodes
    assert manager.stats().spill_pool_bytes == 0
    # Evict both, restore them, and read every byte back from shared memory.
    newer = [_put(manager, client, fill) for fill in (5, 6)]
    manager.delete(newer)
    for oid, fill in zip(second, (3, 4), strict=True):
        job = manager.plan_restore(oid)
        assert isinstance(job, RestoreJob)
        manager.restore_copy(job)
        assert manager.restore_done(job, None)
        stored = client.read(oid)
        assert stored is not None and stored.location == "shm"
        assert bytes(stored.buffers[0]) == bytes([fill]) * MiB
        del stored


def test_spill_pool_stays_within_the_disk_peak_and_trims(
    dirs: tuple[str, str, tuple[str, str]],
) -> None:
    manager = _one_dir_manager(dirs, 3)
    client = StoreClient(dirs[0], dirs[1])
    objects = [_put(manager, client, fill) for fill in (1, 2, 3)]
    _spill_all(manager, 3 * SIZE)
    peak = manager.stats().spilled_bytes
    manager.delete(objects[:2])
    stats = manager.stats()
    # Live copies plus pooled files never take more disk than the copies did at their peak.
    assert stats.spilled_bytes + stats.spill_pool_bytes <= peak
    assert stats.spill_pool_bytes == 2 * SIZE
    assert manager.trim_spill_pool() == 2 * SIZE
    assert _inodes(manager._paths.spill_pool_dir(dirs[1])) == set()
    assert manager.stats().spill_pool_bytes == 0


def test_spill_file_a_reader_maps_is_never_overwritten(
    dirs: tuple[str, str, tuple[str, str]],
) -> None:
    manager = _one_dir_manager(dirs, 1.5)
    client = StoreClient(dirs[0], dirs[1])
    big = os.urandom(20)
    payload = os.urandom(2 * MiB)
    assert manager.try_reserve(big, StoreClient.encoded_size(b"m", 1, [2 * MiB])) == "disk"
    client.write(big, b"m", b"p", [memoryview(payload)], location="disk")
    manager.seal(big)
    held = client.read(big)
    assert held is not None and held.location == "disk"
    manager.delete([big])  # its file is pooled as busy: a reader still maps it
    small = _put(manager, client, 7)
    (job,) = manager.plan_spills(SIZE)
    assert job.reuse is None  # the mapped file is not handed out
    manager.check_spill_room(job)
    manager.spill_copy(job)
    manager.spill_done(job, None)
    assert bytes(held.buffers[0]) == payload
    del held
    _put(manager, client, 8)  # evicts `small` (its disk copy exists)
    (job,) = manager.plan_spills(SIZE)
    assert job.reuse is not None  # the reader is gone: its file may be overwritten now
    in_shm = {oid for oid, _size, _sealed, shm, _disk in manager.entries() if shm}
    assert small not in in_shm


def test_idle_store_gives_pooled_files_back(
    dirs: tuple[str, str, tuple[str, str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(spilling, "IDLE_TRIM_S", 0.05)
    manager = _manager(dirs, 4, max_pool_bytes=4 * SIZE)
    client = StoreClient(dirs[0], dirs[1], dirs[2])

    async def scenario() -> None:
        service = SpillService(manager, SpillSettings())
        try:
            oids = []
            for i in range(8):  # twice the capacity: half of it spilled
                oid = os.urandom(20)
                where = await service.reserve(oid, SIZE)
                client.write(oid, b"m", b"p", [memoryview(bytes([i]) * MiB)], location=where)
                manager.seal(oid)
                service.kick()
                oids.append(oid)
            while manager.spills_in_flight:
                await asyncio.sleep(0.01)
            manager.delete(oids)
            stats = manager.stats()
            assert stats.spill_pool_bytes > 0 and stats.pool_bytes > SIZE
            for _ in range(500):  # the idle trim is due 0.05 s after the last activity
                stats = manager.stats()
                if stats.spill_pool_bytes == 0 and stats.pool_bytes <= SIZE:
                    break
                await asyncio.sleep(0.01)
            assert stats.spill_pool_bytes == 0, stats
            assert stats.pool_bytes <= SIZE, stats  # a quarter of the capacity
        finally:
            service.close()

    asyncio.run(scenario())


def test_large_objects_spill_and_restore_through_kept_mappings(
    dirs: tuple[str, str, tuple[str, str]],
) -> None:
    big = 4 * MiB  # above the size from which copies go through a kept mapping
    size = StoreClient.encoded_size(b"m", 1, [big])
    shm_dir, spill_dir, _ = dirs
    manager = StoreManager(
        shm_dir,
        spill_dir,
        2 * size,
        min_spill_free_bytes=0,
        background_io=True,
        max_pool_bytes=2 * size,
    )
    client = StoreClient(shm_dir, spill_dir)
    payloads = [os.urandom(big) for _ in range(4)]
    oids = []
    for payload in payloads:
        oid = os.urandom(20)
        while manager.try_reserve(oid, size) is None:
            for job in manager.plan_spills(size):
                manager.check_spill_room(job)
                manager.spill_copy(job)
                manager.spill_done(job, None)
        client.write(oid, b"m", b"p", [memoryview(payload)], location="shm")
        manager.seal(oid)
        oids.append(oid)
    manager.delete(oids[2:])  # their pages go to the shm pool: restores reuse them
    for oid, payload in zip(oids[:2], payloads[:2], strict=True):
        with open(manager._paths.spill(oid), "rb") as f:
            assert payload in f.read()  # the spill copy holds every byte
        job = manager.plan_restore(oid)
        assert isinstance(job, RestoreJob) and job.reuse is not None
        manager.restore_copy(job)
        assert manager.restore_done(job, None)
        stored = client.read(oid)
        assert stored is not None and stored.location == "shm"
        assert bytes(stored.buffers[0]) == payload
        del stored
    # The restores left this process mappings of those pages; freed, the pages go to the next
    # objects, whose spills then copy out through the kept mappings.
    manager.delete(oids[:2])
    again = [os.urandom(big) for _ in range(2)]
    new_ids = []
    for payload in again:
        oid = os.urandom(20)
        assert manager.try_reserve(oid, size) == "shm"
        client.write(oid, b"m", b"p", [memoryview(payload)], location="shm")
        manager.seal(oid)
        new_ids.append(oid)
    hits = MAPPINGS.hits
    for job in manager.plan_spills(2 * size):
        manager.check_spill_room(job)
        manager.spill_copy(job)
        manager.spill_done(job, None)
    assert MAPPINGS.hits > hits
    for oid, payload in zip(new_ids, again, strict=True):
        with open(manager._paths.spill(oid), "rb") as f:
            assert payload in f.read()
