"""Tasks on a real embedded cluster: options, returns, nesting, generators, errors."""

from __future__ import annotations

import os
import time
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex


@rayops.remote
def add(a: int, b: int) -> int:
    return a + b


def test_basic_and_kwargs(ray: Any) -> None:
    assert rayops.get(add.remote(1, 2)) == 3
    assert rayops.get(add.remote(a=1, b=5)) == 6
    assert rayops.get([add.remote(i, i) for i in range(50)]) == [2 * i for i in range(50)]


def test_options_num_returns_and_name(ray: Any) -> None:
    @rayops.remote(num_returns=3)
    def three() -> tuple[int, int, int]:
        return 1, 2, 3

    refs = three.remote()
    assert isinstance(refs, list) and len(refs) == 3
    assert rayops.get(refs) == [1, 2, 3]
    assert rayops.get(three.options(num_returns=3).remote()) == [1, 2, 3]
    two = rayops.remote(num_returns=2)(lambda: (4, 5))
    assert rayops.get(two.remote()) == [4, 5]
    assert rayops.get(add.options(name="custom", num_cpus=0.5).remote(1, 1)) == 2


def test_bad_options_fail_clearly(ray: Any) -> None:
    with pytest.raises(ValueError, match=r"num_cpu.*Did you mean 'num_cpus'"):
        add.options(num_cpu=1)
    with pytest.raises(TypeError, match="max_retries"):  # a wrong type: TypeError, as Ray
        add.options(max_retries="x")


def test_ref_arguments_resolved_and_nested_refs_stay_refs(ray: Any) -> None:
    @rayops.remote
    def inspect_arg(x: Any, nested: list[Any]) -> tuple[str, str]:
        return type(x).__name__, type(nested[0]).__name__

    ref = rayops.put(41)
    assert rayops.get(inspect_arg.remote(ref, [ref])) == ("int", "ObjectRef")
    assert rayops.get(add.remote(add.remote(1, 2), 10)) == 13


def test_nested_tasks(ray: Any) -> None:
    @rayops.remote
    def fan_out(n: int) -> int:
        return sum(rayops.get([add.remote(i, 1) for i in range(n)]))

    assert rayops.get(fan_out.remote(10)) == sum(range(1, 11))
    # More nested waiters than CPUs: blocked workers lend their CPU.
    assert rayops.get([fan_out.remote(3) for _ in range(4)]) == [6] * 4


def test_streaming_generator(ray: Any) -> None:
    @rayops.remote
    def gen(n: int) -> Any:
        for i in range(n):
            yield i * 10

    g = gen.remote(5)
    assert isinstance(g, rayops.ObjectRefGenerator)
    assert [rayops.get(r) for r in g] == [0, 10, 20, 30, 40]


def test_streaming_yields_before_finishing(ray: Any, tmp_path: Any) -> None:
    gate = tmp_path / "gate"

    @rayops.remote
    def slow_gen(path: str) -> Any:
        yield "first"
        deadline = time.time() + 20
        while not os.path.exists(path) and time.time() < deadline:
            time.sleep(0.01)
        yield "second"

    g = slow_gen.remote(str(gate))
    assert rayops.get(next(g)) == "first"  # arrived while the task is still running
    gate.write_text("go")
    assert rayops.get(next(g)) == "second"
    with pytest.raises(StopIteration):
        next(g)


def test_error_is_instance_of_cause(ray: Any) -> None:
    @rayops.remote
    def boom() -> None:
        raise ValueError("bad value 42")

    with pytest.raises(ValueError) as info:
        rayops.get(boom.remote())
    err = info.value
    assert isinstance(err, rex.RayTaskError)
    assert "bad value 42" in str(err)
    assert "boom" in str(err)


def test_retry_exceptions(ray: Any, tmp_path: Any) -> None:
    counter = tmp_path / "count"

    @rayops.remote(max_retries=2, retry_exceptions=[KeyError])
    def flaky(path: str) -> int:
        n = 0
        if os.path.exists(path):
            with open(path) as f:
                n = int(f.read())
        with open(path, "w") as f:
            f.write(str(n + 1))
        if n < 2:
            raise KeyError(n)
        return n

    assert rayops.get(flaky.remote(str(counter))) == 2

    @rayops.remote(max_retries=2, retry_exceptions=[KeyError])
    def other() -> None:
        raise TypeError("not retried")

    with pytest.raises(TypeError):
        rayops.get(other.remote())


def test_worker_killed_mid_task_is_retried(ray: Any, tmp_path: Any) -> None:
    marker = tmp_path / "died-once"

    @rayops.remote(max_retries=1)
    def die_once(path: str) -> str:
        if not os.path.exists(path):
            open(path, "w").close()
            os.kill(os.getpid(), 9)
        return "survived"

    assert rayops.get(die_once.remote(str(marker)), timeout=60) == "survived"


def test_worker_crash_without_retries(ray: Any) -> None:
    @rayops.remote(max_retries=0)
    def die() -> None:
        os.kill(os.getpid(), 9)

    with pytest.raises(rex.WorkerCrashedError):
        rayops.get(die.remote(), timeout=60)


def test_cancel(ray: Any) -> None:
    @rayops.remote
    def sleepy() -> str:
        time.sleep(30)
        return "done"

    ref = sleepy.remote()
    time.sleep(0.5)
    rayops.cancel(ref)
    with pytest.raises(rex.TaskCancelledError):
        rayops.get(ref, timeout=20)
    ref2 = sleepy.remote()
    time.sleep(0.5)
    rayops.cancel(ref2, force=True)
    with pytest.raises(rex.TaskCancelledError):
        rayops.get(ref2, timeout=20)
    # the cluster still works
    assert rayops.get(add.remote(1, 1), timeout=30) == 2


def test_unserializable_argument(ray: Any) -> None:
    import threading

    with pytest.raises(TypeError, match="argument 0 of type lock"):
        add.remote(threading.Lock(), 1)


def test_infeasible_warns(ray: Any, capfd: Any) -> None:
    @rayops.remote(resources={"nonexistent": 1})
    def never() -> None:
        pass

    ref = never.remote()
    with pytest.raises(rex.GetTimeoutError):
        rayops.get(ref, timeout=1.5)
    err = capfd.readouterr().err
    assert "nonexistent: 1" in err and "No node can run" in err
    rayops.cancel(ref)


def test_runtime_context_and_resources(ray: Any) -> None:
    @rayops.remote(num_cpus=1, resources={"custom_thing": 0})
    def ctx() -> dict[str, Any]:
        c = rayops.get_runtime_context()
        return {
            "task": c.get_task_id(),
            "node": c.get_node_id(),
            "job": c.get_job_id(),
            "res": c.get_assigned_resources(),
            "worker": c.get_worker_id(),
            "gpus": rayops.get_gpu_ids(),
        }

    info = rayops.get(ctx.remote())
    driver = rayops.get_runtime_context()
    assert info["node"] == driver.get_node_id()
    assert info["job"] == driver.get_job_id()
    assert info["task"] and info["res"] == {"CPU": 1.0}
    assert info["worker"] != driver.get_worker_id()
    assert info["gpus"] == []
    assert rayops.cluster_resources()["CPU"] == 2.0
    assert rayops.is_initialized()
    assert len(rayops.nodes()) == 1 and rayops.nodes()[0]["Alive"]
