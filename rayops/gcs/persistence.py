"""Persisting the GCS's tables and reading them back after a restart.

The tables' change events (the event spine, `rayops.gcs.pubsub`) are followed in process
(`Publisher.listen`); each event becomes a record of the entity's whole state after the change
(`records_of`, no I/O), and the records go to the persistence log (`rayops.gcs.persist_log`,
SQLite in WAL mode) on a writer thread that commits whatever has queued up in one transaction
(group commit), so the event loop never waits for the disk. A gRPC call that changed a table
is answered only once its records are committed (`DurableRepliesInterceptor`): what a client
was told has happened survives a SIGKILL of the GCS right after. Calls that changed nothing
do not wait.

What is persisted: nodes (membership and death, not usage: raylets report it again), jobs and
the last job id handed out, the internal KV (values too), actors (with their creation spec, so
a restarted GCS can restart them), placement groups, and the cluster id. Not persisted: task
events for the state API (as Ray: they live in GCS memory), usage reports, the pubsub logs (a
restarted GCS has a new epoch: every follower takes a snapshot).

The records' values are pickles of the GCS's own dataclasses, written and read only by the
GCS: in a file in the head's session directory (mode 0600 like the token file), or in an
external Redis (`rayops.gcs.redis_store`) where every record carries an HMAC keyed by the
cluster token, checked before anything is unpickled.
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import os
import pickle
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from rayops.gcs.actor_events import ActorChanged
from rayops.gcs.job_events import JobAdded, JobFinished
from rayops.gcs.kv_events import KeyPut, KeysDeleted
from rayops.gcs.node_events import NodeAdded, NodeDead, NodeRemoved
from rayops.gcs.persist_log import Record, RecordStore
from rayops.gcs.pg_events import PgAdded, PgForgotten, PgStateChanged
from rayops.gcs.redis_store import RedisTarget, parse_redis_target

if TYPE_CHECKING:
    from rayops.gcs.server import GcsState

__all__ = [
    "COMPACT_ROWS",
    "STORE_FILE",
    "DurableRepliesInterceptor",
    "GcsPersistence",
    "RestoreSummary",
    "kv_record_key",
    "records_of",
    "resolve_storage",
]

logger = logging.getLogger(__name__)

STORE_FILE = "gcs_store.sqlite"
# Fold the log's tail into the snapshot once it holds this many records.
COMPACT_ROWS = 20_000

# Record tables.
NODE, JOB, KV, ACTOR, PG, META = "node", "job", "kv", "actor", "pg", "meta"
_LAST_JOB_ID = b"last_job_id"


class _CallRecords:
    """The records queued while one gRPC call's handler ran (its context)."""

    __slots__ = ("seq",)

    def __init__(self) -> None:
        self.seq = 0  # the queue position of its last record; 0: none


# Set by DurableRepliesInterceptor around a handler: its appends mark it (tasks the handler
# spawns copy the context, so a change they make later marks it too, harmlessly late).
_CALL: contextvars.ContextVar[_CallRecords | None] = contextvars.ContextVar(
    "gcs_call_records", default=None
)
_CLUSTER_ID = b"cluster_id"


def resolve_storage(
    arg: str | None, session_dir: str | None, env: Mapping[str, str]
) -> str | RedisTarget | None:
    """Where the GCS persists: a SQLite file, a Redis, or None (memory only), from
    `--gcs-storage`, the environment and the session directory.

    `arg` is "sqlite:PATH", a plain PATH, "memory" (nothing persisted), or a redis:// or
    rediss:// URL. Without `arg`, Ray's `RAY_REDIS_ADDRESS` (host:port or a URL; also
    `RAYOPS_REDIS_ADDRESS`) selects a Redis; else the default is
    `<session_dir>/gcs_store.sqlite`, or memory only without a session directory. Raises
    ValueError naming the argument or variable when it cannot be used.
    """
    if arg is None or arg == "":
        for name in ("RAYOPS_REDIS_ADDRESS", "RAY_REDIS_ADDRESS"):
            if env.get(name):
                return parse_redis_target(env[name], name, env)
        return os.path.join(session_dir, STORE_FILE) if session_dir else None
    if arg.startswith(("redis://", "rediss://")):
        return parse_redis_target(arg, "--gcs-storage", env)
    if "://" in arg and not arg.startswith("sqlite:"):
        raise ValueError(
            f"--gcs-storage {arg!r}: expected sqlite:PATH, a path, memory, or redis://host:port"
        )
    if arg == "memory":
        return None
    path = arg[len("sqlite:") :] if arg.startswith("sqlite:") else arg
    if path.startswith("//"):
        path = path[2:]
    if not path:
        raise ValueError(f"--gcs-storage {arg!r}: expected sqlite:PATH, a path, or memory")
    return path


def kv_record_key(namespace: str, key: bytes) -> bytes:
    ns = namespace.encode()
    return len(ns).to_bytes(4, "big") + ns + key


def _split_kv_key(raw: bytes) -> tuple[str, bytes]:
    n = int.from_bytes(raw[:4], "big")
    return raw[4 : 4 + n].decode(), raw[4 + n :]


