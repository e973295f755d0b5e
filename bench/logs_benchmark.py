"""``rayops logs`` end to end: a worker node's 1 MiB log file through the head's API server
and the node's agent, and a 100-line tail of it.

Starts a 2-node loopback cluster in a temp dir, writes a 1 MiB file into the worker node's
``logs/``, then times the whole CLI process (``rayops logs cluster big.log --node-id X
--tail -1``, and ``--tail 100``) ``--runs`` times after one warm-up, printing the median and
the spread. Prints figures; never fails.

    python bench/logs_benchmark.py [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rayops.testing.cluster import Cluster

RAYOPS = str(Path(sys.executable).with_name("rayops"))
LINE = "x" * 99 + "\n"
LINES = 10_486  # ~1 MiB


def _time(cmd: list[str], env: dict[str, str], runs: int, expect: int) -> list[float]:
    out = []
    for i in range(runs + 1):
        t0 = time.perf_counter()
        r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
        took = time.perf_counter() - t0
        if r.returncode != 0 or len(r.stdout) != expect:
            print(f"  run {i} failed ({r.returncode}, {len(r.stdout)} chars): {r.stderr}")
        if i:
            out.append(took)
    return out


def _report(name: str, times: list[float]) -> None:
    print(
        f"{name}: median {statistics.median(times):.3f} s "
        f"(min {min(times):.3f}, max {max(times):.3f}, {len(times)} runs)"
    )


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--runs", type=int, default=5)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as base:
        cluster = Cluster(base, head_cpus=1)
        try:
            worker = cluster.add_node(num_cpus=1)
            logs = Path(worker.started.record.session_dir) / "logs"
            (logs / "big.log").write_text(LINE * LINES)
            url = "http://" + cluster.head.started.record.dashboard_url
            env = {**os.environ, "RAYOPS_TOKEN_FILE": cluster.token_file}
            cmd = [RAYOPS, "logs", "cluster", "big.log", "--address", url,
                   "--node-id", worker.node_id]  # fmt: skip
            time.sleep(1.5)  # the worker's agent starts a second after its raylet registers
            _report("rayops logs, 1 MiB file, whole CLI process",
                    _time([*cmd, "--tail", "-1"], env, args.runs, len(LINE) * LINES))  # fmt: skip
            _report("rayops logs, last 100 lines of it",
                    _time([*cmd, "--tail", "100"], env, args.runs, len(LINE) * 100))  # fmt: skip
        finally:
            cluster.shutdown()


if __name__ == "__main__":
    main()
