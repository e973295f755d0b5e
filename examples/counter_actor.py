"""The Counter actor: state that lives in one worker process, called in order."""

from __future__ import annotations

import rayops as ray


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.value = 0

    def inc(self) -> None:
        self.value += 1

    def get_counter(self) -> int:
        return self.value


def main() -> None:
    ray.init()
    counter = Counter.remote()
    for _ in range(5):
        print(ray.get(counter.inc.remote()), "got", ray.get(counter.get_counter.remote()))
    ray.shutdown()


if __name__ == "__main__":
    main()
