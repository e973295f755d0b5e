"""The GCS's persistence log (gcs/persist_log.py) and what the GCS writes to it and reads
back (gcs/persistence.py): append, replay, compaction, a torn last write after a crash, and
every table restored into a fresh GcsState."""

from __future__ import annotations

import asyncio
import os
import shutil
import sqlite3

import pytest

from rayops.gcs.actor_table import ActorRecord, ActorState
from rayops.gcs.persist_log import PersistLog, Record
from rayops.gcs.persistence import GcsPersistence, resolve_storage
from rayops.gcs.pg_table import Committed, Create, PgRecord, PgState, Placed, Prepared
from rayops.gcs.redis_store import RedisTarget
from rayops.gcs.server import GcsState
from rayops.gcs.types import JobInfo, NodeInfo, NodeState


def _log(tmp_path: object, name: str = "store.sqlite") -> PersistLog:
    return PersistLog(os.path.join(str(tmp_path), name))


def test_append_then_replay_last_write_wins_and_none_deletes(tmp_path: object) -> None:
    log = _log(tmp_path)
    log.append([Record("kv", b"a", b"1"), Record("kv", b"b", b"2")])
    log.append([Record("kv", b"a", b"3"), Record("node", b"n1", b"x")])
    log.append([Record("kv", b"b", None)])
    assert log.replay() == {"kv": {b"a": b"3"}, "node": {b"n1": b"x"}}
    log.close()
    # A second process (the restarted GCS) reads the same state.
    again = _log(tmp_path)
    assert again.replay() == {"kv": {b"a": b"3"}, "node": {b"n1": b"x"}}
    assert again.tail_rows == 5


def test_compaction_folds_the_tail_and_bounds_the_file(tmp_path: object) -> None:
    log = _log(tmp_path)
    for i in range(50):
        log.append([Record("kv", f"k{i % 5}".encode(), str(i).encode()) for _ in range(100)])
    log.append([Record("kv", b"k0", None)])
    want = log.replay()
    assert want == {"kv": {f"k{i}".encode(): str(45 + i).encode() for i in range(1, 5)}}
    log.compact()
    assert log.tail_rows == 0
    assert log.snapshot_rows() == 4
    assert log.replay() == want
    # Writes after a compaction land in the tail, on top of the snapshot.
    log.append([Record("kv", b"k1", b"new"), Record("kv", b"k2", None)])
    log.compact()
    assert log.replay() == {"kv": {b"k1": b"new", b"k3": b"48", b"k4": b"49"}}
    # The file does not keep the history: rounds of 5,000 records, each compacted, leave it
    # the size of one round's tail (freed pages are reused), not of everything written.
    sizes = []
    for _ in range(8):
        log.append([Record("kv", f"k{i % 5}".encode(), b"v" * 100) for i in range(5000)])
        log.compact()
        sizes.append(os.path.getsize(log.path) + os.path.getsize(log.path + "-wal"))
    assert sizes[-1] <= sizes[1] * 1.1, sizes


def test_a_torn_last_write_loses_only_that_transaction(tmp_path: object) -> None:
    """A crash in the middle of a commit: the WAL ends in a partial frame. SQLite ignores
    frames after the last complete commit, so replay gives every earlier transaction."""
    log = _log(tmp_path, "live.sqlite")
    log.append([Record("kv", b"first", b"1")])
    log.append([Record("kv", b"second", b"2" * 3000)])
    # Copy the database as a crash would leave it: the main file and the WAL (not yet
    # checkpointed), the WAL cut in the middle of the last transaction's frames.
    crashed = os.path.join(str(tmp_path), "crashed.sqlite")
    shutil.copy(log.path, crashed)
    with open(log.path + "-wal", "rb") as f:
        wal = f.read()
    assert len(wal) > 4096
    with open(crashed + "-wal", "wb") as f:
        f.write(wal[: len(wal) - 1500])
    log.close()
    after = PersistLog(crashed)
    assert after.replay() == {"kv": {b"first": b"1"}}
    after.append([Record("kv", b"third", b"3")])
    assert after.replay() == {"kv": {b"first": b"1", b"third": b"3"}}


def test_a_file_that_is_not_a_store_is_refused_by_name(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "junk.sqlite")
    with open(path, "wb") as f:
        f.write(b"this is not a database" * 100)
    with pytest.raises(Exception, match=r"junk\.sqlite") as info:
        PersistLog(path)
    assert not isinstance(info.value, sqlite3.Error)


