"""Spill and restore throughput, one script for both runtimes, next to the disk's own rate.

Public Ray Core API only (``import rayops as ray`` or ``import ray``), so the same workload
measures rayops and Ray. One run:

    disk_write_gbps   write() of TOTAL bytes from memory into a file beside the spill files
                      (the filesystem of the temp dir; buffered, as spilling is), then unlink
    disk_read_gbps    read() of that file back into a reused buffer (from the page cache when
                      the machine has room: so are restores)
    spill_gbps        put() of TOTAL = 4x object_store_memory in OBJECT-byte arrays; the bytes
                      that had to go to disk (TOTAL - capacity) over the wall time of all puts
    restore_gbps      get() of the objects that were spilled, oldest first, reading one byte of
                      each (which needs the object in memory); their bytes over the wall time
    put_256k_after_fill_ms   put() of 256 KiB arrays, one after another, right after the store
                      was filled past capacity with OBJECT-byte arrays (so the small puts need
                      room that spilling makes): p50, p99 and max latency over all reps
    put_256k_concurrent_ms   put() of 256 KiB arrays every 2 ms while another thread puts 3x
                      the capacity in OBJECT-byte arrays (2x capacity kept live): the same

The store's shared memory staying within its capacity is asserted by
tests/integration/test_spill_honest.py, not here. Prints figures, never fails.

    .venv/bin/python bench/spill_benchmark.py [--runtime rayops|ray] [--store-mb 256]
                                              [--object-mb 64] [--reps 3] [--temp-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import threading
import time
from typing import Any

import numpy as np

MiB = 2**20


def disk_rates(directory: str, total: int, chunk: int) -> tuple[float, float]:
    """(write, read) GB/s of a `total`-byte file in `directory`, `chunk` bytes per call."""
    buf = np.random.default_rng(0).integers(0, 255, size=chunk, dtype=np.uint8)
    path = os.path.join(directory, f"disk-rate-{os.getpid()}")
    t0 = time.perf_counter()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(total // chunk):
            os.write(fd, buf.data)
    finally:
        os.close(fd)
    write_s = time.perf_counter() - t0
    out = bytearray(chunk)
    t0 = time.perf_counter()
    fd = os.open(path, os.O_RDONLY)
    try:
        while os.readv(fd, [out]):
            pass
    finally:
        os.close(fd)
    read_s = time.perf_counter() - t0
    os.unlink(path)
    return total / write_s / 1e9, total / read_s / 1e9


def spill_and_restore(ray: Any, capacity: int, object_bytes: int) -> tuple[float, float]:
    """(spill, restore) GB/s of one round: put 4x capacity, get back what was spilled."""
    count = 4 * capacity // object_bytes
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 255, size=object_bytes, dtype=np.uint8) for _ in range(2)]
    t0 = time.perf_counter()
    refs = [ray.put(arrays[i % 2]) for i in range(count)]
    spill_s = time.perf_counter() - t0
    spilled = count * object_bytes - capacity
    n_restore = spilled // object_bytes
    t0 = time.perf_counter()
    for i, ref in enumerate(refs[:n_restore]):
        value = ray.get(ref)
        assert int(value[0]) == int(arrays[i % 2][0])
        del value
    restore_s = time.perf_counter() - t0
    del refs
    return spilled / spill_s / 1e9, n_restore * object_bytes / restore_s / 1e9


SMALL = 256 * 1024


def put_latencies(ray: Any, capacity: int, object_bytes: int) -> tuple[list[float], list[float]]:
    """Seconds per 256 KiB put: (after filling the store, while another thread fills it)."""
    rng = np.random.default_rng(2)
    arrays = [rng.integers(0, 255, size=object_bytes, dtype=np.uint8) for _ in range(2)]
    small = np.ones(SMALL, dtype=np.uint8)
    after: list[float] = []
    big = [ray.put(arrays[i % 2]) for i in range(capacity // object_bytes)]
    refs = []
    for _ in range(capacity // 16 // SMALL):  # a sixteenth of the store: needs spilling
        t0 = time.perf_counter()
        refs.append(ray.put(small))
        after.append(time.perf_counter() - t0)
    del big, refs
    concurrent: list[float] = []
    done = threading.Event()

    def fill() -> None:
        live = []
        try:
            for i in range(3 * capacity // object_bytes):
                live.append(ray.put(arrays[i % 2]))
                if len(live) > 2 * capacity // object_bytes:
                    live.pop(0)
        finally:
            done.set()

    filler = threading.Thread(target=fill)
    filler.start()
    kept: list[Any] = []
    while not done.is_set():
        t0 = time.perf_counter()
        kept.append(ray.put(small))
        concurrent.append(time.perf_counter() - t0)
        del kept[:-16]
        time.sleep(0.002)
    filler.join()
    return after, concurrent


def _ms_row(name: str, seconds: list[float]) -> str:
    ordered = sorted(seconds)
    p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
    return (
        f"{name:24s} p50 {statistics.median(ordered) * 1e3:5.1f}  p99 {p99 * 1e3:6.1f}  "
        f"max {ordered[-1] * 1e3:6.1f} ms  ({len(ordered)} puts)"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runtime", choices=("rayops", "ray"), default="rayops")
    p.add_argument("--store-mb", type=int, default=256)
    p.add_argument("--object-mb", type=int, default=32)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--temp-dir", default=None, help="session root (spill files go under it)")
    args = p.parse_args()
    if args.runtime == "ray":
        import ray
    else:
        import rayops as ray  # type: ignore[no-redef]
    capacity, object_bytes = args.store_mb * MiB, args.object_mb * MiB
    temp_dir = args.temp_dir or (
        tempfile.gettempdir() + ("/ray" if args.runtime == "ray" else "/rayops")
    )
    os.makedirs(temp_dir, exist_ok=True)
    kwargs: dict[str, Any] = {"num_cpus": 1, "object_store_memory": capacity}
    if args.runtime == "rayops":
        kwargs["_temp_dir"] = temp_dir
    ray.init(**kwargs)
    rows: dict[str, list[float]] = {"spill_gbps": [], "restore_gbps": []}
    disk: dict[str, list[float]] = {"disk_write_gbps": [], "disk_read_gbps": []}
    after_fill: list[float] = []
    concurrent: list[float] = []
    try:
        for _ in range(args.reps):
            w, r = disk_rates(temp_dir, 4 * capacity, object_bytes)
            disk["disk_write_gbps"].append(w)
            disk["disk_read_gbps"].append(r)
            s, rs = spill_and_restore(ray, capacity, object_bytes)
            rows["spill_gbps"].append(s)
            rows["restore_gbps"].append(rs)
            a, c = put_latencies(ray, capacity, object_bytes)
            after_fill += a
            concurrent += c
    finally:
        ray.shutdown()
    print(
        f"# runtime {args.runtime}, store {args.store_mb} MiB, objects {args.object_mb} MiB, "
        f"{args.reps} reps, load {os.getloadavg()[0]:.1f}, spill fs of {temp_dir}"
    )
    for name, values in {**disk, **rows}.items():
        print(
            f"{name:18s} {statistics.median(values):6.2f} GB/s  "
            f"(best {max(values):.2f}, all {' '.join(f'{v:.2f}' for v in values)})"
        )
    limit_w = statistics.median(disk["disk_write_gbps"])
    limit_r = statistics.median(disk["disk_read_gbps"])
    print(f"spill/disk_write   {statistics.median(rows['spill_gbps']) / limit_w:6.2f}x")
    print(f"restore/disk_read  {statistics.median(rows['restore_gbps']) / limit_r:6.2f}x")
    print(_ms_row("put_256k_after_fill_ms", after_fill))
    print(_ms_row("put_256k_concurrent_ms", concurrent))


if __name__ == "__main__":
    main()
