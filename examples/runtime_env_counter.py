"""The seed's first example: a Counter actor that reads its name from its runtime_env.

``runtime_env={"env_vars": {"counter_name": "seed"}}`` sets ``counter_name`` in the actor's
worker before the class is loaded, so the actor prints ``seed got 1`` ... ``seed got 5``.
Then it prints the version of ``requests`` as the actor imports it: a dependency of rayops,
as of Ray, so it is on every node. To run an actor with another version, give it its own
``"pip": ["requests==..."]`` (the node needs an index or a wheelhouse with it:
``RAYOPS_RUNTIME_ENV_INDEX_URL`` or ``RAYOPS_RUNTIME_ENV_FIND_LINKS``).
"""

from __future__ import annotations

import os

import rayops as ray


@ray.remote
class Counter:
    def __init__(self) -> None:
        self.name = os.getenv("counter_name")  # noqa: SIM112 (the seed names it so)
        self.counter = 0

    def inc(self) -> None:
        self.counter += 1

    def get_counter(self) -> str:
        return f"{self.name} got {self.counter}"

    def requests_version(self) -> str:
        import requests

        return str(requests.__version__)


def main() -> None:
    ray.init()
    counter = Counter.options(runtime_env={"env_vars": {"counter_name": "seed"}}).remote()
    for _ in range(5):
        ray.get(counter.inc.remote())
        print(ray.get(counter.get_counter.remote()))
    print(ray.get(counter.requests_version.remote()))
    ray.shutdown()


if __name__ == "__main__":
    main()
