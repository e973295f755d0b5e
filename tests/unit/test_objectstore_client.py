"""StoreClient against real /dev/shm files: what a process writes, another maps back unchanged."""

from __future__ import annotations

import gc
import os
import pickle
import shutil
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rayops.objectstore import StoreClient, StoredObject
from rayops.objectstore.layout import LayoutError


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[str, str]]:
    shm_dir = f"/dev/shm/rayops-test-{uuid.uuid4().hex}"
    spill_dir = str(tmp_path / "spill")
    os.makedirs(shm_dir)
    os.makedirs(spill_dir)
    yield shm_dir, spill_dir
    shutil.rmtree(shm_dir, ignore_errors=True)
    assert not os.path.exists(shm_dir)


@pytest.fixture
def client(dirs: tuple[str, str]) -> StoreClient:
    return StoreClient(*dirs)


def _serialize(value: object) -> tuple[bytes, list[pickle.PickleBuffer]]:
    buffers: list[pickle.PickleBuffer] = []
    pickled = pickle.dumps(value, protocol=5, buffer_callback=buffers.append)
    return pickled, buffers


def _read(client: StoreClient, object_id: bytes) -> StoredObject:
    stored = client.read(object_id)
    assert stored is not None, f"object {object_id.hex()} should be readable"
    return stored


@pytest.mark.parametrize("extra", [0, 300_000], ids=["copied-small", "mapped"])
def test_round_trip_is_byte_identical_and_aligned(client: StoreClient, extra: int) -> None:
    oid = os.urandom(28)
    buffers = [os.urandom(n) for n in (1, 0, 1000, 64, 4097, extra)]
    size = client.write(oid, b"\x00meta", b"pickle stream", [memoryview(b) for b in buffers])
    assert size == StoreClient.encoded_size(b"\x00meta", 13, [len(b) for b in buffers])
    stored = _read(client, oid)
    assert stored.metadata == b"\x00meta"
    assert bytes(stored.pickled) == b"pickle stream"
    assert [bytes(view) for view in stored.buffers] == buffers
    assert stored.size == size and stored.location == "shm"
    for view in stored.buffers:
        address = np.frombuffer(view, dtype=np.uint8).__array_interface__["data"][0]
        assert address % 64 == 0


@pytest.mark.parametrize("size", [100, 300_000], ids=["copied-small", "mapped"])
def test_views_are_read_only(client: StoreClient, size: int) -> None:
    oid = os.urandom(20)
    client.write(oid, b"", b"p", [memoryview(b"x" * size)])
    stored = _read(client, oid)
    with pytest.raises(TypeError):
        stored.buffers[0][0] = 1
    with pytest.raises(TypeError):
        stored.pickled[0] = 1


def test_numpy_array_is_a_read_only_view_of_the_mapping(client: StoreClient) -> None:
    array = np.arange(1_000_000, dtype=np.float64).reshape(1000, 1000)
    pickled, buffers = _serialize(array)
    oid = os.urandom(20)
    client.write(oid, b"", pickled, buffers)
    stored = _read(client, oid)
    restored = pickle.loads(stored.pickled, buffers=stored.buffers)
    assert np.array_equal(restored, array)
    assert not restored.flags.writeable
    assert np.shares_memory(restored, np.frombuffer(stored.buffers[0], dtype=np.uint8))
    with pytest.raises(ValueError, match="read-only"):
        restored[0, 0] = 1.0


def test_fortran_ordered_array_round_trips(client: StoreClient) -> None:
    array = np.asfortranarray(np.arange(600, dtype=np.int32).reshape(20, 30))
    pickled, buffers = _serialize(array)
    oid = os.urandom(20)
    client.write(oid, b"", pickled, buffers)
    stored = _read(client, oid)
    assert np.array_equal(pickle.loads(stored.pickled, buffers=stored.buffers), array)


