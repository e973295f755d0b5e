"""The state API's figures: ``rayops list tasks`` end to end with 10,000 finished tasks.

    python bench/state_benchmark.py [--tasks 10000] [--runs 5]

Starts a one-node cluster, runs ``--tasks`` tasks to completion, waits until the GCS's
task-event store holds them all, then times, as separate CLI processes (start-up included,
the way a user runs them): ``rayops list tasks`` (Ray's default limit, 100 rows),
``rayops list tasks --limit 10000 --format json`` (every row) and ``rayops summary tasks``,
plus the raw HTTP request of the full list. Prints one line per row (median, min, max in
seconds); never fails on a figure.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

RAYOPS = str(Path(sys.executable).with_name("rayops"))


def _timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    out = subprocess.run(cmd, env=env, capture_output=True, timeout=120)
    elapsed = time.perf_counter() - start
    if out.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {out.stderr.decode()[-500:]}")
    return elapsed


def _row(name: str, samples: list[float]) -> None:
    print(
        f"{name:<44} median {statistics.median(samples):.3f} s  "
        f"min {min(samples):.3f}  max {max(samples):.3f}  (n={len(samples)})"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--tasks", type=int, default=10_000)
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()

    import rayops
    from rayops.core_worker import state as cw_state
    from rayops.util import state

    ctx = rayops.init(num_cpus=2, dashboard_port=0)
    try:
        url = "http://" + str(ctx.dashboard_url).removeprefix("http://")
        session_dir = cw_state.require().session_dir
        env = dict(os.environ, RAYOPS_TOKEN_FILE=os.path.join(session_dir, "cluster_token"))
        os.environ["RAYOPS_TOKEN_FILE"] = env["RAYOPS_TOKEN_FILE"]

        @rayops.remote
        def noop(i: int) -> int:
            return i

        start = time.perf_counter()
        for lo in range(0, args.tasks, 1000):
            rayops.get([noop.remote(i) for i in range(lo, min(lo + 1000, args.tasks))])
        print(f"{args.tasks} tasks ran in {time.perf_counter() - start:.2f} s")
        deadline = time.monotonic() + 60
        while True:
            summary = state.summarize_tasks(address=url)["cluster"]["summary"]
            finished = summary.get("noop", {}).get("state_counts", {}).get("FINISHED", 0)
            if finished >= args.tasks:
                break
            if time.monotonic() > deadline:
                print(f"only {finished} of {args.tasks} tasks reached the GCS within 60 s")
                break
            time.sleep(0.2)
        rows = {
            "rayops list tasks (limit 100)": [RAYOPS, "list", "tasks", "--address", url],
            "rayops list tasks --limit 10000 --format json": [
                RAYOPS,
                "list",
                "tasks",
                "--address",
                url,
                "--limit",
                "10000",
                "--format",
                "json",
            ],
            "rayops summary tasks": [RAYOPS, "summary", "tasks", "--address", url],
        }
        for name, cmd in rows.items():
            _row(name, [_timed(cmd, env) for _ in range(args.runs)])
        token = Path(env["RAYOPS_TOKEN_FILE"]).read_text().strip()
        http: list[float] = []
        for _ in range(args.runs):
            req = urllib.request.Request(
                url + "/api/v0/tasks?limit=10000", headers={"Authorization": f"Bearer {token}"}
            )
            t0 = time.perf_counter()
            with urllib.request.urlopen(req, timeout=60) as resp:
                resp.read()
            http.append(time.perf_counter() - t0)
        _row("GET /api/v0/tasks?limit=10000 (HTTP only)", http)
        _row(
            "rayops --help (CLI start-up alone)",
            [_timed([RAYOPS, "--help"], env) for _ in range(args.runs)],
        )
    finally:
        rayops.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
