"""The jobs, kv and placement_groups channels of the event spine against a real cluster.

A real head (GCS, raylet, agent processes on 127.0.0.1); drivers are real processes too.
Each subscriber is `rayops.gcs.follower.follow_channel` (what raylets, the head's agent and
later the dashboard use) on its own event loop in a thread, recording every batch: it sees
a driver's job start and finish, KV puts and deletes (sizes, never values), a placement
group go PENDING -> CREATED -> REMOVED, and after its stream breaks it resubscribes and
resyncs from the version it held (the events it missed, no snapshot, nothing twice).
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from rayops.gcs.client import AsyncGcsClient, GcsClient
from rayops.gcs.follower import follow_channel
from rayops.gcs.job_events import JobAdded, JobFinished, JobSnapshot
from rayops.gcs.kv_events import KeysDeleted, KvSnapshot
from rayops.gcs.pg_events import PgAdded, PgStateChanged
from rayops.gcs.pubsub import Batch
from rayops.testing.cluster import Cluster


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(str(tmp_path_factory.mktemp("channels")), head_cpus=2)
    try:
        yield c
    finally:
        c.shutdown()


class Follower:
    """`follow_channel` on an event loop of its own (a thread); what it applied, readable
    from the test."""

    def __init__(self, cluster: Cluster, channel: str) -> None:
        self.channel = channel
        self.batches: list[Batch] = []
        self.connections: list[bool] = []
        self._lock = threading.Lock()
        self._address, self._token = cluster.address, cluster.token
        self._client: AsyncGcsClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=asyncio.run, args=(self._main(),), daemon=True)
        self._thread.start()
        assert self._ready.wait(10)

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self._client = AsyncGcsClient(self._address, self._token, timeout=10)

        def apply(batch: Batch) -> bool:
            with self._lock:
                self.batches.append(batch)
            return True

        def connected(up: bool) -> None:
            with self._lock:
                self.connections.append(up)

        task = asyncio.ensure_future(
            follow_channel(
                lambda: self._client,
                self.channel,
                apply,
                subscriber_id="test",
                on_connected=connected,
            )
        )
        self._ready.set()
        await self._stop.wait()
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await self._client.close()

    def break_stream(self) -> None:
        """Close the client's channel under the open stream (a lost connection)."""
        assert self._loop is not None and self._client is not None
        asyncio.run_coroutine_threadsafe(self._client.close(), self._loop).result(10)

    def events(self) -> list[Any]:
        with self._lock:
            return [e for b in self.batches for e in b.events]

    def wait(self, cond: Callable[[], Any], what: str, timeout: float = 20.0) -> Any:
        deadline = time.monotonic() + timeout
        while True:
            value = cond()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"{self.channel}: not within {timeout} s: {what}; saw {self.batches!r}"
                )
            time.sleep(0.02)

    def close(self) -> None:
        assert self._loop is not None and self._stop is not None
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(10)


@pytest.fixture
def follow(cluster: Cluster) -> Iterator[Callable[[str], Follower]]:
    followers: list[Follower] = []

    def make(channel: str) -> Follower:
        f = Follower(cluster, channel)
        followers.append(f)
        f.wait(lambda: f.batches, "the first batch")
        return f

    yield make
    for f in followers:
        f.close()


DRIVER = textwrap.dedent(
    """
    import json, sys
    import rayops
    from rayops.util.placement_group import placement_group, remove_placement_group

    rayops.init(sys.argv[1], _temp_dir=sys.argv[2])
    out = {"job": rayops.get_runtime_context().get_job_id(), "pg": ""}
    if sys.argv[3] == "pg":
        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="PACK")
        assert pg.wait(30)
        out["pg"] = pg.id.hex()
        remove_placement_group(pg)
    rayops.shutdown()
    print(json.dumps(out))
    """
)


