"""A placement group's handle and what work scheduled in a group asks for.

The part of ``rayops.util.placement_group`` that the option checks, the scheduling strategies,
remote functions and actor classes need (so it imports none of them, nor the driver API): the
``PlacementGroup`` handle (its methods talk to the GCS through the running core worker),
``placement_of`` (which group's bundle validated options name), ``captured`` (the group a
child task inherits) and ``shape_in_group`` (the bundle resources it asks for instead).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import numbers
import threading
import weakref
from collections.abc import Mapping
from typing import Any

from rayops import exceptions as rex
from rayops import ids, serialization
from rayops.core_worker import state
from rayops.core_worker.borrowing import error_entry
from rayops.core_worker.object_ref import ObjectRef
from rayops.protocol.bundle_resources import PG_ID_BYTES, InPlacementGroup, demand_in_bundle

__all__ = [
    "PlacementGroup",
    "PlacementGroupID",
    "captured",
    "check_bundle_index",
    "placement_of",
    "shape_in_group",
]

logger = logging.getLogger(__name__)

# A batch of creations waits this long for all its groups before it answers; the ones still
# pending are then waited for one by one (so one slow group delays the others' answer by at
# most this much).
BATCH_WAIT_S = 0.2
WAIT_SLICE_S = 30.0  # one create-and-wait or wait call to the GCS waits at most this long


class PlacementGroupID:
    """A placement group's id (18 bytes, as Ray's)."""

    __slots__ = ("_id",)

    def __init__(self, id_bytes: bytes) -> None:
        if not isinstance(id_bytes, bytes) or len(id_bytes) != PG_ID_BYTES:
            raise ValueError(f"a PlacementGroupID is {PG_ID_BYTES} bytes, got {id_bytes!r}")
        self._id = id_bytes

    @classmethod
    def from_random(cls) -> PlacementGroupID:
        return cls(ids.random_id(PG_ID_BYTES))

    @classmethod
    def nil(cls) -> PlacementGroupID:
        return cls(b"\xff" * PG_ID_BYTES)

    def is_nil(self) -> bool:
        return self._id == b"\xff" * PG_ID_BYTES

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroupID) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __repr__(self) -> str:
        return f"PlacementGroupID({self.hex()})"


class PlacementGroup:
    """A handle to a placement group; picklable, so tasks and actors can be given one."""

    def __init__(self, id: PlacementGroupID, bundle_cache: list[dict[str, float]] | None = None):
        self.id = id
        self._bundle_cache = bundle_cache

    @staticmethod
    def empty() -> PlacementGroup:
        return PlacementGroup(PlacementGroupID.nil())

    @property
    def is_empty(self) -> bool:
        return self.id.is_nil()

    @property
    def bundle_specs(self) -> list[dict[str, float]]:
        """The bundles, as given at creation."""
        if self._bundle_cache is None:
            info = group_info(self.id.binary())
            if info is None:
                raise ValueError(f"placement group {self.id.hex()} does not exist")
            self._bundle_cache = [dict(b.resources) for b in info.bundles]
        return [dict(b) for b in self._bundle_cache]

    @property
    def bundle_count(self) -> int:
        return len(self.bundle_specs)

    def ready(self) -> ObjectRef:
        """A ref that resolves (to this group) once the group is created; ``get`` raises
        ``TaskPlacementGroupRemoved`` if it is removed first. Use with ``get`` or ``wait``."""
        cw = state.require()
        oid = ids.object_id_for(ids.new_task_id(), ids.PUT_INDEX_BASE)
        cw.references.add_owned(oid, cw.address, local=1)
        ref = ObjectRef(oid, cw.address, cw, counted=True)

        def settle(done: concurrent.futures.Future[str]) -> None:
            try:
                created = done.result() == "CREATED"
            except Exception as err:  # the GCS unreachable: the ref holds the error
                entry = error_entry(rex.RaySystemError(f"placement group wait: {err}"))
            else:
                if created:
                    entry = ("v", serialization.serialize(self).to_wire())
                else:
                    entry = error_entry(rex.TaskPlacementGroupRemoved())

            def put() -> None:
                if oid in cw.references:
                    cw.memory_store.put(oid, entry)

            cw.loop.call_soon_threadsafe(put)

        groups = groups_of(cw)
        outcome = groups.outcome(self.id.binary())
        outcome.add_done_callback(settle)
        outcome.add_done_callback(lambda done: groups.consumed(self.id.binary(), done))
        return ref

    def wait(self, timeout_seconds: float | int = 30) -> bool:
        """Whether the group is created within ``timeout_seconds``."""
        if isinstance(timeout_seconds, bool) or not isinstance(timeout_seconds, numbers.Real):
            raise TypeError(f"timeout_seconds must be a number, got {timeout_seconds!r}")
        groups = groups_of(state.require())
        outcome = groups.outcome(self.id.binary())
        try:
            created = outcome.result(max(0.0, float(timeout_seconds))) == "CREATED"
        except concurrent.futures.TimeoutError:
            return False
        groups.consumed(self.id.binary(), outcome)
        return created

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PlacementGroup) and other.id == self.id

    def __hash__(self) -> int:
        return hash(self.id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.id.binary(), self._bundle_cache))

    def __repr__(self) -> str:
        return f"PlacementGroup(id={self.id.hex()})"


def _rebuild(pg_id: bytes, bundles: list[dict[str, float]] | None) -> PlacementGroup:
    return PlacementGroup(PlacementGroupID(pg_id), bundles)


def check_bundle_index(placement_group: PlacementGroup, index: Any) -> None:
    """Ray's check of ``placement_group_bundle_index`` at ``.remote()``/``.options()``."""
    if isinstance(index, bool) or not isinstance(index, int):
        raise TypeError(f"placement_group_bundle_index must be an int, got {index!r}")
    count = placement_group.bundle_count
    if index < -1 or index >= count:
        raise ValueError(
            f"placement group bundle index {index} is invalid. Valid placement group "
            f"indexes: 0-{count - 1} (or -1 for any bundle)"
        )


