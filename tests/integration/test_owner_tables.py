"""The driver's owner bookkeeping after a large batch of tasks, on a real embedded cluster.

Throughput must not collapse as work grows, and the driver must give back what a batch
used: after many tasks are submitted, got and dropped, every per-task table of the owner is
empty again and none is still sized for the whole batch. Counts and sizes, never timings.
"""

from __future__ import annotations

import gc
import os
import sys
import time
from typing import Any

import rayops
from rayops.core_worker import state, table_size
from rayops.testing.waiting import wait_for

BATCH = 20_000


@rayops.remote
def small_value() -> bytes:
    return b"ok"


def _owner_tables(cw: Any) -> dict[str, int]:
    return {
        "references": len(cw.references),
        "memory_store": len(cw.memory_store),
        "memory_store_callbacks": len(cw.memory_store._callbacks),
        "blocked_waits": cw.memory_store.blocked_waits(),
        "tasks": len(cw.tasks.machine),
        "generators": len(cw.generators),
        # Lease keys included: an idle shape's entry goes with its last lease.
        **{f"leases.{k}": v for k, v in cw.submitter.table_sizes().items()},
    }


def test_a_large_batch_leaves_the_owner_tables_empty_and_compact(ray: Any) -> None:
    cw = state.require()
    gc.collect()
    start = _owner_tables(cw)
    refs = [small_value.remote() for _ in range(BATCH)]
    assert rayops.get(refs) == [b"ok"] * BATCH
    assert len(cw.references) >= BATCH and len(cw.memory_store) >= BATCH
    del refs
    gc.collect()
    # Task records and pushes are released on the IO thread as replies land: poll.
    deadline = time.monotonic() + 30
    while _owner_tables(cw) != start and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _owner_tables(cw) == start, "owner tables still hold entries of the dropped batch"
    # A dict never shrinks on delete; the owner's tables are rebuilt once mostly empty.
    bound = table_size._MAX_BYTES_PER_ENTRY * (
        len(cw.references) + table_size._SLACK_ENTRIES + table_size.CHECK_EVERY
    )
    assert cw.references.table.table_bytes() <= bound
    assert sys.getsizeof(cw.memory_store._values) <= bound


def test_a_generator_dropped_before_it_finishes_leaves_nothing_behind(
    ray: Any, tmp_path: Any
) -> None:
    @rayops.remote
    def gated(gate: str) -> Any:
        yield 1
        while not os.path.exists(gate):
            time.sleep(0.01)
        yield 2

    cw = state.require()
    gc.collect()
    start = _owner_tables(cw)
    gate = str(tmp_path / "gate")
    gen = gated.remote(gate)
    assert rayops.get(next(gen)) == 1
    assert len(cw.generators) == start["generators"] + 1
    del gen
    gc.collect()
    open(gate, "w").close()  # the task finishes only now, after its generator was dropped
    wait_for(
        f"owner tables after a dropped generator finished: {_owner_tables(cw)} != {start}",
        lambda: _owner_tables(cw) == start,
    )


def test_actor_call_counts_leave_no_entry_per_actor(ray: Any) -> None:
    @rayops.remote
    class Echo:
        def ping(self) -> int:
            return 1

    cw = state.require()
    actors = [Echo.remote() for _ in range(3)]
    assert rayops.get([a.ping.remote() for a in actors for _ in range(5)]) == [1] * 15
    submitter = cw.actor_submitter
    # No count is kept for an actor with nothing pending (a dict entry per actor ever called).
    wait_for(f"{submitter.pending_calls()} calls pending", lambda: submitter.pending_actors() == 0)
    for a in actors:
        rayops.kill(a)