def _dump(obj: Any) -> bytes:
    return pickle.dumps(obj, protocol=pickle.HIGHEST_PROTOCOL)


def records_of(
    channel: str, events: Sequence[Any], state: GcsState, kv_keys: dict[str, set[bytes]]
) -> list[Record]:
    """The records for one publish of `channel`'s events: each entity's state right after.

    `kv_keys` (namespace -> keys persisted) is kept here so that a delete by prefix names
    the keys it removed; nothing else is read but the tables.
    """
    out: list[Record] = []
    for ev in events:
        if isinstance(ev, ActorChanged):
            rec = state.actors.get(ev.actor_id)
            out.append(Record(ACTOR, ev.actor_id, None if rec is None else _dump(rec)))
        elif isinstance(ev, (NodeAdded, NodeDead)):
            node_id = ev.node.node_id if isinstance(ev, NodeAdded) else ev.node_id
            info = state.nodes.get(node_id)
            out.append(Record(NODE, node_id.encode(), None if info is None else _dump(info)))
        elif isinstance(ev, NodeRemoved):
            out.append(Record(NODE, ev.node_id.encode(), None))
        elif isinstance(ev, (JobAdded, JobFinished)):
            job_id = ev.job.job_id if isinstance(ev, JobAdded) else ev.job_id
            job = state.jobs.get(job_id)
            out.append(Record(JOB, str(job_id).encode(), None if job is None else _dump(job)))
        elif isinstance(ev, KeyPut):
            value = state.kv.get(ev.namespace, ev.key)
            kv_keys.setdefault(ev.namespace, set()).add(ev.key)
            out.append(Record(KV, kv_record_key(ev.namespace, ev.key), value))
        elif isinstance(ev, KeysDeleted):
            space = kv_keys.get(ev.namespace, set())
            gone = [k for k in space if k.startswith(ev.key)] if ev.by_prefix else [ev.key]
            for key in gone:
                space.discard(key)
                out.append(Record(KV, kv_record_key(ev.namespace, key), None))
        elif isinstance(ev, PgStateChanged) and ev.state == "PREPARED":
            # Not persisted: a restart turns a PREPARED group back into a waiting one anyway
            # (PgTable.restore), so this record would change nothing; one fewer per group.
            continue
        elif isinstance(ev, (PgAdded, PgStateChanged)):
            pg_id = ev.group.pg_id if isinstance(ev, PgAdded) else ev.pg_id
            pg = state.pgs.get(pg_id)
            out.append(Record(PG, pg_id, None if pg is None else _dump(pg)))
        elif isinstance(ev, PgForgotten):
            out.append(Record(PG, ev.pg_id, None))
        # Usage reports (NodeResourcesChanged) are not persisted: raylets send them again.
    return out


@dataclass(frozen=True)
class RestoreSummary:
    nodes: int
    jobs: int
    kv_keys: int
    actors: int
    placement_groups: int
    seconds: float

    def __str__(self) -> str:
        return (
            f"{self.nodes} nodes, {self.jobs} jobs, {self.kv_keys} KV keys, {self.actors} "
            f"actors, {self.placement_groups} placement groups in {self.seconds * 1000:.0f} ms"
        )


