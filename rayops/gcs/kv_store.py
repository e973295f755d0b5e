"""The GCS internal key-value store: bytes to bytes, per namespace, in memory.

Pure state, no I/O. Semantics follow Ray's internal KV: `put` reports whether the key was new,
`put` without overwrite keeps an existing value, deleting by prefix deletes every match (an
empty prefix empties the namespace), and keys list in bytewise order.
"""

from __future__ import annotations

from collections.abc import Iterable

from rayops.gcs.errors import InvalidArgument

__all__ = ["KVStore"]


def _check_key(key: bytes) -> bytes:
    if not key:
        raise InvalidArgument("KV key must be non-empty bytes, found b''")
    return key


class KVStore:
    """Namespaced byte keys to byte values."""

    def __init__(self) -> None:
        self._spaces: dict[str, dict[bytes, bytes]] = {}

    def put(self, namespace: str, key: bytes, value: bytes, *, overwrite: bool) -> bool:
        """Store `value`; True if the key was new. Without overwrite an existing value stays."""
        space = self._spaces.setdefault(namespace, {})
        existed = _check_key(key) in space
        if not existed or overwrite:
            space[key] = value
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
        space = self._spaces.get(namespace)
        if space is None:
            return 0
        if not by_prefix:
            return 1 if space.pop(_check_key(key), None) is not None else 0
        doomed = [k for k in space if k.startswith(key)]
        for k in doomed:
            del space[k]
        if not space:
            del self._spaces[namespace]
        return len(doomed)

    def keys(self, namespace: str, prefix: bytes) -> list[bytes]:
        """Keys starting with `prefix`, sorted bytewise."""
        space = self._spaces.get(namespace, {})
        return sorted(k for k in space if k.startswith(prefix))

    def exists(self, namespace: str, key: bytes) -> bool:
        return _check_key(key) in self._spaces.get(namespace, {})
