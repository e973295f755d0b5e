"""The GCS SIGKILLed mid-run and restarted by its supervisor (issue 14, item 1): nothing the
cluster held is lost, and nothing running notices more than a pause.

Real processes: the head's supervisor, GCS, raylet, workers; a driver in this process
submitting tasks from a thread all along; a detached named actor, a named actor, an actor
call in flight, a placement group, KV, the job. The GCS reads its tables back from the
session directory's SQLite store. Then, with a short reconnect window and no supervisor,
past the window: a clear error for the driver's call and the raylet's exit with its log line.
"""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from collections.abc import Callable, Iterator

import pytest

import rayops
from rayops.gcs.client import GcsClient, GcsUnreachableError
from rayops.testing.cluster import Cluster
from rayops.testing.waiting import process_alive, wait_for
from rayops.util.placement_group import placement_group, placement_group_table

NS = "gcs-restart"


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "gcs-restart"), head_cpus=4)
    c.connect(namespace=NS)
    yield c
    rayops.shutdown()
    c.shutdown()


@rayops.remote(num_cpus=0)
class Counter:
    def __init__(self) -> None:
        self.n = 0

    def incr(self) -> int:
        self.n += 1
        return self.n

    def slow_incr(self, seconds: float) -> int:
        time.sleep(seconds)
        self.n += 1
        return self.n


@rayops.remote(num_cpus=0.1)
def square(x: int) -> int:
    return x * x


def _task(i: int) -> int:
    return int(rayops.get(square.remote(i), timeout=60))


class Submitter(threading.Thread):
    """Calls `work(i)` over and over (a task, or a call that needs the GCS): every result
    and when it came."""

    def __init__(self, work: Callable[[int], int]) -> None:
        super().__init__(daemon=True)
        self.work = work
        self.stop = threading.Event()
        self.results: list[tuple[int, int, float]] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        i = 0
        try:
            while not self.stop.is_set():
                got = self.work(i)
                self.results.append((i, got, time.monotonic()))
                i += 1
                time.sleep(0.01)
        except BaseException as err:
            self.error = err

    def max_gap(self, start: float, end: float) -> float:
        times = [start] + [t for _, _, t in self.results if start <= t <= end] + [end]
        return max(b - a for a, b in itertools.pairwise(times))


def _serving(address: str, token: str) -> bool:
    try:
        with GcsClient(address, token, timeout=0.5) as gcs:
            gcs.check_alive()
        return True
    except Exception:
        return False


def test_gcs_sigkill_and_restart_loses_nothing(cluster: Cluster) -> None:
    gcs = GcsClient(cluster.address, cluster.token, timeout=30)
    detached = Counter.options(name="keeper", lifetime="detached").remote()
    named = Counter.options(name="plain").remote()
    assert rayops.get([detached.incr.remote(), named.incr.remote()], timeout=60) == [1, 1]
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK", name="group")
    assert pg.wait(30)
    pg_before = placement_group_table(pg)
    gcs.kv_put(b"autoscaler/instances", b"instance table", namespace="autoscaler")
    jobs_before = {(j.job_id, j.is_dead) for j in gcs.get_all_jobs()}
    nodes_before = {(n.node_id, n.state) for n in gcs.get_all_nodes()}
    cluster_id = gcs.check_alive().cluster_id

    submitter = Submitter(_task)
    # A driver's calls that need the GCS (the driver's own client: the default window).
    kv_client = GcsClient(cluster.address, cluster.token)

    def kv_call(i: int) -> int:
        kv_client.kv_put(f"k{i}".encode(), str(i * i).encode(), namespace="restart")
        return int(kv_client.kv_get(f"k{i}".encode(), namespace="restart") or b"-1")

    kv_user = Submitter(kv_call)
    submitter.start()
    kv_user.start()
    wait_for("tasks flowing", lambda: len(submitter.results) >= 20)
    wait_for("KV calls flowing", lambda: len(kv_user.results) >= 20)
    in_flight = detached.slow_incr.remote(2.0)
    time.sleep(0.3)  # the call is running on the actor when the GCS dies

    killed_at = time.monotonic()
    _restart_gcs(cluster)
    served_at = time.monotonic()
    restart_s = served_at - killed_at

    # The call in flight completes; both actors keep their state and are found by name.
    assert rayops.get(in_flight, timeout=30) == 2
    assert rayops.get(detached.incr.remote(), timeout=30) == 3
    assert rayops.get(rayops.get_actor("keeper", namespace=NS).incr.remote(), timeout=30) == 4
    assert rayops.get(rayops.get_actor("plain").incr.remote(), timeout=30) == 2
    # New work that needs the GCS goes on: a new actor.
    fresh = Counter.remote()
    assert rayops.get(fresh.incr.remote(), timeout=30) == 1

    time.sleep(1.0)  # the submitters run on after the restart
    now = time.monotonic()
    for user, what in ((submitter, "task"), (kv_user, "KV call")):
        user.stop.set()
        user.join(timeout=60)
        assert user.error is None, repr(user.error)
        assert [(i, i * i) for i in range(len(user.results))] == [
            (i, got) for i, got, _ in user.results
        ], f"a {what} result was lost or wrong"
        pause = user.max_gap(killed_at, now)
        print(
            f"\nGCS restart (SIGKILL to first served request) {restart_s:.2f} s; the driver's "
            f"longest wait for a {what} {pause:.2f} s ({pause - restart_s:+.2f} s beyond the "
            f"restart); {len(user.results)} results, none lost"
        )
        assert pause - restart_s < 5.0
    kv_client.close()

    # The tables are intact: same cluster, nodes, jobs, KV, placement group.
    assert gcs.check_alive().cluster_id == cluster_id
    assert {(n.node_id, n.state) for n in gcs.get_all_nodes()} == nodes_before
    assert jobs_before <= {(j.job_id, j.is_dead) for j in gcs.get_all_jobs()}
    assert gcs.kv_get(b"autoscaler/instances", namespace="autoscaler") == b"instance table"
    after = placement_group_table(pg)
    assert after["state"] == "CREATED"
    assert after["bundles_to_node_id"] == pg_before["bundles_to_node_id"]

    # The group's bundles are still reserved and usable.
    @rayops.remote(num_cpus=1)
    def in_bundle() -> str:
        return "ran"

    from rayops.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=1)
    assert rayops.get(in_bundle.options(scheduling_strategy=strategy).remote(), timeout=30) == "ran"
    rayops.kill(detached)
    gcs.close()


