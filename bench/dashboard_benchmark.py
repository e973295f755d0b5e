"""The dashboard page's first load with 1,000 actors, measured in headless Chromium.

Starts a one-node cluster in a temp dir with a custom resource ``slot: --alive`` and creates
``--actors`` actors: ``--dead`` that run, answer and are killed (DEAD rows), ``--alive`` that
hold the slots, and the rest needing a slot too, so they wait PENDING_CREATION in the GCS (rows
of the actors table without a worker process each, so 1,000 actors fit on one machine); then
loads the page ``--loads`` times with the browser's cache disabled and reads, in the page,
``performance.now()`` when the actors panel was first drawn (navigation start to the actors
panel rendered; `document.body.dataset.actorsRenderedMs`). Prints the figures, the API
server's RSS before the actors, after them and after the loads, and the size of the actors
answer. Never fails.

    python bench/dashboard_benchmark.py [--actors 1000] [--alive 20] [--dead 80] [--loads 5]
        [--screenshot PATH]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import urllib.request

import psutil

from rayops.testing.browser import Browser, find_chromium
from rayops.testing.cluster import Cluster


def _rss_mib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 2**20


def _make_actors(total: int, alive: int, dead: int) -> None:
    import rayops

    @rayops.remote(num_cpus=0, resources={"slot": 1})
    class Slotted:
        def ping(self) -> int:
            return 1

    @rayops.remote(num_cpus=0)
    class Short:
        def ping(self) -> int:
            return 1

    # `dead` actors run, answer once and are killed (DEAD rows); `alive` hold the slots; the
    # rest wait for a slot (PENDING_CREATION rows).
    doomed = [Short.remote() for _ in range(dead)]  # type: ignore[attr-defined]
    rayops.get([a.ping.remote() for a in doomed], timeout=300)
    for a in doomed:
        rayops.kill(a)
    running = [Slotted.remote() for _ in range(alive)]  # type: ignore[attr-defined]
    rayops.get([a.ping.remote() for a in running], timeout=300)
    waiting = [Slotted.remote() for _ in range(total - alive - dead)]  # type: ignore[attr-defined]
    globals()["_keep"] = (running, waiting)  # handles alive until the bench ends


def _wait_actors(url: str, token: str, total: int, timeout: float = 120.0) -> bytes:
    deadline = time.monotonic() + timeout
    while True:
        req = urllib.request.Request(
            url + "/api/dashboard/actors", headers={"Authorization": f"Bearer {token}"}
        )
        with urllib.request.urlopen(req) as r:
            body = r.read()
        if body.count(b'"actor_id"') >= total or time.monotonic() > deadline:
            return body
        time.sleep(0.2)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--actors", type=int, default=1000)
    p.add_argument("--alive", type=int, default=20)
    p.add_argument("--dead", type=int, default=80)
    p.add_argument("--loads", type=int, default=5)
    p.add_argument("--screenshot", help="save a PNG of the page's first screen here")
    args = p.parse_args()
    if find_chromium() is None:
        print("no Chromium on PATH: bash scripts/bootstrap-browser.sh installs it")
        return 0
    import rayops

    base = tempfile.mkdtemp(prefix="rayops-dash-bench-")
    cluster = Cluster(base, head_cpus=2, head_resources={"slot": args.alive})
    try:
        url = "http://" + cluster.head.started.record.dashboard_url
        server_pid = cluster.head.started.procs["dashboard"].pid
        cluster.connect()
        time.sleep(2)
        rss_idle = _rss_mib(server_pid)
        t0 = time.perf_counter()
        _make_actors(args.actors, args.alive, args.dead)
        body = _wait_actors(url, cluster.token, args.actors)
        print(
            f"{args.actors} actors ({args.alive} alive, {args.dead} dead, the rest pending) "
            f"in {time.perf_counter() - t0:.1f} s; /api/dashboard/actors {len(body) / 1024:.0f} KiB"
        )
        rss_actors = _rss_mib(server_pid)
        with Browser.launch() as browser:
            page = browser.new_page()
            page.send("Network.enable")
            page.send("Network.setCacheDisabled", cacheDisabled=True)
            page.navigate(f"{url}/?token={cluster.token}")  # sets the cookie
            page.wait_for("document.body.dataset.actorsRenderedMs", timeout=30)
            figures = []
            for _ in range(args.loads):
                page.navigate(url + "/")
                ms = page.wait_for("document.body.dataset.actorsRenderedMs", timeout=30)
                shown = page.evaluate("document.getElementById('actors-count').dataset.total")
                figures.append(float(ms))
                if int(shown) < args.actors:
                    print(f"  the page showed {shown} actors, expected {args.actors}")
            rows = page.evaluate("document.querySelectorAll('.vrow[data-actor-id]').length")
            if args.screenshot:
                page.screenshot(args.screenshot, full_page=False)
                print(f"screenshot: {args.screenshot}")
        rss_after = _rss_mib(server_pid)
        print(
            f"first load, navigation start to the actors panel drawn ({args.loads} loads, "
            f"cache off): median {statistics.median(figures):.0f} ms "
            f"(min {min(figures):.0f}, max {max(figures):.0f}); {rows} actor rows in the DOM"
        )
        print(
            f"API server RSS: {rss_idle:.0f} MiB idle, {rss_actors:.0f} MiB with "
            f"{args.actors} actors, {rss_after:.0f} MiB after the loads"
        )
    finally:
        rayops.shutdown()
        cluster.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
