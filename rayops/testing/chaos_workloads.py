"""The chaos suite's workloads: drivers that check their own results and report as JSON.

Run as ``python -m rayops.testing.chaos_workloads KIND --out FILE ...`` inside the head's
namespace (``rayops.testing.chaos`` does it). Each workload knows the right answer, so
"results lost" is counted, never guessed: a result that raised, or came back wrong, is lost.

* ``mapreduce``: ``--tasks`` map tasks (each sleeps ``--task-ms`` and returns a
  ``--object-kb`` array derived from its index, so results live in the executing node's
  store when large), reduced by tasks over chunks of 100, then summed by the driver.
* ``pipeline``: ``--items`` items through three stage actors (restartable, calls retried):
  each stage applies a known function; the driver checks every item's final value.

Functions live in this module (workers import it: rayops ships it in the wheel).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import rayops

MAX_RETRIES = 10
CHUNK = 100


@rayops.remote(max_retries=MAX_RETRIES)
def map_one(i: int, object_kb: int, task_ms: int) -> bytes:
    time.sleep(task_ms / 1000)
    return (
        (i.to_bytes(4, "little") * 256)[: object_kb * 1024]
        if object_kb
        else i.to_bytes(4, "little")
    )


@rayops.remote(max_retries=MAX_RETRIES)
def reduce_chunk(*parts: bytes) -> int:
    return sum(int.from_bytes(p[:4], "little") for p in parts)


@rayops.remote(max_restarts=-1, max_task_retries=-1)
class Stage:
    def __init__(self, k: int) -> None:
        self.k = k

    def pid(self) -> int:
        return os.getpid()

    def apply(self, x: int) -> int:
        time.sleep(0.01)
        return x * self.k + 1


def run_mapreduce(tasks: int, object_kb: int, task_ms: int) -> dict[str, Any]:
    refs = [map_one.remote(i, object_kb, task_ms) for i in range(tasks)]
    chunks = [reduce_chunk.remote(*refs[j : j + CHUNK]) for j in range(0, tasks, CHUNK)]
    lost = 0
    total = 0
    for j, ref in enumerate(chunks):
        start = j * CHUNK
        want = sum(range(start, min(start + CHUNK, tasks)))
        try:
            got = rayops.get(ref, timeout=300)
        except Exception as err:  # a lost chunk: every map result in it is lost
            print(f"chunk {j} lost: {type(err).__name__}: {err}"[:300], flush=True)
            lost += min(CHUNK, tasks - start)
            continue
        if got != want:
            lost += min(CHUNK, tasks - start)
        total += got
    return {"results": tasks, "lost": lost, "correct": total == sum(range(tasks)) and not lost}


def run_pipeline(items: int, actor_file: str) -> dict[str, Any]:
    stages = [Stage.remote(k) for k in (2, 3, 5)]  # type: ignore[attr-defined]
    pids = rayops.get([s.pid.remote() for s in stages], timeout=120)
    if actor_file:
        with open(actor_file, "w") as f:
            json.dump(pids, f)
    finals = []
    for x in range(items):
        r1 = stages[0].apply.remote(x)
        r2 = stages[1].apply.remote(r1)
        finals.append(stages[2].apply.remote(r2))
    lost = 0
    for x, ref in enumerate(finals):
        want = ((x * 2 + 1) * 3 + 1) * 5 + 1
        try:
            got = rayops.get(ref, timeout=300)
        except Exception as err:
            print(f"item {x} lost: {type(err).__name__}: {err}"[:300], flush=True)
            lost += 1
            continue
        lost += got != want
    return {"results": items, "lost": lost, "correct": not lost}


def retries_seen() -> int:
    """Task and actor-call attempts after the first, as this driver (their owner) counted
    them. The state API's task events would undercount: a GCS restart clears them (as in
    Ray, they live in GCS memory)."""
    from rayops.core_worker import state

    cw = state.require()
    return int(cw.task_counts.retries)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="python -m rayops.testing.chaos_workloads")
    p.add_argument("kind", choices=["mapreduce", "pipeline"])
    p.add_argument("--address", default="auto")
    p.add_argument("--temp-dir", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--tasks", type=int, default=2000)
    p.add_argument("--object-kb", type=int, default=0)
    p.add_argument("--task-ms", type=int, default=10)
    p.add_argument("--items", type=int, default=300)
    p.add_argument("--actor-file", default="")
    args = p.parse_args(argv)
    rayops.init(args.address, _temp_dir=args.temp_dir, log_to_driver=False)
    t0 = time.monotonic()
    if args.kind == "mapreduce":
        out = run_mapreduce(args.tasks, args.object_kb, args.task_ms)
    else:
        out = run_pipeline(args.items, args.actor_file)
    out["seconds"] = time.monotonic() - t0
    out["retries"] = retries_seen()
    rayops.shutdown()
    with open(args.out, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
