"""Generator tasks on a real embedded cluster, as in Ray 2.60: ``num_returns="dynamic"`` (a ref
to a DynamicObjectRefGenerator), ``wait()`` on ObjectRefGenerators, and the generator's
methods (``next_ready``, ``is_finished``, ``completed``, ``_next_sync``, ``async for``)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.core_worker import state


@rayops.remote
def count(n: int) -> Any:
    yield from range(n)


@rayops.remote
def gated(path: str, before: int) -> Any:
    """Yields ``before`` items, then waits for ``path`` to exist, then yields one more."""
    yield from range(before)
    deadline = time.time() + 30
    while not os.path.exists(path) and time.time() < deadline:
        time.sleep(0.01)
    yield "last"


def _until(cond: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_dynamic_returns_a_ref_to_a_dynamic_generator(ray: Any) -> None:
    @rayops.remote(num_returns="dynamic")
    def split(n: int) -> Any:
        for i in range(n):
            yield [i] * i

    ref = split.remote(4)
    assert isinstance(ref, rayops.ObjectRef)
    dyn = rayops.get(ref)
    assert isinstance(dyn, rayops.DynamicObjectRefGenerator)
    assert len(dyn) == 4
    refs = list(dyn)
    assert all(isinstance(r, rayops.ObjectRef) for r in refs)
    assert rayops.get(refs) == [[], [1], [2, 2], [3, 3, 3]]
    # As in Ray, iterating hands each ref out once.
    assert len(dyn) == 0 and list(dyn) == []
    # .options() takes it too; a fresh get() gives a fresh generator.
    assert rayops.get(list(rayops.get(count.options(num_returns="dynamic").remote(3)))) == [
        0,
        1,
        2,
    ]
    assert len(rayops.get(ref)) == 4


def test_actor_method_dynamic_returns(ray: Any) -> None:
    @rayops.remote
    class Splitter:
        @rayops.method(num_returns="dynamic")
        def split(self, n: int) -> Any:
            yield from range(n)

        def plain(self, n: int) -> Any:
            yield from range(n)

    s = Splitter.remote()  # type: ignore[attr-defined]
    ref = s.split.remote(3)
    assert isinstance(ref, rayops.ObjectRef)
    assert rayops.get(list(rayops.get(ref))) == [0, 1, 2]
    dyn = rayops.get(s.plain.options(num_returns="dynamic").remote(2))
    assert isinstance(dyn, rayops.DynamicObjectRefGenerator)
    assert rayops.get(list(dyn)) == [0, 1]


def test_dynamic_items_live_as_long_as_the_generator_value(ray: Any) -> None:
    @rayops.remote(num_returns="dynamic")
    def big(n: int) -> Any:
        for i in range(n):
            yield bytes([i]) * (1 << 20)  # in the shared-memory store

    ref = big.remote(3)
    refs = list(rayops.get(ref))
    del ref
    gc.collect()
    assert [rayops.get(r)[:1] for r in refs] == [b"\x00", b"\x01", b"\x02"]


def test_dynamic_error_is_the_last_ref(ray: Any) -> None:
    @rayops.remote(num_returns="dynamic")
    def fails_after_one() -> Any:
        yield 1
        raise ValueError("boom")

    refs = list(rayops.get(fails_after_one.remote()))
    assert len(refs) == 2
    assert rayops.get(refs[0]) == 1
    with pytest.raises(ValueError, match="boom"):
        rayops.get(refs[1])


def test_dynamic_worker_death_fails_the_ref(ray: Any) -> None:
    @rayops.remote(num_returns="dynamic", max_retries=0)
    def dies() -> Any:
        yield 1
        os._exit(1)

    with pytest.raises(rex.WorkerCrashedError):
        rayops.get(dies.remote(), timeout=30)


def test_dynamic_needs_a_generator_function(ray: Any) -> None:
    @rayops.remote(num_returns="dynamic")
    def plain() -> int:
        return 1

    with pytest.raises(TypeError, match="num_returns='dynamic' but is not a generator"):
        plain.remote()


def test_wait_takes_generators(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    g = gated.remote(str(gate), 1)
    plain = rayops.put(1)
    ready, not_ready = rayops.wait([g, plain], num_returns=2, timeout=20)
    assert ready == [g, plain] and not_ready == []
    assert rayops.get(next(g)) == 0
    # The next item waits for the gate: not ready.
    ready, not_ready = rayops.wait([g], timeout=0.2)
    assert (ready, not_ready) == ([], [g])
    gate.write_text("go")
    ready, _ = rayops.wait([g], timeout=20)
    assert ready == [g]
    assert rayops.get(next(g)) == "last"
    # Finished and exhausted: ready (next() returns at once, with StopIteration).
    ready, _ = rayops.wait([g], timeout=20)
    assert ready == [g]
    with pytest.raises(StopIteration):
        next(g)


def test_wait_refuses_other_types_and_duplicates(ray: Any) -> None:
    g = count.remote(1)
    with pytest.raises(TypeError, match="element 1 is a int"):
        rayops.wait([g, 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="unique"):
        rayops.wait([g, g])


def test_next_ready_is_finished_and_completed(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    g = gated.remote(str(gate), 1)
    _until(g.next_ready, "the first item")
    assert not g.is_finished()
    next(g)
    assert not g.next_ready() and not g.is_finished()
    gate.write_text("go")
    assert rayops.get(g.completed(), timeout=20) is None
    assert g.next_ready() and not g.is_finished()
    assert rayops.get(next(g)) == "last"
    assert not g.next_ready() and g.is_finished()


def test_next_sync_times_out_with_the_nil_ref(ray: Any, tmp_path: Path) -> None:
    gate = tmp_path / "gate"
    g = gated.remote(str(gate), 0)
    started = time.monotonic()
    ref = g._next_sync(timeout_s=0.2)
    assert ref.is_nil() and time.monotonic() - started >= 0.2
    gate.write_text("go")
    assert rayops.get(g._next_sync(timeout_s=20)) == "last"
    with pytest.raises(StopIteration):
        g._next_sync(timeout_s=20)


def test_async_iteration_and_next_async(ray: Any, tmp_path: Path) -> None:
    async def main() -> list[Any]:
        out = [await ref async for ref in count.remote(3)]
        gate = tmp_path / "gate"
        g = gated.remote(str(gate), 0)
        assert (await g._next_async(timeout_s=0.1)).is_nil()
        gate.write_text("go")
        out.append(await (await g._next_async(timeout_s=20)))
        with pytest.raises(StopAsyncIteration):
            await g._next_async(timeout_s=20)
        return out

    assert asyncio.run(main()) == [0, 1, 2, "last"]


def test_unsupported_generator_methods_raise_as_in_ray(ray: Any) -> None:
    g = count.remote(1)
    for call in (lambda: g.send(1), lambda: g.throw(ValueError()), g.close):
        with pytest.raises(NotImplementedError):
            call()
    with pytest.raises(NotImplementedError):
        asyncio.run(g.aclose())
    with pytest.raises(TypeError, match="cannot be pickled"):
        rayops.put(g)
    assert [rayops.get(r) for r in g] == [0]


def test_generator_error_after_worker_death_is_the_last_item(ray: Any) -> None:
    @rayops.remote(max_retries=0)
    def dies() -> Any:
        yield 1
        os._exit(1)

    g = dies.remote()
    refs = list(g)
    # The item may die with the worker before it is sent; the error always comes last.
    assert 1 <= len(refs) <= 2
    assert all(rayops.get(r) == 1 for r in refs[:-1])
    with pytest.raises(rex.WorkerCrashedError):
        rayops.get(refs[-1])
    with pytest.raises(rex.WorkerCrashedError):  # as in Ray: completed() raises it too
        rayops.get(g.completed())


def test_dropped_generators_leave_nothing_behind(ray: Any) -> None:
    cw = state.require()
    before = len(cw.generators)
    for _ in range(5):
        g = count.remote(3)
        next(g)
        rayops.get(g.completed())
        del g
    rayops.get(list(rayops.get(count.options(num_returns="dynamic").remote(2))))
    gc.collect()
    _until(lambda: len(cw.generators) <= before, "the generators to be forgotten")
