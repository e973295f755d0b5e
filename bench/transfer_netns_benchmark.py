"""Cross-node transfer between nodes on separate network stacks, against the physical limit
of the same path measured in the same run.

    python bench/transfer_netns_benchmark.py [--repeat N] [--sizes 100MiB,1GiB] [--loss PCT]

Three nodes (``rayops.testing.netns_cluster``), each started with ``rayops start`` in its
own network namespace; the namespaces are joined by veth pairs on a bridge. Needs root
(it prints why and exits 0 otherwise).

Rows, per size (100 MiB and 1 GiB by default; GB/s are 10^9 bytes per second):

* ``netns_cross_node_get_<size>_gigabytes``: a task pinned to h2 returns a ``size``-byte
  array; once it is ready, the driver on h1 times ``get`` of it (the pull from h2 to h1).
* ``netns_veth_tcp_<size>_gigabytes``: one raw TCP connection from a process in h2's
  namespace to one in h1's moves the same number of bytes (``sendall`` of one buffer,
  ``recv_into`` one already-touched buffer, until the receiver's one-byte ack): the limit.
* ``netns_cross_node_get_<size>_vs_veth``: the first over the second (the median of the
  per-repeat ratios).

The two measurements alternate within each repeat, so machine load hits both alike.
``--loss PCT`` runs every row again (suffix ``+loss<PCT>%``) while PCT% of the packets
coming into h1 are dropped (nftables in h1's namespace, ``rayops.testing.chaos``), and
prints the segments h2 retransmitted. Prints figures; never fails.
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rayops.testing.chaos import packet_loss
from rayops.testing.hosts import unavailable_reason
from rayops.testing.netns_cluster import (
    NsCluster,
    running_cluster,
    tcp_retransmits,
    tcp_seconds,
)

# A long-lived driver on h1: each line on stdin is a size; it makes an object of that size
# on h2, waits until it is there, then times the get on h1 and prints the seconds.
_DRIVER = """
import sys, time
import numpy as np
import rayops
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy as NA

rayops.init("auto", _temp_dir=TEMP_DIR)
src = next(n["NodeID"] for n in rayops.nodes() if n["NodeManagerAddress"] == SRC_IP)

@rayops.remote(num_cpus=1)
def make(n):
    return np.ones(n, dtype=np.uint8)

print("READY", flush=True)
for line in sys.stdin:
    size = int(line)
    ref = make.options(scheduling_strategy=NA(src, soft=False)).remote(size)
    rayops.wait([ref], timeout=600)
    t0 = time.perf_counter()
    a = rayops.get(ref, timeout=600)
    dt = time.perf_counter() - t0
    assert a.nbytes == size, (a.nbytes, size)
    del a, ref
    print(dt, flush=True)
"""


def parse_size(text: str) -> int:
    units = {"GIB": 2**30, "MIB": 2**20, "KIB": 2**10, "GB": 10**9, "MB": 10**6, "B": 1}
    t = text.strip().upper()
    for suffix, mult in units.items():
        if t.endswith(suffix) and t[: -len(suffix)].isdigit():
            return int(t[: -len(suffix)]) * mult
    if t.isdigit():
        return int(t)
    raise argparse.ArgumentTypeError(f"--sizes: {text!r} is not a size like 100MiB or 1GiB")


def size_name(n: int) -> str:
    for suffix, mult in (("gb", 2**30), ("mb", 2**20)):
        if n % mult == 0:
            return f"{n // mult}{suffix}"
    return f"{n}b"


def report(name: str, values: list[float], unit: str) -> None:
    sd = statistics.pstdev(values) if len(values) > 1 else 0.0
    print(f"{name:<44} {statistics.mean(values):>10.3f}  {unit}  +- {sd:.3f}", flush=True)


class Driver:
    def __init__(self, cluster: NsCluster) -> None:
        code = (
            f"TEMP_DIR, SRC_IP = {cluster.temp_dir('h1')!r}, {cluster.net.hosts['h2'].ip!r}\n"
            + _DRIVER.lstrip()
        )
        self.proc = subprocess.Popen(
            ["ip", "netns", "exec", cluster.net.hosts["h1"].ns, sys.executable, "-c", code],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd="/",  # not /tmp: its rayops/ session root would shadow an editable install
        )
        if self._line() != "READY":
            raise RuntimeError("the driver on h1 did not start")

    def _line(self) -> str:
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the driver on h1 exited (rc {self.proc.wait(timeout=30)})")
        return line.strip()

    def get_seconds(self, size: int) -> float:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"{size}\n")
        self.proc.stdin.flush()
        return float(self._line())

    def close(self) -> None:
        if self.proc.stdin is not None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=30)


def run_rows(cluster: NsCluster, driver: Driver, sizes: list[int], repeat: int, sfx: str) -> None:
    net = cluster.net
    for size in sizes:
        name = size_name(size)
        try:
            driver.get_seconds(size)  # warm-up: the worker on h2 and the connections
            get_s: list[float] = []
            tcp_s: list[float] = []
            for _ in range(repeat):
                tcp_s.append(tcp_seconds(net, "h2", "h1", size))
                get_s.append(driver.get_seconds(size))
        except Exception as e:  # a benchmark prints, never fails
            print(f"netns_cross_node_get_{name}{sfx:<30} error  {type(e).__name__}: {e}")
            continue
        get_rate = [size / 1e9 / s for s in get_s]
        tcp_rate = [size / 1e9 / s for s in tcp_s]
        report(f"netns_cross_node_get_{name}_gigabytes{sfx}", get_rate, "GB/s")
        report(f"netns_veth_tcp_{name}_gigabytes{sfx}", tcp_rate, "GB/s")
        ratio = statistics.median(g / t for g, t in zip(get_rate, tcp_rate, strict=True))
        print(f"{f'netns_cross_node_get_{name}_vs_veth{sfx}':<44} {ratio:>10.3f}  x", flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=3, help="timed transfers per row (default 3)")
    p.add_argument(
        "--sizes",
        type=lambda s: [parse_size(x) for x in s.split(",")],
        default=[100 * 2**20, 2**30],
        help="comma-separated sizes (default 100MiB,1GiB)",
    )
    p.add_argument("--loss", type=int, default=0, help="also run with PCT%% loss into h1")
    args = p.parse_args(argv)
    if args.repeat < 1:
        p.error(f"--repeat must be at least 1, got {args.repeat}")
    if not 0 <= args.loss < 100:
        p.error(f"--loss must be a percentage in 0..99, got {args.loss}")
    reason = unavailable_reason()
    if reason:
        print(f"transfer_netns_benchmark: skipped: {reason}")
        return 0
    t0 = time.monotonic()
    try:
        with tempfile.TemporaryDirectory() as tmp, running_cluster(Path(tmp)) as cluster:
            cluster.wait_nodes(3)
            driver = Driver(cluster)
            try:
                run_rows(cluster, driver, args.sizes, args.repeat, "")
                if args.loss:
                    before = tcp_retransmits(cluster.net, "h2")
                    with packet_loss(cluster.net, "h1", args.loss):
                        run_rows(cluster, driver, args.sizes, args.repeat, f"+loss{args.loss}%")
                    resent = tcp_retransmits(cluster.net, "h2") - before
                    print(
                        f"{f'netns_segments_resent+loss{args.loss}%':<44} {resent:>10d}  segments"
                    )
            finally:
                driver.close()
    except Exception as e:  # a benchmark prints, never fails
        print(f"transfer_netns_benchmark: error  {type(e).__name__}: {e}")
    print(f"transfer_netns_benchmark: {time.monotonic() - t0:.1f} s in all", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
