"""The owner's lineage as a state machine: which lost objects can be rebuilt, and how.

Owns, for every finished task of this process that left a return in a node's shared-memory
store (the only kind of value a node's death can take: small values live in the owner's
memory): its lineage entry, i.e. the spec to run again, the arguments it pins (so a rerun
finds them, and rebuilding them in turn is possible), the retries it has left (Ray: a
rebuild spends the task's ``max_retries``), its size, and which of its store returns are
still referenced. Entries of tasks that cannot be rerun (actor calls, ``max_retries=0``,
retries used up) are kept as small tombstones that only say why, so a loss raises the
right error. Lineage is bounded: past ``max_bytes`` the oldest entries are evicted to
tombstones (counted in ``evicted``), and a later loss of their objects raises
``ObjectReconstructionFailedLineageEvictedError``.

It must not do I/O: no memory store, no references, no connections. Each event returns
the instructions the shell (``recovery.Recovery``) carries out, in order. Only the IO
thread calls it.

Events and what they decide (one table; "entry" is the producing task's lineage entry):

==================  ===============================  ========================================
event               condition                        instructions / new state
==================  ===============================  ========================================
task_done           normal task, retries left > 0    entry kept, pins kept (Keep=True);
                    (or unlimited)                   oldest entries evicted past the cap
task_done           actor call                       tombstone "actor task"; pins released
task_done           max_retries=0 (first attempt,    tombstone "retries disabled"; pins
                    none left)                       released
task_done           retries used up                  tombstone "max attempts"; pins released
freed               last store return of the task    entry dropped; Unpin(deps) if it pins
                    freed
lost                a ray.put() object               Fail: ObjectReconstructionFailedError
                                                     ("created by put")
lost                entry is a tombstone             Fail with the tombstone's reason
lost                no entry at all                  Fail: ObjectReconstructionFailedError
                                                     (no lineage: e.g. a generator item)
lost                entry, no retries left           Fail: ...MaxAttemptsExceededError;
                                                     tombstone, Unpin(deps)
lost                entry, rerun already under way   nothing (the rerun rebuilds it)
lost                entry, retries left              MarkPending(its lost returns), then
                                                     Resubmit(spec, attempt + 1, retries - 1);
                                                     the entry's pins pass to the rerun
(rerun fails)       the rerun ended with an error    the entry stays, marked rerunning and
                                                     unpinned (the task's end released the
                                                     pins); its returns hold the error now
==================  ===============================  ========================================

Recursion: the shell reports every owned object lost with a node in one ``lost`` event.
Arguments pinned by lineage are still owned, so a lost argument is in the same event: its
producer is resubmitted too, and the dependent's rerun waits for that argument like any
task waits for a pending argument of its owner. MarkPending instructions come before any
Resubmit so that a rerun never reads a lost argument's stale location.
"""

from __future__ import annotations

import collections
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from rayops import exceptions as rex
from rayops import ids
from rayops.protocol.task_messages import TaskSpec

# Ray's RAY_max_lineage_bytes default: 1 GiB of lineage per owner.
DEFAULT_MAX_LINEAGE_BYTES = 1 << 30
ENV_MAX_LINEAGE_BYTES = "RAYOPS_MAX_LINEAGE_BYTES"

# Why an object cannot be rebuilt (Ray's OBJECT_UNRECONSTRUCTABLE_* reasons)
PUT = "put"
ACTOR_TASK = "actor_task"
RETRIES_DISABLED = "retries_disabled"
MAX_ATTEMPTS = "max_attempts"
EVICTED = "lineage_evicted"
NO_LINEAGE = "no_lineage"

_REASON_TEXT = {
    PUT: "it was created by ray.put(), and only task results can be rebuilt by rerunning "
    "their task. Keep put() objects on nodes that stay up, or recreate them yourself.",
    ACTOR_TASK: "it was returned by an actor method call, and actor calls are not rerun to "
    "rebuild their results (the actor's state may have moved on).",
    RETRIES_DISABLED: "the task that made it has max_retries=0, which disables rebuilding "
    "its results. Set max_retries > 0 (the default is 3) to allow it.",
    NO_LINEAGE: "no record of the task that made it is kept (e.g. an item of a generator).",
}


