"""The internal KV's commands (put, delete by key or prefix) and change events.

Events name the namespace, the key and the operation, and say how large the value is, but
they do not carry the value. Why: values are what Ray's internal KV is for (pickled
functions and actor classes, runtime_env packages), often megabytes; carried in the stream,
every subscriber would receive every function a driver exports, the kept delta log would hold
up to 10,000 of them (gigabytes in the GCS), and a new subscriber's snapshot would be the
whole store in one message. What a follower of the "kv" channel needs is *which* keys exist
and when they change; one that wants a value reads it with `InternalKVGet`/`MultiGet` after
the event (it then sees that value or a newer one, whose own event follows). So the kept
log is bounded by count and, because keys are arbitrary bytes, by the bytes of the keys it
holds (`LOG_MAX_BYTES`).

Plain frozen dataclasses with no I/O; their protobuf form (`KvEvent` in
`protocol/gcs_pubsub.proto`) is converted in `rayops.gcs.codec` only.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "LOG_MAX_BYTES",
    "DeleteKeys",
    "KeyPut",
    "KeysDeleted",
    "KvCommand",
    "KvEntry",
    "KvEvent",
    "KvSnapshot",
    "PutKey",
]


# The "kv" channel's kept delta log holds at most this many bytes of events (as `event_bytes`
# counts them), besides the publisher's count bound: 10,000 events of 1 KiB keys stay well
# under it; a burst of huge keys makes late subscribers take a snapshot instead.
LOG_MAX_BYTES = 16 * 2**20


# Commands.


@dataclass(frozen=True, slots=True)
class PutKey:
    """Store `value` under `key`; without `overwrite` an existing value stays."""

    namespace: str
    key: bytes
    value: bytes
    overwrite: bool


@dataclass(frozen=True, slots=True)
class DeleteKeys:
    """Delete `key`, or with `by_prefix` every key starting with it (b"": the namespace)."""

    namespace: str
    key: bytes
    by_prefix: bool = False


KvCommand = PutKey | DeleteKeys


# Events, each with the store's version right after the change.


@dataclass(frozen=True, slots=True)
class KeyPut:
    """`key` now holds a value of `value_size` bytes; `created`: the key is new."""

    version: int
    namespace: str
    key: bytes
    value_size: int
    created: bool


@dataclass(frozen=True, slots=True)
class KeysDeleted:
    """`key` (or, `by_prefix`, every key starting with it) was deleted: `count` keys went.

    Published only when at least one key went; a follower that holds the keys applies the
    same rule (a prefix delete is one event, however many keys it took)."""

    version: int
    namespace: str
    key: bytes
    by_prefix: bool
    count: int


KvEvent = KeyPut | KeysDeleted


@dataclass(frozen=True, slots=True)
class KvEntry:
    """One key of a snapshot: where it is and how large its value is (not the value)."""

    namespace: str
    key: bytes
    value_size: int


@dataclass(frozen=True, slots=True)
class KvSnapshot:
    """Every key the store holds, by namespace then key, as of `version`."""

    version: int
    entries: tuple[KvEntry, ...]


def event_bytes(event: KvEvent) -> int:
    """What an event costs the kept log, roughly: its key plus a fixed overhead."""
    return len(event.key) + len(event.namespace) + 100
