"""The GCS's publisher: a table's change events streamed to subscribers (the event spine).

A *channel* is one table's event stream ("nodes", "jobs", "kv", "placement_groups"). The
table's state machine hands every change event to `Publisher.publish`; each subscriber
says which channel, which *epoch* and the last version it saw, and gets:

* a snapshot of the whole table (`Batch.snapshot`) when it is new (version 0), from another
  epoch (another GCS process: versions restarted), or further behind than the kept delta
  log (`DeltaLog.since` returns None), or when it fell so far behind while connected that
  its queue overflowed;
* then the events after that version, as they happen, several per batch when several are
  ready. Membership events (a node added, dead, removed) go out at once; usage-only events
  are held up to `USAGE_FLUSH_S` so a busy cluster sends one batch per subscriber per window
  instead of one per report, and a node's newer usage replaces its older usage still queued.

A subscriber that reconnects passes the epoch and version it holds and resyncs from there.

*Keyed* subscriptions (`KeyedSubscription`, for channels given a `current` lookup through
`Publisher.enable_keys`: "actors") follow only some keys of a channel (a core worker: the
actors it calls), so the GCS's work grows with what subscribers follow, not with
subscribers x table. A key added gets its current state first (or `KeyMissing`), then each
event that updates it, the newest only if several wait; a subscriber that comes back with the
same epoch gets only the keys that changed after the version it holds.

The delta log is kept only while someone follows the channel (and for `UNFOLLOWED_LOG_S`
after its last subscriber left): before, and after that, there is nobody to come back.
`DeltaLog` is pure (no I/O, no asyncio); `Publisher` and `Subscription` are the asyncio part
the gRPC service (`rayops.gcs.pubsub_service`) drives. Nothing here knows protobuf: channels
give their events and snapshots as Python values and the service converts them.
"""

from __future__ import annotations

import asyncio
import math
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

__all__ = [
    "DEFAULT_LOG_SIZE",
    "JOBS_CHANNEL",
    "KV_CHANNEL",
    "NODES_CHANNEL",
    "PG_CHANNEL",
    "UNFOLLOWED_LOG_S",
    "USAGE_FLUSH_S",
    "Batch",
    "ChannelSpec",
    "DeltaLog",
    "KeyMissing",
    "KeyedSubscription",
    "Publisher",
    "Subscription",
]

# The channels, one per GCS table.
NODES_CHANNEL = "nodes"
ACTORS_CHANNEL = "actors"
JOBS_CHANNEL = "jobs"
KV_CHANNEL = "kv"
PG_CHANNEL = "placement_groups"

# Events kept per channel for subscribers that come back after a short disconnect.
DEFAULT_LOG_SIZE = 10_000
# A channel nobody follows keeps no events once its last subscriber has been gone this long
# (nor before its first): there is nobody to come back, and one that does gets a snapshot.
# Kept events are not free: 10,000 of a fast-churning table (placement groups) cost the
# GCS's garbage collector enough to slow `placement_group_create_removal` by a third.
UNFOLLOWED_LOG_S = 60.0
# A subscriber further behind than this many events while connected gets a snapshot instead.
MAX_QUEUED = 10_000
# How long usage-only events may wait to share a batch with later ones. Raylets read other
# nodes' usage only to pick a spillback target, and 100 ms is the staleness the polling this
# replaced had; a busy cluster then costs each subscriber at most 10 batches/s.
USAGE_FLUSH_S = 0.1


class Versioned(Protocol):
    """An event: carries the version its table had right after the change."""

    @property
    def version(self) -> int: ...


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """How a table joins the spine.

    `snapshot()` returns (version, state) of the whole table; `urgent(event)` says whether an
    event must go out at once (membership) or may wait for the usage window; `key(event)`
    names what an event updates, so a newer event with the same key replaces an older one
    still queued (None: never replaced). `log_max_events` bounds the kept delta log by count
    (default: the publisher's); `size(event)`, with `log_max_bytes`, bounds it by bytes as
    well (a channel whose events vary in size).
    """

    snapshot: Callable[[], tuple[int, Any]]
    urgent: Callable[[Any], bool] = lambda event: True
    key: Callable[[Any], object | None] = lambda event: None
    size: Callable[[Any], int] | None = None
    log_max_bytes: int = 0
    # Events kept for subscribers that come back (0: the publisher's `log_size`).
    log_max_events: int = 0


