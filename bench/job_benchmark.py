"""``rayops job submit -- python -c "print(1)"`` end to end, and Ray's ``ray job submit`` beside it.

Times the whole CLI process (interpreter start, submit, following the logs until the job
ends) ``--runs`` times against a head started for the purpose in a temp dir, after one
warm-up run, and prints the median and the spread; then the RSS of the head's API server
process. With ``--ray /path/to/ray`` (default: /tmp/rayvenv/bin/ray when it exists) it does
the same with Ray's CLI against a Ray head started with ``ray start --head`` in a temp dir,
stopped after (only its own processes: ``ray stop`` would stop every Ray cluster on the
machine), and reports the RSS of Ray's dashboard processes. Prints figures; never fails.

    python bench/job_benchmark.py [--runs 5] [--ray /tmp/rayvenv/bin/ray | --no-ray]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psutil

RAYOPS = str(Path(sys.executable).with_name("rayops"))
ENTRYPOINT = ["python", "-c", "print(1)"]


def _time(cmd: list[str], env: dict[str, str], runs: int) -> list[float]:
    out = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
        took = time.perf_counter() - t0
        if r.returncode != 0 or "1\n" not in r.stdout:
            print(f"  run {i} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}")
        if i:  # the first run warms the page cache
            out.append(took)
    return out


def _report(name: str, times: list[float]) -> None:
    print(
        f"{name}: median {statistics.median(times):.3f} s "
        f"(min {min(times):.3f}, max {max(times):.3f}, {len(times)} runs)"
    )


def bench_rayops(runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="rayops-jobbench-") as temp:
        env = {**os.environ, "RAYOPS_TEMP_DIR": temp}
        subprocess.run(
            [RAYOPS, "start", "--head", "--port", "0", "--temp-dir", temp],
            env=env,
            check=True,
            capture_output=True,
        )
        try:
            session = os.path.realpath(os.path.join(temp, "session_latest"))
            rec = json.loads(Path(session, "node.json").read_text())
            times = _time([RAYOPS, "job", "submit", "--", *ENTRYPOINT], env, runs)
            _report("rayops job submit -- python -c 'print(1)'", times)
            pid = rec["pids"]["dashboard"]
            rss = psutil.Process(pid).memory_info().rss / 2**20
            print(f"rayops API server (pid {pid}) RSS: {rss:.1f} MiB")
        finally:
            subprocess.run([RAYOPS, "stop", "--temp-dir", temp], env=env, capture_output=True)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _ray_tree(temp: str, gcs_port: int) -> list[psutil.Process]:
    """The Ray processes naming our temp dir or our GCS port, and their children."""
    procs: dict[int, psutil.Process] = {}
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or [])
        if temp in cmd or f":{gcs_port} " in cmd + " " or f":{gcs_port}," in cmd:
            try:
                for q in [p, *p.children(recursive=True)]:
                    procs[q.pid] = q
            except psutil.NoSuchProcess:
                pass
    return list(procs.values())


def _stop_ray_started_in(temp: str, gcs_port: int) -> None:
    """SIGTERM (then SIGKILL) only our Ray cluster's processes: ``ray stop`` would stop every
    Ray cluster on the machine."""
    procs = _ray_tree(temp, gcs_port)
    for p in procs:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(procs, timeout=10)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def bench_ray(ray: str, runs: int) -> None:
    with tempfile.TemporaryDirectory(prefix="ray-jobbench-") as temp:
        dashboard_port = _free_port()
        env = {
            **os.environ,
            "PATH": os.path.dirname(ray) + os.pathsep + os.environ.get("PATH", ""),
            "RAY_ADDRESS": f"http://127.0.0.1:{dashboard_port}",
        }
        if os.path.exists(os.path.expanduser("~/.ray/auth_token")):
            # Ray 2.60's dashboard then checks a token; its CLI sends it only in token mode.
            env.setdefault("RAY_AUTH_MODE", "token")
        env.pop("VIRTUAL_ENV", None)
        gcs_port = _free_port()
        try:
            start = subprocess.run(
                [ray, "start", "--head", "--temp-dir", temp, "--port", str(gcs_port),
                 "--include-dashboard", "true", "--dashboard-port", str(dashboard_port),
                 "--disable-usage-stats"],
                env=env,
                capture_output=True,
                text=True,
            )  # fmt: skip
            if start.returncode != 0:
                print(f"ray start failed; skipping Ray:\n{start.stderr[-2000:]}")
                return
            times = _time([ray, "job", "submit", "--", *ENTRYPOINT], env, runs)
            _report("ray job submit -- python -c 'print(1)'", times)
            total = 0.0
            for p in _ray_tree(temp, gcs_port):
                try:
                    cmd = " ".join(p.cmdline())
                    rss = p.memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                if "dashboard" in cmd.lower() and "raylet/raylet" not in cmd:
                    total += rss
                    print(f"Ray dashboard process {p.pid} RSS: {rss:.1f} MiB ({cmd[:80]})")
            print(f"Ray dashboard processes, total RSS: {total:.1f} MiB")
        finally:
            _stop_ray_started_in(temp, gcs_port)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--ray", default="/tmp/rayvenv/bin/ray")
    p.add_argument("--no-ray", action="store_true")
    args = p.parse_args()
    bench_rayops(args.runs)
    if args.no_ray:
        return
    if not os.path.exists(args.ray):
        print(f"no Ray CLI at {args.ray}: skipping Ray's side")
        return
    bench_ray(args.ray, args.runs)


if __name__ == "__main__":
    main()
