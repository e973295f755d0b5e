"""How fast the node agent's /metrics answers with many actors alive, and the agent's RSS.

    python bench/agent_scrape_bench.py [--actors 1000] [--scrapes 50]

Starts an embedded cluster, creates N actors (num_cpus=0) and waits until they are ALIVE,
then times authenticated GET /metrics on the head's agent (after one sampling round), and
prints the median / p95 / max latency, the number of series, and the agents' RSS.
"""

from __future__ import annotations

import argparse
import statistics
import time
import urllib.request
from typing import Any

import psutil


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--actors", type=int, default=1000)
    p.add_argument("--scrapes", type=int, default=50)
    args = p.parse_args()
    import rayops
    from rayops import api

    rayops.init(num_cpus=2, object_store_memory=256 * 2**20)
    assert api._started is not None
    rec, token = api._started.record, api._started.token
    from rayops.gcs.client import GcsClient

    with GcsClient(rec.gcs_address, token) as gcs:
        port = gcs.get_all_nodes()[0].metrics_export_port

    class Idle:
        def ping(self) -> int:
            return 1

    IdleActor: Any = rayops.remote(num_cpus=0)(Idle)

    t0 = time.monotonic()
    actors: list[Any] = []
    while len(actors) < args.actors:
        # In batches, so the raylet keeps answering the GCS's health checks while it forks.
        batch = [IdleActor.remote() for _ in range(min(50, args.actors - len(actors)))]
        rayops.get([a.ping.remote() for a in batch])
        actors += batch
    print(f"{len(actors)} actors alive in {time.monotonic() - t0:.1f} s")
    time.sleep(6)  # a few sampling rounds of the agent
    url = f"http://{rec.node_ip}:{port}/metrics"
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})
    times = []
    body = b""
    for _ in range(args.scrapes):
        t = time.perf_counter()
        with urllib.request.urlopen(req, timeout=10) as resp:
            body = resp.read()
        times.append((time.perf_counter() - t) * 1000)
        time.sleep(0.1)
    times.sort()
    series = sum(1 for line in body.decode().splitlines() if line and not line.startswith("#"))
    alive = [
        line
        for line in body.decode().splitlines()
        if line.startswith("ray_actors{") and 'State="ALIVE"' in line
    ]
    print(
        f"/metrics: median {statistics.median(times):.1f} ms, p95 "
        f"{times[int(len(times) * 0.95) - 1]:.1f} ms, max {times[-1]:.1f} ms; "
        f"{series} series, {len(body)} bytes"
    )
    print("ALIVE actors:", alive)
    raylet = psutil.Process(rec.pids["raylet"])
    for c in raylet.children():
        if "rayops.agent" in " ".join(c.cmdline()):
            m = c.memory_full_info()
            print(f"agent pid {c.pid}: RSS {m.rss / 2**20:.1f} MB, USS {m.uss / 2**20:.1f} MB")
    rayops.shutdown()


if __name__ == "__main__":
    main()