@rayops.remote(num_cpus=0, max_restarts=1, max_task_retries=-1)
class Restartable:
    def pid(self) -> int:
        return os.getpid()


def _restart_gcs(cluster: Cluster) -> None:
    old_pid = cluster.gcs_pid()
    os.kill(old_pid, signal.SIGKILL)
    wait_for("the old GCS gone", lambda: not process_alive(old_pid), timeout=10)
    wait_for(
        "a restarted GCS serving",
        lambda: cluster.gcs_pid() != old_pid and _serving(cluster.address, cluster.token),
        timeout=30,
        interval=0.01,
    )


def test_actors_adopted_by_a_restarted_gcs_restart_and_die_as_before(cluster: Cluster) -> None:
    """The restarted GCS knows the workers of the actors it read back: a worker's death
    restarts its actor (max_restarts), and kill() stops the worker."""
    a, b = Restartable.remote(), Restartable.remote()
    pid_a, pid_b = rayops.get([a.pid.remote(), b.pid.remote()], timeout=60)
    _restart_gcs(cluster)
    os.kill(pid_a, signal.SIGKILL)
    new_a = rayops.get(a.pid.remote(), timeout=60)
    assert new_a != pid_a
    rayops.kill(b)
    wait_for("the killed actor's worker to exit", lambda: not process_alive(pid_b), timeout=20)
    with pytest.raises(rayops.exceptions.ActorDiedError):
        rayops.get(b.pid.remote(), timeout=30)
    rayops.kill(a)


def test_past_the_reconnect_window_a_clear_error_and_the_raylet_exits(
    tmp_path: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RAYOPS_GCS_RECONNECT_TIMEOUT_S", "3")
    cluster = Cluster(str(tmp_path), head_cpus=1, object_store_memory=64 * 2**20)
    try:
        raylet = cluster.head.started.procs["raylet"]
        gcs = GcsClient(cluster.address, cluster.token)
        assert gcs.timeout == 3.0
        gcs.kv_put(b"k", b"v")
        # No restart this time: SIGKILL the supervisor; its GCS follows it (PDEATHSIG).
        supervisor = cluster.head.started.procs["gcs"]
        gcs_pid = cluster.gcs_pid()
        supervisor.kill()
        supervisor.wait(timeout=10)
        wait_for("the GCS to follow its supervisor", lambda: not process_alive(gcs_pid), 10)
        start = time.monotonic()
        with pytest.raises(GcsUnreachableError) as info:
            gcs.kv_get(b"k")
        waited = time.monotonic() - start
        assert 2.5 <= waited < 6.0, waited
        message = str(info.value)
        assert cluster.address in message and "within 3 s" in message
        assert "RAYOPS_GCS_RECONNECT_TIMEOUT_S" in message
        gcs.close()
        # The raylet gives up a window after losing the GCS (not a warning forever).
        wait_for("the raylet to exit", lambda: raylet.poll() is not None, timeout=20)
        assert raylet.returncode == 1
        log = os.path.join(cluster.head.started.record.session_dir, "logs", "raylet.log")
        with open(log) as f:
            text = f.read()
        assert "has been unreachable for" in text and "this raylet exits" in text
    finally:
        cluster.shutdown()
