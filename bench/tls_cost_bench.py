"""What TLS costs the hot paths, in CPU time per operation as well as in rate.

    python bench/tls_cost_bench.py [--rounds 3] [--ops 20000]

For each of alternating rounds without and with TLS (``rayops.init()`` with the
environment of ``rayops.testing.tls_files``), and with local sockets off so every framed
byte crosses TCP (and so TLS, as between hosts), it runs ``single_client_tasks_async``
(batches of 1,000 no-op tasks) and ``1_1_actor_calls_async`` (batches of 1,000 calls to
one actor) and prints, per row: the rate (wall clock) and the CPU time the driver and every
process it started spent per operation (user + system, from /proc via psutil). On a shared
machine the rate swings with other people's load; CPU time per operation hardly does, so it
is the figure to compare. Prints figures; never fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from typing import Any

import psutil

BATCH = 1000


def tree_cpu_s() -> float:
    me = psutil.Process()
    total = 0.0
    for p in [me, *me.children(recursive=True)]:
        try:
            t = p.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system
    return total


def measure(run_batch: Callable[[], object], ops: int) -> tuple[float, float]:
    """(ops per second, CPU microseconds per op) over ``ops`` operations."""
    run_batch()  # warm-up
    batches = max(1, ops // BATCH)
    cpu0, t0 = tree_cpu_s(), time.perf_counter()
    for _ in range(batches):
        run_batch()
    wall, cpu = time.perf_counter() - t0, tree_cpu_s() - cpu0
    n = batches * BATCH
    return n / wall, cpu / n * 1e6


def one_round(on: bool, files: Any, ops: int) -> dict[str, tuple[float, float]]:
    import rayops
    from rayops.testing.tls_files import tls_environment

    with tls_environment(files if on else None):
        rayops.init(num_cpus=2, include_dashboard=False)
        try:

            @rayops.remote
            def small() -> bytes:
                return b"ok"

            class _Actor:
                def small(self) -> bytes:
                    return b"ok"

            a: Any = rayops.remote(_Actor).remote()
            rayops.get(a.small.remote())
            out = {
                "single_client_tasks_async": measure(
                    lambda: rayops.get([small.remote() for _ in range(BATCH)]), ops
                ),
                "1_1_actor_calls_async": measure(
                    lambda: rayops.get([a.small.remote() for _ in range(BATCH)]), ops
                ),
            }
        finally:
            rayops.shutdown()
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--ops", type=int, default=20000)
    args = p.parse_args()
    os.environ.setdefault("RAYOPS_FRAMED_LOCAL_SOCKETS", "0")
    from rayops.testing.tls_files import loopback_certs

    results: dict[tuple[str, bool], list[tuple[float, float]]] = {}
    print(
        f"# local sockets={os.environ['RAYOPS_FRAMED_LOCAL_SOCKETS']}  "
        f"loadavg={os.getloadavg()[0]:.2f}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as certs:
        files = loopback_certs(certs)
        for _ in range(args.rounds):
            for on in (False, True):
                for name, (rate, cpu) in one_round(on, files, args.ops).items():
                    results.setdefault((name, on), []).append((rate, cpu))
                    label = name + ("+tls" if on else "")
                    print(f"{label:<32} {rate:>10.0f} ops/s  {cpu:>8.1f} us CPU/op", flush=True)
    print("# medians: without -> with TLS", flush=True)
    for name in ("single_client_tasks_async", "1_1_actor_calls_async"):
        off, on_ = results[(name, False)], results[(name, True)]
        r0, r1 = statistics.median(r for r, _ in off), statistics.median(r for r, _ in on_)
        c0, c1 = statistics.median(c for _, c in off), statistics.median(c for _, c in on_)
        print(
            f"{name:<32} rate {r0:>8.0f} -> {r1:>8.0f} ops/s ({(r1 / r0 - 1) * 100:+.1f}%)  "
            f"CPU {c0:>6.1f} -> {c1:>6.1f} us/op ({(c1 / c0 - 1) * 100:+.1f}%)",
            flush=True,
        )


if __name__ == "__main__":
    main()
