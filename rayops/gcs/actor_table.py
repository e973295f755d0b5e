"""The GCS actor table: records, names, and the actor lifecycle as a state machine.

No I/O. The manager (``actor_manager``) feeds events in and carries out the action
each transition returns. Legal transitions, one per edge:

    PENDING_CREATION -created-> ALIVE          the worker ran the constructor
    PENDING_CREATION -creation_failed-> DEAD   the constructor raised (it would again)
    PENDING_CREATION -worker_died-> RESTARTING (restarts left) died before it finished
    PENDING_CREATION -worker_died-> DEAD       (no restarts left)
    PENDING_CREATION -unschedulable-> DEAD     no node can ever take it as asked (hard node
                                               affinity to a dead or unknown node, or to one
                                               that lacks the resources): Ray's
                                               ActorUnschedulableError
    ALIVE -worker_died-> RESTARTING            (restarts left) crash, node loss, kill
                                               without no_restart
    ALIVE -worker_died-> DEAD                  (no restarts left)
    RESTARTING -created-> ALIVE                the constructor ran again on a new worker
    RESTARTING -creation_failed-> DEAD
    RESTARTING -worker_died-> RESTARTING/DEAD  as from ALIVE
    RESTARTING -unschedulable-> DEAD           its affinity node died with it
    any but DEAD -killed-> DEAD                kill(no_restart=True)
    any but DEAD -exited-> DEAD                exit_actor() / __ray_terminate__: no restart
    any but DEAD -owner_died-> DEAD            non-detached actors die with their owner
    any but DEAD -out_of_scope-> DEAD          the owner dropped every handle (non-detached)
    any but DEAD -pg_removed-> DEAD            its placement group was removed
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass, field


class ActorState(enum.StrEnum):
    PENDING_CREATION = "PENDING_CREATION"
    ALIVE = "ALIVE"
    RESTARTING = "RESTARTING"
    DEAD = "DEAD"


class Action(enum.StrEnum):
    NONE = "none"
    SCHEDULE = "schedule"  # find a worker and run the constructor
    STOP_WORKER = "stop_worker"  # make the actor's worker exit


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
    version: int = 1
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
    def __init__(self, on_change: Callable[[ActorRecord], None] | None = None) -> None:
        self._actors: dict[bytes, ActorRecord] = {}
        self._names: dict[tuple[str, str], bytes] = {}
        self._on_change = on_change

    def get(self, actor_id: bytes) -> ActorRecord | None:
        return self._actors.get(actor_id)

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
        self._changed(rec)
        return rec, False

    # ----------------------------------------------------------------- events
    def created(
        self, rec: ActorRecord, *, ip: str, port: int, node_id: str, pid: int, worker_id: bytes
    ) -> Action:
        if rec.state not in (ActorState.PENDING_CREATION, ActorState.RESTARTING):
            return Action.STOP_WORKER  # killed while being created: drop the new worker
        rec.state = ActorState.ALIVE
        rec.address_ip, rec.address_port = ip, port
        rec.node_id, rec.pid, rec.worker_id = node_id, pid, worker_id
        self._changed(rec)
        return Action.NONE

    def creation_failed(self, rec: ActorRecord, cause: str, error: bytes) -> Action:
        if rec.state == ActorState.DEAD:
            return Action.NONE
        return self._die(rec, f"the actor's constructor failed: {cause}", error)

    def unschedulable(self, rec: ActorRecord, reason: str, error: bytes) -> Action:
        """No node can ever take the actor as it asks; ``error`` is the pickled
        ActorUnschedulableError its callers get."""
        if rec.state not in (ActorState.PENDING_CREATION, ActorState.RESTARTING):
            return Action.NONE
        return self._die(rec, f"the actor cannot be scheduled: {reason}", error)

    def worker_died(self, rec: ActorRecord, cause: str) -> Action:
        if rec.state == ActorState.DEAD:
            return Action.NONE
        if rec.restarts_left:
            rec.num_restarts += 1
            rec.state = ActorState.RESTARTING
            rec.address_ip, rec.address_port, rec.pid = "", 0, 0
            rec.generation += 1
            self._changed(rec)
            return Action.SCHEDULE
        return self._die(rec, f"the actor's worker process died: {cause}")

    def killed(self, rec: ActorRecord, *, no_restart: bool) -> Action:
        if rec.state == ActorState.DEAD:
            return Action.NONE
        if not no_restart and rec.restarts_left and rec.state == ActorState.ALIVE:
            # The worker is stopped; its death then restarts the actor.
            return Action.STOP_WORKER
        self._die(rec, "the actor was killed with rayops.kill()")
        return Action.STOP_WORKER

    def exited(self, rec: ActorRecord) -> Action:
        if rec.state == ActorState.DEAD:
            return Action.NONE
        return self._die(rec, "the actor exited intentionally (exit_actor or __ray_terminate__)")

    def owner_died(self, rec: ActorRecord) -> Action:
        if rec.state == ActorState.DEAD or rec.is_detached:
            return Action.NONE
        self._die(rec, f"the actor's owner ({rec.owner_address}) died")
        return Action.STOP_WORKER

    def pg_removed(self, rec: ActorRecord) -> Action:
        if rec.state == ActorState.DEAD:
            return Action.NONE
        self._die(rec, "the placement group the actor was scheduled in was removed")
        return Action.STOP_WORKER

    def out_of_scope(self, rec: ActorRecord) -> Action:
        if rec.state == ActorState.DEAD or rec.is_detached:
            return Action.NONE
        self._die(rec, "all handles to the actor went out of scope")
        return Action.STOP_WORKER

    def _die(self, rec: ActorRecord, cause: str, error: bytes = b"") -> Action:
        rec.state = ActorState.DEAD
        rec.death_cause = cause
        rec.death_error = error
        rec.generation += 1
        if rec.name and self._names.get((rec.namespace, rec.name)) == rec.actor_id:
            del self._names[(rec.namespace, rec.name)]
        self._changed(rec)
        return Action.STOP_WORKER

    def _changed(self, rec: ActorRecord) -> None:
        rec.version += 1
        if self._on_change is not None:
            self._on_change(rec)
