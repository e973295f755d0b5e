"""Reading and writing object values: put, get, wait, futures, and fetching from owners.

Owns: ``cw.objects``. ``put`` stores a value we own (inline when small, in the node's
shared-memory store when large) and counts its ref; ``get`` / ``wait`` block a user
thread on the memory store (counted waiters, see ``memory_store``) after asking the
owners of refs we borrowed for their values; ``materialize`` turns an entry into the
value (zero-copy from shared memory). It does not decide when objects die
(``references``) nor carry out frees (``borrowing``).

Threads: ``put``, ``get``, ``wait`` and ``materialize`` may block and run on user
threads; ``get_future`` and ``fetch_missing`` are safe anywhere (they only post work
to the IO thread); the fetch itself runs on the IO thread.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import itertools
import logging
import operator
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rayops import exceptions as rex
from rayops import ids, serialization
from rayops.core_worker.borrowing import error_entry
from rayops.core_worker.memory_store import Entry
from rayops.core_worker.object_ref import ObjectRef
from rayops.core_worker.threads import any_thread, io_thread, on_io_thread, user_thread
from rayops.objectstore import StoreClient
from rayops.protocol import metrics as mx
from rayops.protocol import raylet_messages as rm
from rayops.protocol import worker_messages as wm
from rayops.protocol.task_messages import INLINE_MAX_BYTES
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

Address = tuple[str, int]
_NIL_TASK = bytes(ids.TASK_ID_LEN)


class ObjectAccess:
    """``cw.objects``: put/get/wait of object values for one core worker."""

    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._ms = cw.memory_store
        self._refs = cw.references
        self._new_borrows = cw.references.table.new_borrows
        self._driver = cw.mode == "driver"
        self._fetching: set[bytes] = set()

    # ------------------------------------------------------------------ put
    @user_thread
    def put(self, value: Any) -> ObjectRef:
        if isinstance(value, ObjectRef):
            raise TypeError(
                "Calling put() on an ObjectRef is not allowed: pass the ref itself, or "
                "put a container that holds it (e.g. put([ref]))."
            )
        ctx = self._cw.task_context()
        ctx.put_index += 1
        parent = ctx.task_id or _NIL_TASK
        oid = ids.object_id_for(parent, ids.PUT_INDEX_BASE + ctx.put_index)
        sv = serialization.serialize(value)
        return self.own_value(oid, sv)

    @user_thread
    def own_value(
        self, oid: bytes, sv: serialization.SerializedValue, *, local: int = 1
    ) -> ObjectRef:
        """Store ``sv`` as our object ``oid``, counting ``local`` handles (the one returned)."""
        cw = self._cw
        entry = self.store_value(oid, sv)
        contained = [r.binary() for r in sv.contained_refs] if sv.contained_refs else ()
        self._refs.add_owned(
            oid, cw.address, local=local, contains=contained, in_store=entry[0] == "s"
        )
        self._ms.put(oid, entry)
        if self._driver and contained:
            self._refs.register_new_borrows_async()
        if local == 0:
            # Held by what the caller pins next (a task argument passed by value): the
            # handle counts nothing. (It used to add a count nobody removed: every large
            # argument stayed in shared memory for the life of the owner.)
            return ObjectRef(oid, cw.address, None, counted=True)
        return ObjectRef(oid, cw.address, cw, counted=True)

    @user_thread
    def store_value(self, oid: bytes, sv: serialization.SerializedValue) -> Entry:
        """Inline for small values, the shared-memory store for large ones."""
        if sv.total_bytes <= INLINE_MAX_BYTES:
            return ("v", sv.to_wire())
        cw = self._cw
        assert cw.store is not None
        size = StoreClient.encoded_size(
            sv.metadata, len(sv.pickled), [memoryview(b).nbytes for b in sv.buffers]
        )
        where = cw.call_raylet(rm.StoreReserve(oid, size)).where
        cw.store.write(oid, sv.metadata, sv.pickled, sv.buffers, location=where)
        cw.loop.call_soon_threadsafe(cw.raylet.notify, rm.StoreSeal(oid))
        return ("s", cw.node_id, size)

    # ------------------------------------------------------------------ get / wait
    @user_thread
    def get(self, refs: Sequence[ObjectRef], timeout: float | None = None) -> list[Any]:
        if len(refs) == 1:
            return [self._get_one(refs, timeout)]
        oids = [r.binary() for r in refs]
        ms = self._ms
        missing = [r for r in refs if not ms.contains(r.binary())]
        if missing:
            self.fetch_missing(missing)
            deadline = None if timeout is None else time.monotonic() + timeout
            with self.blocked():
                ready = ms.wait(oids, len(oids), deadline)
            if not all(ready):
                not_ready = [r for r, ok in zip(refs, ready, strict=True) if not ok]
                raise rex.GetTimeoutError(
                    f"get() timed out after {timeout} s waiting for {len(not_ready)} of "
                    f"{len(refs)} objects (first: {not_ready[0].hex()})."
                )
        values = [self.materialize(oid, ms.get(oid)) for oid in oids]
        if self._driver and self._new_borrows:
            self._refs.register_new_borrows_async()
        return values

    def _get_one(self, refs: Sequence[ObjectRef], timeout: float | None) -> Any:
        """``get`` of one ref (``get(a.f.remote())``), without the lists of many."""
        ref = refs[0]
        oid = ref.binary()
        ms = self._ms
        if not ms.contains(oid):
            deadline = None if timeout is None else time.monotonic() + timeout
            lanes = self._cw.actor_submitter.caller_lanes
            if oid in lanes.by_oid:  # an actor call in flight on a sync lane: read it here
                with self.blocked():
                    lanes.wait_reply(oid, deadline)
                if ms.contains(oid):
                    return self._value_of(oid)
            self.fetch_missing(refs)
            with self.blocked():
                ready = ms.wait_one(oid, deadline)
            if not ready:
                raise rex.GetTimeoutError(
                    f"get() timed out after {timeout} s waiting for 1 of 1 objects "
                    f"(first: {ref.hex()})."
                )
        return self._value_of(oid)

    def _value_of(self, oid: bytes) -> Any:
        value = self.materialize(oid, self._ms.get(oid))
        if self._driver and self._new_borrows:
            self._refs.register_new_borrows_async()
        return value

    @user_thread
    def wait(
        self,
        refs: list[ObjectRef],
        oids: list[bytes],
        num_returns: int,
        timeout: float | None,
    ) -> tuple[list[ObjectRef], list[ObjectRef]]:
        ms = self._ms
        flags = ms.present(oids)
        if flags.count(True) < num_returns:
            self.fetch_missing(list(itertools.compress(refs, map(operator.not_, flags))))
            deadline = None if timeout is None else time.monotonic() + timeout
            with self.blocked(mx.RUNNING_IN_RAY_WAIT):
                flags = ms.wait(oids, num_returns, deadline)
        # Ray's order: the first num_returns ready refs in list order; the rest stay in order.
        positions = list(itertools.compress(range(len(flags)), flags))
        if len(positions) > num_returns:
            cut = positions[num_returns - 1] + 1
            head_refs, head_flags = refs[:cut], flags[:cut]
            ready = list(itertools.compress(head_refs, head_flags))
            not_ready = list(itertools.compress(head_refs, map(operator.not_, head_flags)))
            not_ready.extend(refs[cut:])
            return ready, not_ready
        ready = list(itertools.compress(refs, flags))
        not_ready = list(itertools.compress(refs, map(operator.not_, flags)))
        return ready, not_ready

    @user_thread
    def blocked(self, state: str = mx.RUNNING_IN_RAY_GET) -> _Blocked:
        """Tell the raylet while a task's worker waits, so its CPU can run other tasks."""
        return _Blocked(self._cw, state)

    @user_thread
    async def get_async(self, ref: ObjectRef) -> Any:
        """``await ref`` (on the caller's own event loop, never the IO thread's)."""
        oid = ref.binary()
        ms = self._ms
        if not ms.contains(oid):
            self.fetch_missing([ref])
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()

            def ready(_oid: bytes, _e: Entry) -> None:
                loop.call_soon_threadsafe(_resolve, fut, None)

            ms.on_ready(oid, ready)
            await fut
        return self.materialize(oid, ms.get(oid))

    @any_thread
    def get_future(self, ref: ObjectRef) -> concurrent.futures.Future[Any]:
        """A future of the value; reading from shared memory happens off the IO thread."""
        out: concurrent.futures.Future[Any] = concurrent.futures.Future()
        oid = ref.binary()
        self.fetch_missing([ref])
        loop = self._cw.loop

        def set_value(entry: Entry) -> None:
            try:
                out.set_result(self.materialize(oid, entry))
            except BaseException as err:
                out.set_exception(err)

        def ready(_oid: bytes, entry: Entry) -> None:
            if entry[0] == "s" and on_io_thread():
                # A read may ask the raylet for the object and wait: never on the IO thread.
                loop.run_in_executor(None, set_value, entry)
            else:
                set_value(entry)

        # Keep the object alive until the future resolves.
        out.add_done_callback(functools.partial(_keep_alive, ref))
        self._ms.on_ready(oid, ready)
        return out

    # ------------------------------------------------------------------ values
    @any_thread
    def materialize(self, oid: bytes, entry: Entry | None) -> Any:
        """The value of an entry (raising the error it holds).

        Blocks only for a shared-memory entry whose object is not on this node (it asks
        the raylet to pull it): the IO thread hands those to ``read_from_store`` elsewhere.
        """
        if entry is None:
            raise rex.ObjectLostError(oid.hex())
        if entry[0] == "v":
            meta, pickled, buffers = entry[1]
            value = serialization.deserialize(pickled, buffers)
        else:
            try:
                value, meta = self.read_from_store(oid, entry[1])
            except rex.ObjectLostError:
                # Our object's node may have died: it is rebuilt from lineage, or holds
                # the error saying why it cannot be (core_worker/recovery.py).
                rebuilt = self._cw.recovery.wait_for_rebuild(oid, entry)
                if rebuilt is None:
                    raise
                return self.materialize(oid, rebuilt)
        if meta == serialization.META_ERROR:
            if isinstance(value, rex.RayTaskError):
                raise value.as_instanceof_cause()
            raise value
        return value

    @user_thread
    def read_from_store(self, oid: bytes, node_id: str = "") -> tuple[Any, bytes]:
        """(value, metadata) from the shared-memory store, pulled to this node if needed."""
        cw = self._cw
        assert cw.store is not None
        stored = cw.store.read(oid)
        if stored is None or stored.location == "disk":
            # Not on this node (the raylet pulls it), or spilled (the raylet restores it into
            # shared memory, so object_store_memory bounds what objects occupy).
            stored = None
            found = cw.call_raylet(rm.StoreEnsureLocal(oid, node_id)).found
            stored = cw.store.read(oid) if found else None
        if stored is None:
            raise rex.ObjectLostError(oid.hex())
        value = serialization.deserialize(stored.pickled, stored.buffers)
        return value, bytes(stored.metadata)

    # ------------------------------------------------------------------ fetching
    @any_thread
    def fetch_missing(self, refs: Sequence[ObjectRef]) -> None:
        """Ask owners for refs we do not own; their answers land in the memory store."""
        cw = self._cw
        lanes = cw.actor_submitter.caller_lanes
        if lanes.by_oid:  # someone waits for a call in flight on a sync lane: the loop reads
            lanes.need_loop([r.binary() for r in refs])
        todo = []
        for r in refs:
            oid = r.binary()
            if oid in self._fetching or self._refs.is_owned(oid):
                continue
            if r.owner_address == cw.address:
                # Ours but no longer tracked: the value is gone.
                self._ms.put(oid, error_entry(rex.ObjectLostError(oid.hex())))
                continue
            self._fetching.add(oid)
            todo.append((oid, r.owner_address))
        if todo:
            cw.loop.call_soon_threadsafe(self._start_fetches, todo)

    @io_thread
    def _start_fetches(self, todo: list[tuple[bytes, Address]]) -> None:
        for oid, owner in todo:
            self._cw.spawn(self._fetch_one(oid, owner))

    async def _fetch_one(self, oid: bytes, owner: Address) -> None:
        cw = self._cw
        try:
            conn = await cw.peer(owner)
            entry = (await conn.request(wm.GetObject(oid))).entry
        except (TimeoutError, OSError, framed.ConnectionLost) as err:
            entry = error_entry(
                rex.OwnerDiedError(oid.hex(), owner_address=f"{owner[0]}:{owner[1]}")
            )
            logger.debug("owner %s of %s unreachable: %r", owner, oid.hex(), err)
        finally:
            self._fetching.discard(oid)
        if oid in self._refs:
            self._ms.put(oid, entry)