@pytest.mark.parametrize(
    ("arg", "session", "env", "want"),
    [
        (None, "/s", {}, "/s/gcs_store.sqlite"),
        (None, None, {}, None),
        ("memory", "/s", {}, None),
        ("sqlite:/x/y.db", "/s", {}, "/x/y.db"),
        ("sqlite:///x/y.db", "/s", {}, "/x/y.db"),
        ("/x/z.db", None, {}, "/x/z.db"),
    ],
)
def test_storage_resolution(
    arg: str | None, session: str | None, env: dict[str, str], want: str | None
) -> None:
    assert resolve_storage(arg, session, env) == want


@pytest.mark.parametrize(
    ("arg", "env", "want"),
    [
        ("redis://10.0.0.1:6379", {}, RedisTarget("10.0.0.1", 6379)),
        ("rediss://u:p%40w@h:7/3", {}, RedisTarget("h", 7, 3, "u", "p@w", tls=True)),
        (None, {"RAY_REDIS_ADDRESS": "10.0.0.1:6379"}, RedisTarget("10.0.0.1", 6379)),
        (None, {"RAYOPS_REDIS_ADDRESS": "h:1"}, RedisTarget("h", 1)),
        (
            None,
            {
                "RAY_REDIS_ADDRESS": "h:1",
                "RAYOPS_REDIS_PASSWORD": "pw",
                "RAY_external_storage_namespace": "c2",
            },
            RedisTarget("h", 1, password="pw", namespace="c2"),
        ),
        ("sqlite:/x.db", {"RAY_REDIS_ADDRESS": "h:1"}, "/x.db"),  # the argument wins
    ],
)
def test_redis_targets(arg: str | None, env: dict[str, str], want: object) -> None:
    assert resolve_storage(arg, "/s", env) == want


@pytest.mark.parametrize(
    ("arg", "env", "named", "says"),
    [
        ("redis://h", {}, "--gcs-storage", "host:port"),
        ("redis://h:99999", {}, "--gcs-storage", "host:port"),
        ("redis://h:1/x", {}, "--gcs-storage", "database"),
        ("redis://h:1?ssl_cert_reqs=none", {}, "--gcs-storage", "URL options"),
        ("unix:///run/redis.sock", {}, "--gcs-storage", "expected sqlite"),
        (None, {"RAY_REDIS_ADDRESS": "a:1,b:2"}, "RAY_REDIS_ADDRESS", "one Redis address"),
        (None, {"RAY_REDIS_ADDRESS": "h"}, "RAY_REDIS_ADDRESS", "host:port"),
        (
            None,
            {"RAY_REDIS_ADDRESS": "h:1", "RAY_external_storage_namespace": "a b"},
            "RAY_external_storage_namespace",
            "whitespace",
        ),
    ],
)
def test_bad_redis_targets_name_what_is_wrong(
    arg: str | None, env: dict[str, str], named: str, says: str
) -> None:
    with pytest.raises(ValueError, match=says) as info:
        resolve_storage(arg, "/s", env)
    assert named in str(info.value)


def test_a_redis_target_never_shows_its_password() -> None:
    target = resolve_storage("redis://u:secret@h:1", None, {})
    assert isinstance(target, RedisTarget)
    assert "secret" not in repr(target) and "secret" not in target.display()


def _node(node_id: str) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        node_ip="127.0.0.1",
        node_name="h",
        raylet_port=1234,
        object_store_dir="/dev/shm/x",
        session_dir="/tmp/s",
        resources_total={"CPU": 2.0},
        resources_available={"CPU": 2.0},
        rayops_version="0",
    )


def _actor(aid: bytes, name: str) -> ActorRecord:
    return ActorRecord(
        actor_id=aid,
        class_name="C",
        job_id=1,
        name=name,
        namespace="ns",
        is_detached=True,
        max_restarts=0,
        placement_resources={"CPU": 1.0},
        hold_resources={},
        creation_spec=b"spec",
        handle_meta=b"",
        owner_address="127.0.0.1:1",
    )


