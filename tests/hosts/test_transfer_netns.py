"""Cross-node transfers between nodes in their own network namespaces (separate network
stacks joined by veth and a bridge): a 1 GB object arrives byte-identical on a clean link
and on a link that drops packets, and a smaller object read on two nodes at once arrives
whole on both.

Only the public API is used (``put``, tasks pinned to a node, ``get``), so these tests hold
whatever the pull path does inside; the hosts share one filesystem (/dev/shm too), so each
transfer also checks that the object's bytes went out over the head's link and in over every
reader's link (a reader may get it from another reader). Packet loss is made with nftables
inside the receiving node's namespace (``rayops.testing.chaos.packet_loss``; this kernel has
no ``netem``); TCP retransmissions in the namespaces prove packets really were lost.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from rayops.testing.chaos import packet_loss
from rayops.testing.hosts import unavailable_reason
from rayops.testing.netns_cluster import (
    NsCluster,
    link_bytes,
    running_cluster,
    tcp_retransmits,
)

pytestmark = pytest.mark.slow

GB = 2**30
LOSS_PCT = 3

# Runs in the driver (the head's namespace, h1). ``pattern`` gives every 8-byte word of the
# object a distinct value (an odd multiplier and an xorshift are bijections on 64-bit words),
# so a lost, repeated or misplaced chunk changes the digest.
_DRIVER = """
import hashlib, json, time
import numpy as np
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy as NA

def pattern(nbytes, seed):
    w = np.arange(nbytes // 8, dtype=np.uint64)
    w += np.uint64(seed << 40)
    w *= np.uint64(0x9E3779B97F4A7C15)
    w ^= w >> np.uint64(29)
    return w.view(np.uint8)

@rayops.remote(num_cpus=1)
def digest(a):
    t0 = time.perf_counter()
    h = hashlib.sha256(a.data).hexdigest()
    return h, a.nbytes, time.perf_counter() - t0

node_of = {n["NodeManagerAddress"]: n["NodeID"] for n in rayops.nodes() if n["Alive"]}
a = pattern(SIZE, SEED)
want = hashlib.sha256(a.data).hexdigest()
ref = rayops.put(a)
del a
t0 = time.perf_counter()
refs = [
    digest.options(scheduling_strategy=NA(node_of[ip], soft=False)).remote(ref)
    for ip in READERS
]
got = rayops.get(refs, timeout=TIMEOUT)
wall = time.perf_counter() - t0
print("RESULT " + json.dumps({"want": want, "got": got, "wall_s": wall}), flush=True)
"""


@pytest.fixture(scope="module")
def ns_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NsCluster]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("nsxfer")
    with running_cluster(base) as cluster:
        cluster.wait_nodes(3)
        yield cluster


def _transfer(
    cluster: NsCluster, size: int, seed: int, readers: list[str], timeout: float = 150
) -> dict[str, object]:
    """Put a ``size``-byte object on the head and read it with one task pinned to each of
    ``readers`` (host names), all at once; returns the digests and the wall time. Checks
    that the bytes really crossed the links: the hosts share one filesystem, /dev/shm too."""
    net = cluster.net
    ips = [net.hosts[h].ip for h in readers]
    rx0 = {h: link_bytes(net, h)[0] for h in readers}
    tx0 = link_bytes(net, "h1")[1]
    code = f"SIZE, SEED, READERS, TIMEOUT = {size}, {seed}, {ips!r}, {timeout}\n" + _DRIVER.lstrip()
    out = cluster.driver(code, timeout=timeout + 60)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
    assert lines, out.stdout + out.stderr
    result: dict[str, object] = json.loads(lines[-1].removeprefix("RESULT "))
    for h in readers:
        came = link_bytes(net, h)[0] - rx0[h]
        assert came >= size, f"only {came} bytes came in over {h}'s link for a {size}-byte object"
    sent = link_bytes(net, "h1")[1] - tx0
    assert sent >= size, f"only {sent} bytes left h1 over its link for a {size}-byte object"
    return result


def _assert_identical(result: dict[str, object], size: int, readers: list[str]) -> None:
    got = result["got"]
    assert isinstance(got, list) and len(got) == len(readers)
    for host, (digest, nbytes, _hash_s) in zip(readers, got, strict=True):
        assert nbytes == size, f"{host} read {nbytes} bytes, expected {size}"
        assert digest == result["want"], f"{host} read different bytes than were put"


def _report(what: str, result: dict[str, object], size: int) -> None:
    got = result["got"]
    assert isinstance(got, list)
    wall = float(result["wall_s"])  # type: ignore[arg-type]
    hashing = max(float(g[2]) for g in got)
    print(
        f"\n{what}: {size / 1e9:.2f} GB in {wall:.2f} s (task wall, its sha256 {hashing:.2f} s"
        f" included); transfer ~{size / 1e9 / max(wall - hashing, 1e-6):.2f} GB/s"
    )


def test_1gb_byte_identical_over_a_clean_link(ns_cluster: NsCluster) -> None:
    result = _transfer(ns_cluster, GB, seed=1, readers=["h2"])
    _assert_identical(result, GB, ["h2"])
    _report("1 GB h1 -> h2, clean link", result, GB)


def test_1gb_byte_identical_over_a_link_dropping_packets(ns_cluster: NsCluster) -> None:
    net = ns_cluster.net
    before = sum(tcp_retransmits(net, h) for h in net.hosts)
    with packet_loss(net, "h3", LOSS_PCT):
        result = _transfer(ns_cluster, GB, seed=2, readers=["h3"])
    retransmitted = sum(tcp_retransmits(net, h) for h in net.hosts) - before
    tables = subprocess.run(
        ["ip", "netns", "exec", net.hosts["h3"].ns, "nft", "list", "tables"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "rayops_chaos" not in tables, "the loss rule outlived the test"
    _assert_identical(result, GB, ["h3"])
    # The link really dropped packets while the object crossed it.
    assert retransmitted > 0, "no TCP segment was retransmitted: no packet was lost"
    _report(f"1 GB h1 -> h3, {LOSS_PCT}% loss ({retransmitted} segments resent)", result, GB)


def test_object_read_on_two_nodes_at_once(ns_cluster: NsCluster) -> None:
    size = 128 * 2**20
    result = _transfer(ns_cluster, size, seed=3, readers=["h2", "h3"])
    _assert_identical(result, size, ["h2", "h3"])
    _report("128 MiB h1 -> h2 and h3 at once", result, size)
