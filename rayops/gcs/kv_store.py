"""The GCS internal key-value store: bytes to bytes, per namespace, in memory.

Pure state, no I/O. Semantics follow Ray's internal KV: `put` reports whether the key was new,
`put` without overwrite keeps an existing value, deleting by prefix deletes every match (an
empty prefix empties the namespace), and keys list in bytewise order.

Every change is a typed command (`rayops.gcs.kv_events`: PutKey, DeleteKeys) and produces a
versioned change event (KeyPut, KeysDeleted) handed to a *sink*: in the GCS, the event
spine's "kv" channel. A command that changes nothing (a put without overwrite onto an
existing key, a put of the value already stored, a delete that matches nothing) publishes
nothing. The events carry value sizes, not values (why: `rayops.gcs.kv_events`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence

from rayops.gcs.errors import InvalidArgument
from rayops.gcs.kv_events import (
    DeleteKeys,
    KeyPut,
    KeysDeleted,
    KvCommand,
    KvEntry,
    KvEvent,
    KvSnapshot,
    PutKey,
)

__all__ = ["KVStore"]


def _check_key(key: bytes) -> bytes:
    if not key:
        raise InvalidArgument("KV key must be non-empty bytes, found b''")
    return key


class KVStore:
    """Namespaced byte keys to byte values, and the version of the last change."""

    def __init__(self, *, sink: Callable[[Sequence[KvEvent]], None] | None = None) -> None:
        self._spaces: dict[str, dict[bytes, bytes]] = {}
        self._sink = sink
        self.version = 0

    def restore(self, entries: Iterable[tuple[str, bytes, bytes]]) -> None:
        """Load (namespace, key, value) entries a restarted GCS read back from its store."""
        for namespace, key, value in entries:
            self._spaces.setdefault(namespace, {})[key] = value

    def apply(self, cmd: KvCommand) -> tuple[KvEvent, ...]:
        """Carry out one command; return its events (none when nothing changed)."""
        event: KvEvent
        if isinstance(cmd, PutKey):
            space = self._spaces.setdefault(cmd.namespace, {})
            old = space.get(_check_key(cmd.key))
            if old is not None and (not cmd.overwrite or old == cmd.value):
                return ()
            space[cmd.key] = cmd.value
            self.version += 1
            event = KeyPut(self.version, cmd.namespace, cmd.key, len(cmd.value), old is None)
        else:
            count = self._delete(cmd)
            if not count:
                return ()
            self.version += 1
            event = KeysDeleted(self.version, cmd.namespace, cmd.key, cmd.by_prefix, count)
        if self._sink is not None:
            self._sink((event,))
        return (event,)

    def _delete(self, cmd: DeleteKeys) -> int:
        space = self._spaces.get(cmd.namespace)
        if not cmd.by_prefix:
            _check_key(cmd.key)
            if space is None:
                return 0
            gone = 1 if space.pop(cmd.key, None) is not None else 0
        else:
            if space is None:
                return 0
            doomed = [k for k in space if k.startswith(cmd.key)]
            for k in doomed:
                del space[k]
            gone = len(doomed)
        if not space:
            del self._spaces[cmd.namespace]
        return gone

    def snapshot(self) -> KvSnapshot:
        """Every key (with its value's size) as of the current version."""
        entries: list[KvEntry] = []
        for ns in sorted(self._spaces):
            space = self._spaces[ns]
            entries += (KvEntry(ns, key, len(space[key])) for key in sorted(space))
        return KvSnapshot(self.version, tuple(entries))

    # The store's original calls, kept for its callers: put and delete are one command each.

    def put(self, namespace: str, key: bytes, value: bytes, *, overwrite: bool) -> bool:
        """Store `value`; True if the key was new. Without overwrite an existing value stays."""
        existed = _check_key(key) in self._spaces.get(namespace, {})
        self.apply(PutKey(namespace, key, value, overwrite))
        return not existed

    def get(self, namespace: str, key: bytes) -> bytes | None:
        return self._spaces.get(namespace, {}).get(_check_key(key))

    def multi_get(self, namespace: str, keys: Iterable[bytes]) -> dict[bytes, bytes]:
        """The keys that exist, with their values, in the order asked."""
        space = self._spaces.get(namespace, {})
        found: dict[bytes, bytes] = {}
        for key in keys:
            value = space.get(_check_key(key))
            if value is not None:
                found[key] = value
        return found

    def delete(self, namespace: str, key: bytes, *, by_prefix: bool = False) -> int:
        """Delete the key (or, by prefix, every key starting with it); return how many went."""
        events = self.apply(DeleteKeys(namespace, key, by_prefix))
        return events[0].count if events and isinstance(events[0], KeysDeleted) else 0

    def keys(self, namespace: str, prefix: bytes) -> list[bytes]:
        """Keys starting with `prefix`, sorted bytewise."""
        space = self._spaces.get(namespace, {})
        return sorted(k for k in space if k.startswith(prefix))

    def exists(self, namespace: str, key: bytes) -> bool:
        return _check_key(key) in self._spaces.get(namespace, {})