def _driver(cluster: Cluster, what: str) -> dict[str, str]:
    done = subprocess.run(
        [sys.executable, "-c", DRIVER, cluster.address, cluster.head.temp_dir, what],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    result: dict[str, str] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_a_jobs_subscriber_sees_a_driver_start_and_finish(
    cluster: Cluster, follow: Callable[[str], Follower]
) -> None:
    jobs = follow("jobs")
    assert isinstance(jobs.batches[0].snapshot, JobSnapshot)
    job_hex = _driver(cluster, "job")["job"]
    added = jobs.wait(
        lambda: [
            e for e in jobs.events() if isinstance(e, JobAdded) and e.job.job_id_hex == job_hex
        ],
        "the driver's job added",
    )
    (event,) = added
    assert not event.job.is_dead and event.job.driver_pid > 0 and event.job.start_time_ms > 0
    finished = jobs.wait(
        lambda: [
            e for e in jobs.events() if isinstance(e, JobFinished) and e.job_id == event.job.job_id
        ],
        "the driver's job finished",
    )
    assert finished[0].version > event.version
    assert finished[0].end_time_ms >= event.job.start_time_ms


def test_a_kv_subscriber_sees_puts_and_deletes_with_sizes_not_values(
    cluster: Cluster, follow: Callable[[str], Follower]
) -> None:
    kv = follow("kv")
    assert isinstance(kv.batches[0].snapshot, KvSnapshot)
    big = b"v" * (3 * 2**20)
    with GcsClient(cluster.address, cluster.token) as gcs:
        gcs.kv_put(b"chan:a", big, namespace="test")
        gcs.kv_put(b"chan:b", b"small", namespace="test")
        gcs.kv_put(b"chan:b", b"other", namespace="test", overwrite=False)  # no change
        assert gcs.kv_del(b"chan:a", namespace="test") == 1
        gcs.kv_put(b"chan:c", b"x", namespace="test")
        assert gcs.kv_del(b"chan:", namespace="test", by_prefix=True) == 2

    def mine() -> list[Any]:
        return [e for e in kv.events() if e.namespace == "test"]

    kv.wait(lambda: len(mine()) >= 5, "five changes")
    assert [
        (type(e).__name__, e.key, getattr(e, "value_size", None), getattr(e, "count", None))
        for e in mine()
    ] == [
        ("KeyPut", b"chan:a", 3 * 2**20, None),
        ("KeyPut", b"chan:b", 5, None),
        ("KeysDeleted", b"chan:a", None, 1),
        ("KeyPut", b"chan:c", 1, None),
        ("KeysDeleted", b"chan:", None, 2),
    ]
    assert isinstance(mine()[-1], KeysDeleted) and mine()[-1].by_prefix
    # The stream never carried the 3 MiB value.
    assert all(len(repr(b)) < 100_000 for b in kv.batches)


def test_a_placement_groups_subscriber_sees_pending_created_removed(
    cluster: Cluster, follow: Callable[[str], Follower]
) -> None:
    pgs = follow("placement_groups")
    pg_hex = _driver(cluster, "pg")["pg"]
    pg_id = bytes.fromhex(pg_hex)

    def states() -> list[str]:
        out = []
        for e in pgs.events():
            if isinstance(e, PgAdded) and e.group.pg_id == pg_id:
                out.append(e.group.state)
            elif isinstance(e, PgStateChanged) and e.pg_id == pg_id:
                out.append(e.state)
        return out

    pgs.wait(lambda: "REMOVED" in states(), "the group removed")
    seen = states()
    assert seen[0] == "PENDING" and seen[-1] == "REMOVED"
    assert seen.index("PENDING") < seen.index("CREATED") < seen.index("REMOVED"), seen
    added = next(e for e in pgs.events() if isinstance(e, PgAdded) and e.group.pg_id == pg_id)
    assert added.group.bundles == ({"CPU": 1.0}, {"CPU": 1.0})
    assert added.group.strategy == "PACK"
    created = next(
        e
        for e in pgs.events()
        if isinstance(e, PgStateChanged) and e.pg_id == pg_id and e.state == "CREATED"
    )
    assert set(created.bundle_nodes.values()) == {cluster.head.node_id}


def test_a_subscriber_that_reconnects_resyncs_with_the_events_it_missed(
    cluster: Cluster, follow: Callable[[str], Follower]
) -> None:
    kv = follow("kv")
    with GcsClient(cluster.address, cluster.token) as gcs:
        gcs.kv_put(b"before", b"1", namespace="resync")
        kv.wait(lambda: any(e.namespace == "resync" for e in kv.events()), "the first put")
        kv.break_stream()
        kv.wait(lambda: kv.connections[-1] is False, "the stream seen broken")
        for i in range(5):
            gcs.kv_put(b"during%d" % i, b"x", namespace="resync")
        kv.wait(lambda: kv.connections.count(True) >= 2, "subscribed again")
        gcs.kv_put(b"after", b"2", namespace="resync")
    kv.wait(
        lambda: any(e.namespace == "resync" and e.key == b"after" for e in kv.events()),
        "the put after the reconnect",
    )
    keys = [e.key for e in kv.events() if e.namespace == "resync"]
    assert keys == [b"before", *(b"during%d" % i for i in range(5)), b"after"]
    # One snapshot (the first subscription); the second brought deltas; versions follow on.
    assert [b.is_snapshot for b in kv.batches].count(True) == 1
    versions = [e.version for e in kv.events()]
    assert versions == list(range(versions[0], versions[0] + len(versions)))


def test_a_subscriber_from_an_old_position_gets_deltas_or_a_snapshot(cluster: Cluster) -> None:
    async def main() -> None:
        async with AsyncGcsClient(cluster.address, cluster.token) as client:
            stream = client.subscribe("jobs", "", 0, "test")
            first = await asyncio.wait_for(anext(stream), 10)
            await stream.aclose()
            assert first.is_snapshot
            job_id = await client.next_job_id()
            await client.add_job(job_id, 1, "127.0.0.1", "test", "resync")
            again = client.subscribe("jobs", first.epoch, first.version, "test")
            missed = await asyncio.wait_for(anext(again), 10)
            await again.aclose()
            assert not missed.is_snapshot
            assert [type(e) for e in missed.events] == [JobAdded]
            other = client.subscribe("jobs", "another-epoch", first.version, "test")
            snap = await asyncio.wait_for(anext(other), 10)
            await other.aclose()
            assert snap.is_snapshot and snap.version == missed.version

    asyncio.run(main())
