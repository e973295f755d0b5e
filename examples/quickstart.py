"""A first rayops program: tasks, objects and a streaming generator on the
embedded one-machine cluster. Run it with `scripts/run-example.sh`."""

from __future__ import annotations

import time

import numpy as np

import rayops as ray


@ray.remote
def square(x: int) -> int:
    return x * x


@ray.remote
def total(values: list[int]) -> int:
    return sum(values)


@ray.remote
def countdown(n: int):  # type: ignore[no-untyped-def]
    yield from range(n, 0, -1)


def main() -> None:
    start = time.perf_counter()
    ray.init()
    print(f"cluster up in {time.perf_counter() - start:.2f}s: {ray.cluster_resources()}")

    squares = [square.remote(i) for i in range(10)]
    print("squares:", ray.get(squares))
    print("sum via a task:", ray.get(total.remote(ray.get(squares))))

    array = np.arange(10_000_000, dtype=np.float64)  # 80 MB: goes through shared memory
    ref = ray.put(array)
    back = ray.get(ref)
    equal = np.array_equal(array, back)
    print(
        f"80 MB array round trip: equal={equal}, read-only shared view={not back.flags.writeable}"
    )

    print("countdown:", [ray.get(r) for r in countdown.remote(5)])
    ray.shutdown()


if __name__ == "__main__":
    main()
