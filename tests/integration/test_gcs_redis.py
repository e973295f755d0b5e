"""The GCS persisting to an external Redis (issue 14, item 1's option), against a real
`redis-server` on loopback: the store keeps the SQLite log's contract, refuses records it
cannot vouch for, rides out a Redis restart, and lets a *new* head (new session directory,
same cluster token, same Redis) read the cluster's tables back, which the session
directory's SQLite file cannot.
"""

from __future__ import annotations

import os
import signal
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from rayops.gcs.client import GcsClient
from rayops.gcs.persist_log import PersistLog, Record, StoreError
from rayops.gcs.redis_store import RedisPersistLog, RedisTarget, encode_frame, store_key
from rayops.node.processes import NodeStartError
from rayops.testing.cluster import Cluster
from rayops.testing.redis_server import RedisServer, redis_server_binary
from rayops.testing.waiting import process_alive, wait_for

pytestmark = pytest.mark.skipif(
    redis_server_binary() is None, reason="no redis-server: run scripts/bootstrap-hosts.sh"
)

PASSWORD = "pw-" + uuid.uuid4().hex[:8]
TOKEN = "t" * 64


@pytest.fixture(scope="module")
def redis(temp_dir: str) -> Iterator[RedisServer]:
    server = RedisServer(os.path.join(temp_dir, "redis"), PASSWORD)
    server.start()
    yield server
    server.stop()


def _target(redis: RedisServer, namespace: str | None = None) -> RedisTarget:
    return RedisTarget(
        "127.0.0.1",
        redis.port,
        password=PASSWORD,
        namespace=namespace or uuid.uuid4().hex[:12],
    )


def _records(n: int) -> list[Record]:
    """Puts, overwrites and deletes over three tables."""
    out = []
    for i in range(n):
        out.append(Record("kv", f"k{i % 17}".encode(), f"v{i}".encode()))
        if i % 5 == 0:
            out.append(Record("actor", bytes([i % 7]), b"a" * (i % 50)))
        if i % 9 == 0:
            out.append(Record("kv", f"k{(i * 3) % 17}".encode(), None))
        if i % 11 == 0:
            out.append(Record("actor", bytes([(i + 3) % 7]), None))
    return out


def test_replays_what_sqlite_replays_across_compactions(redis: RedisServer, tmp_path) -> None:
    sqlite = PersistLog(str(tmp_path / "s.sqlite"))
    store = RedisPersistLog(_target(redis), TOKEN)
    records = _records(300)
    for start in range(0, len(records), 37):
        batch = records[start : start + 37]
        assert store.append(batch) == sqlite.append(batch) == len(batch)
        if start % 3 == 0:
            store.compact()
            sqlite.compact()
        assert store.replay() == sqlite.replay()
    store.compact()
    sqlite.compact()
    assert store.tail_rows == 0
    assert store.snapshot_rows() == sqlite.snapshot_rows() > 0
    assert store.replay() == sqlite.replay()
    # A second client on the same namespace (a restarted GCS) sees the same state.
    again = RedisPersistLog(store.target, TOKEN)
    assert again.replay() == sqlite.replay()
    for s in (store, again, sqlite):
        s.close()


def test_namespaces_do_not_see_each_other(redis: RedisServer) -> None:
    a = RedisPersistLog(_target(redis, "ns-a-" + uuid.uuid4().hex[:6]), TOKEN)
    b = RedisPersistLog(_target(redis, "ns-b-" + uuid.uuid4().hex[:6]), TOKEN)
    a.append([Record("kv", b"k", b"from a")])
    assert b.replay() == {}
    assert a.replay() == {"kv": {b"k": b"from a"}}
    a.close()
    b.close()