@dataclass(frozen=True, slots=True)
class Batch:
    """What one stream message carries: a snapshot (replace everything) or events (apply).

    `version` is the channel's version once the batch is applied.
    """

    channel: str
    epoch: str
    version: int
    snapshot: Any = None
    events: tuple[Any, ...] = ()

    @property
    def is_snapshot(self) -> bool:
        return self.snapshot is not None


class DeltaLog:
    """The newest events of one channel, by version. Pure: no I/O, no clock.

    Holds at most `max_events` events and, when `size` is given, at most `max_bytes` of them
    as `size` counts (the newest event is always kept, whatever its size)."""

    def __init__(
        self,
        max_events: int = DEFAULT_LOG_SIZE,
        *,
        max_bytes: int = 0,
        size: Callable[[Any], int] | None = None,
    ) -> None:
        self._events: deque[Any] = deque(maxlen=max_events)
        self._max_bytes = max_bytes if size is not None else 0
        self._size = size
        self._sizes: deque[int] = deque()
        self.bytes = 0
        self.version = 0

    def append(self, events: Sequence[Versioned]) -> None:
        for event in events:
            if event.version <= self.version:
                raise ValueError(
                    f"event version {event.version} does not follow the log's {self.version}"
                )
            if self._max_bytes:
                self._append_sized(event)
            else:
                self._events.append(event)
            self.version = event.version

    def skip(self, events: Sequence[Versioned]) -> None:
        """Move past `events` without keeping any (and drop what is kept): whoever asks for
        an older version afterwards is told to take a snapshot."""
        if events:
            last = events[-1].version
            if last <= self.version:
                raise ValueError(f"event version {last} does not follow the log's {self.version}")
            self.version = last
        if self._events:
            self._events.clear()
            self._sizes.clear()
            self.bytes = 0

    def _append_sized(self, event: Any) -> None:
        assert self._size is not None
        if len(self._events) == self._events.maxlen:
            self.bytes -= self._sizes.popleft()
        n = self._size(event)
        self._events.append(event)
        self._sizes.append(n)
        self.bytes += n
        while self.bytes > self._max_bytes and len(self._events) > 1:
            self._events.popleft()
            self.bytes -= self._sizes.popleft()

    def since(self, version: int) -> list[Any] | None:
        """The events after `version`, or None when the log no longer holds all of them."""
        if version == self.version:
            return []
        if version > self.version or version <= 0:
            return None
        if not self._events or self._events[0].version > version + 1:
            return None
        return [e for e in self._events if e.version > version]


@dataclass(eq=False)
class Subscription:
    """One subscriber's queue; iterate it for batches (the service writes each to a stream)."""

    publisher: Publisher
    channel: str
    _pending: list[Any] = field(default_factory=list)
    _resync: bool = False
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _urgent: asyncio.Event = field(default_factory=asyncio.Event)
    _last_sent: float = 0.0
    _closed: bool = False
    first: Batch | None = None

    def offer(self, events: Sequence[Any], spec: ChannelSpec) -> None:
        if self._resync:
            return
        for event in events:
            key = spec.key(event)
            if key is not None:
                self._pending = [e for e in self._pending if spec.key(e) != key]
            self._pending.append(event)
            if spec.urgent(event):
                self._urgent.set()
        if len(self._pending) > self.publisher.max_queued:
            self._pending.clear()
            self._resync = True
            self._urgent.set()
        self._wake.set()

    def end(self) -> None:
        """End the stream (the GCS is stopping): iteration stops after the current batch."""
        self._closed = True
        self._urgent.set()
        self._wake.set()

    async def next_batch(self) -> Batch:
        """The next batch to send: the first (snapshot or catch-up), then the queued events.

        StopAsyncIteration once the subscription was ended.
        """
        if self._closed:
            raise StopAsyncIteration
        if self.first is not None:
            batch, self.first = self.first, None
            self._last_sent = time.monotonic()
            return batch
        while True:
            await self._wake.wait()
            if not self._urgent.is_set():
                delay = self._last_sent + USAGE_FLUSH_S - time.monotonic()
                if delay > 0:
                    try:
                        await asyncio.wait_for(self._urgent.wait(), delay)
                    except TimeoutError:
                        pass
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            self._urgent.clear()
            self._last_sent = time.monotonic()
            if self._resync:
                self._resync = False
                self._pending.clear()
                return self.publisher.snapshot_batch(self.channel)
            if self._pending:
                events, self._pending = tuple(self._pending), []
                return Batch(self.channel, self.publisher.epoch, events[-1].version, None, events)

    def close(self) -> None:
        self.publisher.unsubscribe(self)

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Batch:
        return await self.next_batch()


