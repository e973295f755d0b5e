"""The GCS publisher without processes: the delta log, snapshots, deltas, coalescing, resync.

The node table is real (it is the channel's source); subscribers are the publisher's own
`Subscription`s, read on an asyncio loop as the gRPC service reads them.
"""

from __future__ import annotations

import asyncio
import time

import pytest

from rayops.gcs.actor_table import ActorRecord, ActorTable
from rayops.gcs.node_events import (
    MarkNodeDead,
    NodeAdded,
    NodeDead,
    NodeResourcesChanged,
    NodeSnapshot,
    RegisterNode,
    ReportUsage,
)
from rayops.gcs.node_table import NodeTable
from rayops.gcs.pubsub import (
    UNFOLLOWED_LOG_S,
    USAGE_FLUSH_S,
    Batch,
    ChannelSpec,
    DeltaLog,
    KeyMissing,
    Publisher,
    Subscription,
)
from rayops.gcs.types import NodeInfo


def _node(node_id: str) -> NodeInfo:
    return NodeInfo(
        node_id=node_id, node_ip="127.0.0.1", raylet_port=7000, resources_total={"CPU": 1.0}
    )


def _spine(log_size: int = 100, max_queued: int = 100) -> tuple[Publisher, NodeTable]:
    publisher = Publisher(log_size=log_size, max_queued=max_queued, epoch="e1")
    table = NodeTable(lambda: 1_000, sink=publisher.sink("nodes"))
    publisher.add_channel(
        "nodes",
        ChannelSpec(
            snapshot=lambda: (table.version, table.snapshot()),
            urgent=lambda e: not isinstance(e, NodeResourcesChanged),
            key=lambda e: e.node_id if isinstance(e, NodeResourcesChanged) else None,
        ),
    )
    return publisher, table


async def _next(sub: Subscription, timeout: float = 2.0) -> Batch:
    return await asyncio.wait_for(sub.next_batch(), timeout)


# The delta log.


def test_delta_log_gives_the_missed_events_or_none() -> None:
    log = DeltaLog(max_events=3)
    log.append([NodeDead(v, "aa", "x", 0) for v in range(1, 6)])  # keeps versions 3, 4, 5
    assert log.version == 5
    assert log.since(5) == []
    assert [e.version for e in log.since(3) or []] == [4, 5]
    assert [e.version for e in log.since(2) or []] == [3, 4, 5]
    assert log.since(1) is None  # version 2 is no longer held
    assert log.since(0) is None  # new subscriber
    assert log.since(9) is None  # a version from the future: another epoch
    with pytest.raises(ValueError, match="does not follow"):
        log.append([NodeDead(5, "aa", "x", 0)])


# Subscriptions.


def test_a_new_subscriber_gets_a_snapshot_then_deltas() -> None:
    async def main() -> None:
        publisher, table = _spine()
        table.apply(RegisterNode(_node("aa")))
        sub = publisher.subscribe("nodes", "", 0)
        first = await _next(sub)
        assert first.is_snapshot
        assert first.version == 1
        assert isinstance(first.snapshot, NodeSnapshot)
        assert [n.node_id for n in first.snapshot.nodes] == ["aa"]

        table.apply(RegisterNode(_node("bb")))
        table.apply(MarkNodeDead("aa", "gone"))
        batch = await _next(sub)
        assert not batch.is_snapshot
        assert [type(e) for e in batch.events] == [NodeAdded, NodeDead]
        assert batch.version == 3
        sub.close()
        assert publisher.subscriber_count("nodes") == 0

    asyncio.run(main())


def test_a_subscriber_that_comes_back_gets_only_what_it_missed() -> None:
    async def main() -> None:
        publisher, table = _spine()
        table.apply(RegisterNode(_node("aa")))
        sub = publisher.subscribe("nodes", "", 0)
        seen = await _next(sub)
        sub.close()  # the stream broke
        table.apply(RegisterNode(_node("bb")))
        again = publisher.subscribe("nodes", seen.epoch, seen.version)
        batch = await _next(again)
        assert not batch.is_snapshot
        assert [e.node.node_id for e in batch.events if isinstance(e, NodeAdded)] == ["bb"]
        assert batch.version == 2
        # Up to date: an empty first batch, which confirms the stream.
        current = await _next(publisher.subscribe("nodes", "e1", 2))
        assert (current.is_snapshot, current.events, current.version) == (False, (), 2)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("epoch", "version"), [("other-gcs", 1), ("e1", 0), ("e1", 99)], ids=["epoch", "new", "ahead"]
)
def test_another_epoch_or_an_unknown_version_gets_a_snapshot(epoch: str, version: int) -> None:
    async def main() -> None:
        publisher, table = _spine()
        table.apply(RegisterNode(_node("aa")))
        table.apply(RegisterNode(_node("bb")))
        first = await _next(publisher.subscribe("nodes", epoch, version))
        assert first.is_snapshot
        assert first.version == 2

    asyncio.run(main())


