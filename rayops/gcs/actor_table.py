"""The GCS actor table: records, names, and the actor lifecycle as a state machine.

No I/O. The manager (``actor_manager``) feeds events in and carries out the action each
transition returns. Every state change goes through ``TRANSITIONS``, the one table of legal
edges, (state, change) -> new state, asserted as each change is applied; a change not in the
table leaves the actor as it is (a late report about a DEAD actor, a kill of a detached
actor's owner). Each change is stamped with the table's next version (one per change,
strictly increasing across the table) and handed to the *sink* as a typed
``actor_events.ActorChanged``; in the GCS the sink is the event spine's "actors" channel, so
no change can bypass it.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

from rayops.gcs.actor_events import ActorChange, ActorChanged, ActorSnapshot

__all__ = [
    "TRANSITIONS",
    "Action",
    "ActorNameTaken",
    "ActorRecord",
    "ActorState",
    "ActorTable",
]


class ActorState(enum.StrEnum):
    PENDING_CREATION = "PENDING_CREATION"
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"


class Action(enum.StrEnum):
    NONE = "none"
    SCHEDULE = "schedule"  # find a worker and run the constructor
    STOP_WORKER = "stop_worker"  # make the actor's worker exit


_P, _A, _R, _D = (
    ActorState.PENDING_CREATION,
    ActorState.ALIVE,
    ActorState.RESTARTING,
    ActorState.DEAD,
)
_C = ActorChange

# The only legal transitions: (state the table holds the actor in, change) -> new state.
TRANSITIONS: dict[tuple[ActorState | None, ActorChange], ActorState] = {
    # The GCS took a new actor; the manager places it.
    (None, _C.REGISTERED): _P,
    # The worker ran the constructor.
    (_P, _C.CREATED): _A,
    # The constructor raised: it would again, so no restart.
    (_P, _C.CREATION_FAILED): _D,
    # The worker died before the constructor finished: again elsewhere (restarts left)...
    (_P, _C.WORKER_DIED): _R,
    # ...or not (no restarts left).
    (_P, _C.WORKER_DIED_FINAL): _D,
    # No node can ever take it as asked (hard affinity to a dead or unknown node, or to one
    # that lacks the resources): Ray's ActorUnschedulableError.
    (_P, _C.UNSCHEDULABLE): _D,
    # Crash, node loss, or kill without no_restart: a new worker runs the constructor again.
    (_A, _C.WORKER_DIED): _R,
    (_A, _C.WORKER_DIED_FINAL): _D,
    # The constructor ran again on a new worker.
    (_R, _C.CREATED): _A,
    (_R, _C.CREATION_FAILED): _D,
    # The new worker died too: as from ALIVE.
    (_R, _C.WORKER_DIED): _R,
    (_R, _C.WORKER_DIED_FINAL): _D,
    # Its affinity node died with it.
    (_R, _C.UNSCHEDULABLE): _D,
}
for _state in (_P, _A, _R):
    # From any state but DEAD, for good: kill(no_restart=True) (or a kill of an actor that
    # is not ALIVE); exit_actor() / __ray_terminate__; its owner died or dropped every
    # handle (not detached); its placement group was removed.
    for _change in (_C.KILLED, _C.EXITED, _C.OWNER_DIED, _C.OUT_OF_SCOPE, _C.PG_REMOVED):
        TRANSITIONS[(_state, _change)] = _D
del _state, _change


@dataclass
class ActorRecord:
    actor_id: bytes
    class_name: str
    job_id: int
    name: str
    namespace: str
    is_detached: bool
    max_restarts: int
    placement_resources: dict[str, float]
    hold_resources: dict[str, float]
    creation_spec: bytes
    handle_meta: bytes
    owner_address: str
    label_selector: dict[str, str] = field(default_factory=dict)
    # None (DEFAULT), "SPREAD" or a scheduling.strategy.NodeAffinity
    scheduling_strategy: object = None
    # the creator's node: the default policy's "local" node ("" if unknown)
    owner_node_id: str = ""
    runtime_env: str = ""  # the wire form its worker runs in (rayops/envs/spec.py)
    state: ActorState = ActorState.PENDING_CREATION
    # the table's version after the actor's last change
    version: int = 1
    last_change: ActorChange = ActorChange.REGISTERED
    num_restarts: int = 0
    address_ip: str = ""
    address_port: int = 0
    node_id: str = ""
    pid: int = 0
    worker_id: bytes = b""
    death_cause: str = ""
    death_error: bytes = b""
    # the worker generation: events about an older worker are ignored
    generation: int = 0
    extra: dict[str, object] = field(default_factory=dict)

    @property
    def restarts_left(self) -> bool:
        return self.max_restarts < 0 or self.num_restarts < self.max_restarts


class ActorNameTaken(Exception):
    """Another live actor already has this name in this namespace."""


class ActorTable:
    """Every actor the GCS knows, its name index, and the version of the last change.

    `sink`, when given, receives the event of every change as it is applied (the GCS passes
    its publisher, so no change can bypass the spine).
    """

    def __init__(self, sink: Callable[[Sequence[ActorChanged]], None] | None = None) -> None:
        self._actors: dict[bytes, ActorRecord] = {}
        self._names: dict[tuple[str, str], bytes] = {}
        self._sink = sink
        self.version = 0

    def get(self, actor_id: bytes) -> ActorRecord | None:
        return self._actors.get(actor_id)

    def restore(self, records: Iterable[ActorRecord]) -> None:
        """Load the actors a restarted GCS read back from its store, with their names."""
        for rec in records:
            self._actors[rec.actor_id] = rec
            if rec.name and rec.state != ActorState.DEAD:
                self._names[(rec.namespace, rec.name)] = rec.actor_id
            self.version = max(self.version, rec.version)

    def current(self, actor_id: bytes) -> ActorChanged | None:
        """The actor's state as of its last change (None if the table does not hold it)."""
        rec = self._actors.get(actor_id)
        return None if rec is None else _event_of(rec)

    def snapshot(self) -> ActorSnapshot:
        return ActorSnapshot(self.version, tuple(_event_of(r) for r in self._actors.values()))

    def by_name(self, name: str, namespace: str) -> ActorRecord | None:
        aid = self._names.get((namespace, name))
        rec = self._actors.get(aid) if aid is not None else None
        return rec if rec is not None and rec.state != ActorState.DEAD else None

    def names(self, namespace: str | None) -> list[tuple[str, str]]:
        return sorted(
            (ns, name)
            for (ns, name), aid in self._names.items()
            if (namespace is None or ns == namespace) and self._actors[aid].state != ActorState.DEAD
        )

    def all(self) -> list[ActorRecord]:
        return list(self._actors.values())

    def owned_by(self, owner: str) -> list[ActorRecord]:
        return [
            r
            for r in self._actors.values()
            if r.owner_address == owner and not r.is_detached and r.state != ActorState.DEAD
        ]

    def register(self, rec: ActorRecord, *, get_if_exists: bool) -> tuple[ActorRecord, bool]:
        """Add ``rec``; returns (the record, whether it already existed)."""
        if rec.actor_id in self._actors:
            return self._actors[rec.actor_id], True
        if rec.name:
            existing = self.by_name(rec.name, rec.namespace)
            if existing is not None:
                if get_if_exists:
                    return existing, True
                raise ActorNameTaken(
                    f"an actor named {rec.name!r} already exists in namespace "
                    f"{rec.namespace!r}; use get_if_exists=True to get it, or "
                    "rayops.get_actor(name)"
                )
            self._names[(rec.namespace, rec.name)] = rec.actor_id
        self._actors[rec.actor_id] = rec
        self._move(rec, None, ActorChange.REGISTERED)
        return rec, False

    # ----------------------------------------------------------------- events
    def created(
        self, rec: ActorRecord, *, ip: str, port: int, node_id: str, pid: int, worker_id: bytes
    ) -> Action:
        if not self._legal(rec, ActorChange.CREATED):
            return Action.STOP_WORKER  # killed while being created: drop the new worker
        rec.address_ip, rec.address_port = ip, port
        rec.node_id, rec.pid, rec.worker_id = node_id, pid, worker_id
        self._move(rec, rec.state, ActorChange.CREATED)
        return Action.NONE

    def creation_failed(self, rec: ActorRecord, cause: str, error: bytes) -> Action:
        if not self._legal(rec, ActorChange.CREATION_FAILED):
            return Action.NONE
        return self._die(
            rec, ActorChange.CREATION_FAILED, f"the actor's constructor failed: {cause}", error
        )

    def unschedulable(self, rec: ActorRecord, reason: str, error: bytes) -> Action:
        """No node can ever take the actor as it asks; ``error`` is the pickled
        ActorUnschedulableError its callers get."""
        if not self._legal(rec, ActorChange.UNSCHEDULABLE):
            return Action.NONE
        return self._die(
            rec, ActorChange.UNSCHEDULABLE, f"the actor cannot be scheduled: {reason}", error
        )

    def worker_died(self, rec: ActorRecord, cause: str) -> Action:
        if rec.state == ActorState.DEAD:
            return Action.NONE
        if rec.restarts_left:
            rec.num_restarts += 1
            rec.address_ip, rec.address_port, rec.pid = "", 0, 0
            rec.generation += 1
            self._move(rec, rec.state, ActorChange.WORKER_DIED)
            return Action.SCHEDULE
        return self._die(
            rec, ActorChange.WORKER_DIED_FINAL, f"the actor's worker process died: {cause}"
        )

    def killed(self, rec: ActorRecord, *, no_restart: bool) -> Action:
        if rec.state == ActorState.DEAD:
            return Action.NONE
        if not no_restart and rec.restarts_left and rec.state == ActorState.ALIVE:
            # The worker is stopped; its death then restarts the actor (no change yet).
            return Action.STOP_WORKER
        self._die(rec, ActorChange.KILLED, "the actor was killed with rayops.kill()")
        return Action.STOP_WORKER

    def exited(self, rec: ActorRecord) -> Action:
        if not self._legal(rec, ActorChange.EXITED):
            return Action.NONE
        return self._die(
            rec,
            ActorChange.EXITED,
            "the actor exited intentionally (exit_actor or __ray_terminate__)",
        )

    def owner_died(self, rec: ActorRecord) -> Action:
        if rec.is_detached or not self._legal(rec, ActorChange.OWNER_DIED):
            return Action.NONE
        self._die(rec, ActorChange.OWNER_DIED, f"the actor's owner ({rec.owner_address}) died")
        return Action.STOP_WORKER

    def pg_removed(self, rec: ActorRecord) -> Action:
        if not self._legal(rec, ActorChange.PG_REMOVED):
            return Action.NONE
        self._die(
            rec,
            ActorChange.PG_REMOVED,
            "the placement group the actor was scheduled in was removed",
        )
        return Action.STOP_WORKER

    def out_of_scope(self, rec: ActorRecord) -> Action:
        if rec.is_detached or not self._legal(rec, ActorChange.OUT_OF_SCOPE):
            return Action.NONE
        self._die(rec, ActorChange.OUT_OF_SCOPE, "all handles to the actor went out of scope")
        return Action.STOP_WORKER

    @staticmethod
    def _legal(rec: ActorRecord, change: ActorChange) -> bool:
        return (rec.state, change) in TRANSITIONS

    def _die(self, rec: ActorRecord, change: ActorChange, cause: str, error: bytes = b"") -> Action:
        rec.death_cause = cause
        rec.death_error = error
        rec.generation += 1
        if rec.name and self._names.get((rec.namespace, rec.name)) == rec.actor_id:
            del self._names[(rec.namespace, rec.name)]
        self._move(rec, rec.state, change)
        return Action.STOP_WORKER

    def _move(self, rec: ActorRecord, before: ActorState | None, change: ActorChange) -> None:
        """Take the edge (before, change) of TRANSITIONS, stamp the version, publish."""
        after = TRANSITIONS.get((before, change))
        assert after is not None, f"illegal actor transition: {before} -{change}->"
        rec.state = after
        rec.last_change = change
        self.version += 1
        rec.version = self.version
        if self._sink is not None:
            self._sink((_event_of(rec),))


def _event_of(rec: ActorRecord) -> ActorChanged:
    return ActorChanged(
        version=rec.version,
        change=rec.last_change,
        actor_id=rec.actor_id,
        state=rec.state.value,
        address_ip=rec.address_ip,
        address_port=rec.address_port,
        node_id=rec.node_id,
        worker_id=rec.worker_id,
        pid=rec.pid,
        num_restarts=rec.num_restarts,
        max_restarts=rec.max_restarts,
        death_cause=rec.death_cause,
        death_error=rec.death_error,
        name=rec.name,
        namespace=rec.namespace,
        class_name=rec.class_name,
        job_id=rec.job_id,
    )