def group_info(pg_id: bytes) -> Any:
    """The GCS's record of a group (a ``PlacementGroupInfo``), or None."""
    from rayops.gcs.calls import get_placement_group as get_call

    return groups_of(state.require()).call(get_call(pg_id, "", ""))


# ------------------------------------------------------- tasks and actors in groups
def placement_of(opts: Mapping[str, Any]) -> InPlacementGroup | None:
    """Where validated task or actor options schedule the work: a group's bundle, from a
    ``PlacementGroupSchedulingStrategy`` or Ray's older ``placement_group=`` options; None
    when they name no group. Raises ValueError for a bundle index the group does not have."""
    strategy = opts.get("scheduling_strategy")
    # A PlacementGroupSchedulingStrategy, read by shape (its module imports this one).
    if hasattr(strategy, "placement_group_bundle_index"):
        if opts.get("placement_group", "default") not in ("default", None):
            raise ValueError(
                "placement_group and scheduling_strategy cannot both be given: put the group "
                "in the PlacementGroupSchedulingStrategy"
            )
        pg = getattr(strategy, "placement_group", None)
        index = getattr(strategy, "placement_group_bundle_index", -1)
        capture = getattr(strategy, "placement_group_capture_child_tasks", None)
    else:
        pg = opts.get("placement_group", "default")
        if pg in ("default", None):
            return None
        if strategy not in (None, "DEFAULT"):
            raise ValueError(
                "placement_group cannot be combined with scheduling_strategy="
                f"{strategy!r}: use a PlacementGroupSchedulingStrategy"
            )
        index = opts.get("placement_group_bundle_index", -1)
        capture = opts.get("placement_group_capture_child_tasks")
    if pg is None:
        return None
    if not isinstance(pg, PlacementGroup):
        raise TypeError(
            "placement_group must be a PlacementGroup (rayops.util.placement_group), "
            f"'default' or None, got {type(pg).__name__} {pg!r}"
        )
    if pg.is_empty:
        return None
    check_bundle_index(pg, index)
    return InPlacementGroup(pg.id.binary(), index, bool(capture))