def test_a_subscriber_behind_the_kept_log_gets_a_snapshot() -> None:
    async def main() -> None:
        publisher, table = _spine(log_size=2)
        publisher.subscribe("nodes", "", 0)  # a follower: the channel keeps its log
        for node_id in ("aa", "bb", "cc", "dd"):
            table.apply(RegisterNode(_node(node_id)))
        first = await _next(publisher.subscribe("nodes", "e1", 1))
        assert first.is_snapshot
        assert len(first.snapshot.nodes) == 4
        deltas = await _next(publisher.subscribe("nodes", "e1", 2))
        assert [e.version for e in deltas.events] == [3, 4]

    asyncio.run(main())


def test_usage_is_coalesced_per_node_and_membership_goes_out_at_once() -> None:
    async def main() -> None:
        publisher, table = _spine()
        for node_id in ("aa", "bb"):
            table.apply(RegisterNode(_node(node_id)))
        sub = publisher.subscribe("nodes", "", 0)
        await _next(sub)
        for free in (0.5, 0.25, 0.0):
            table.apply(ReportUsage("aa", {"CPU": 1.0}, {"CPU": free}))
        table.apply(ReportUsage("bb", {"CPU": 1.0}, {"CPU": 0.5}))
        started = time.monotonic()
        batch = await _next(sub)
        # Held for the usage window (the snapshot just went out), then one event per node.
        assert time.monotonic() - started >= USAGE_FLUSH_S * 0.5
        assert [(e.node_id, e.resources_available) for e in batch.events] == [
            ("aa", {"CPU": 0.0}),
            ("bb", {"CPU": 0.5}),
        ]
        assert batch.version == table.version

        table.apply(ReportUsage("aa", {"CPU": 1.0}, {"CPU": 1.0}))
        table.apply(MarkNodeDead("bb", "gone"))  # urgent: no wait for the window
        started = time.monotonic()
        batch = await _next(sub)
        assert time.monotonic() - started < USAGE_FLUSH_S
        assert [type(e) for e in batch.events] == [NodeResourcesChanged, NodeDead]

    asyncio.run(main())


def test_a_subscriber_that_falls_too_far_behind_is_sent_a_snapshot() -> None:
    async def main() -> None:
        publisher, table = _spine(max_queued=3)
        sub = publisher.subscribe("nodes", "", 0)
        await _next(sub)
        for i in range(5):
            table.apply(RegisterNode(_node(f"a{i}")))
        batch = await _next(sub)
        assert batch.is_snapshot
        assert (batch.version, len(batch.snapshot.nodes)) == (5, 5)

    asyncio.run(main())


def test_closing_the_publisher_ends_every_stream() -> None:
    async def main() -> None:
        publisher, _ = _spine()
        sub = publisher.subscribe("nodes", "", 0)
        await _next(sub)
        waiting = asyncio.ensure_future(sub.next_batch())
        await asyncio.sleep(0)
        publisher.close()
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(waiting, 2)
        assert [b async for b in sub] == []

    asyncio.run(main())


# Keyed subscriptions (the actors channel: callers follow only the actors they call).


def _actor_spine() -> tuple[Publisher, ActorTable, list[ActorRecord]]:
    publisher = Publisher(epoch="e1")
    table = ActorTable(sink=publisher.sink("actors"))
    publisher.add_channel(
        "actors",
        ChannelSpec(snapshot=lambda: (table.version, table.snapshot()), key=lambda e: e.actor_id),
    )
    publisher.enable_keys("actors", table.current)
    recs = []
    for n in (1, 2, 3):
        rec = ActorRecord(
            actor_id=bytes([n]) * 16,
            class_name="A",
            job_id=1,
            name="",
            namespace="",
            is_detached=False,
            max_restarts=-1,
            placement_resources={},
            hold_resources={},
            creation_spec=b"",
            handle_meta=b"",
            owner_address="",
        )
        recs.append(table.register(rec, get_if_exists=False)[0])
    return publisher, table, recs


def _keyed(batch: Batch) -> list[tuple[int, str]]:
    return [
        (e.key[0], "missing") if isinstance(e, KeyMissing) else (e.actor_id[0], e.state)
        for e in batch.events
    ]


