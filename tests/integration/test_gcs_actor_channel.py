"""The actors channel of the event spine over real gRPC: a GCS server on 127.0.0.1 and
`AsyncGcsClient.subscribe_keys`, the stream each core worker holds for the actors it calls.

The server runs in the test's event loop (the same `GcsServer` the GCS process runs, behind
the same token interceptor); its actor table is driven through the table's own calls (no
workers). Each key's first message is its current state, an unknown key is "not found",
only followed keys' changes arrive, a reconnect with the epoch and version held gets only
what changed, and the GCS holds nothing for keys no one follows. Then a core worker's
`ActorDirectory` (its one stream) over the same server: each state handed over once, dropped
actors no longer followed, and wanted actors failed when the GCS is gone.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from rayops.core_worker.actor_directory import ActorDirectory
from rayops.exceptions import ActorDiedError, AuthenticationError
from rayops.gcs.actor_events import ActorChange, ActorChanged, ActorSnapshot
from rayops.gcs.actor_table import ActorRecord
from rayops.gcs.client import AsyncGcsClient, GcsRefused, KeyedStream
from rayops.gcs.pubsub import Batch, KeyMissing
from rayops.gcs.server import GcsServer
from rayops.protocol import gcs_pubsub_pb2, gcs_pubsub_pb2_grpc
from rayops.rpc.grpc_channel import token_aio_channel
from rayops.testing.gcs import run_against_gcs

_run = run_against_gcs


def _register(server: GcsServer, n: int) -> ActorRecord:
    rec = ActorRecord(
        actor_id=bytes([n]) * 16,
        class_name=f"A{n}",
        job_id=1,
        name="",
        namespace="ns",
        is_detached=False,
        max_restarts=1,
        placement_resources={"CPU": 1.0},
        hold_resources={},
        creation_spec=b"",
        handle_meta=b"",
        owner_address="127.0.0.1:9",
    )
    stored, _ = server.state.actors.register(rec, get_if_exists=False)
    return stored


def _create(server: GcsServer, rec: ActorRecord, port: int) -> None:
    server.state.actors.created(
        rec, ip="127.0.0.1", port=port, node_id="n1", pid=100 + port, worker_id=b"w"
    )


async def _until(cond: Callable[[], bool], timeout: float = 10) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        assert asyncio.get_running_loop().time() < deadline, "the GCS did not get there in time"
        await asyncio.sleep(0.01)


async def _take(stream: KeyedStream) -> Batch:
    return await asyncio.wait_for(stream.next(), 10)


def _states(batch: Batch) -> list[tuple[bytes, str]]:
    return [
        (e.actor_id[:1], e.state) if isinstance(e, ActorChanged) else (e.key[:1], "missing")
        for e in batch.events
    ]


def test_each_key_gets_its_state_then_its_changes_and_nothing_else() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        a, b = _register(server, 1), _register(server, 2)
        _create(server, a, 7001)
        stream = client.subscribe_keys("actors", keys=[a.actor_id], subscriber_id="test")
        first = await _take(stream)
        assert first.epoch == server.state.publisher.epoch
        assert first.version == server.state.actors.version == 3
        (event,) = first.events
        assert isinstance(event, ActorChanged)
        assert (event.state, event.address, event.change) == (
            "ALIVE",
            ("127.0.0.1", 7001),
            ActorChange.CREATED,
        )
        # b is not followed: its changes do not come; a's do, as they happen.
        _create(server, b, 7002)
        server.state.actors.worker_died(a, "crash")
        restarting = await _take(stream)
        assert _states(restarting) == [(b"\x01", "RESTARTING")]
        assert restarting.version == 5
        # Adding b: its current state first; an unknown id: missing.
        await stream.update(add=[b.actor_id, b"\x09" * 16])
        added = await _take(stream)
        assert sorted(_states(added)) == [(b"\x02", "ALIVE"), (b"\x09", "missing")]
        assert any(isinstance(e, KeyMissing) for e in added.events)
        assert server.state.publisher.keyed_count("actors") == (1, 2)  # a and b, not 09
        # Removing a: its changes stop.
        await stream.update(remove=[a.actor_id])
        await _until(lambda: server.state.publisher.keyed_count("actors") == (1, 1))
        _create(server, a, 7003)
        server.state.actors.killed(b, no_restart=True)
        dead = await _take(stream)
        assert _states(dead) == [(b"\x02", "DEAD")]
        assert "killed" in dead.events[0].death_cause  # type: ignore[union-attr]
        stream.cancel()

    _run(test)


def test_a_reconnect_with_epoch_and_version_gets_only_what_changed() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        recs = [_register(server, n) for n in (1, 2, 3)]
        keys = [r.actor_id for r in recs]
        stream = client.subscribe_keys("actors", keys=keys)
        first = await _take(stream)
        assert len(first.events) == 3
        stream.cancel()
        held = (first.epoch, first.version)
        _create(server, recs[1], 7002)  # while disconnected
        again = client.subscribe_keys("actors", held[0], held[1], keys)
        resync = await _take(again)
        assert _states(resync) == [(b"\x02", "ALIVE")]
        again.cancel()
        # Another epoch (a restarted GCS): every key's state again.
        other = client.subscribe_keys("actors", "another-epoch", held[1], keys)
        assert len((await _take(other)).events) == 3
        # Nothing changed since: an empty first batch, at once.
        latest = client.subscribe_keys("actors", first.epoch, server.state.actors.version, keys)
        assert (await _take(latest)).events == ()
        other.cancel()
        latest.cancel()

    _run(test)


def test_the_gcs_follows_only_what_subscribers_follow_and_forgets_closed_streams() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        recs = [_register(server, n) for n in range(1, 21)]
        streams = []
        for i in range(4):  # four "processes", each calling five of the actors
            s = client.subscribe_keys("actors", keys=[r.actor_id for r in recs[i * 5 : i * 5 + 5]])
            assert len((await _take(s)).events) == 5
            streams.append(s)
        assert server.state.publisher.keyed_count("actors") == (4, 20)
        _create(server, recs[0], 7001)
        assert _states(await _take(streams[0])) == [(b"\x01", "ALIVE")]
        for s in streams:
            s.cancel()
        await _until(lambda: server.state.publisher.keyed_count("actors") == (0, 0))

    _run(test)


def test_the_actors_channel_also_streams_the_whole_table_to_plain_subscribers() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        a = _register(server, 1)
        channel = token_aio_channel(client.address, token)
        stub = gcs_pubsub_pb2_grpc.PubSubGcsServiceStub(channel)
        stream = stub.Subscribe(gcs_pubsub_pb2.SubscribeRequest(channel="actors"))
        from rayops.gcs.codec import actor_batch_from_proto

        snap = actor_batch_from_proto(await asyncio.wait_for(stream.read(), 10))
        assert isinstance(snap.snapshot, ActorSnapshot)
        assert [e.actor_id for e in snap.snapshot.actors] == [a.actor_id]
        _create(server, a, 7001)
        delta = actor_batch_from_proto(await asyncio.wait_for(stream.read(), 10))
        assert _states(delta) == [(b"\x01", "ALIVE")]
        stream.cancel()
        await channel.close()

    _run(test)


def test_keyed_subscriptions_need_the_token_and_a_keyed_channel() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        stranger = AsyncGcsClient(client.address, "not-the-token", timeout=10)
        try:
            with pytest.raises(AuthenticationError):
                await _take(stranger.subscribe_keys("actors", keys=[b"\x01" * 16]))
        finally:
            await stranger.close()
        nodes = client.subscribe_keys("nodes", keys=[b"x"])
        with pytest.raises(GcsRefused, match="no keyed channel 'nodes'") as info:
            await _take(nodes)
        assert info.value.status == "NOT_FOUND"

    _run(test)


class _Caller:
    """What a core worker's actor submitter gives its directory: which actors it still
    resolves, and what it was handed."""

    def __init__(self, client: AsyncGcsClient) -> None:
        self.client = client
        self.wanted: set[bytes] = set()
        self.got: list[tuple[bytes, str]] = []
        self.failed: list[tuple[bytes, BaseException]] = []
        self.directory = ActorDirectory(
            self._gcs, asyncio.ensure_future, self.wanted.__contains__, self._deliver, self._fail
        )

    async def _gcs(self) -> AsyncGcsClient:
        return self.client

    def _deliver(self, actor_id: bytes, info: ActorChanged | None) -> None:
        self.got.append((actor_id[:1], "missing" if info is None else info.state))

    def _fail(self, actor_id: bytes, err: BaseException) -> None:
        self.failed.append((actor_id, err))

    def want(self, actor_id: bytes) -> None:
        self.wanted.add(actor_id)
        self.directory.want(actor_id)

    def drop(self, actor_id: bytes) -> None:
        self.wanted.discard(actor_id)
        self.directory.drop(actor_id)


def test_a_core_workers_directory_hands_over_each_state_once_and_drops_what_it_has() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        a, b = _register(server, 1), _register(server, 2)
        caller = _Caller(client)
        caller.want(a.actor_id)
        caller.want(b"\x07" * 16)  # unknown to the GCS
        await _until(lambda: len(caller.got) == 2)
        assert sorted(caller.got) == [(b"\x01", "PENDING_CREATION"), (b"\x07", "missing")]
        _create(server, a, 7001)
        await _until(lambda: caller.got[-1] == (b"\x01", "ALIVE"))
        caller.drop(a.actor_id)  # the caller has the address: the GCS stops sending a
        await _until(lambda: server.state.publisher.keyed_count("actors") == (1, 0))
        server.state.actors.worker_died(a, "crash")
        caller.want(b.actor_id)
        await _until(lambda: caller.got[-1] == (b"\x02", "PENDING_CREATION"))
        assert len(caller.got) == 4  # nothing about a since it was dropped
        assert caller.failed == []

    _run(test)


def test_a_core_workers_directory_fails_what_it_wants_when_the_gcs_is_gone() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        a = _register(server, 1)
        impatient = AsyncGcsClient(client.address, token, timeout=0.5)
        try:
            caller = _Caller(impatient)
            caller.want(a.actor_id)
            await _until(lambda: caller.got == [(b"\x01", "PENDING_CREATION")])
            await server.stop(None)  # the stream ends; the GCS does not come back
            await _until(lambda: len(caller.failed) == 1)
            actor_id, err = caller.failed[0]
            assert actor_id == a.actor_id
            assert isinstance(err, ActorDiedError)
            assert "could not reach the GCS" in str(err)
            assert caller.directory.following() == 0
        finally:
            await impatient.close()

    _run(test)