class Publisher:
    """Channels, their delta logs and their subscribers. Use from the GCS's event loop."""

    def __init__(
        self,
        *,
        log_size: int = DEFAULT_LOG_SIZE,
        max_queued: int = MAX_QUEUED,
        epoch: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        # Versions restart with the process; the epoch tells a subscriber that they did.
        self.epoch = epoch or secrets.token_hex(8)
        self._clock = clock
        # Per channel, since when nobody follows it (None: someone does).
        self._unfollowed_since: dict[str, float | None] = {}
        self._log_size = log_size
        self.max_queued = max_queued
        self._specs: dict[str, ChannelSpec] = {}
        self._logs: dict[str, DeltaLog] = {}
        self._subs: dict[str, set[Subscription]] = {}
        self._listeners: dict[str, list[Callable[[Sequence[Any]], None]]] = {}
        # Keyed channels: their current-state lookup, and key -> the subscriptions following it.
        self._current: dict[str, Callable[[Any], Any | None]] = {}
        self._keyed: dict[str, dict[Any, set[KeyedSubscription]]] = {}
        self._keyed_subs: set[KeyedSubscription] = set()
        self.published = 0  # events, for the metrics and the bench
        self.batches_built = 0

    def add_channel(self, channel: str, spec: ChannelSpec) -> None:
        self._specs[channel] = spec
        max_events = spec.log_max_events or self._log_size
        log = DeltaLog(max_events, max_bytes=spec.log_max_bytes, size=spec.size)
        log.version = spec.snapshot()[0]
        self._logs[channel] = log
        self._subs[channel] = set()
        # Never followed yet: nobody can come back, so nothing is kept until someone subscribes.
        self._unfollowed_since[channel] = -math.inf

    def channels(self) -> list[str]:
        return list(self._specs)

    def sink(self, channel: str) -> Callable[[Sequence[Any]], None]:
        """A function the channel's table calls with each change's events."""
        return lambda events: self.publish(channel, events)

    def listen(self, channel: str, listener: Callable[[Sequence[Any]], None]) -> None:
        """Subscribe in process (the placement-group manager): ``listener`` gets each
        change's events as they are published, before any remote subscriber."""
        self._listeners.setdefault(channel, []).append(listener)

    def publish(self, channel: str, events: Sequence[Any]) -> None:
        for listener in self._listeners.get(channel, ()):
            listener(events)
        subs = self._subs[channel]
        idle_since = self._unfollowed_since[channel]
        if idle_since is not None and self._clock() - idle_since > UNFOLLOWED_LOG_S:
            self._logs[channel].skip(events)
        else:
            self._logs[channel].append(events)
        self.published += len(events)
        spec = self._specs[channel]
        for sub in subs:
            sub.offer(events, spec)
        keyed = self._keyed.get(channel)
        if keyed:
            for event in events:
                key = spec.key(event)
                for ksub in keyed.get(key, ()):
                    ksub.offer(key, event)

    def snapshot_batch(self, channel: str) -> Batch:
        version, state = self._specs[channel].snapshot()
        return Batch(channel, self.epoch, version, state, ())

    def subscribe(self, channel: str, epoch: str, after_version: int) -> Subscription:
        """A subscription whose first batch brings the subscriber to the current version.

        KeyError for an unknown channel.
        """
        log = self._logs[channel]
        sub = Subscription(self, channel)
        missed = log.since(after_version) if epoch == self.epoch else None
        if missed is None:
            sub.first = self.snapshot_batch(channel)
        else:
            sub.first = Batch(channel, self.epoch, log.version, None, tuple(missed))
        self._subs[channel].add(sub)
        self._unfollowed_since[channel] = None
        return sub

    def unsubscribe(self, sub: Subscription) -> None:
        subs = self._subs[sub.channel]
        subs.discard(sub)
        if not subs and self._unfollowed_since[sub.channel] is None:
            self._unfollowed_since[sub.channel] = self._clock()

    def close(self) -> None:
        """End every subscription (before the server stops: streams would hold it open)."""
        for subs in self._subs.values():
            for sub in list(subs):
                sub.end()
        for ksub in list(self._keyed_subs):
            ksub.end()

    def enable_keys(self, channel: str, current: Callable[[Any], Any | None]) -> None:
        """Let subscribers follow single keys of `channel` (`subscribe_keys`); `current(key)`
        is the key's state as an event (None: the table does not hold it), and the channel's
        `ChannelSpec.key` names the key each event updates."""
        self._current[channel] = current
        self._keyed[channel] = {}

    def subscribe_keys(
        self, channel: str, epoch: str, after_version: int, keys: Sequence[Any] = ()
    ) -> KeyedSubscription:
        """A keyed subscription; `keys` are added as by `KeyedSubscription.add` with the
        subscriber's (`epoch`, `after_version`), so a subscriber that comes back gets only
        what changed. KeyError for a channel without keys."""
        sub = KeyedSubscription(self, channel, self._current[channel])
        self._keyed_subs.add(sub)
        sub.add(keys, epoch, after_version)
        return sub

    def _follow(self, sub: KeyedSubscription, key: Any, on: bool) -> None:
        index = self._keyed[sub.channel]
        if on:
            index.setdefault(key, set()).add(sub)
            return
        subs = index.get(key)
        if subs is not None:
            subs.discard(sub)
            if not subs:
                del index[key]

    def keyed_count(self, channel: str) -> tuple[int, int]:
        """(keyed subscriptions, keys followed) on `channel`, for tests and the bench."""
        index = self._keyed[channel]
        subs = sum(1 for s in self._keyed_subs if s.channel == channel)
        return subs, len(index)

    def subscriber_count(self, channel: str) -> int:
        return len(self._subs[channel])


@dataclass(frozen=True, slots=True)
class KeyMissing:
    """In a keyed batch: a key added that the table does not hold."""

    key: Any


class KeyedSubscription:
    """One subscriber's keys of one channel and what it has not been sent yet.

    At most one item waits per key (the newest event, or `KeyMissing`), so what waits is
    bounded by the keys followed. Iterate it for batches; its first batch is sent at once
    (empty when nothing waits) so the subscriber learns the epoch and version.
    """

    def __init__(
        self, publisher: Publisher, channel: str, current: Callable[[Any], Any | None]
    ) -> None:
        self.publisher = publisher
        self.channel = channel
        self._current = current
        self.keys: set[Any] = set()
        self._pending: dict[Any, Any] = {}
        self._wake = asyncio.Event()
        self._wake.set()  # the first batch goes out at once
        self._closed = False

    def add(self, keys: Sequence[Any], epoch: str = "", after_version: int = 0) -> None:
        """Follow `keys`: each one's current state is queued (unless the subscriber holds
        it: same epoch and no change after `after_version`), also for a key followed already
        (the subscriber asks again), or `KeyMissing` for a key the table does not hold
        (which is not followed)."""
        same_epoch = epoch == self.publisher.epoch
        for key in keys:
            event = self._current(key)
            if event is None:
                self.remove((key,))
                self._pending[key] = KeyMissing(key)
                self._wake.set()
                continue
            if key not in self.keys:
                self.keys.add(key)
                self.publisher._follow(self, key, True)
            if not (same_epoch and event.version <= after_version):
                self._pending.pop(key, None)
                self._pending[key] = event
                self._wake.set()

    def remove(self, keys: Sequence[Any]) -> None:
        for key in keys:
            self._pending.pop(key, None)
            if key in self.keys:
                self.keys.discard(key)
                self.publisher._follow(self, key, False)

    def offer(self, key: Any, event: Any) -> None:
        self._pending.pop(key, None)  # the newest goes last, in publish order
        self._pending[key] = event
        self._wake.set()

    def end(self) -> None:
        self._closed = True
        self._wake.set()

    def close(self) -> None:
        self.remove(list(self.keys))
        self.publisher._keyed_subs.discard(self)

    async def next_batch(self) -> Batch:
        while True:
            await self._wake.wait()
            if self._closed:
                raise StopAsyncIteration
            self._wake.clear()
            events, self._pending = tuple(self._pending.values()), {}
            version = self.publisher._logs[self.channel].version
            return Batch(self.channel, self.publisher.epoch, version, None, events)

    def __aiter__(self) -> KeyedSubscription:
        return self

    async def __anext__(self) -> Batch:
        return await self.next_batch()
