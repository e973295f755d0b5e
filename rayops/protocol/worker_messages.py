"""Messages between core workers (owner <-> leased worker, borrower <-> owner) and between
the GCS and the worker hosting an actor, over the framed transport.

Task specs and replies are ``task_messages.TaskSpec`` / ``TaskReply`` (named tuples with
their own extension codes, listed in ``wire_codes.py``).
Field order is the wire order; see ``framed_message.py`` for the versioning rules.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rayops.protocol.framed_message import Message
from rayops.protocol.task_messages import TaskSpec

Address = tuple[str, int]


# ------------------------------------------------------------------------ tasks
@dataclass(frozen=True, slots=True)
class PushTask(Message):
    """Run a task on the leased worker. Reply: a ``TaskReply``."""

    METHOD: ClassVar[str] = "push_task"
    spec: TaskSpec
    function: bytes | None  # the pickled function, the first time on this connection
    instances: dict[str, Any]  # resource -> instance ids the lease holds
    lease_id: int


@dataclass(frozen=True, slots=True)
class CancelTask(Message):
    """Notification: cancel the task if it is queued or running here."""

    METHOD: ClassVar[str] = "cancel_task"
    task_id: bytes
    force: bool
    recursive: bool = True  # cancel the tasks it submitted too


@dataclass(frozen=True, slots=True)
class CancelOwnedTask(Message):
    """From a borrower that called ``cancel()`` on a ref: the owner cancels its task.
    Reply: ``CancelAccepted`` (the cancel itself proceeds asynchronously)."""

    METHOD: ClassVar[str] = "cancel_owned_task"
    task_id: bytes
    force: bool
    recursive: bool


@dataclass(frozen=True, slots=True)
class CancelAccepted(Message):
    METHOD: ClassVar[str] = "cancel_accepted"


@dataclass(frozen=True, slots=True)
class GeneratorItem(Message):
    """Notification to the owner: item ``index`` of a streaming generator task."""

    METHOD: ClassVar[str] = "generator_item"
    task_id: bytes
    index: int
    entry: Any  # the item's memory-store entry
    contained: list[tuple[bytes, Address]]  # refs inside the item: (object id, owner)


# ---------------------------------------------------------------------- objects
@dataclass(frozen=True, slots=True)
class GetObject(Message):
    """Ask the owner for an object's value (waits until it exists). Reply: ``ObjectEntry``."""

    METHOD: ClassVar[str] = "get_object"
    object_id: bytes


@dataclass(frozen=True, slots=True)
class ObjectEntry(Message):
    """An object's memory-store entry: inline bytes, a store location, or an error."""

    METHOD: ClassVar[str] = "object_entry"
    entry: Any


@dataclass(frozen=True, slots=True)
class AddBorrower(Message):
    """Tell the owner ``borrower`` holds a ref to the object. Reply: ``BorrowerAdded``."""

    METHOD: ClassVar[str] = "add_borrower"
    object_id: bytes
    borrower: Address


@dataclass(frozen=True, slots=True)
class BorrowerAdded(Message):
    """``added`` False: the owner no longer has the object (it was freed or lost)."""

    METHOD: ClassVar[str] = "borrower_added"
    added: bool


@dataclass(frozen=True, slots=True)
class Hello(Message):
    """Notification from a borrower, once per connection to an owner: its own address
    (so the owner can drop it as borrower everywhere when the connection closes)."""

    METHOD: ClassVar[str] = "hello"
    address: Address


@dataclass(frozen=True, slots=True)
class RemoveBorrower(Message):
    """Notification to the owner: ``borrower`` dropped its last ref to the object."""

    METHOD: ClassVar[str] = "remove_borrower"
    object_id: bytes
    borrower: Address


# ----------------------------------------------------------------------- actors
@dataclass(frozen=True, slots=True)
class CreateActor(Message):
    """From the GCS: construct the actor in this leased worker.
    Reply: ``ActorCreated`` or ``ActorCreationFailed``."""

    METHOD: ClassVar[str] = "create_actor"
    actor_id: bytes
    creation_spec: bytes  # pickled creation spec (class, arguments, options)
    instances: dict[str, Any]
    lease_id: int
    num_restarts: int


@dataclass(frozen=True, slots=True)
class ActorCreated(Message):
    METHOD: ClassVar[str] = "actor_created"
    pid: int


@dataclass(frozen=True, slots=True)
class ActorCreationFailed(Message):
    """The constructor raised: ``error`` is the pickled RayTaskError (b"" if unpicklable)."""

    METHOD: ClassVar[str] = "actor_creation_failed"
    pid: int
    message: str
    error: bytes


@dataclass(frozen=True, slots=True)
class ActorCall(Message):
    """Call a method of the actor hosted here. Reply: a ``TaskReply``; refused with
    ``RefusalCode.NOT_HOSTED`` when this worker hosts no actor."""

    METHOD: ClassVar[str] = "actor_call"
    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class OpenSyncLane(Message):
    """Make this connection a sync lane of ``actor_id`` (hosted here, a plain sync actor:
    one call at a time, not async, no concurrency groups): after the reply the worker's
    main thread reads the ``ActorCall`` requests that follow on it and runs each itself.
    Reply: ``True``; ``False`` (nothing changes) when the actor is not such an actor or
    not hosted here. The caller sends nothing else on the connection until the reply."""

    METHOD: ClassVar[str] = "open_sync_lane"
    actor_id: bytes


@dataclass(frozen=True, slots=True)
class ExitActor(Message):
    """Notification from the GCS: the actor is dead (killed or out of scope); exit."""

    METHOD: ClassVar[str] = "exit_actor"
    death_cause: str


@dataclass(frozen=True, slots=True)
class ActorExiting(Message):
    """Notification to the GCS: the actor exits on purpose (not a crash)."""

    METHOD: ClassVar[str] = "actor_exiting"


__all__ = [
    "ActorCall",
    "ActorCreated",
    "ActorCreationFailed",
    "ActorExiting",
    "AddBorrower",
    "BorrowerAdded",
    "CancelAccepted",
    "CancelOwnedTask",
    "CancelTask",
    "CreateActor",
    "ExitActor",
    "GeneratorItem",
    "GetObject",
    "Hello",
    "ObjectEntry",
    "OpenSyncLane",
    "PushTask",
    "RemoveBorrower",
]