def captured(cw: Any) -> InPlacementGroup | None:
    """The group a task started here without a strategy of its own runs in: the current
    task's or actor's, if it was scheduled with ``placement_group_capture_child_tasks``."""
    if cw.mode != "worker":
        return None
    where = cw.task_context().placement
    if isinstance(where, InPlacementGroup) and where.capture_child_tasks:
        return InPlacementGroup(where.pg_id, -1, True)
    return None


def shape_in_group(shape: Mapping[str, float], where: InPlacementGroup) -> dict[str, float]:
    """What work scheduled in ``where`` asks for instead of ``shape``."""
    return demand_in_bundle(shape, where.pg_id.hex(), where.bundle_index)


# ------------------------------------------------------------- this process's groups
class Groups:
    """What this process knows of the groups it created or waits for: one future per group
    that resolves with "CREATED" or "REMOVED" ("" if the GCS never heard of it).

    Every call goes through the core worker's IO loop on one GCS channel, and a read
    (``call``) waits for the creations and removals sent before it, so it sees them. An unnamed
    group is created by a call that also waits for it (one round trip for both); ``wait`` and
    ``ready`` then only look at the future.
    """

    def __init__(self, cw: Any) -> None:
        self._cw = cw
        self._lock = threading.Lock()
        self._outcomes: dict[bytes, concurrent.futures.Future[str]] = {}
        self._removing: set[concurrent.futures.Future[None]] = set()
        self._sending: set[asyncio.Future[Any]] = set()  # (IO thread) calls not answered yet
        self._to_create: list[tuple[Any, concurrent.futures.Future[str]]] = []
        self._creating = False
        self._to_remove: list[bytes] = []
        self._remove_sent: concurrent.futures.Future[None] | None = None

    def create(self, spec: Any, *, named: bool) -> None:
        """Register ``spec`` with the GCS: a named group at once (its name may be taken:
        ValueError here, as Ray raises at the call), an unnamed one in the background."""
        from rayops.gcs.calls import create_placement_group
        from rayops.gcs.client import GcsRefused

        pg_id = spec.placement_group_id
        if named:
            try:
                self.call(create_placement_group(spec))
            except GcsRefused as err:
                raise ValueError(err.reason) from err
            self.outcome(pg_id)
            return
        fut: concurrent.futures.Future[str] = concurrent.futures.Future()
        with self._lock:
            self._outcomes[pg_id] = fut
            self._to_create.append((spec, fut))
            start, self._creating = not self._creating, True
        if start:  # one call carries every group created until the IO loop gets to it
            self._cw.loop.call_soon_threadsafe(self._start, self._send_creates())

    def _start(self, coro: Any) -> asyncio.Future[Any]:
        """(IO thread) Run a creation or removal call; later reads wait for it (``call``)."""
        task = self._cw.spawn(coro)
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)
        return task

    async def _send_creates(self) -> None:
        from rayops.gcs.calls import create_placement_groups

        with self._lock:
            batch, self._to_create, self._creating = self._to_create, [], False
        if not batch:
            return
        gcs = await self._cw.async_gcs()
        call = create_placement_groups([spec for spec, _ in batch], int(BATCH_WAIT_S * 1000))
        try:
            reply = await gcs.call(call, BATCH_WAIT_S + 30)
        except Exception as err:
            for _, fut in batch:
                if not fut.done():
                    fut.set_exception(err)
            return
        for (spec, fut), got, error in zip(batch, reply.states, reply.errors, strict=True):
            if fut.done():
                continue
            if error:
                fut.set_exception(ValueError(error))
            elif got in ("CREATED", "REMOVED"):
                fut.set_result(got)
            else:  # still pending: wait for this one alone
                self._cw.spawn(self._follow(spec.placement_group_id, fut, None))

    def outcome(self, pg_id: bytes) -> concurrent.futures.Future[str]:
        """The future of the group's creation (waiting for it from now on if not yet); the
        caller says when it used the answer (``consumed``)."""
        with self._lock:
            fut = self._outcomes.get(pg_id)
            if fut is not None:
                return fut
            fut = self._outcomes[pg_id] = concurrent.futures.Future()
        self._cw.loop.call_soon_threadsafe(self._cw.spawn, self._follow(pg_id, fut, None))
        return fut

    def consumed(self, pg_id: bytes, fut: concurrent.futures.Future[str]) -> None:
        """``fut``'s answer was handed out: the next ``wait``/``ready`` asks the GCS again (a
        created group can be rescheduled since)."""
        with self._lock:
            if self._outcomes.get(pg_id) is fut:
                del self._outcomes[pg_id]

    def removed(self, pg_id: bytes) -> None:
        """Remove the group, asynchronously as Ray's ``remove_placement_group``: the call
        goes out on the IO loop's GCS channel, ahead of any later call from this process
        (a ``placement_group_table`` right after sees the group REMOVED). ``flush`` waits for
        the removals still on their way (``shutdown`` does)."""
        with self._lock:
            self._outcomes.pop(pg_id, None)
            self._to_remove.append(pg_id)
            if self._remove_sent is not None:
                return  # the removal call on its way takes this one too
            fut = self._remove_sent = concurrent.futures.Future()
            self._cw.loop.call_soon_threadsafe(self._start_removes, fut)
            self._removing.add(fut)
        fut.add_done_callback(self._removal_done)

    def _start_removes(self, done: concurrent.futures.Future[None]) -> None:
        task = self._start(self._send_removes())
        task.add_done_callback(lambda _t: done.set_result(None))

    async def _send_removes(self) -> None:
        from rayops.gcs.calls import remove_placement_groups

        with self._lock:
            batch, self._to_remove, self._remove_sent = self._to_remove, [], None
        gcs = await self._cw.async_gcs()
        try:
            await gcs.call(remove_placement_groups(batch))
        except Exception as err:  # the GCS gone: nothing left to remove from
            logger.warning("removing %d placement group(s) failed: %s", len(batch), err)

    def _removal_done(self, fut: concurrent.futures.Future[None]) -> None:
        with self._lock:
            self._removing.discard(fut)

    def flush(self, timeout: float) -> None:
        """Wait (up to ``timeout`` s) for the removals sent and not answered yet."""
        with self._lock:
            pending = list(self._removing)
        if pending:
            concurrent.futures.wait(pending, timeout)

    def call(self, call: Any, timeout: float | None = None) -> Any:
        """A GCS call on the IO loop's channel (after every call made before it), waited for."""
        cw = self._cw

        async def run() -> Any:
            if self._sending:  # creations and removals made before this call land first
                await asyncio.wait(list(self._sending))
            gcs = await cw.async_gcs()
            return await gcs.call(call, timeout)

        return cw.run(run())

    async def _follow(self, pg_id: bytes, fut: concurrent.futures.Future[str], first: Any) -> None:
        from rayops.gcs.calls import wait_placement_group

        gcs = await self._cw.async_gcs()
        budget = WAIT_SLICE_S + 10
        try:
            state = await gcs.call(first, budget) if first is not None else "PENDING"
            while state not in ("CREATED", "REMOVED", ""):
                reply = await gcs.call(
                    wait_placement_group(pg_id, int(WAIT_SLICE_S * 1000)), budget
                )
                state = reply.state
        except Exception as err:
            if not fut.done():
                fut.set_exception(err)
            return
        if not fut.done():
            fut.set_result(state)


_GROUPS: weakref.WeakKeyDictionary[Any, Groups] = weakref.WeakKeyDictionary()
_GROUPS_LOCK = threading.Lock()


def groups_of(cw: Any) -> Groups:
    """The ``Groups`` of core worker ``cw`` (one per process's connection to a cluster)."""
    with _GROUPS_LOCK:
        groups = _GROUPS.get(cw)
        if groups is None:
            groups = _GROUPS[cw] = Groups(cw)
        return groups


def flush_removals(cw: Any, timeout: float = 5.0) -> None:
    """Before ``cw`` shuts down: let its placement-group removals reach the GCS."""
    with _GROUPS_LOCK:
        groups = _GROUPS.get(cw)
    if groups is not None:
        groups.flush(timeout)
