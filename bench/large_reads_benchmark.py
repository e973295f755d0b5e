"""Large reads and by-value arguments against the machine's memory speed, on rayops or Ray.

Rows (each trial runs every row once, interleaved, so a noisy neighbour hits all of them
alike; the figure is the median over trials, and ``*_vs_memcpy`` is the median of the
per-trial ratio to the limit measured in the same trial)::

    fresh_memcpy_gigabytes            the limit: np.copyto of 100 MB into a new np.empty
    warm_read_100mb_gigabytes         for reference: the same read as below over a private,
                                      already-touched 100 MB array (no runtime involved)
    get_and_read_10mb_gigabytes       get() of a fresh 10 MB object put just before (the put
                                      is not timed), then reading every byte (a uint64 sum)
    get_and_read_100mb_gigabytes      the same with 100 MB
    get_and_read_100mb_minor_faults   minor page faults the driver took in that get and read
                                      (getrusage; a fresh 4 KiB-page mapping takes ~1,530)
    task_with_100mb_arg_by_value_ms   get(f.remote(array)) where f sums every byte of its
                                      100 MB argument (passed by value, not as a ref)

It uses only the public Ray Core API, so the same code measures both runtimes::

    .venv/bin/python bench/large_reads_benchmark.py [--runtime rayops|ray] [--trials 15]

Run both from a cwd outside the repository. It prints figures and never fails.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

MB = 1_000_000
ARG_BYTES = 100 * MB


def read_all(arr: np.ndarray) -> int:
    """Touch every byte (8 at a time): what a consumer of the object does at the least."""
    return int(arr.view(np.uint64).sum(dtype=np.uint64))


def _rate(nbytes: int, seconds: float) -> float:
    return nbytes / seconds / 1e9


def fresh_memcpy(src: np.ndarray) -> float:
    start = time.perf_counter()
    dst = np.empty_like(src)
    np.copyto(dst, src)
    return _rate(src.nbytes, time.perf_counter() - start)


def warm_read(src: np.ndarray) -> float:
    start = time.perf_counter()
    read_all(src)
    return _rate(src.nbytes, time.perf_counter() - start)


def _minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def get_and_read(rt: Any, src: np.ndarray, faults: list[float] | None = None) -> float:
    ref = rt.put(src)
    before = _minor_faults()
    start = time.perf_counter()
    value = rt.get(ref)
    read_all(value)
    elapsed = time.perf_counter() - start
    if faults is not None:
        faults.append(float(_minor_faults() - before))
    del value, ref
    return _rate(src.nbytes, elapsed)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runtime", choices=["rayops", "ray"], default="rayops")
    parser.add_argument("--trials", type=int, default=15)
    parser.add_argument("--num-cpus", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--json", dest="json_out", metavar="OUT")
    args = parser.parse_args(argv)
    if args.trials < 1:
        parser.error(f"--trials must be >= 1, got {args.trials}")
    rt = importlib.import_module(args.runtime)
    rt.init(num_cpus=args.num_cpus)
    try:
        rows = run(rt, args.trials)
    finally:
        rt.shutdown()
    print(
        f"# runtime={args.runtime} {getattr(rt, '__version__', '?')}  trials={args.trials}  "
        f"loadavg={os.getloadavg()[0]:.2f}"
    )
    for name, (value, unit) in rows.items():
        print(f"{name:<44} {value:>10.2f}  {unit}")
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as out:
            json.dump({"runtime": args.runtime, "rows": rows}, out, indent=1)
    return 0


def run(rt: Any, trials: int) -> dict[str, tuple[float, str]]:
    rng = np.random.default_rng(0)
    src100 = rng.integers(0, 256, 100 * MB, dtype=np.uint8)
    src10 = src100[: 10 * MB].copy()
    arg = rng.integers(0, 256, ARG_BYTES, dtype=np.uint8)

    @rt.remote
    def consume(arr: np.ndarray) -> int:
        return read_all(arr)

    def by_value() -> float:
        start = time.perf_counter()
        rt.get(consume.remote(arg))
        return time.perf_counter() - start

    faults: list[float] = []
    steps: dict[str, Callable[[], float]] = {
        "fresh_memcpy_gigabytes": lambda: fresh_memcpy(src100),
        "warm_read_100mb_gigabytes": lambda: warm_read(src100),
        "get_and_read_10mb_gigabytes": lambda: get_and_read(rt, src10),
        "get_and_read_100mb_gigabytes": lambda: get_and_read(rt, src100, faults),
        "task_with_100mb_arg_by_value_s": by_value,
    }
    for step in steps.values():  # warm-up: workers started, pools and arenas filled
        step()
        step()
    samples: dict[str, list[float]] = {name: [] for name in steps}
    for _ in range(trials):
        for name, step in steps.items():
            samples[name].append(step())
    limit = samples["fresh_memcpy_gigabytes"]
    arg_rates = [_rate(ARG_BYTES, s) for s in samples["task_with_100mb_arg_by_value_s"]]
    rows: dict[str, tuple[float, str]] = {
        "fresh_memcpy_gigabytes": (statistics.median(limit), "GB/s"),
        "warm_read_100mb_gigabytes": (
            statistics.median(samples["warm_read_100mb_gigabytes"]),
            "GB/s",
        ),
    }
    for name in ("get_and_read_10mb_gigabytes", "get_and_read_100mb_gigabytes"):
        rows[name] = (statistics.median(samples[name]), "GB/s")
        ratios = [r / m for r, m in zip(samples[name], limit, strict=True)]
        rows[name.replace("_gigabytes", "_vs_memcpy")] = (statistics.median(ratios), "x")
    rows["get_and_read_100mb_minor_faults"] = (statistics.median(faults[-trials:]), "faults")
    seconds = samples["task_with_100mb_arg_by_value_s"]
    rows["task_with_100mb_arg_by_value_ms"] = (statistics.median(seconds) * 1e3, "ms")
    rows["task_with_100mb_arg_by_value_gigabytes"] = (statistics.median(arg_rates), "GB/s")
    ratios = [r / m for r, m in zip(arg_rates, limit, strict=True)]
    rows["task_with_100mb_arg_by_value_vs_memcpy"] = (statistics.median(ratios), "x")
    return rows


if __name__ == "__main__":
    sys.exit(main())