@dataclass(slots=True)
class LineageEntry:
    """One finished task's lineage (or, with ``reason`` set, a tombstone)."""

    spec: TaskSpec
    deps: list[bytes]  # argument ids this entry pins (while ``pinned``)
    retries_left: int  # < 0: unlimited
    retry_exceptions: Any
    size: int  # bytes counted against the cap (0 for a tombstone)
    live: set[bytes]  # store returns still referenced
    reason: str = ""  # set: a tombstone, the object cannot be rebuilt for this reason
    pinned: bool = False  # the entry (not a running task) holds the pins on ``deps``
    rerunning: bool = False  # resubmitted; its returns are pending


# ------------------------------------------------------------------ instructions
@dataclass(frozen=True, slots=True)
class Unpin:
    """Release the pins lineage held on these arguments."""

    deps: list[bytes]


@dataclass(frozen=True, slots=True)
class MarkPending:
    """These objects are being rebuilt: forget their lost locations so readers wait."""

    oids: list[bytes]


@dataclass(frozen=True, slots=True)
class Fail:
    """The object cannot be rebuilt: it holds ``error`` from now on."""

    oid: bytes
    error: BaseException


@dataclass(frozen=True, slots=True)
class Resubmit:
    """Run the task again (a new attempt); its arguments are pinned already (by the
    lineage, now handed to the task's record)."""

    spec: TaskSpec
    deps: list[bytes]
    retries_left: int
    retry_exceptions: Any


@dataclass(frozen=True, slots=True)
class Evicted:
    """Lineage of ``task_name`` was evicted to stay under the cap (the shell logs it once)."""

    task_name: str
    total_evicted: int


Instruction = Unpin | MarkPending | Fail | Resubmit | Evicted


@dataclass(slots=True)
class LineageStats:
    """Counters of one owner's lineage (tests, the state API, logs)."""

    entries: int = 0
    bytes: int = 0
    evicted: int = 0  # entries evicted past the cap, ever
    resubmitted: int = 0  # tasks rerun to rebuild lost objects, ever
    failed: int = 0  # lost objects that could not be rebuilt, ever


