"""How long a SIGKILLed GCS is away, and how long a driver waits for it.

    python bench/gcs_restart_benchmark.py [--rounds 5] [--actors 20] [--kv-keys 1000]

A one-node cluster (`rayops.testing.cluster.Cluster`: real supervisor, GCS, raylet, workers)
with some state in the GCS's store (actors, KV keys); a driver thread makes a GCS call (KV
put + get) in a loop. Each round SIGKILLs the GCS and reports:

* `gcs_restart_s`: SIGKILL to the first request served by the restarted GCS (a fresh client
  polling `CheckAlive` every 10 ms), its supervisor's restart and the replay of the store
  included;
* `driver_pause_s`: the driver's longest wait for a GCS call across the kill;
* `store_bytes`: the store's size (database + WAL) after the round.

Prints figures; never asserts on them.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import os
import signal
import statistics
import sys
import tempfile
import threading
import time

import rayops
from rayops.gcs.client import GcsClient
from rayops.testing.cluster import Cluster
from rayops.testing.waiting import process_alive, wait_for


def _serving(address: str, token: str) -> bool:
    try:
        with GcsClient(address, token, timeout=0.5) as gcs:
            gcs.check_alive()
        return True
    except Exception:
        return False


@rayops.remote(num_cpus=0)
class Holder:
    def ping(self) -> int:
        return 1


def _gone(pid: int) -> bool:
    return not process_alive(pid)


def _restarted(cluster: Cluster, old_pid: int) -> bool:
    return cluster.gcs_pid() != old_pid and _serving(cluster.address, cluster.token)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--actors", type=int, default=20)
    p.add_argument("--kv-keys", type=int, default=1000)
    args = p.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="gcs-restart-bench-") as base:
        cluster = Cluster(base, head_cpus=2, object_store_memory=128 * 2**20)
        try:
            cluster.connect()
            return _run(cluster, args)
        finally:
            rayops.shutdown()
            cluster.shutdown()


def _run(cluster: Cluster, args: argparse.Namespace) -> int:
    actors = [Holder.remote() for _ in range(args.actors)]  # type: ignore[attr-defined]
    rayops.get([a.ping.remote() for a in actors], timeout=120)
    gcs = GcsClient(cluster.address, cluster.token)
    for i in range(args.kv_keys):
        gcs.kv_put(f"key{i}".encode(), b"x" * 1000, namespace="bench")
    stop = threading.Event()
    done: list[float] = []

    def driver() -> None:
        i = 0
        while not stop.is_set():
            gcs.kv_put(b"loop", str(i).encode(), namespace="bench")
            gcs.kv_get(b"loop", namespace="bench")
            done.append(time.monotonic())
            i += 1

    thread = threading.Thread(target=driver, daemon=True)
    thread.start()
    store = os.path.join(cluster.head.started.record.session_dir, "gcs_store.sqlite")
    restarts, pauses = [], []
    for r in range(args.rounds):
        time.sleep(1.0)
        pid = cluster.gcs_pid()
        killed = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for("old GCS gone", functools.partial(_gone, pid), timeout=10)
        wait_for(
            "restarted GCS serving",
            functools.partial(_restarted, cluster, pid),
            timeout=60,
            interval=0.01,
        )
        restart = time.monotonic() - killed
        time.sleep(1.0)
        window = [killed] + [t for t in list(done) if t >= killed]
        pause = max(b - a for a, b in itertools.pairwise(window))
        size = sum(os.path.getsize(store + s) for s in ("", "-wal") if os.path.exists(store + s))
        alive = rayops.get([a.ping.remote() for a in actors], timeout=60)
        restarts.append(restart)
        pauses.append(pause)
        print(
            f"round {r + 1}: gcs_restart_s {restart:.3f}  driver_pause_s {pause:.3f}  "
            f"store_bytes {size}  actors answering {sum(alive)}/{len(actors)}",
            flush=True,
        )
    stop.set()
    thread.join(timeout=60)
    gcs.close()
    print(
        f"gcs_restart_s  median {statistics.median(restarts):.3f}  max {max(restarts):.3f}\n"
        f"driver_pause_s median {statistics.median(pauses):.3f}  max {max(pauses):.3f}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
