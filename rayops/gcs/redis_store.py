"""The GCS's persistence log in an external Redis, for a head that may be replaced.

The SQLite log (`rayops.gcs.persist_log`) lives in the head's session directory: it survives a
GCS restart on the same machine, not the loss of the machine. Pointing the GCS at a Redis
(Ray's way: `RAY_REDIS_ADDRESS=host:port rayops start --head --redis-password PW`, or
`--gcs-storage redis://[user:password@]host:port[/db]`, `rediss://` for TLS) moves the tables
off the head, so a new head started with the same cluster token and the same Redis reads
them back.

Same records, same contract as the SQLite log (`RecordStore`): `append` is one MULTI/EXEC
(all or none), `replay` reads the snapshot hash and then the log list on top of it, `compact`
folds the log into the snapshot in one MULTI/EXEC. Keys live under
`rayops:gcs:<namespace>:` (`RAY_external_storage_namespace`, default "default"), so clusters
can share a Redis. One GCS writes a namespace at a time.

Trust: the values are pickles, and a Redis is reachable by whoever holds its password, which
need not be the cluster's operators. Every record is therefore framed with an HMAC-SHA256
over (namespace, record), keyed by a key derived from the cluster token; `replay` refuses the
whole store, naming the key, if one record fails its check (written by another cluster,
with another token, or altered), and nothing is unpickled before its check passes. Redis's
own durability is Redis's: run it with `appendonly yes` (as Ray's GCS fault tolerance asks).

Blocking I/O, called from the persistence writer thread only, as the SQLite log.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import struct
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

from rayops.gcs.persist_log import Record, StoreError

__all__ = [
    "DEFAULT_NAMESPACE",
    "RedisPersistLog",
    "RedisTarget",
    "decode_frame",
    "encode_frame",
    "parse_redis_target",
    "store_key",
]

logger = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_NAMESPACE = "default"
_MAC_BYTES = 32
_KEY_CONTEXT = b"rayops-gcs-store-v1\0"
# How long one command may take, and how long a dropped connection is retried (a Redis
# restart or failover takes seconds) before the writer gives up (the GCS then exits and its
# supervisor starts it again, which reads the store back).
_SOCKET_TIMEOUT_S = 10.0
_CONNECT_TIMEOUT_S = 5.0
_RETRY_WINDOW_S = 15.0


@dataclass(frozen=True)
class RedisTarget:
    """Where and as whom the GCS keeps its tables in Redis."""

    host: str
    port: int
    db: int = 0
    username: str | None = None
    password: str | None = field(default=None, repr=False)  # never in a log line
    tls: bool = False
    namespace: str = DEFAULT_NAMESPACE

    def display(self) -> str:
        """The target for logs and errors (never the password)."""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{self.host}:{self.port}/{self.db} (namespace {self.namespace!r})"


def parse_redis_target(text: str, source: str, env: Mapping[str, str]) -> RedisTarget:
    """A `RedisTarget` from `text` (`host:port` or a redis:// / rediss:// URL) named `source`
    in errors; the password and user from the URL or else `RAYOPS_REDIS_PASSWORD` /
    `RAYOPS_REDIS_USERNAME` (what `rayops start --redis-password/--redis-username` hand the
    GCS); the namespace from `RAY_external_storage_namespace`."""
    where = f"{source}={text!r}"
    if "," in text:
        raise ValueError(
            f"{where}: one Redis address expected; lists (Sentinel, cluster) are not supported"
        )
    url = text if "://" in text else f"redis://{text}"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as err:
        raise ValueError(f"{where}: expected host:port or redis://host:port/db ({err})") from err
    if parts.scheme not in ("redis", "rediss"):
        raise ValueError(
            f"{where}: expected a redis:// or rediss:// address, found {parts.scheme}://"
        )
    if not parts.hostname or port is None:
        raise ValueError(f"{where}: expected host:port (both), e.g. 10.0.0.5:6379")
    if parts.query or parts.fragment:
        extra = parts.query or parts.fragment
        raise ValueError(f"{where}: URL options ({extra!r}) are not supported")
    path = parts.path.strip("/")
    if path and not path.isdigit():
        raise ValueError(f"{where}: the database after the port must be a number, found {path!r}")
    namespace = env.get("RAY_external_storage_namespace", "") or DEFAULT_NAMESPACE
    if any(c in namespace for c in " \n\r\t"):
        raise ValueError(f"RAY_external_storage_namespace={namespace!r}: no whitespace allowed")
    password = unquote(parts.password) if parts.password else env.get("RAYOPS_REDIS_PASSWORD")
    username = unquote(parts.username) if parts.username else env.get("RAYOPS_REDIS_USERNAME")
    return RedisTarget(
        host=parts.hostname,
        port=port,
        db=int(path) if path else 0,
        username=username or None,
        password=password or None,
        tls=parts.scheme == "rediss",
        namespace=namespace,
    )


def store_key(token: str) -> bytes:
    """The records' HMAC key, derived from the cluster token (the token itself never leaves)."""
    return hashlib.sha256(_KEY_CONTEXT + token.encode()).digest()


def _snapshot_field(table: str, key: bytes) -> bytes:
    tbl = table.encode()
    return struct.pack(">H", len(tbl)) + tbl + key


def encode_frame(mac_key: bytes, namespace: str, record: Record) -> bytes:
    """MAC (32 bytes) + the record: table, key, and the value if any."""
    tbl = record.table.encode()
    body = struct.pack(">HI", len(tbl), len(record.key)) + tbl + record.key
    body += b"\0" if record.value is None else b"\1" + record.value
    mac = hmac.new(mac_key, namespace.encode() + b"\0" + body, hashlib.sha256).digest()
    return mac + body


def decode_frame(mac_key: bytes, namespace: str, frame: bytes, where: str) -> Record:
    """The record in `frame`, after its MAC checks out; StoreError naming `where` if not."""
    if len(frame) < _MAC_BYTES + 7:
        raise StoreError(f"{where}: a record of {len(frame)} bytes is too short to be one")
    mac, body = frame[:_MAC_BYTES], frame[_MAC_BYTES:]
    want = hmac.new(mac_key, namespace.encode() + b"\0" + body, hashlib.sha256).digest()
    if not hmac.compare_digest(mac, want):
        raise StoreError(
            f"{where}: a record fails its integrity check (written by a cluster with another "
            "token, or altered); the GCS will not read this store"
        )
    tbl_len, key_len = struct.unpack_from(">HI", body)
    at = 6
    table = body[at : at + tbl_len].decode()
    at += tbl_len
    key = body[at : at + key_len]
    at += key_len
    has_value = body[at : at + 1] == b"\1"
    return Record(table, key, body[at + 1 :] if has_value else None)


def _connect(target: RedisTarget) -> Any:
    import redis

    return redis.Redis(
        host=target.host,
        port=target.port,
        db=target.db,
        username=target.username,
        password=target.password,
        ssl=target.tls,
        socket_timeout=_SOCKET_TIMEOUT_S,
        socket_connect_timeout=_CONNECT_TIMEOUT_S,
    )


class RedisPersistLog:
    """The GCS's records in one Redis namespace: `append`, `replay`, `compact`."""

    def __init__(self, target: RedisTarget, token: str, client: Any = None) -> None:
        self.target = target
        self.path = target.display()
        self._mac_key = store_key(token)
        self._ns = target.namespace
        prefix = f"rayops:gcs:{target.namespace}:"
        self._log_key = prefix + "log"
        self._snap_key = prefix + "snapshot"
        try:
            import redis
        except ImportError as err:
            raise StoreError(
                f"the GCS store {self.path} needs the Redis client: pip install 'rayops[redis]'"
            ) from err
        self._errors: tuple[type[BaseException], ...] = (redis.exceptions.RedisError, OSError)
        # Worth retrying: the connection, not the command; a refused AUTH (a subclass of
        # ConnectionError in redis-py) is not retried.
        self._refused = redis.exceptions.AuthenticationError
        self._transient: tuple[type[BaseException], ...] = (
            redis.exceptions.ConnectionError,
            redis.exceptions.TimeoutError,
        )
        self._r: Any = client if client is not None else _connect(target)
        try:
            self.tail_rows = int(self._retrying(lambda: self._r.llen(self._log_key)))
        except self._errors as err:
            raise StoreError(f"cannot reach the GCS store {self.path}: {err}") from err

    def _retrying(self, command: Callable[[], T]) -> T:
        """Run `command`, again after a dropped connection, with doubling pauses, for up to
        the retry window. Only for idempotent commands: appending a record twice is (each
        record is an entity's whole state), trimming by count is not."""
        deadline = time.monotonic() + _RETRY_WINDOW_S
        pause = 0.05
        while True:
            try:
                return command()
            except self._transient as err:
                if isinstance(err, self._refused) or time.monotonic() + pause > deadline:
                    raise
                logger.warning("GCS store %s: %s; retrying in %.2f s", self.path, err, pause)
                time.sleep(pause)
                pause = min(pause * 2, 2.0)

    def append(self, records: Iterable[Record]) -> int:
        """Append `records` in one MULTI/EXEC (all or none); how many."""
        frames = [encode_frame(self._mac_key, self._ns, r) for r in records]
        if not frames:
            return 0

        def push() -> Any:
            pipe = self._r.pipeline(transaction=True)
            pipe.rpush(self._log_key, *frames)
            return pipe.execute()

        try:
            self._retrying(push)
        except self._errors as err:
            raise StoreError(f"writing the GCS store {self.path} failed: {err}") from err
        self.tail_rows += len(frames)
        return len(frames)

    def replay(self) -> dict[str, dict[bytes, bytes]]:
        """The state as of the last commit: table -> key -> value (every record checked)."""
        try:
            snapshot = self._retrying(lambda: self._r.hgetall(self._snap_key))
            tail = self._retrying(lambda: self._r.lrange(self._log_key, 0, -1))
        except self._errors as err:
            raise StoreError(f"cannot read the GCS store {self.path}: {err}") from err
        state: dict[str, dict[bytes, bytes]] = {}
        for name, frame in snapshot.items():
            where = f"{self.path} key {self._snap_key}"
            rec = decode_frame(self._mac_key, self._ns, bytes(frame), where)
            if _snapshot_field(rec.table, rec.key) != bytes(name) or rec.value is None:
                raise StoreError(f"{where}: a record is filed under another entity's name")
            state.setdefault(rec.table, {})[rec.key] = rec.value
        for index, frame in enumerate(tail):
            where = f"{self.path} key {self._log_key}[{index}]"
            rec = decode_frame(self._mac_key, self._ns, bytes(frame), where)
            if rec.value is None:
                state.get(rec.table, {}).pop(rec.key, None)
            else:
                state.setdefault(rec.table, {})[rec.key] = rec.value
        return state

    def compact(self) -> None:
        """Fold the log's first records into the snapshot and trim them, in one MULTI/EXEC
        (not retried: a lost reply to a trim that happened would trim again)."""
        try:
            frames = self._retrying(lambda: self._r.lrange(self._log_key, 0, -1))
            if not frames:
                return
            last: dict[bytes, tuple[bytes, bool]] = {}  # field -> (frame, still there)
            for index, frame in enumerate(frames):
                where = f"{self.path} key {self._log_key}[{index}]"
                rec = decode_frame(self._mac_key, self._ns, bytes(frame), where)
                last[_snapshot_field(rec.table, rec.key)] = (bytes(frame), rec.value is not None)
            sets = {f: frame for f, (frame, live) in last.items() if live}
            gone = [f for f, (_, live) in last.items() if not live]
            pipe = self._r.pipeline(transaction=True)
            if sets:
                pipe.hset(self._snap_key, mapping=sets)
            if gone:
                pipe.hdel(self._snap_key, *gone)
            pipe.ltrim(self._log_key, len(frames), -1)
            pipe.llen(self._log_key)
            self.tail_rows = int(pipe.execute()[-1])
        except self._errors as err:
            raise StoreError(f"compacting the GCS store {self.path} failed: {err}") from err

    def snapshot_rows(self) -> int:
        return int(self._r.hlen(self._snap_key))

    def close(self) -> None:
        self._r.close()