class GcsPersistence:
    """Follows the tables' events into the log on a writer thread; restores them at start.

    Use: `restore()` before serving (also sets the cluster id), `attach()` to follow the
    tables, `start()` on the event loop, `await durable()` where a reply must wait for its
    records, `await close()` at shutdown (commits what is queued).
    """

    def __init__(
        self,
        state: GcsState,
        log: RecordStore,
        *,
        compact_rows: int = COMPACT_ROWS,
        on_fatal: Callable[[str], None] = lambda reason: None,
    ) -> None:
        self._state = state
        self._log = log
        self._compact_rows = compact_rows
        self._on_fatal = on_fatal
        self._kv_keys: dict[str, set[bytes]] = {}
        self._lock = threading.Lock()
        self._pending: list[Record] = []
        self._wake = threading.Event()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.queued_seq = 0  # records handed to the writer
        self.durable_seq = 0  # records committed
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._last_job_id = 0
        self.commits = 0
        self.compactions = 0

    # ------------------------------------------------------------------ restore
    def restore(self) -> RestoreSummary:
        """Load the log into the (empty) tables; keep the cluster id of the first start."""
        from rayops.gcs.actor_table import ActorRecord
        from rayops.gcs.pg_table import PgRecord
        from rayops.gcs.types import JobInfo, NodeInfo

        start = time.perf_counter()
        data = self._log.replay()
        st = self._state
        meta = data.get(META, {})
        if _CLUSTER_ID in meta:
            st.cluster_id = meta[_CLUSTER_ID].decode()
        else:
            self._append([Record(META, _CLUSTER_ID, st.cluster_id.encode())])
        nodes = [pickle.loads(v) for v in data.get(NODE, {}).values()]
        jobs = [pickle.loads(v) for v in data.get(JOB, {}).values()]
        actors = [pickle.loads(v) for v in data.get(ACTOR, {}).values()]
        pgs = [pickle.loads(v) for v in data.get(PG, {}).values()]
        assert all(isinstance(n, NodeInfo) for n in nodes)
        assert all(isinstance(j, JobInfo) for j in jobs)
        assert all(isinstance(a, ActorRecord) for a in actors)
        assert all(isinstance(p, PgRecord) for p in pgs)
        last_job_id = int(meta.get(_LAST_JOB_ID, b"0"))
        st.nodes.restore(nodes)
        st.jobs.restore(jobs, last_job_id)
        self._last_job_id = st.jobs.last_job_id
        kv_entries = []
        for raw, value in data.get(KV, {}).items():
            ns, key = _split_kv_key(raw)
            kv_entries.append((ns, key, value))
            self._kv_keys.setdefault(ns, set()).add(key)
        st.kv.restore(kv_entries)
        st.actors.restore(actors)
        st.pgs.restore(pgs)
        return RestoreSummary(
            len(nodes), len(jobs), len(kv_entries), len(actors), len(pgs),
            time.perf_counter() - start,
        )  # fmt: skip

    # ------------------------------------------------------------------ follow
    def attach(self) -> None:
        from rayops.gcs.pubsub import ACTORS_CHANNEL, NODES_CHANNEL
        from rayops.gcs.pubsub_service import JOBS_CHANNEL, KV_CHANNEL, PG_CHANNEL

        for channel in (NODES_CHANNEL, JOBS_CHANNEL, KV_CHANNEL, ACTORS_CHANNEL, PG_CHANNEL):
            self._state.publisher.listen(channel, self._listener(channel))

    def _listener(self, channel: str) -> Callable[[Sequence[Any]], None]:
        def listen(events: Sequence[Any]) -> None:
            records = records_of(channel, events, self._state, self._kv_keys)
            if records:
                self._append(records)

        return listen

    def note_counters(self) -> None:
        """Persist the last job id if a call handed out a new one (it publishes nothing)."""
        last = self._state.jobs.last_job_id
        if last != self._last_job_id:
            self._last_job_id = last
            self._append([Record(META, _LAST_JOB_ID, str(last).encode())])

    def _append(self, records: list[Record]) -> None:
        with self._lock:
            self._pending.extend(records)
            self.queued_seq += len(records)
        call = _CALL.get()
        if call is not None:
            call.seq = self.queued_seq
        self._wake.set()

    # ------------------------------------------------------------------ writer
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._write_loop, name="gcs-persist", daemon=True)
        self._thread.start()

    async def durable(self, upto: int | None = None) -> None:
        """Return once every record queued so far (or up to `upto`) is committed."""
        target = self.queued_seq if upto is None else upto
        if self.durable_seq >= target or self._thread is None:
            return
        fut = asyncio.get_running_loop().create_future()
        self._waiters.append((target, fut))
        await fut

    def _committed(self, seq: int) -> None:
        self.durable_seq = seq
        still = []
        for target, fut in self._waiters:
            if target <= seq:
                if not fut.done():
                    fut.set_result(None)
            else:
                still.append((target, fut))
        self._waiters = still

    def _write_loop(self) -> None:
        while True:
            self._wake.wait()
            with self._lock:
                self._wake.clear()
                batch, self._pending = self._pending, []
                seq = self.queued_seq
                closing = self._closing
            if batch:
                try:
                    self._log.append(batch)
                    self.commits += 1
                    if self._log.tail_rows >= self._compact_rows:
                        self._log.compact()
                        self.compactions += 1
                except Exception as err:
                    logger.exception("writing the GCS store %s failed", self._log.path)
                    self._fatal(f"writing the GCS store {self._log.path} failed: {err}")
                    return
                assert self._loop is not None
                try:
                    self._loop.call_soon_threadsafe(self._committed, seq)
                except RuntimeError:  # the loop is closed: we are shutting down
                    return
            if closing:
                return

    def _fatal(self, reason: str) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._on_fatal, reason)
            except RuntimeError:
                pass

    async def close(self) -> None:
        """Commit what is queued, stop the writer, close the file."""
        self.note_counters()
        with self._lock:
            self._closing = True
        self._wake.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 10.0)
        self._log.close()


class DurableRepliesInterceptor(grpc.aio.ServerInterceptor):
    """Hold each unary call's reply until the records its handler queued are committed."""

    def __init__(self, persistence: GcsPersistence) -> None:
        self._p = persistence

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        handler = await continuation(handler_call_details)
        if handler is None or handler.unary_unary is None:
            return handler
        inner = handler.unary_unary
        p = self._p

        async def durable(request: Any, context: grpc.aio.ServicerContext) -> Any:
            mine = _CallRecords()
            token = _CALL.set(mine)
            try:
                reply = await inner(request, context)
                p.note_counters()
            finally:
                _CALL.reset(token)
            if mine.seq:  # this call changed a table: its records first, then the reply
                await p.durable(mine.seq)
            return reply

        return grpc.unary_unary_rpc_method_handler(
            durable,
            request_deserializer=handler.request_deserializer,
            response_serializer=handler.response_serializer,
        )
