"""The internal KV's commands and change events (gcs/kv_store.py, gcs/kv_events.py), and the
byte bound of the kept delta log they need: no processes.

Events name namespace, key and operation and carry the value's size, never the value.
"""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rayops.gcs.errors import InvalidArgument
from rayops.gcs.kv_events import (
    DeleteKeys,
    KeyPut,
    KeysDeleted,
    KvEntry,
    KvEvent,
    PutKey,
    event_bytes,
)
from rayops.gcs.kv_store import KVStore
from rayops.gcs.pubsub import ChannelSpec, DeltaLog, Publisher


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[KvEvent, ...]] = []

    def __call__(self, events: Sequence[KvEvent]) -> None:
        self.calls.append(tuple(events))


def _store() -> tuple[KVStore, Recorder]:
    sink = Recorder()
    return KVStore(sink=sink), sink


def test_a_put_publishes_namespace_key_and_size_not_the_value() -> None:
    kv, sink = _store()
    big = b"x" * 3_000_000
    assert kv.apply(PutKey("fn", b"f:1", big, overwrite=True)) == (
        KeyPut(1, "fn", b"f:1", 3_000_000, created=True),
    )
    assert sink.calls == [(KeyPut(1, "fn", b"f:1", 3_000_000, True),)]
    assert not any(isinstance(v, bytes) and len(v) > 100 for v in vars_of(sink.calls[0][0]))
    # Overwriting with another value: an event, created=False.
    kv.apply(PutKey("fn", b"f:1", b"small", overwrite=True))
    assert sink.calls[-1] == (KeyPut(2, "fn", b"f:1", 5, False),)
    assert kv.get("fn", b"f:1") == b"small"


def vars_of(event: KvEvent) -> list[object]:
    return [getattr(event, name) for name in event.__slots__]


def test_puts_that_change_nothing_publish_nothing() -> None:
    kv, sink = _store()
    kv.apply(PutKey("", b"k", b"1", overwrite=True))
    sink.calls.clear()
    assert kv.apply(PutKey("", b"k", b"2", overwrite=False)) == ()  # kept: no overwrite
    assert kv.apply(PutKey("", b"k", b"1", overwrite=True)) == ()  # the same value
    assert (kv.get("", b"k"), kv.version, sink.calls) == (b"1", 1, [])


def test_deletes_by_key_and_by_prefix_are_one_event_each_with_the_count() -> None:
    kv, sink = _store()
    for key in (b"fn:1", b"fn:2", b"pkg:1"):
        kv.put("ns", key, b"v", overwrite=True)
    sink.calls.clear()
    assert kv.delete("ns", b"fn:", by_prefix=True) == 2
    assert sink.calls == [(KeysDeleted(4, "ns", b"fn:", True, 2),)]
    assert kv.delete("ns", b"pkg:1") == 1
    assert sink.calls[-1] == (KeysDeleted(5, "ns", b"pkg:1", False, 1),)
    # Nothing matched: no event, no version.
    assert kv.delete("ns", b"pkg:1") == 0
    assert kv.delete("ns", b"zz", by_prefix=True) == 0
    assert kv.delete("other", b"", by_prefix=True) == 0
    assert (kv.version, len(sink.calls)) == (5, 2)


def test_an_empty_prefix_empties_the_namespace_in_one_event() -> None:
    kv, sink = _store()
    for i in range(5):
        kv.put("a", b"k%d" % i, b"v", overwrite=True)
    kv.put("b", b"k", b"v", overwrite=True)
    sink.calls.clear()
    assert kv.delete("a", b"", by_prefix=True) == 5
    assert sink.calls == [(KeysDeleted(7, "a", b"", True, 5),)]
    assert kv.keys("a", b"") == [] and kv.keys("b", b"") == [b"k"]