def test_records_of_another_token_or_altered_are_refused(redis: RedisServer) -> None:
    target = _target(redis)
    store = RedisPersistLog(target, TOKEN)
    store.append([Record("kv", b"k", b"v"), Record("kv", b"k2", b"v2")])
    with pytest.raises(StoreError, match="another token, or altered"):
        RedisPersistLog(target, "u" * 64).replay()
    # Bytes written by someone with the Redis password but not the cluster token.
    import redis as redis_py

    raw = redis_py.Redis(port=redis.port, password=PASSWORD)
    forged = encode_frame(store_key("u" * 64), target.namespace, Record("kv", b"x", b"evil"))
    raw.rpush(f"rayops:gcs:{target.namespace}:log", forged)
    with pytest.raises(StoreError, match=r"log\[2\]"):
        store.replay()
    # A record moved from another namespace fails too (the MAC covers the namespace).
    other = encode_frame(store_key(TOKEN), "elsewhere", Record("kv", b"y", b"moved"))
    raw.lset(f"rayops:gcs:{target.namespace}:log", 2, other)
    with pytest.raises(StoreError, match="integrity"):
        store.replay()
    raw.close()
    store.close()


def test_a_wrong_password_names_the_store(redis: RedisServer) -> None:
    bad = RedisTarget("127.0.0.1", redis.port, password="wrong", namespace="x")
    with pytest.raises(
        StoreError, match=rf"cannot reach the GCS store redis://127.0.0.1:{redis.port}"
    ):
        RedisPersistLog(bad, TOKEN)


def test_an_append_rides_out_a_redis_restart(temp_dir: str) -> None:
    server = RedisServer(os.path.join(temp_dir, "redis-restart"), PASSWORD)
    server.start()
    try:
        store = RedisPersistLog(_target(server), TOKEN)
        store.append([Record("kv", b"before", b"1")])
        server.kill()
        # The append runs on another thread (as on the GCS's writer) while this one starts
        # the server again (here: setpriv's parent-death signal follows the starting thread).
        done: list[float] = []
        t0 = time.monotonic()
        writer = threading.Thread(
            target=lambda: (
                store.append([Record("kv", b"after", b"2")]),
                done.append(time.monotonic() - t0),
            )
        )
        writer.start()
        time.sleep(0.5)
        assert not done, "the append returned while Redis was down"
        server.start()
        writer.join(timeout=20)
        assert done, "the append did not complete after Redis came back"
        waited = done[0]
        assert store.replay() == {"kv": {b"before": b"1", b"after": b"2"}}
        assert 0.3 < waited < 8, waited
        store.close()
    finally:
        server.stop()


def test_a_replacement_head_reads_the_cluster_back_from_redis(
    redis: RedisServer, temp_dir: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    namespace = "cluster-" + uuid.uuid4().hex[:8]
    monkeypatch.setenv("RAY_REDIS_ADDRESS", redis.address)
    monkeypatch.setenv("RAY_external_storage_namespace", namespace)
    first = Cluster(os.path.join(temp_dir, "redis-head-1"), token=TOKEN, redis_password=PASSWORD)
    try:
        session = first.head.started.record.session_dir
        assert not os.path.exists(os.path.join(session, "gcs_store.sqlite"))
        with GcsClient(first.address, TOKEN, timeout=30) as gcs:
            gcs.kv_put(b"model", b"v7", namespace="app")
            cluster_id = gcs.check_alive().cluster_id
        # The GCS SIGKILLed: its supervisor restarts it, and it reads Redis back.
        old = first.gcs_pid()
        os.kill(old, signal.SIGKILL)
        wait_for("the old GCS gone", lambda: not process_alive(old), timeout=10)
        wait_for("a new GCS", lambda: first.gcs_pid() != old, timeout=30)
        with GcsClient(first.address, TOKEN, timeout=30) as gcs:
            assert gcs.kv_get(b"model", namespace="app") == b"v7"
            gcs.kv_put(b"model", b"v8", namespace="app")
    finally:
        first.shutdown()

    # The whole head gone; a new one, new session directory, same token and Redis.
    second = Cluster(os.path.join(temp_dir, "redis-head-2"), token=TOKEN, redis_password=PASSWORD)
    try:
        with GcsClient(second.address, TOKEN, timeout=30) as gcs:
            assert gcs.kv_get(b"model", namespace="app") == b"v8"
            assert gcs.check_alive().cluster_id == cluster_id
    finally:
        second.shutdown()

    # A head with another token refuses the store at start, saying why.
    with pytest.raises(NodeStartError, match="integrity check"):
        Cluster(os.path.join(temp_dir, "redis-head-3"), token="u" * 64, redis_password=PASSWORD)