@dataclass
class Lineage:
    """The lineage of the tasks this process owns (IO thread only; see module doc)."""

    max_bytes: int = DEFAULT_MAX_LINEAGE_BYTES
    stats: LineageStats = field(default_factory=LineageStats)
    # task id -> entry, oldest first (eviction order)
    _entries: collections.OrderedDict[bytes, LineageEntry] = field(
        default_factory=collections.OrderedDict
    )

    def entry(self, task_id: bytes) -> LineageEntry | None:
        return self._entries.get(task_id)

    def __len__(self) -> int:
        return len(self._entries)

    # ---------------------------------------------------------------- events
    def task_done(
        self,
        spec: TaskSpec,
        deps: list[bytes],
        retries_left: int,
        retry_exceptions: Any,
        store_returns: list[bytes],
        size: int,
    ) -> tuple[bool, list[Instruction]]:
        """A task ended with ``store_returns`` in a node's store. Returns whether lineage
        keeps the pins on ``deps`` (else the task's end releases them) and instructions."""
        old = self._entries.pop(spec.task_id, None)
        if old is not None:
            self._account_removed(old)
        reason = ""
        if spec.actor_id:
            reason = ACTOR_TASK
        elif retries_left == 0:
            reason = RETRIES_DISABLED if spec.attempt == 0 else MAX_ATTEMPTS
        live = set(store_returns)
        if reason:
            self._entries[spec.task_id] = LineageEntry(
                spec, [], 0, retry_exceptions, 0, live, reason=reason
            )
            return False, []
        entry = LineageEntry(
            spec, deps, retries_left, retry_exceptions, size, live, pinned=bool(deps)
        )
        self._entries[spec.task_id] = entry
        self.stats.entries += 1
        self.stats.bytes += size
        return bool(deps), self._evict()

    def freed(self, oids: Iterable[bytes]) -> list[Instruction]:
        """Our objects were freed (nothing refers to them any more)."""
        out: list[Instruction] = []
        entries = self._entries
        for oid in oids:
            task_id = ids.task_id_of(oid)
            entry = entries.get(task_id)
            if entry is None:
                continue
            entry.live.discard(oid)
            if entry.live:
                continue
            del entries[task_id]
            self._account_removed(entry)
            if entry.pinned:
                out.append(Unpin(entry.deps))
        return out

    def lost(self, oids: Iterable[bytes], owner_address: str = "") -> list[Instruction]:
        """These objects of ours lost their only copy (their node died)."""
        pending: list[Instruction] = []
        reruns: list[Instruction] = []
        for oid in oids:
            error = self._lost_one(oid, owner_address, pending, reruns)
            if error is not None:
                self.stats.failed += 1
                pending.append(Fail(oid, error))
        return pending + reruns

    # ---------------------------------------------------------------- internals
    def _lost_one(
        self,
        oid: bytes,
        owner_address: str,
        pending: list[Instruction],
        reruns: list[Instruction],
    ) -> BaseException | None:
        task_id = ids.task_id_of(oid)
        index = int.from_bytes(oid[ids.TASK_ID_LEN :], "little")
        if ids.PUT_INDEX_BASE <= index < ids.ACTOR_HANDLE_INDEX:
            return _failed(oid, owner_address, PUT)
        entry = self._entries.get(task_id)
        if entry is None:
            return _failed(oid, owner_address, NO_LINEAGE)
        if entry.rerunning:
            return None  # the rerun under way stores it again
        if entry.reason:
            return _failed(oid, owner_address, entry.reason)
        if entry.retries_left == 0:
            self._to_tombstone(entry, MAX_ATTEMPTS, pending)
            return _failed(oid, owner_address, MAX_ATTEMPTS)
        retries = entry.retries_left - 1 if entry.retries_left > 0 else entry.retries_left
        entry.retries_left = retries
        entry.rerunning = True
        entry.pinned = False  # the rerun's record holds the pins now
        spec = entry.spec._replace(attempt=entry.spec.attempt + 1)
        entry.spec = spec
        pending.append(MarkPending(sorted(entry.live)))
        reruns.append(Resubmit(spec, entry.deps, retries, entry.retry_exceptions))
        self.stats.resubmitted += 1
        return None

    def _evict(self) -> list[Instruction]:
        out: list[Instruction] = []
        if self.stats.bytes <= self.max_bytes:
            return out
        for entry in list(self._entries.values()):
            if self.stats.bytes <= self.max_bytes:
                break
            if entry.reason or entry.rerunning:
                continue
            self._to_tombstone(entry, EVICTED, out)
            self.stats.evicted += 1
            out.append(Evicted(entry.spec.name, self.stats.evicted))
        return out

    def _to_tombstone(self, entry: LineageEntry, reason: str, out: list[Instruction]) -> None:
        self._account_removed(entry)
        if entry.pinned:
            out.append(Unpin(entry.deps))
        entry.reason = reason
        entry.deps = []
        entry.size = 0
        entry.pinned = False

    def _account_removed(self, entry: LineageEntry) -> None:
        if not entry.reason:
            self.stats.entries -= 1
            self.stats.bytes -= entry.size


def _failed(oid: bytes, owner_address: str, reason: str) -> BaseException:
    hex_id = oid.hex()
    if reason == MAX_ATTEMPTS:
        return rex.ObjectReconstructionFailedMaxAttemptsExceededError(hex_id, owner_address)
    if reason == EVICTED:
        return rex.ObjectReconstructionFailedLineageEvictedError(hex_id, owner_address)
    return rex.ObjectReconstructionFailedError(hex_id, owner_address, reason=_REASON_TEXT[reason])


def spec_size(spec: TaskSpec) -> int:
    """What an entry costs the cap: a fixed part plus the inline argument bytes."""
    size = 256 + len(spec.name) + 40 * len(spec.return_ids)
    for a in spec.args:
        if a[0] == "v":
            wire = a[1]
            size += len(wire[1]) + sum(memoryview(b).nbytes for b in wire[2] or ())
        else:
            size += 64
    return size