def test_the_snapshot_lists_every_key_with_its_size_in_order() -> None:
    kv, _ = _store()
    kv.put("b", b"z", b"12", overwrite=True)
    kv.put("a", b"y", b"123", overwrite=True)
    kv.put("a", b"x", b"", overwrite=True)
    snap = kv.snapshot()
    assert snap.version == 3
    assert snap.entries == (KvEntry("a", b"x", 0), KvEntry("a", b"y", 3), KvEntry("b", b"z", 2))


def test_bad_commands_are_refused_before_any_change() -> None:
    kv, sink = _store()
    with pytest.raises(InvalidArgument, match="non-empty"):
        kv.apply(PutKey("", b"", b"v", overwrite=True))
    with pytest.raises(InvalidArgument, match="non-empty"):
        kv.apply(DeleteKeys("", b""))
    assert (kv.version, sink.calls) == (0, [])


def test_replaying_the_events_on_a_key_set_gives_the_store_s_keys() -> None:
    """What a follower does: start from a snapshot, apply events, hold the same keys."""
    kv, sink = _store()
    kv.put("n", b"a1", b"v", overwrite=True)
    held = {(e.namespace, e.key) for e in kv.snapshot().entries}
    sink.calls.clear()
    kv.put("n", b"a2", b"v", overwrite=True)
    kv.put("n", b"b1", b"v", overwrite=True)
    kv.delete("n", b"a", by_prefix=True)
    kv.put("m", b"a3", b"v", overwrite=True)
    for (event,) in sink.calls:
        if isinstance(event, KeyPut):
            held.add((event.namespace, event.key))
        elif event.by_prefix:
            ns, prefix = event.namespace, event.key
            held = {(n, k) for n, k in held if n != ns or not k.startswith(prefix)}
        else:
            held.discard((event.namespace, event.key))
    assert held == {(e.namespace, e.key) for e in kv.snapshot().entries}


# The kept log's byte bound.


def _put(version: int, key: bytes) -> KeyPut:
    return KeyPut(version, "", key, 1, True)


def test_the_delta_log_drops_its_oldest_events_past_its_bytes() -> None:
    log = DeltaLog(100, max_bytes=3 * event_bytes(_put(1, b"k" * 100)), size=event_bytes)
    log.append([_put(v, b"k" * 100) for v in range(1, 5)])  # holds 2..4: 1 made room
    assert [e.version for e in log.since(1) or []] == [2, 3, 4]
    log.append([_put(5, b"k" * 100)])  # holds 3..5
    assert log.since(1) is None
    assert [e.version for e in log.since(2) or []] == [3, 4, 5]
    # One event larger than the whole bound is still kept (the newest always is).
    log.append([_put(6, b"k" * 10_000)])
    assert log.since(5) == [_put(6, b"k" * 10_000)] and log.since(4) is None
    assert log.bytes == event_bytes(_put(6, b"k" * 10_000))


def test_the_count_bound_still_holds_and_the_bytes_follow_it() -> None:
    log = DeltaLog(2, max_bytes=10**9, size=event_bytes)
    log.append([_put(v, b"k") for v in range(1, 6)])
    assert log.since(2) is None and [e.version for e in log.since(3) or []] == [4, 5]
    assert log.bytes == 2 * event_bytes(_put(1, b"k"))


def test_a_late_kv_subscriber_past_the_byte_bound_gets_a_snapshot() -> None:
    pub = Publisher(epoch="e")
    kv = KVStore(sink=pub.sink("kv"))
    spec = ChannelSpec(
        snapshot=lambda: (kv.version, kv.snapshot()), size=event_bytes, log_max_bytes=2_000
    )
    pub.add_channel("kv", spec)
    pub.subscribe("kv", "", 0)  # a follower: the channel keeps its log
    kv.put("", b"first", b"v", overwrite=True)
    for i in range(20):
        kv.put("", b"%04d" % i + b"k" * 500, b"v", overwrite=True)
    assert pub.subscribe("kv", "e", 1).first.is_snapshot  # type: ignore[union-attr]
    recent = pub.subscribe("kv", "e", kv.version - 1).first
    assert recent is not None and not recent.is_snapshot and len(recent.events) == 1
