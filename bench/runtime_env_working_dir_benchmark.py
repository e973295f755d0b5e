"""working_dir runtime_env: a 10 MiB package ready on a second node (issue 11's target: < 1 s).

    .venv/bin/python bench/runtime_env_working_dir_benchmark.py [--mib 10] [--rounds 3]

A real two-node cluster on this machine (rayops.testing.cluster). Each round writes a new
directory of incompressible files (so nothing is cached: the driver zips and uploads it, the
second node downloads and unpacks it and starts a worker in it) and times the first task
pinned to the second node, then a second task in an env with the same package (cached on the
node). Prints its figures; never fails.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import rayops
from rayops.testing.cluster import Cluster
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mib", type=int, default=10, help="size of the working_dir")
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    base = tempfile.mkdtemp(prefix="renv-wd-bench-")
    cluster = Cluster(os.path.join(base, "cluster"), head_cpus=1)
    try:
        other = cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes(2)
        cluster.connect()
        there = NodeAffinitySchedulingStrategy(other.node_id, soft=False)

        @rayops.remote(scheduling_strategy=there)
        def files() -> int:
            return len(os.listdir("."))

        rayops.get(files.remote())  # a plain worker on the node is warm
        cold, cached = [], []
        for r in range(args.rounds):
            wd = os.path.join(base, f"wd{r}")
            os.makedirs(wd)
            for i in range(args.mib):
                with open(os.path.join(wd, f"blob{i}.bin"), "wb") as f:
                    f.write(os.urandom(2**20))
            t0 = time.perf_counter()
            assert rayops.get(files.options(runtime_env={"working_dir": wd}).remote()) == args.mib
            cold.append(time.perf_counter() - t0)
            env = {"working_dir": wd, "env_vars": {"ROUND": str(r)}}  # another env, same package
            t0 = time.perf_counter()
            assert rayops.get(files.options(runtime_env=env).remote()) == args.mib
            cached.append(time.perf_counter() - t0)
        rayops.shutdown()
    finally:
        cluster.shutdown()
    print(f"rayops working_dir of {args.mib} MiB, first task on a second node")
    print(f"  new package: {', '.join(f'{c:.2f}' for c in cold)} s "
          f"(median {statistics.median(cold):.2f})")  # fmt: skip
    print(f"  same package, another env: {', '.join(f'{c:.2f}' for c in cached)} s")


if __name__ == "__main__":
    main()