def test_views_stay_valid_after_stored_object_and_file_are_gone(
    client: StoreClient, dirs: tuple[str, str]
) -> None:
    array = np.random.default_rng(0).random(200_000)
    pickled, buffers = _serialize(array)
    oid = os.urandom(20)
    client.write(oid, b"", pickled, buffers)
    stored = _read(client, oid)
    restored = pickle.loads(stored.pickled, buffers=stored.buffers)
    del stored
    gc.collect()
    os.unlink(os.path.join(dirs[0], oid.hex()))
    assert client.read(oid) is None
    assert np.array_equal(restored, array)


def test_missing_object_reads_as_none(client: StoreClient) -> None:
    assert client.read(os.urandom(20)) is None
    assert not client.contains(os.urandom(20))


def test_write_leaves_only_the_final_file(client: StoreClient, dirs: tuple[str, str]) -> None:
    oid = os.urandom(20)
    client.write(oid, b"m", b"p", [])
    assert os.listdir(dirs[0]) == [oid.hex()]
    assert client.contains(oid)


def test_disk_location_writes_into_spill_dir(client: StoreClient, dirs: tuple[str, str]) -> None:
    oid = os.urandom(20)
    client.write(oid, b"m", b"p", [memoryview(b"buffer")], location="disk")
    assert os.listdir(dirs[0]) == []
    assert os.listdir(dirs[1]) == [oid.hex()]
    stored = _read(client, oid)
    assert stored.location == "disk"
    assert bytes(stored.buffers[0]) == b"buffer"


def test_unknown_location_is_refused(client: StoreClient) -> None:
    with pytest.raises(ValueError, match="location must be one of"):
        client.write(os.urandom(20), b"", b"p", [], location="gpu")


def test_more_buffers_than_one_syscall_takes(client: StoreClient) -> None:
    buffers = [bytes([i % 256]) * (i % 7) for i in range(1500)]
    oid = os.urandom(20)
    client.write(oid, b"", b"p", [memoryview(b) for b in buffers])
    assert [bytes(v) for v in _read(client, oid).buffers] == buffers


def test_strided_buffer_is_refused_with_a_clear_error(client: StoreClient) -> None:
    strided = np.arange(100, dtype=np.int64)[::2].data
    with pytest.raises(ValueError, match="contiguous"):
        client.write(os.urandom(20), b"", b"p", [strided])


def test_rewriting_an_object_keeps_earlier_readers_intact(client: StoreClient) -> None:
    oid = os.urandom(20)
    client.write(oid, b"", b"p", [memoryview(b"first" * 1000)])
    first = _read(client, oid)
    client.write(oid, b"", b"p", [memoryview(b"again" * 1000)])
    assert bytes(first.buffers[0]) == b"first" * 1000
    assert bytes(_read(client, oid).buffers[0]) == b"again" * 1000


def test_corrupt_file_is_reported_with_its_path(client: StoreClient, dirs: tuple[str, str]) -> None:
    oid = os.urandom(20)
    Path(dirs[0], oid.hex()).write_bytes(b"garbage" * 20)
    with pytest.raises(LayoutError, match=oid.hex()):
        client.read(oid)


def test_another_process_reads_what_this_one_wrote(
    client: StoreClient, dirs: tuple[str, str]
) -> None:
    array = np.arange(100_000, dtype=np.int64)
    pickled, buffers = _serialize(array)
    oid = os.urandom(20)
    client.write(oid, b"meta", pickled, buffers)
    reader = (
        "import pickle, sys\n"
        "from rayops.objectstore import StoreClient\n"
        "stored = StoreClient(sys.argv[1], sys.argv[2]).read(bytes.fromhex(sys.argv[3]))\n"
        "value = pickle.loads(stored.pickled, buffers=stored.buffers)\n"
        "print(stored.metadata.decode(), int(value.sum()), value.flags.writeable)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", reader, dirs[0], dirs[1], oid.hex()],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["meta", str(int(array.sum())), "False"]
