"""The state API's figures: ``rayops list tasks`` end to end with 10,000 finished tasks.

    python bench/state_benchmark.py [--tasks 10000] [--runs 5]

Starts a one-node cluster, runs ``--tasks`` tasks to completion, waits until the GCS's
task-event store holds them all, then times, as separate CLI processes (start-up included,
the way a user runs them): ``rayops list tasks`` (Ray's default limit, 100 rows),
``rayops list tasks --limit 10000 --format json`` (every row) and ``rayops summary tasks``,
plus the raw HTTP request of the full list. Prints one line per row (median, min, max in
seconds); never fails on a figure.

    python bench/state_benchmark.py --cpu [--tasks 20000]

instead measures what task events cost: CPU per operation (``--tasks`` tasks in batches of
1,000, then a quarter as many sync actor calls), summed over the driver and every process
of the node and shown per process. Run it with ``RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS=0``
too, alternately: the difference is the recording, forwarding and storing.
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


def cpu_per_op(n_tasks: int) -> None:
    import psutil

    import rayops

    rayops.init(num_cpus=2, include_dashboard=False)
    try:

        @rayops.remote
        def noop() -> int:
            return 1

        @rayops.remote
        class Actor:
            def m(self) -> int:
                return 1

        actor = Actor.remote()  # type: ignore[attr-defined]
        rayops.get([noop.remote() for _ in range(1000)] + [actor.m.remote()])
        time.sleep(1.5)  # past a report: warm-up events are sent
        me = psutil.Process()
        procs = [me, *me.children(recursive=True)]

        def cpu() -> dict[int, tuple[str, float]]:
            out = {}
            for p in procs:
                try:
                    t = p.cpu_times()
                    cmd = p.cmdline()
                    name = "driver" if p is me else (cmd[2] if len(cmd) > 2 else p.name())
                    out[p.pid] = (name.rsplit(".", 1)[-1], t.user + t.system)
                except psutil.Error:
                    pass
            return out

        calls = n_tasks // 4
        before = cpu()
        for _ in range(n_tasks // 1000):
            rayops.get([noop.remote() for _ in range(1000)])
        for _ in range(calls):
            rayops.get(actor.m.remote())
        time.sleep(1.5)  # the last batches reach the GCS
        after = cpu()
        ops = n_tasks // 1000 * 1000 + calls
        per: dict[str, float] = {}
        for pid, (name, t) in after.items():
            if pid in before:
                per[name] = per.get(name, 0.0) + (t - before[pid][1]) / ops * 1e6
        shown = ", ".join(f"{k} {v:.1f}" for k, v in sorted(per.items()))
        events = os.environ.get("RAYOPS_TASK_EVENTS_REPORT_INTERVAL_MS", "1000")
        print(f"task events interval {events} ms: {sum(per.values()):.1f} us CPU per op ({shown})")
    finally:
        rayops.shutdown()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--tasks", type=int, default=None)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--cpu", action="store_true", help="CPU per operation instead")
    args = p.parse_args()
    if args.cpu:
        cpu_per_op(args.tasks or 20_000)
        return 0
    args.tasks = args.tasks or 10_000

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
