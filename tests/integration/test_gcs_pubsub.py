"""The event spine over real gRPC: a GCS server on 127.0.0.1 and `AsyncGcsClient.subscribe_nodes`.

The server runs in the test's event loop (the same `GcsServer` the GCS process runs, behind
the same token interceptor); the client is the one raylets use. Snapshot then deltas, resync
after a reconnect, refusal without the token, streams ended when the GCS stops, and a
raylet's `ClusterView` kept by `follow_gcs` across a broken stream until its own death.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, Callable

import grpc
import pytest

from rayops.exceptions import AuthenticationError
from rayops.gcs.client import AsyncGcsClient
from rayops.gcs.node_events import NodeAdded, NodeDead, NodeResourcesChanged, NodeSnapshot
from rayops.gcs.pubsub import Batch
from rayops.gcs.server import GcsServer
from rayops.gcs.types import NodeInfo
from rayops.protocol import gcs_pubsub_pb2, gcs_pubsub_pb2_grpc
from rayops.raylet.cluster_view import ClusterView, NodeView, follow_gcs
from rayops.rpc.grpc_channel import token_aio_channel
from rayops.testing.gcs import run_against_gcs
from rayops.version import __version__


def _node(node_id: str) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        node_ip="127.0.0.1",
        raylet_port=7000,
        resources_total={"CPU": 2.0},
        rayops_version=__version__,
    )


_run = run_against_gcs


async def _take(stream: AsyncGenerator[Batch, None]) -> Batch:
    return await asyncio.wait_for(anext(stream), 10)


def test_snapshot_then_deltas_as_the_table_changes() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        await client.register_node(_node("aa"))
        stream = client.subscribe_nodes("", 0, "test")
        first = await _take(stream)
        assert first.is_snapshot
        assert first.epoch == server.state.publisher.epoch
        assert isinstance(first.snapshot, NodeSnapshot)
        assert [n.node_id for n in first.snapshot.nodes] == ["aa"]

        await client.register_node(_node("bb"))
        added = await _take(stream)
        assert [(type(e), e.version) for e in added.events] == [(NodeAdded, 2)]
        assert isinstance(added.events[0], NodeAdded)
        assert added.events[0].node.resources_total == {"CPU": 2.0}

        await client.report_resource_usage("bb", {"CPU": 2.0}, {"CPU": 0.5}, 1, 100, 0)
        usage = await _take(stream)
        (event,) = usage.events
        assert isinstance(event, NodeResourcesChanged)
        assert (event.node_id, event.resources_available) == ("bb", {"CPU": 0.5})
        assert event.object_store_stats.used_bytes == 1

        await client.unregister_node("aa", "left")
        dead = await _take(stream)
        assert [(type(e), getattr(e, "node_id", "")) for e in dead.events] == [(NodeDead, "aa")]
        assert dead.version == 4
        await stream.aclose()

    _run(test)


def test_a_reconnecting_subscriber_resyncs_from_its_version() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        await client.register_node(_node("aa"))
        stream = client.subscribe_nodes()
        first = await _take(stream)
        await stream.aclose()
        await client.register_node(_node("bb"))
        await client.unregister_node("aa", "left")

        again = client.subscribe_nodes(first.epoch, first.version)
        missed = await _take(again)
        assert not missed.is_snapshot
        assert [type(e) for e in missed.events] == [NodeAdded, NodeDead]
        assert missed.version == 3
        await again.aclose()

        # Versions from another GCS process (another epoch) get a snapshot instead.
        other = client.subscribe_nodes("another-epoch", 3)
        snap = await _take(other)
        assert snap.is_snapshot
        assert sorted((n.node_id, str(n.state)) for n in snap.snapshot.nodes) == [
            ("aa", "DEAD"),
            ("bb", "ALIVE"),
        ]
        await other.aclose()

    _run(test)


def test_subscribing_without_the_token_is_refused() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        await client.register_node(_node("aa"))
        stranger = AsyncGcsClient(client.address, "not-the-token", timeout=10)
        try:
            with pytest.raises(AuthenticationError):
                await _take(stranger.subscribe_nodes())
        finally:
            await stranger.close()
        assert server.state.publisher.subscriber_count("nodes") == 0

    _run(test)


def test_stopping_the_gcs_ends_the_streams() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        stream = client.subscribe_nodes()
        await _take(stream)
        assert server.state.publisher.subscriber_count("nodes") == 1
        server.state.publisher.close()
        with pytest.raises(StopAsyncIteration):
            await _take(stream)

    _run(test)


def test_an_unknown_channel_is_not_found() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        channel = token_aio_channel(client.address, token)
        try:
            stub = gcs_pubsub_pb2_grpc.PubSubGcsServiceStub(channel)
            stream = stub.Subscribe(gcs_pubsub_pb2.SubscribeRequest(channel="no-such-channel"))
            with pytest.raises(grpc.RpcError) as info:
                await stream.read()
            assert info.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
            assert "nodes" in (info.value.details() or "")  # type: ignore[attr-defined]
        finally:
            await channel.close(None)

    _run(test)


async def _until(condition: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.01)


def test_a_raylet_view_follows_the_gcs_across_a_broken_stream_until_its_own_death() -> None:
    async def test(server: GcsServer, client: AsyncGcsClient, token: str) -> None:
        local = "11"
        await client.register_node(_node(local))
        await client.register_node(_node("aa"))
        view = ClusterView(
            local, lambda: NodeView(local, ("127.0.0.1", 7000), {"CPU": 2.0}, {"CPU": 2.0})
        )
        dead: list[str] = []
        stopped = asyncio.Event()
        task = asyncio.ensure_future(
            follow_gcs(
                view, lambda: client, dead.extend, stopped.set, lambda: None, asyncio.Event()
            )
        )
        try:
            await _until(lambda: "aa" in view.remote, "the snapshot holds aa")
            server.state.publisher.close()  # every stream ends: the view subscribes again
            await client.register_node(_node("bb"))
            await client.unregister_node("aa", "left")
            await _until(lambda: "bb" in view.remote, "bb seen after the stream broke")
            await _until(lambda: dead == ["aa"], "aa's death announced once")
            assert not view.remote["aa"].alive
            await client.unregister_node(local, "missed health checks")
            await asyncio.wait_for(stopped.wait(), 10)  # no split brain: the raylet stops
            await asyncio.wait_for(task, 10)
        finally:
            task.cancel()

    _run(test)