class _Blocked:
    __slots__ = ("cw", "key", "lease", "state")

    def __init__(self, cw: CoreWorker, state: str) -> None:
        self.cw = cw
        self.state = state  # RUNNING_IN_RAY_GET or RUNNING_IN_RAY_WAIT, for ray_tasks
        self.lease: int | None = None
        self.key: tuple[str, bool] | None = None

    def __enter__(self) -> None:
        cw = self.cw
        if cw.mode == "worker":
            ctx = cw.task_context()
            self.lease = ctx.lease_id
            if self.lease is not None:
                cw.loop.call_soon_threadsafe(cw.raylet.notify, rm.WorkerBlocked(self.lease))
            self.key = ctx.metric_key
            if self.key is not None:
                cw.metrics.executor_counts.blocked(self.key, self.state, 1)

    def __exit__(self, *exc: object) -> None:
        cw = self.cw
        if self.lease is not None:
            cw.loop.call_soon_threadsafe(cw.raylet.notify, rm.WorkerUnblocked(self.lease))
        if self.key is not None:
            cw.metrics.executor_counts.blocked(self.key, self.state, -1)


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)


def _keep_alive(ref: ObjectRef, _fut: object) -> None:
    """A done-callback whose only job is to hold ``ref`` until the future resolves."""
