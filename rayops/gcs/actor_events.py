"""The actor table's change events: what every follower of an actor learns when it changes.

`rayops.gcs.actor_table.ActorTable` stamps each change with the table's next version and
hands the event to its sink (in the GCS, the publisher's "actors" channel: the event spine).
An event carries the actor's whole public state after the change, so a follower that missed
some changes needs only the newest event of each actor (the publisher keeps only the newest
one queued per actor). Callers follow only the actors they call (keyed subscriptions, see
`rayops.gcs.pubsub.KeyedSubscription`).

Plain frozen dataclasses with no I/O; their protobuf form (`ActorEvent` in
`protocol/gcs_pubsub.proto`) is converted in `rayops.gcs.codec` only.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

__all__ = ["ActorChange", "ActorChanged", "ActorSnapshot"]


class ActorChange(enum.StrEnum):
    """What happened to an actor: the event kinds of the actor table's TRANSITIONS."""

    REGISTERED = "registered"  # the GCS took the actor: it is to be placed
    CREATED = "created"  # a worker ran its constructor
    CREATION_FAILED = "creation_failed"  # the constructor raised
    WORKER_DIED = "worker_died"  # its worker is gone and it may restart
    WORKER_DIED_FINAL = "worker_died_final"  # its worker is gone, no restarts left
    UNSCHEDULABLE = "unschedulable"  # no node can ever take it as asked
    KILLED = "killed"  # rayops.kill(no_restart=True), or kill of an actor not alive
    EXITED = "exited"  # exit_actor() / __ray_terminate__
    OWNER_DIED = "owner_died"  # its owner is gone (not detached)
    OUT_OF_SCOPE = "out_of_scope"  # every handle was dropped (not detached)
    PG_REMOVED = "pg_removed"  # its placement group was removed


@dataclass(frozen=True, slots=True)
class ActorChanged:
    """An actor's state right after one change, with the table's version after it.

    `state` is an `actor_table.ActorState` value ("PENDING_CREATION", "ALIVE", "RESTARTING",
    "DEAD"); the address (ip, port), node, worker and pid are set while ALIVE; the death
    cause (and, for a failed constructor or an unschedulable actor, the pickled error its
    callers raise) once DEAD.
    """

    version: int
    change: ActorChange
    actor_id: bytes
    state: str
    address_ip: str = ""
    address_port: int = 0
    node_id: str = ""
    worker_id: bytes = b""
    pid: int = 0
    num_restarts: int = 0
    max_restarts: int = 0
    death_cause: str = ""
    death_error: bytes = b""
    name: str = ""
    namespace: str = ""
    class_name: str = ""
    job_id: int = 0

    @property
    def address(self) -> tuple[str, int] | None:
        return (self.address_ip, self.address_port) if self.address_port else None


@dataclass(frozen=True, slots=True)
class ActorSnapshot:
    """Every actor the table holds as of `version` (each as its latest `ActorChanged`)."""

    version: int
    actors: tuple[ActorChanged, ...]
