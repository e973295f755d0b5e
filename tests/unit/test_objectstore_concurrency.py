"""A reader process racing the manager: it never sees a torn object or a view change under it.

The parent writes, spills, restores and deletes objects in a small store (so freed pages are
recycled constantly) while a child process reads them and holds on to some views. Every object
is filled with one byte derived from its id, so any mix of two objects shows.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.objectstore import StoreClient, StoreManager

PAYLOAD = 512 * 1024
NUM_IDS = 24
LIVE = 6  # objects alive at once; the store holds 4, so some are always spilled

_READER = """
import collections, os, sys, time
from rayops.objectstore import StoreClient

shm_dir, spill_dir, stop_file = sys.argv[1:4]
client = StoreClient(shm_dir, spill_dir)
open(stop_file + ".ready", "w").close()
held = collections.deque(maxlen=6)
reads = 0
while not os.path.exists(stop_file):
    for i in range(int(sys.argv[4])):
        stored = client.read(i.to_bytes(20, "big"))
        if stored is None:
            continue
        view = stored.buffers[0]
        if view.nbytes != int(sys.argv[5]) or bytes(view).count(i % 251) != view.nbytes:
            print(f"TORN object {i} location {stored.location}", flush=True)
            sys.exit(1)
        reads += 1
        held.append((i, view))
    for i, view in held:
        if bytes(view).count(i % 251) != view.nbytes:
            print(f"CHANGED object {i} under a live view", flush=True)
            sys.exit(1)
print(reads, flush=True)
"""


@pytest.fixture
def dirs(tmp_path: Path) -> Iterator[tuple[str, str]]:
    shm_dir = f"/dev/shm/rayops-test-{uuid.uuid4().hex}"
    spill_dir = str(tmp_path / "spill")
    yield shm_dir, spill_dir
    StoreManager(shm_dir, spill_dir, 1).cleanup()
    assert not os.path.exists(shm_dir)


def _wait_for(path: Path, reader: subprocess.Popen[str]) -> None:
    deadline = time.monotonic() + 60
    while not path.exists():
        assert reader.poll() is None, f"reader exited early: {reader.communicate()}"
        assert time.monotonic() < deadline, f"reader did not start within 60 s ({path})"
        time.sleep(0.01)


def test_reader_never_sees_torn_or_recycled_pages(dirs: tuple[str, str], tmp_path: Path) -> None:
    size = StoreClient.encoded_size(b"", 1, [PAYLOAD])
    manager = StoreManager(*dirs, 4 * size, max_pool_bytes=4 * size, min_spill_free_bytes=0)
    client = StoreClient(*dirs)
    stop_file = str(tmp_path / "stop")
    reader = subprocess.Popen(
        [sys.executable, "-c", _READER, *dirs, stop_file, str(NUM_IDS), str(PAYLOAD)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(Path(stop_file + ".ready"), reader)
        deadline = time.monotonic() + 3.0
        step = 0
        while time.monotonic() < deadline and reader.poll() is None:
            i = step % NUM_IDS
            oid = i.to_bytes(20, "big")
            where = manager.reserve(oid, size)
            client.write(oid, b"", b"p", [memoryview(bytes([i % 251]) * PAYLOAD)], location=where)
            manager.seal(oid)
            # Free an older object: its pages go to the next id, which has another fill byte.
            manager.delete([((step - LIVE) % NUM_IDS).to_bytes(20, "big")])
            manager.ensure_local(((step - LIVE + 1) % NUM_IDS).to_bytes(20, "big"))
            step += 1
        Path(stop_file).touch()
        out, err = reader.communicate(timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()
    assert reader.returncode == 0, out + err
    assert int(out.split()[-1]) > 0, "the reader never found an object"
    stats = manager.stats()
    assert stats.spilled_count > 0 and stats.restored_count > 0