def test_a_keyed_subscriber_gets_its_keys_states_then_only_their_newest_changes() -> None:
    async def main() -> None:
        publisher, table, (a, b, _c) = _actor_spine()
        sub = publisher.subscribe_keys("actors", "", 0, [a.actor_id, bytes([9]) * 16])
        first = await sub.next_batch()
        assert _keyed(first) == [(1, "PENDING_CREATION"), (9, "missing")]
        assert first.version == table.version == 3
        # b and c are not followed; a changes three times before the subscriber reads.
        table.created(a, ip="h", port=1, node_id="n", pid=1, worker_id=b"w")
        table.created(b, ip="h", port=2, node_id="n", pid=2, worker_id=b"w")
        table.worker_died(a, "crash")
        table.created(a, ip="h", port=3, node_id="n", pid=3, worker_id=b"w")
        newest = await sub.next_batch()
        assert _keyed(newest) == [(1, "ALIVE")]
        assert newest.events[0].address_port == 3 and newest.version == table.version
        # Added again (the subscriber asks again): its current state again.
        sub.add([a.actor_id])
        assert _keyed(await sub.next_batch()) == [(1, "ALIVE")]
        sub.remove([a.actor_id])
        table.worker_died(a, "crash")
        assert publisher.keyed_count("actors") == (1, 0)
        sub.close()
        assert publisher.keyed_count("actors") == (0, 0)

    asyncio.run(main())


@pytest.mark.parametrize(
    ("epoch", "after", "expected"),
    [
        ("e1", 3, [(2, "ALIVE")]),  # same epoch: only what changed after version 3
        ("e1", 4, []),  # the subscriber holds the newest of both
        ("e0", 4, [(1, "PENDING_CREATION"), (2, "ALIVE")]),  # another GCS: everything
    ],
)
def test_a_keyed_subscriber_that_comes_back_gets_what_changed(
    epoch: str, after: int, expected: list[tuple[int, str]]
) -> None:
    async def main() -> None:
        publisher, table, (a, b, _c) = _actor_spine()
        table.created(b, ip="h", port=2, node_id="n", pid=2, worker_id=b"w")  # version 4
        sub = publisher.subscribe_keys("actors", epoch, after, [a.actor_id, b.actor_id])
        assert _keyed(await sub.next_batch()) == expected

    asyncio.run(main())


def test_only_channels_with_keys_take_keyed_subscribers() -> None:
    publisher, _table = _spine()
    with pytest.raises(KeyError):
        publisher.subscribe_keys("nodes", "", 0, ["aa"])


# Nobody to come back: a channel nobody follows keeps no log.


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _followed_spine(clock: FakeClock) -> tuple[Publisher, NodeTable]:
    publisher = Publisher(epoch="e1", clock=clock)
    table = NodeTable(lambda: 1_000, sink=publisher.sink("nodes"))
    publisher.add_channel("nodes", ChannelSpec(snapshot=lambda: (table.version, table.snapshot())))
    return publisher, table


def test_a_channel_never_followed_keeps_no_events() -> None:
    publisher, table = _followed_spine(FakeClock())
    for node_id in ("aa", "bb", "cc"):
        table.apply(RegisterNode(_node(node_id)))
    first = publisher.subscribe("nodes", "e1", 1).first
    assert first is not None and first.is_snapshot and first.version == 3
    # Once followed, the log keeps what happens next.
    table.apply(RegisterNode(_node("dd")))
    again = publisher.subscribe("nodes", "e1", 3).first
    assert again is not None and not again.is_snapshot
    assert [e.version for e in again.events] == [4]


def test_a_channel_unfollowed_for_a_while_drops_its_log() -> None:
    clock = FakeClock()
    publisher, table = _followed_spine(clock)
    sub = publisher.subscribe("nodes", "", 0)
    table.apply(RegisterNode(_node("aa")))
    sub.close()
    clock.now += UNFOLLOWED_LOG_S - 1  # a follower that comes back soon gets the deltas
    table.apply(RegisterNode(_node("bb")))
    back = publisher.subscribe("nodes", "e1", 1)
    assert back.first is not None and [e.version for e in back.first.events] == [2]
    back.close()
    clock.now += UNFOLLOWED_LOG_S + 1  # gone too long: nothing kept, a snapshot
    table.apply(RegisterNode(_node("cc")))
    late = publisher.subscribe("nodes", "e1", 2).first
    assert late is not None and late.is_snapshot and late.version == 3
