"""Callers learn where actors are from the event spine, on a real cluster: each core worker
follows the actors it is resolving on one keyed subscription to the GCS's "actors" channel
(no per-actor polling). A restart after the worker is SIGKILLed reaches a caller as a push
and its calls go on; an actor killed while a caller waits for it fails that caller's calls;
creating and calling 20 actors asks the GCS nothing per actor beyond registering it."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator

import pytest

import rayops
from rayops import exceptions as rex
from rayops.gcs import calls
from rayops.gcs.client import GcsClient
from rayops.testing.cluster import Cluster


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "actor-spine"), head_cpus=2)
    c.connect()
    yield c
    rayops.shutdown()
    c.shutdown()


def _unary_calls(cluster: Cluster) -> dict[str, int]:
    """How many of each unary call the GCS has served (its gRPC latency histograms)."""
    with GcsClient(cluster.address, cluster.token, timeout=10) as gcs:
        snap = gcs.call(calls.get_cluster_metrics())
    return {method: h.count for method, h in snap.grpc_latency_ms.items()}


@rayops.remote(max_restarts=1, max_task_retries=-1)
class Phoenix:
    def __init__(self, delay: float = 0.0) -> None:
        time.sleep(delay)

    def pid(self) -> int:
        return os.getpid()


def test_a_restart_after_sigkill_reaches_the_caller_and_its_calls_go_on(cluster: Cluster) -> None:
    a = Phoenix.remote()
    first = rayops.get(a.pid.remote(), timeout=30)
    before = _unary_calls(cluster)
    os.kill(first, signal.SIGKILL)
    # Sent right after the kill: in flight on the dying connection or queued behind it;
    # retried on the restarted worker once the GCS pushes its address.
    refs = [a.pid.remote() for _ in range(5)]
    pids = rayops.get(refs, timeout=60)
    assert len(set(pids)) == 1 and pids[0] != first
    assert rayops.get(a.pid.remote(), timeout=30) == pids[0]
    after = _unary_calls(cluster)
    assert after.get("GetActorInfo", 0) == before.get("GetActorInfo", 0)


def test_an_actor_killed_while_a_caller_waits_for_it_fails_the_callers_calls(
    cluster: Cluster,
) -> None:
    a = Phoenix.remote(3.0)  # its constructor runs 3 s: calls wait for it to be ALIVE
    waiting = a.pid.remote()  # waits for the actor's address
    # Killed through the GCS by another client, not by this process's core worker: the
    # caller learns it only from the actors channel.
    with GcsClient(cluster.address, cluster.token, timeout=10) as gcs:
        assert gcs.call(calls.kill_actor(a._actor_id, True))
    start = time.monotonic()
    with pytest.raises(rex.ActorDiedError, match="killed"):
        rayops.get(waiting, timeout=30)
    assert time.monotonic() - start < 10
    with pytest.raises(rex.ActorDiedError, match="killed"):
        rayops.get(a.pid.remote(), timeout=30)


@rayops.remote
class Echo:
    def echo(self, x: int) -> int:
        return x


def test_twenty_actors_are_created_and_called_without_polling_the_gcs(cluster: Cluster) -> None:
    before = _unary_calls(cluster)
    actors = [Echo.remote() for _ in range(20)]
    assert rayops.get([a.echo.remote(i) for i, a in enumerate(actors)], timeout=120) == list(
        range(20)
    )
    for _ in range(3):
        assert rayops.get([a.echo.remote(1) for a in actors], timeout=60) == [1] * 20
    after = _unary_calls(cluster)
    grown = {m: n - before.get(m, 0) for m, n in after.items() if n != before.get(m, 0)}
    assert grown.get("RegisterActor") == 20, grown
    assert "GetActorInfo" not in grown, grown
    # Nothing else per actor (usage reports come with time, at most 20/s, not per actor).
    per_time = ("RegisterActor", "GetClusterMetrics", "ReportResourceUsage")
    others = {m: n for m, n in grown.items() if m not in per_time}
    assert all(n < 20 for n in others.values()), grown
    for a in actors:
        rayops.kill(a)
