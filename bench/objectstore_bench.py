"""Micro-benchmark of the node-local object store (rayops.objectstore), no daemons involved.

Rows (best and median of --reps runs; "cpu" is this process's CPU time, which shows what the
code costs when other processes compete for the machine's cores)::

    write_100mb_fresh      StoreClient.write of one 100 MB out-of-band buffer into new pages
    write_100mb_recycled   the same after a delete, so the manager hands back freed pages
    read_100mb             StoreClient.read of it (a mapping, no copy)
    small_1kb_write_read   reserve-less write + read of a 1 KB object
    spill_100mb            StoreManager evicting it to disk (sendfile)
    restore_100mb          StoreManager.ensure_local bringing it back

``--alternatives`` also times the raw ways of getting 100 MB into a /dev/shm file that were
considered for StoreClient.write. It prints figures and never fails.

    .venv/bin/python bench/objectstore_bench.py [--reps 10] [--alternatives] [--huge-pages]
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import shutil
import statistics
import tempfile
import time
import uuid
from collections.abc import Callable

from rayops.objectstore import StoreClient, StoreManager

BIG = 100 * 2**20
SMALL = 1024


def _timed(
    fn: Callable[[], object], setup: Callable[[], object] | None, reps: int
) -> tuple[float, float, float]:
    walls: list[float] = []
    cpus: list[float] = []
    for _ in range(reps):
        if setup is not None:
            setup()
        cpu, wall = time.process_time(), time.perf_counter()
        fn()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return min(walls), statistics.median(walls), min(cpus)


def _rate(
    name: str,
    nbytes: int,
    fn: Callable[[], object],
    setup: Callable[[], object] | None = None,
    reps: int = 10,
) -> None:
    best, median, cpu = _timed(fn, setup, reps)
    print(
        f"{name:28s} best {nbytes / best / 1e9:6.2f} GB/s   median {nbytes / median / 1e9:6.2f} "
        f"GB/s   cpu-best {nbytes / max(cpu, 1e-9) / 1e9:6.2f} GB/s",
        flush=True,
    )


def _latency(name: str, fn: Callable[[], object], reps: int) -> None:
    best, median, _ = _timed(fn, None, reps)
    print(f"{name:28s} best {best * 1e6:8.1f} us     median {median * 1e6:8.1f} us", flush=True)


def store_rows(reps: int, huge_pages: bool) -> None:
    shm_dir = f"/dev/shm/rayops-bench-{uuid.uuid4().hex}"
    spill_dir = tempfile.mkdtemp(prefix="rayops-bench-spill-")
    size = StoreClient.encoded_size(b"", 16, [BIG])
    manager = StoreManager(
        shm_dir, spill_dir, 4 * size, min_spill_free_bytes=0, huge_pages=huge_pages
    )
    print(f"store at {shm_dir}, huge-page tmpfs: {manager.huge_pages}", flush=True)
    client = StoreClient(shm_dir, spill_dir)
    payload = memoryview(os.urandom(BIG))
    state: dict[str, bytes] = {"oid": os.urandom(20)}

    def fresh_setup() -> None:
        manager.delete([state["oid"]])
        manager.trim_pool()
        state["oid"] = os.urandom(20)
        manager.reserve(state["oid"], size)

    def recycled_setup() -> None:
        manager.delete([state["oid"]])
        state["oid"] = os.urandom(20)
        manager.reserve(state["oid"], size)

    def write() -> None:
        client.write(state["oid"], b"", b"p" * 16, [payload])
        manager.seal(state["oid"])

    try:
        _rate("write_100mb_fresh", BIG, write, fresh_setup, reps)
        _rate("write_100mb_recycled", BIG, write, recycled_setup, reps)
        _latency("read_100mb", lambda: client.read(state["oid"]), reps * 20)
        small = memoryview(os.urandom(SMALL))

        def small_round_trip() -> None:
            oid = os.urandom(20)
            client.write(oid, b"", b"p", [small])
            client.read(oid)

        _latency("small_1kb_write_read", small_round_trip, reps * 50)
        _spill_rows(manager, client, payload, size, reps)
    finally:
        manager.cleanup()


def _spill_rows(
    manager: StoreManager, client: StoreClient, payload: memoryview, size: int, reps: int
) -> None:
    ids = [os.urandom(20) for _ in range(5)]
    for oid in ids:
        where = manager.reserve(oid, size)
        client.write(oid, b"", b"p" * 16, [payload], location=where)
        manager.seal(oid)
    # The store holds 4: every ensure_local spills the LRU object and restores the wanted one;
    # objects keep their spill copy, so after the first round a spill is just an unlink.
    before = manager.stats()
    start = time.perf_counter()
    for i in range(reps):
        manager.ensure_local(ids[i % len(ids)])
    elapsed = time.perf_counter() - start
    after = manager.stats()
    restores = after.restored_count - before.restored_count
    print(
        f"{'restore_100mb (+evict)':28s} {restores} restores in {elapsed * 1e3:.0f} ms: "
        f"{restores * BIG / max(elapsed, 1e-9) / 1e9:6.2f} GB/s",
        flush=True,
    )
    manager.delete(ids)
    fresh = [os.urandom(20) for _ in range(4)]
    for oid in fresh:
        client.write(oid, b"", b"p" * 16, [payload], location=manager.reserve(oid, size))
        manager.seal(oid)
    start = time.perf_counter()
    manager.reserve(os.urandom(20), 4 * size)  # spills all four (first copy to disk)
    elapsed = time.perf_counter() - start
    print(f"{'spill_100mb':28s} 4 spills in {elapsed * 1e3:.0f} ms: "
          f"{4 * BIG / elapsed / 1e9:6.2f} GB/s", flush=True)


def alternatives(reps: int) -> None:
    """Raw ways of putting BIG bytes into a tmpfs file, fresh pages and recycled pages."""
    directory = f"/dev/shm/rayops-bench-alt-{uuid.uuid4().hex}"
    os.makedirs(directory)
    path = os.path.join(directory, "object")
    src = memoryview(os.urandom(BIG))

    def remove() -> None:
        if os.path.exists(path):
            os.unlink(path)

    def recycled() -> None:
        remove()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        os.pwrite(fd, bytes(BIG), 0)  # pages exist and are up to date, as after a delete
        os.close(fd)

    def pwrite(prepare: str = "") -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if prepare == "ftruncate":
            os.ftruncate(fd, BIG)
        elif prepare == "fallocate":
            os.posix_fallocate(fd, 0, BIG)
        os.pwritev(fd, [src], 0)
        os.close(fd)

    def mmap_copy(populate: bool, madvise: int | None = None) -> None:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if os.fstat(fd).st_size < BIG:
            os.ftruncate(fd, BIG)
        flags = mmap.MAP_SHARED | (mmap.MAP_POPULATE if populate else 0)
        mapping = mmap.mmap(fd, BIG, flags=flags)
        os.close(fd)
        if madvise is not None:
            mapping.madvise(madvise)
        view = memoryview(mapping)
        chunk = 4 * 2**20  # whole-buffer slice copies hit a slow memcpy path here (~1 GB/s)
        for offset in range(0, BIG, chunk):
            view[offset : offset + chunk] = src[offset : offset + chunk]
        view.release()
        mapping.close()

    try:
        for label, setup in (("fresh", remove), ("recycled", recycled)):
            _rate(f"alt {label} pwritev", BIG, pwrite, setup, reps)
            _rate(f"alt {label} ftruncate+pwritev", BIG, lambda: pwrite("ftruncate"), setup, reps)
            _rate(f"alt {label} fallocate+pwritev", BIG, lambda: pwrite("fallocate"), setup, reps)
            _rate(f"alt {label} mmap copy", BIG, lambda: mmap_copy(False), setup, reps)
            _rate(f"alt {label} mmap POPULATE copy", BIG, lambda: mmap_copy(True), setup, reps)
            _rate(
                f"alt {label} mmap WILLNEED copy", BIG,
                lambda: mmap_copy(False, mmap.MADV_WILLNEED), setup, reps,
            )
        source = ctypes.create_string_buffer(bytes(src), BIG)
        target = ctypes.create_string_buffer(BIG)
        ctypes.memmove(target, source, BIG)  # touch every page first

        def memcpy() -> None:
            # glibc's memcpy in 2 MB pieces: whole-buffer calls take a ~1 GB/s path in this VM.
            chunk = 2 * 2**20
            for offset in range(0, BIG, chunk):
                ctypes.memmove(ctypes.addressof(target) + offset,
                               ctypes.addressof(source) + offset, chunk)

        _rate("alt memcpy (warm, 2 MB chunks)", BIG, memcpy, None, reps)
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=10)
    parser.add_argument("--alternatives", action="store_true")
    parser.add_argument(
        "--huge-pages", action="store_true", help="mount the store on a huge-page tmpfs (root)"
    )
    args = parser.parse_args()
    print(f"load average {os.getloadavg()[0]:.2f} on {os.cpu_count()} cores", flush=True)
    store_rows(args.reps, args.huge_pages)
    if args.alternatives:
        alternatives(args.reps)


if __name__ == "__main__":
    main()