def _fill(state: GcsState) -> None:
    """One of each: nodes (one dead), jobs (one finished), KV (a prefix deleted), actors
    (one ALIVE, one pending), a placement group CREATED and one PREPARED."""
    a, b = "a" * 56, "b" * 56
    state.nodes.register(_node(a))
    state.nodes.register(_node(b))
    state.nodes.unregister(b, "gone")
    j1, j2 = state.jobs.next_job_id(), state.jobs.next_job_id()
    state.jobs.add(JobInfo(job_id=j1, driver_pid=1, driver_ip="127.0.0.1", namespace="ns"))
    state.jobs.add(JobInfo(job_id=j2, driver_pid=2, driver_ip="127.0.0.1", namespace="ns"))
    state.jobs.mark_finished(j2)
    state.jobs.next_job_id()  # handed out, not added: must not be handed out again
    state.kv.put("ns", b"keep", b"v1", overwrite=True)
    state.kv.put("ns", b"tmp/1", b"x", overwrite=True)
    state.kv.put("ns", b"tmp/2", b"y", overwrite=True)
    state.kv.put("other", b"keep", b"v2", overwrite=True)
    state.kv.delete("ns", b"tmp/", by_prefix=True)
    alive, _ = state.actors.register(_actor(b"\x01" * 16, "alive"), get_if_exists=False)
    state.actors.created(alive, ip="127.0.0.1", port=99, node_id=a, pid=7, worker_id=b"w" * 28)
    state.actors.register(_actor(b"\x02" * 16, "pending"), get_if_exists=False)
    pg = PgRecord(b"\x03" * 18, "pg", "ns", "PACK", [{"CPU": 1.0}], 1, True)
    state.pgs.handle(Create(pg))
    state.pgs.handle(Placed(pg.pg_id, {0: a}))
    state.pgs.handle(Prepared(pg.pg_id, pg.attempt))
    state.pgs.handle(Committed(pg.pg_id, pg.attempt, 0.0))
    half = PgRecord(b"\x04" * 18, "", "ns", "PACK", [{"CPU": 1.0}], 1, False)
    state.pgs.handle(Create(half))
    state.pgs.handle(Placed(half.pg_id, {0: a}))
    state.pgs.handle(Prepared(half.pg_id, half.attempt))
    assert half.state is PgState.PREPARED


def test_every_table_survives_a_restart(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "gcs.sqlite")

    async def first() -> str:
        state = GcsState()
        p = GcsPersistence(state, PersistLog(path))
        p.restore()
        p.attach()
        p.start()
        _fill(state)
        await p.durable()
        assert p.durable_seq == p.queued_seq > 0
        await p.close()
        return state.cluster_id

    cluster_id = asyncio.run(first())
    state = GcsState()
    summary = GcsPersistence(state, PersistLog(path)).restore()
    assert state.cluster_id == cluster_id
    assert (summary.nodes, summary.jobs, summary.kv_keys, summary.actors) == (2, 2, 2, 2)
    a, b = "a" * 56, "b" * 56
    assert state.nodes.get(a).state is NodeState.ALIVE  # type: ignore[union-attr]
    assert state.nodes.get(b).state is NodeState.DEAD  # type: ignore[union-attr]
    jobs = state.jobs.all_jobs()
    assert [(j.job_id, j.is_dead) for j in jobs] == [(1, False), (2, True)]
    assert state.jobs.next_job_id() == 4
    assert state.kv.get("ns", b"keep") == b"v1"
    assert state.kv.get("other", b"keep") == b"v2"
    assert state.kv.keys("ns", b"tmp/") == []
    alive = state.actors.by_name("alive", "ns")
    assert alive is not None and alive.state is ActorState.ALIVE
    assert (alive.address_port, alive.pid, alive.worker_id) == (99, 7, b"w" * 28)
    assert state.actors.by_name("pending", "ns").state is ActorState.PENDING_CREATION  # type: ignore[union-attr]
    pg = state.pgs.by_name("pg", "ns")
    assert pg is not None and pg.state is PgState.CREATED and pg.bundle_nodes == {0: a}
    # The group whose attempt was under way waits to be placed again.
    half = state.pgs.get(b"\x04" * 18)
    assert half is not None and half.state is PgState.PENDING and not half.attempt_nodes
    assert [r.pg_id for r in state.pgs.waiting()] == [half.pg_id]


def test_a_reply_comes_only_once_its_change_is_in_the_store(tmp_path: object) -> None:
    """A real GCS server with a store: as soon as a KV put, a job or a node registration is
    answered, a second reader of the file (a restarted GCS) sees it; a read-only call queues
    nothing."""
    from rayops.gcs.client import AsyncGcsClient
    from rayops.gcs.server import GcsServer
    from rayops.rpc.auth import generate_token

    path = os.path.join(str(tmp_path), "served.sqlite")

    async def main() -> None:
        token = generate_token()
        state = GcsState(rayops_version="0.1.0")
        p = GcsPersistence(state, PersistLog(path))
        p.restore()
        server = GcsServer(state, token, persistence=p)
        port = await server.start("127.0.0.1", 0)
        client = AsyncGcsClient(f"127.0.0.1:{port}", token, timeout=10)
        try:
            for i in range(20):
                await client.kv_put(f"key{i}".encode(), b"v" * i, namespace="ns")
                seen = PersistLog(path).replay()
                assert seen["kv"][b"\x00\x00\x00\x02nskey" + str(i).encode()] == b"v" * i
            job_id = await client.next_job_id()
            assert PersistLog(path).replay()["meta"][b"last_job_id"] == str(job_id).encode()
            before = p.queued_seq
            await client.kv_get(b"key1", namespace="ns")
            await client.get_all_jobs()
            assert p.queued_seq == before
        finally:
            await client.close()
            await server.stop(None)

    asyncio.run(main())
