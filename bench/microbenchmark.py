"""Ray Core microbenchmarks that run unchanged on rayops or on Ray.

This script owns the benchmark rows named like Ray's own microbenchmark (``ray microbenchmark``)
plus two process-level rows (cold start, idle memory). It touches each runtime only through the
public Ray Core API (``init``, ``remote``, ``.remote()``, ``get``, ``put``, ``wait``,
``shutdown``), so the very same workload measures both::

    python bench/microbenchmark.py --runtime rayops
    /work/rayvenv/bin/python bench/microbenchmark.py --runtime ray

``--tls both`` runs the timed rows without and then with TLS (a CA and certificate made for
the run; rows with TLS end in ``+tls``) and prints what TLS costs per row, side by side.
On one host the framed data plane uses local sockets, which stay plaintext; run under
``RAYOPS_FRAMED_LOCAL_SOCKETS=0`` to put every framed byte over TCP, and so over TLS.

It prints one line per row (``row_name  value  unit``) and can write JSON. It never asserts on a
figure: a row that raises prints ``error`` and the run goes on. The only non-zero exits are bad
arguments (2) and a row that hangs past ``--row-timeout`` (3), after the processes this script
started have been stopped.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import os
import platform
import selectors
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import IO, Any

import numpy as np
import psutil

SMALL_BATCH = 1000
# Ray's row uses 4 clients x 10,000 tasks; 1,000 each keeps one call near a second on 2 cores
# while keeping the same shape (several clients, each submitting a batch and getting it).
MULTI_CLIENTS = 4
MULTI_CLIENT_TASKS = 1000
LARGE_BYTES = 100_000_000  # 100 MB: one put or get moves exactly 0.1 GB
LARGE_ARG_BYTES = 10_000_000
LARGE_ARG_BATCH = 100
# Larger batches of the single_client_tasks_async shape: throughput must hold as work grows.
BATCH_10K = 10_000
BATCH_100K = 100_000


@dataclass(frozen=True)
class Timing:
    """How long each timed row runs: a warm-up, then `trials` windows of `trial_s` seconds."""

    warmup_s: float
    trial_s: float
    trials: int
    cold_start_runs: int
    settle_s: float
    settle_deadline_s: float
    # single_client_tasks_async_100k: whole batches, no warm-up (one batch is ~10 s at target)
    batch_100k_trials: int = 2


FULL = Timing(
    warmup_s=1.0, trial_s=2.0, trials=3, cold_start_runs=3, settle_s=2.0, settle_deadline_s=20.0
)
QUICK = Timing(
    warmup_s=0.1,
    trial_s=0.3,
    trials=2,
    cold_start_runs=1,
    settle_s=0.5,
    settle_deadline_s=5.0,
    batch_100k_trials=1,
)


@dataclass
class RowResult:
    """One printed line: a figure with its unit, or the error that stopped the row."""

    name: str
    value: float | None
    unit: str
    stddev: float | None = None
    trials: list[float] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None

    def line(self) -> str:
        if self.error is not None:
            return f"{self.name:<36} {'error':>12}  {self.error}"
        value = float("nan") if self.value is None else self.value
        text = f"{self.name:<36} {value:>12.2f}  {self.unit}"
        if self.stddev is not None:
            text += f"  +- {self.stddev:.2f}"
        return text


# --------------------------------------------------------------------------- timing


def measure_rate(
    fn: Callable[[], object], multiplier: float, timing: Timing
) -> tuple[float, float, list[float]]:
    """Call `fn` repeatedly; return mean and stddev of `multiplier` * calls / second per trial.

    Like Ray's helper: a warm-up window first, then fixed-duration windows. Every window runs
    `fn` at least once, so a slow operation still yields a figure.
    """
    _run_for(fn, timing.warmup_s)
    rates = []
    for _ in range(timing.trials):
        calls, elapsed = _run_for(fn, timing.trial_s)
        rates.append(multiplier * calls / elapsed)
    sd = statistics.pstdev(rates) if len(rates) > 1 else 0.0
    return statistics.fmean(rates), sd, rates


def _run_for(fn: Callable[[], object], seconds: float) -> tuple[int, float]:
    start = time.perf_counter()
    calls = 0
    while True:
        fn()
        calls += 1
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls, elapsed


# --------------------------------------------------------------------------- timed rows


class Workload:
    """The remote functions and data every timed row uses, built against one runtime."""

    def __init__(self, rt: ModuleType) -> None:
        self.rt = rt

        @rt.remote
        def small_value() -> bytes:
            return b"ok"

        # num_cpus=0 as Ray's client actors: clients block in get, so they must not hold the
        # CPUs their own tasks need.
        @rt.remote(num_cpus=0)
        def client_batch(n: int) -> int:
            rt.get([small_value.remote() for _ in range(n)])
            return n

        @rt.remote
        def consume(arr: np.ndarray) -> int:
            return int(arr.nbytes)

        self.small_value = small_value
        self.client_batch = client_batch
        self.consume = consume
        rng = np.random.default_rng(0)
        self.large = rng.integers(0, 256, LARGE_BYTES, dtype=np.uint8)
        self.large_arg = rng.integers(0, 256, LARGE_ARG_BYTES, dtype=np.uint8)


TimedSetup = Callable[[Workload], tuple[Callable[[], object], float]]


def _tasks_sync(wl: Workload) -> tuple[Callable[[], object], float]:
    rt, small_value = wl.rt, wl.small_value
    return lambda: rt.get(small_value.remote()), 1.0


def _tasks_sync_runtime_env(wl: Workload) -> tuple[Callable[[], object], float]:
    """single_client_tasks_sync in a runtime_env with env_vars (warm: its workers exist after
    the first call), to show what an env costs a task (not a row of Ray's own)."""
    rt = wl.rt
    in_env = wl.small_value.options(runtime_env={"env_vars": {"RAYOPS_BENCH_ENV": "1"}})
    return lambda: rt.get(in_env.remote()), 1.0


def _tasks_batch(wl: Workload) -> Callable[[], object]:
    rt, small_value = wl.rt, wl.small_value
    return lambda: rt.get([small_value.remote() for _ in range(SMALL_BATCH)])


def _tasks_async(wl: Workload) -> tuple[Callable[[], object], float]:
    return _tasks_batch(wl), float(SMALL_BATCH)


def _tasks_async_spread(wl: Workload) -> tuple[Callable[[], object], float]:
    """single_client_tasks_async with scheduling_strategy="SPREAD" (not a row of Ray's own)."""
    rt = wl.rt
    spread = wl.small_value.options(scheduling_strategy="SPREAD")
    return lambda: rt.get([spread.remote() for _ in range(SMALL_BATCH)]), float(SMALL_BATCH)


def _tasks_async_10k(wl: Workload) -> tuple[Callable[[], object], float]:
    rt, small_value = wl.rt, wl.small_value
    return lambda: rt.get([small_value.remote() for _ in range(BATCH_10K)]), float(BATCH_10K)


def _tasks_and_get_batch(wl: Workload) -> tuple[Callable[[], object], float]:
    return _tasks_batch(wl), 1.0


def _multi_client(wl: Workload) -> tuple[Callable[[], object], float]:
    rt, client_batch = wl.rt, wl.client_batch

    def run() -> object:
        return rt.get([client_batch.remote(MULTI_CLIENT_TASKS) for _ in range(MULTI_CLIENTS)])

    return run, float(MULTI_CLIENTS * MULTI_CLIENT_TASKS)


def _put_calls(wl: Workload) -> tuple[Callable[[], object], float]:
    rt = wl.rt
    return lambda: rt.put(0), 1.0


def _get_calls(wl: Workload) -> tuple[Callable[[], object], float]:
    rt = wl.rt
    ref = rt.put(0)
    return lambda: rt.get(ref), 1.0


def _put_gigabytes(wl: Workload) -> tuple[Callable[[], object], float]:
    rt, large = wl.rt, wl.large
    return lambda: rt.put(large), LARGE_BYTES / 1e9


def _get_gigabytes(wl: Workload) -> tuple[Callable[[], object], float]:
    rt = wl.rt
    ref = rt.put(wl.large)
    return lambda: rt.get(ref), LARGE_BYTES / 1e9


def _wait_1k_refs(wl: Workload) -> tuple[Callable[[], object], float]:
    rt, small_value = wl.rt, wl.small_value

    def run() -> object:
        not_ready = [small_value.remote() for _ in range(SMALL_BATCH)]
        for _ in range(SMALL_BATCH):
            _ready, not_ready = rt.wait(not_ready)
        return not_ready

    return run, 1.0


def _large_arg(wl: Workload) -> tuple[Callable[[], object], float]:
    rt, consume = wl.rt, wl.consume
    ref = rt.put(wl.large_arg)
    return lambda: rt.get([consume.remote(ref) for _ in range(LARGE_ARG_BATCH)]), float(
        LARGE_ARG_BATCH
    )


LARGE_RETURN_BYTES = 256 * 1024  # over the inline limit: the result goes to the store
LARGE_RETURN_BATCH = 200


def _large_return(wl: Workload) -> tuple[Callable[[], object], float]:
    """Tasks whose result lives in the node's store: the path where the owner keeps lineage
    (not a row of Ray's own)."""
    rt = wl.rt

    @rt.remote
    def produce() -> np.ndarray:
        return np.zeros(LARGE_RETURN_BYTES, dtype=np.uint8)

    def run() -> object:
        refs = [produce.remote() for _ in range(LARGE_RETURN_BATCH)]
        return rt.wait(refs, num_returns=len(refs))

    return run, float(LARGE_RETURN_BATCH)


# ------------------------------------------------------------------------- actor rows

N_ACTORS = 2  # "n" in the n:n rows: one per core, as Ray's rows use the CPU count
ACTOR_CREATION_BATCH = 100


class ActorWorkload:
    """Actor classes for the actor rows (made on first use, so task-only runs skip them)."""

    def __init__(self, rt: ModuleType) -> None:
        @rt.remote
        class Actor:
            def small_value(self) -> bytes:
                return b"ok"

            def small_value_arg(self, x: object) -> bytes:
                return b"ok"

        @rt.remote
        class AsyncActor:
            async def small_value(self) -> bytes:
                return b"ok"

        @rt.remote(num_cpus=0)
        class Client:
            def __init__(self, server: object) -> None:
                self.server = server

            def small_value_batch(self, n: int) -> int:
                rt.get([self.server.small_value.remote() for _ in range(n)])  # type: ignore[attr-defined]
                return n

            def small_value_batch_arg(self, n: int) -> int:
                x = rt.put(0)
                rt.get([self.server.small_value_arg.remote(x) for _ in range(n)])  # type: ignore[attr-defined]
                return n

        # Typed Any: @rt.remote turns each class into an actor class.
        self.Actor: Any = Actor
        self.AsyncActor: Any = AsyncActor
        self.Client: Any = Client


def _actors(wl: Workload) -> ActorWorkload:
    aw: ActorWorkload | None = getattr(wl, "actor_workload", None)
    if aw is None:
        aw = ActorWorkload(wl.rt)
        wl.actor_workload = aw  # type: ignore[attr-defined]
    return aw


def _actor_sync(wl: Workload) -> tuple[Callable[[], object], float]:
    a = _actors(wl).Actor.remote()
    return lambda: wl.rt.get(a.small_value.remote()), 1.0


def _actor_async(wl: Workload) -> tuple[Callable[[], object], float]:
    a = _actors(wl).Actor.remote()
    return lambda: wl.rt.get([a.small_value.remote() for _ in range(SMALL_BATCH)]), float(
        SMALL_BATCH
    )


def _actor_concurrent(wl: Workload) -> tuple[Callable[[], object], float]:
    a = _actors(wl).Actor.options(max_concurrency=16).remote()
    return lambda: wl.rt.get([a.small_value.remote() for _ in range(SMALL_BATCH)]), float(
        SMALL_BATCH
    )


def _actor_1_n(wl: Workload) -> tuple[Callable[[], object], float]:
    actors = [_actors(wl).Actor.remote() for _ in range(N_ACTORS)]
    per = SMALL_BATCH // N_ACTORS

    def run() -> object:
        return wl.rt.get([a.small_value.remote() for a in actors for _ in range(per)])

    return run, float(per * N_ACTORS)


def _actor_n_n(wl: Workload, *, server: str, with_arg: bool) -> tuple[Callable[[], object], float]:
    aw = _actors(wl)
    servers = [getattr(aw, server).remote() for _ in range(N_ACTORS)]
    clients = [aw.Client.remote(s) for s in servers]

    def run() -> object:
        if with_arg:
            return wl.rt.get([c.small_value_batch_arg.remote(SMALL_BATCH) for c in clients])
        return wl.rt.get([c.small_value_batch.remote(SMALL_BATCH) for c in clients])

    return run, float(SMALL_BATCH * N_ACTORS)


def _async_actor_sync(wl: Workload) -> tuple[Callable[[], object], float]:
    a = _actors(wl).AsyncActor.remote()
    return lambda: wl.rt.get(a.small_value.remote()), 1.0


def _async_actor_async(wl: Workload) -> tuple[Callable[[], object], float]:
    a = _actors(wl).AsyncActor.remote()
    return lambda: wl.rt.get([a.small_value.remote() for _ in range(SMALL_BATCH)]), float(
        SMALL_BATCH
    )


def _actor_creation(wl: Workload) -> tuple[Callable[[], object], float]:
    Actor = _actors(wl).Actor

    def run() -> object:
        actors = [Actor.remote() for _ in range(ACTOR_CREATION_BATCH)]
        wl.rt.get([a.small_value.remote() for a in actors])  # created and ready
        for a in actors:
            wl.rt.kill(a)
        return None

    return run, float(ACTOR_CREATION_BATCH)


PG_BATCH = 100  # groups created, waited for and removed per round (as Ray's row)


def _pg_create_removal(wl: Workload) -> tuple[Callable[[], object], float]:
    """Ray's "placement group create/removal": a batch of one-bundle groups created, each
    waited for, then all removed. The bundles take a sliver of a CPU (Ray's row uses a
    custom resource the same way), so the row measures the control plane, not packing."""
    import importlib

    pg_mod = importlib.import_module(f"{wl.rt.__name__}.util.placement_group")

    def run() -> object:
        pgs = [pg_mod.placement_group([{"CPU": 0.001}]) for _ in range(PG_BATCH)]
        for pg in pgs:
            pg.wait(timeout_seconds=30)
        for pg in pgs:
            pg_mod.remove_placement_group(pg)
        return None

    return run, float(PG_BATCH)


TIMED_ROWS: dict[str, tuple[TimedSetup, str]] = {
    "single_client_tasks_sync": (_tasks_sync, "tasks/s"),
    "single_client_tasks_sync_runtime_env": (_tasks_sync_runtime_env, "tasks/s"),
    "single_client_tasks_async": (_tasks_async, "tasks/s"),
    "single_client_tasks_async_10k": (_tasks_async_10k, "tasks/s"),
    "single_client_tasks_async_spread": (_tasks_async_spread, "tasks/s"),
    "multi_client_tasks_async": (_multi_client, "tasks/s"),
    "single_client_put_calls": (_put_calls, "puts/s"),
    "single_client_get_calls": (_get_calls, "gets/s"),
    "single_client_put_gigabytes": (_put_gigabytes, "GB/s"),
    "single_client_get_gigabytes": (_get_gigabytes, "GB/s"),
    "single_client_wait_1k_refs": (_wait_1k_refs, "rounds/s"),
    "single_client_tasks_and_get_batch": (_tasks_and_get_batch, "batches/s"),
    "tasks_with_large_arg": (_large_arg, "tasks/s"),
    "tasks_with_large_return": (_large_return, "tasks/s"),
    "1_1_actor_calls_sync": (_actor_sync, "calls/s"),
    "1_1_actor_calls_async": (_actor_async, "calls/s"),
    "1_1_actor_calls_concurrent": (_actor_concurrent, "calls/s"),
    "1_n_actor_calls_async": (_actor_1_n, "calls/s"),
    "n_n_actor_calls_async": (
        lambda wl: _actor_n_n(wl, server="Actor", with_arg=False),
        "calls/s",
    ),
    "n_n_actor_calls_with_arg_async": (
        lambda wl: _actor_n_n(wl, server="Actor", with_arg=True),
        "calls/s",
    ),
    "1_1_async_actor_calls_sync": (_async_actor_sync, "calls/s"),
    "1_1_async_actor_calls_async": (_async_actor_async, "calls/s"),
    "n_n_async_actor_calls_async": (
        lambda wl: _actor_n_n(wl, server="AsyncActor", with_arg=False),
        "calls/s",
    ),
    "actor_creation_rate": (_actor_creation, "actors/s"),
    "placement_group_create_removal": (_pg_create_removal, "groups/s"),
}


def _driver_rss_mb() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _rss_after_release(window_s: float = 2.0) -> float:
    """Driver RSS once dropped refs are released: the lowest over a short window, since a
    runtime may free asynchronously."""
    gc.collect()
    lowest = _driver_rss_mb()
    end = time.monotonic() + window_s
    while time.monotonic() < end:
        time.sleep(0.1)
        lowest = min(lowest, _driver_rss_mb())
    return lowest


def run_tasks_async_100k(wl: Workload, timing: Timing) -> list[RowResult]:
    """single_client_tasks_async with 100,000 tasks per batch, plus the driver's RSS.

    Each trial is one whole batch (no warm-up: the batch is its own). RSS rows: before the
    first batch, right after the last batch's get (its refs still held), and after those
    refs are dropped.
    """
    name = "single_client_tasks_async_100k"
    rt, small_value = wl.rt, wl.small_value
    try:
        before = _rss_after_release(0.5)
        rates = []
        after_get = after_drop = before
        for _ in range(timing.batch_100k_trials):
            start = time.perf_counter()
            refs = [small_value.remote() for _ in range(BATCH_100K)]
            rt.get(refs)
            rates.append(BATCH_100K / (time.perf_counter() - start))
            after_get = _driver_rss_mb()
            del refs
            after_drop = _rss_after_release()
    except Exception as err:  # reported, never fatal
        return [RowResult(name, None, "tasks/s", error=f"{type(err).__name__}: {err}")]
    sd = statistics.pstdev(rates) if len(rates) > 1 else 0.0
    rss = {"before": before, "after_get": after_get, "after_drop": after_drop}
    return [
        RowResult(name, statistics.fmean(rates), "tasks/s", stddev=sd, trials=rates),
        RowResult(f"{name}_driver_rss_before_mb", before, "MB", extra=rss),
        RowResult(f"{name}_driver_rss_after_get_mb", after_get, "MB"),
        RowResult(f"{name}_driver_rss_dropped_mb", after_drop, "MB"),
    ]


CANCEL_TRIALS = 20
CANCEL_TIMEOUT_S = 5.0


def run_cancel_just_submitted(wl: Workload, timing: Timing) -> list[RowResult]:
    """Seconds from ``cancel(ref)`` right after ``.remote()`` of a 10 s task until ``get(ref)``
    raises: the median of CANCEL_TRIALS (the issue's target: under 1 s). A trial still
    unresolved after CANCEL_TIMEOUT_S ends the row with that as its error."""
    name = "cancel_just_submitted_s"
    rt = wl.rt

    @rt.remote
    def ten_seconds() -> None:
        time.sleep(10)

    latencies: list[float] = []
    try:
        for _ in range(CANCEL_TRIALS):
            start = time.perf_counter()
            ref = ten_seconds.remote()
            rt.cancel(ref)
            try:
                rt.get(ref, timeout=CANCEL_TIMEOUT_S)
            except rt.exceptions.GetTimeoutError:
                return [
                    RowResult(
                        name,
                        None,
                        "s",
                        error=f"a cancelled ref was not resolved after {CANCEL_TIMEOUT_S} s",
                    )
                ]
            except Exception:  # TaskCancelledError (or a runtime's own variant of it)
                pass
            latencies.append(time.perf_counter() - start)
    except Exception as err:  # reported, never fatal
        return [RowResult(name, None, "s", error=f"{type(err).__name__}: {err}")]
    return [RowResult(name, statistics.median(latencies), "s", trials=latencies)]


# Rows that run their own trials and print several lines.
BATCH_ROWS: dict[str, Callable[[Workload, Timing], list[RowResult]]] = {
    "single_client_tasks_async_100k": run_tasks_async_100k,
    "cancel_just_submitted_s": run_cancel_just_submitted,
}


def run_timed_row(name: str, wl: Workload, timing: Timing) -> RowResult:
    setup, unit = TIMED_ROWS[name]
    try:
        fn, multiplier = setup(wl)
        mean, sd, rates = measure_rate(fn, multiplier, timing)
    except Exception as err:  # a broken row is reported, never fatal: figures, not verdicts
        return RowResult(name, None, unit, error=f"{type(err).__name__}: {err}")
    return RowResult(name, mean, unit, stddev=sd, trials=rates)


# --------------------------------------------------------------------------- process rows

# Child programs import nothing but the runtime (and sys/time), so their cost is the runtime's.
COLD_START_CHILD = """\
import time
t0 = time.perf_counter()
import {module} as rt
t1 = time.perf_counter()
rt.init(num_cpus={num_cpus})
t2 = time.perf_counter()

@rt.remote
def first():
    return 1

rt.get(first.remote())
t3 = time.perf_counter()
print("COLD", t1 - t0, t2 - t1, t3 - t2, flush=True)
rt.shutdown()
"""

IDLE_CHILD = """\
import sys
import {module} as rt
ctx = rt.init(num_cpus={num_cpus})
info = getattr(ctx, "address_info", None)
session_dir = info.get("session_dir") if isinstance(info, dict) else None
print("READY", session_dir or "", flush=True)
sys.stdin.readline()
rt.shutdown()
"""

CHILD_TIMEOUT_S = 120.0


def _spawn(code: str, stdin: bool, log: IO[str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", code],
        stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
    )


def _read_marker(proc: subprocess.Popen[str], marker: str, log: IO[str]) -> list[str]:
    """Return the words after `marker` on the child's stdout, or raise with its stderr tail."""
    assert proc.stdout is not None
    deadline = time.monotonic() + CHILD_TIMEOUT_S
    with selectors.DefaultSelector() as sel:
        sel.register(proc.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if not sel.select(timeout=deadline - time.monotonic()):
                break
            line = proc.stdout.readline()
            if not line:
                break
            if line.startswith(marker):
                return line.split()[1:]
    log.seek(0)
    tail = log.read()[-800:].strip().replace("\n", " | ")
    raise RuntimeError(
        f"child printed no {marker!r} line within {CHILD_TIMEOUT_S:.0f} s "
        f"(exit code {proc.poll()}); stderr tail: {tail}"
    )


def _finish(proc: subprocess.Popen[str]) -> None:
    try:
        proc.wait(timeout=60)
    except subprocess.TimeoutExpired:
        _stop_tree(proc.pid)
        proc.wait(timeout=10)


def cold_start_once(module: str, num_cpus: int) -> tuple[float, list[float]]:
    code = COLD_START_CHILD.format(module=module, num_cpus=num_cpus)
    with tempfile.TemporaryFile(mode="w+") as log:
        start = time.perf_counter()
        proc = _spawn(code, stdin=False, log=log)
        try:
            parts = _read_marker(proc, "COLD", log)
            wall = time.perf_counter() - start
        finally:
            _finish(proc)
    return wall, [float(p) for p in parts]


def run_cold_start(module: str, num_cpus: int, timing: Timing) -> list[RowResult]:
    walls: list[float] = []
    phases: list[list[float]] = []
    for _ in range(timing.cold_start_runs):
        wall, phase = cold_start_once(module, num_cpus)
        walls.append(wall)
        phases.append(phase)
    median = statistics.median(walls)
    chosen = phases[walls.index(sorted(walls)[(len(walls) - 1) // 2])]
    extra = {"runs_s": walls, "import_s": chosen[0], "init_s": chosen[1], "first_task_s": chosen[2]}
    return [RowResult("cold_start_s", median, "s", trials=walls, extra=extra)]


@dataclass(frozen=True)
class TreeMemory:
    """Memory of a driver and every process its runtime started, at one moment."""

    rss_mb: float
    uss_mb: float
    processes: int
    by_process: list[tuple[int, str, float]]


def runtime_processes(driver_pid: int, session_dir: str | None) -> list[psutil.Process]:
    """The driver, its descendants, and any process naming the runtime's session directory
    (daemons a runtime may have detached from the driver)."""
    driver = psutil.Process(driver_pid)
    found = {p.pid: p for p in [driver, *driver.children(recursive=True)]}
    if session_dir:
        for proc in psutil.process_iter(["cmdline"]):
            cmdline = " ".join(proc.info["cmdline"] or [])
            if session_dir in cmdline and proc.pid not in found:
                found[proc.pid] = proc
    return list(found.values())


def tree_memory(driver_pid: int, session_dir: str | None) -> TreeMemory:
    rss = uss = 0.0
    rows: list[tuple[int, str, float]] = []
    for proc in runtime_processes(driver_pid, session_dir):
        try:
            info = proc.memory_full_info()
            name = proc.name()
        except psutil.Error:
            continue  # exited between listing and reading: it no longer uses memory
        rss += info.rss
        uss += info.uss
        rows.append((proc.pid, name, round(info.rss / 2**20, 1)))
    return TreeMemory(rss / 2**20, uss / 2**20, len(rows), rows)


def _settled_pids(driver_pid: int, session_dir: str | None, timing: Timing) -> bool:
    """Poll until the runtime's process set has not changed for `settle_s` seconds."""
    deadline = time.monotonic() + timing.settle_deadline_s
    last: set[int] = set()
    stable_since = time.monotonic()
    while time.monotonic() < deadline:
        pids = {p.pid for p in runtime_processes(driver_pid, session_dir)}
        now = time.monotonic()
        if pids != last:
            last, stable_since = pids, now
        elif now - stable_since >= timing.settle_s:
            return True
        time.sleep(0.1)
    return False


def run_idle_rss(module: str, num_cpus: int, timing: Timing) -> list[RowResult]:
    code = IDLE_CHILD.format(module=module, num_cpus=num_cpus)
    with tempfile.TemporaryFile(mode="w+") as log:
        proc = _spawn(code, stdin=True, log=log)
        try:
            words = _read_marker(proc, "READY", log)
            session_dir = words[0] if words else None
            at_init = tree_memory(proc.pid, session_dir)
            settled = _settled_pids(proc.pid, session_dir, timing)
            later = tree_memory(proc.pid, session_dir)
        finally:
            _release(proc)
            _finish(proc)
    return [
        RowResult("idle_rss_mb", at_init.rss_mb, "MB", extra={"by_process": at_init.by_process}),
        RowResult("idle_processes", float(at_init.processes), "processes"),
        RowResult(
            "idle_rss_settled_mb",
            later.rss_mb,
            "MB",
            extra={"settled": settled, "by_process": later.by_process},
        ),
        RowResult("idle_uss_settled_mb", later.uss_mb, "MB"),
        RowResult("idle_processes_settled", float(later.processes), "processes"),
    ]


def _release(proc: subprocess.Popen[str]) -> None:
    """Tell an idle child to shut its runtime down and exit."""
    if proc.stdin is None:
        return
    try:
        proc.stdin.write("\n")
        proc.stdin.close()
    except OSError:
        pass  # the child already exited; _finish reaps it


PROCESS_ROWS: dict[str, Callable[[str, int, Timing], list[RowResult]]] = {
    "cold_start_s": run_cold_start,
    "idle_rss_mb": run_idle_rss,
}

ROW_NAMES = [*PROCESS_ROWS, *TIMED_ROWS, *BATCH_ROWS]


# --------------------------------------------------------------------------- hang guard


def _stop_tree(pid: int) -> None:
    """Stop `pid`'s descendants and then `pid` itself (only processes this script started)."""
    try:
        root = psutil.Process(pid)
        procs = [*root.children(recursive=True)]
        if pid != os.getpid():
            procs.append(root)
    except psutil.Error:
        return
    for proc in procs:
        try:
            proc.terminate()
        except psutil.Error:
            pass
    _gone, alive = psutil.wait_procs(procs, timeout=5)
    for proc in alive:
        try:
            proc.kill()
        except psutil.Error:
            pass


class HangGuard:
    """Ends the run if one row takes longer than `limit_s`: a hang is reported, not waited on."""

    def __init__(self, limit_s: float, on_hang: Callable[[str], None]) -> None:
        self._limit_s = limit_s
        self._on_hang = on_hang
        self._row = ""
        self._deadline = float("inf")
        self._lock = threading.Lock()
        threading.Thread(target=self._watch, name="bench-hang-guard", daemon=True).start()

    def start(self, row: str) -> None:
        with self._lock:
            self._row, self._deadline = row, time.monotonic() + self._limit_s

    def stop(self) -> None:
        with self._lock:
            self._deadline = float("inf")

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            with self._lock:
                expired = time.monotonic() > self._deadline
                row = self._row
            if expired:
                self._on_hang(row)
                return


# --------------------------------------------------------------------------- driver


@dataclass
class Report:
    """Everything one run produced; written as JSON with --json."""

    runtime: str
    version: str
    settings: dict[str, Any]
    machine: dict[str, Any]
    rows: list[RowResult] = field(default_factory=list)
    suffix: str = ""  # appended to the rows' names (``+tls``)

    def add(self, results: Sequence[RowResult]) -> None:
        for result in results:
            result.name += self.suffix
            print(result.line(), flush=True)
            self.rows.append(result)

    def write(self, path: str | None) -> None:
        if path is None:
            return
        doc = {k: v for k, v in asdict(self).items() if k not in ("rows", "suffix")}
        doc["rows"] = {
            r.name: {k: v for k, v in asdict(r).items() if k != "name"} for r in self.rows
        }
        doc["machine"]["loadavg_end"] = list(os.getloadavg())
        with open(path, "w", encoding="utf-8") as out:
            json.dump(doc, out, indent=2)
            out.write("\n")


def _runtime_env_settings() -> dict[str, str]:
    """RAY_* settings of this run (they change Ray's behaviour), leaving out anything secret."""
    secret = ("TOKEN", "AUTH", "KEY", "SECRET", "PASS")
    return {
        k: v
        for k, v in os.environ.items()
        if k.startswith("RAY_") and not any(word in k for word in secret)
    }


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runtime", choices=["rayops", "ray"], default="rayops")
    parser.add_argument(
        "--rows",
        default="",
        help="comma-separated row names (default: all): " + ", ".join(ROW_NAMES),
    )
    parser.add_argument("--json", dest="json_out", metavar="OUT", help="write results as JSON")
    parser.add_argument("--quick", action="store_true", help="short windows, for smoke tests")
    parser.add_argument(
        "--num-cpus",
        type=int,
        default=os.cpu_count() or 1,
        help="num_cpus passed to init() (default: this machine's cores)",
    )
    parser.add_argument(
        "--tls",
        choices=["off", "on", "both"],
        default="off",
        help="TLS for the timed rows: off, on, or both (side by side, with the cost)",
    )
    parser.add_argument(
        "--tls-rounds",
        type=int,
        default=3,
        help="with --tls both: alternating rounds without and with TLS (default 3)",
    )
    parser.add_argument(
        "--row-timeout",
        type=float,
        default=300.0,
        help="seconds one row may take before the run is stopped as hung",
    )
    args = parser.parse_args(argv)
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    unknown = [r for r in wanted if r not in ROW_NAMES]
    if unknown:
        parser.error(
            f"unknown row {unknown[0]!r} in --rows; expected names from: " + ", ".join(ROW_NAMES)
        )
    args.selected = [r for r in ROW_NAMES if not wanted or r in wanted]
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    timing = QUICK if args.quick else FULL
    rt = importlib.import_module(args.runtime)
    report = Report(
        runtime=args.runtime,
        version=str(getattr(rt, "__version__", "unknown")),
        settings={
            "num_cpus": args.num_cpus,
            "timing": asdict(timing),
            "quick": args.quick,
            "env": _runtime_env_settings(),
        },
        machine={
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_start": list(os.getloadavg()),
        },
    )
    print(
        f"# runtime={report.runtime} {report.version}  python={platform.python_version()}  "
        f"num_cpus={args.num_cpus}  mode={'quick' if args.quick else 'full'}  "
        f"loadavg={os.getloadavg()[0]:.2f}",
        flush=True,
    )

    def on_hang(row: str) -> None:
        print(
            f"{row:<36} {'error':>12}  no result after {args.row_timeout:.0f} s; stopping the run",
            flush=True,
        )
        report.write(args.json_out)
        _stop_tree(os.getpid())
        os._exit(3)

    guard = HangGuard(args.row_timeout, on_hang)
    # Fresh-process rows first, while no cluster of ours is running to compete for the cores.
    for name in [r for r in args.selected if r in PROCESS_ROWS]:
        guard.start(name)
        try:
            report.add(PROCESS_ROWS[name](args.runtime, args.num_cpus, timing))
        except Exception as err:  # reported, never fatal
            report.add([RowResult(name, None, "", error=f"{type(err).__name__}: {err}")])
        guard.stop()

    timed = [r for r in args.selected if r in TIMED_ROWS or r in BATCH_ROWS]
    if timed and args.tls == "off":
        run_timed_rows(rt, timed, args.num_cpus, timing, report, guard)
    elif timed:
        run_tls_modes(rt, timed, args, timing, report, guard)
    report.write(args.json_out)
    return 0


TLS_SUFFIX = "+tls"


def run_tls_modes(
    rt: ModuleType,
    names: list[str],
    args: argparse.Namespace,
    timing: Timing,
    report: Report,
    guard: HangGuard,
) -> None:
    """The timed rows with TLS (``--tls on``), or without and with it in alternating rounds
    (``both``: ``--tls-rounds`` of each, so a change in the machine's load hits both
    alike), then each row's cost: the median rate with TLS relative to the one without."""
    from rayops.testing.tls_files import loopback_certs, tls_environment

    modes = [False, True] * args.tls_rounds if args.tls == "both" else [True]
    rates: dict[tuple[str, bool], list[float]] = {}
    units: dict[str, str] = {}
    with tempfile.TemporaryDirectory() as certs:
        files = loopback_certs(certs)
        for on in modes:
            print(f"# TLS {'on' if on else 'off'}", flush=True)
            with tls_environment(files if on else None):
                report.suffix = TLS_SUFFIX if on else ""
                first = len(report.rows)
                run_timed_rows(rt, names, args.num_cpus, timing, report, guard)
                report.suffix = ""
            for row in report.rows[first:]:
                base = row.name.removesuffix(TLS_SUFFIX)
                units[base] = row.unit
                if row.value is not None:
                    rates.setdefault((base, on), []).append(row.value)
    if args.tls != "both":
        return
    print(
        f"# TLS cost: median of {args.tls_rounds} round(s) each, with TLS vs without "
        "(negative: slower)",
        flush=True,
    )
    for name in names:
        off, on_ = rates.get((name, False)), rates.get((name, True))
        if not off or not on_:
            continue
        a, b = statistics.median(off), statistics.median(on_)
        print(
            f"{name:<36} {a:>12.2f} -> {b:>10.2f}  {units[name]}  ({(b / a - 1) * 100:+.1f}%)",
            flush=True,
        )


def run_timed_rows(
    rt: ModuleType,
    names: list[str],
    num_cpus: int,
    timing: Timing,
    report: Report,
    guard: HangGuard,
) -> None:
    guard.start("init")
    rt.init(num_cpus=num_cpus)
    try:
        wl = Workload(rt)
        for name in names:
            guard.start(name)
            if name in BATCH_ROWS:
                report.add(BATCH_ROWS[name](wl, timing))
            else:
                report.add([run_timed_row(name, wl, timing)])
    finally:
        guard.start("shutdown")
        rt.shutdown()
        guard.stop()


if __name__ == "__main__":
    sys.exit(main())
