"""The caller's bookkeeping of actor method calls, as a state machine without I/O.

Owns, per actor this process calls: what the caller knows of the actor (its state, the
GCS's version of it, whether a connection is up), the caller's sequence numbers, the calls
queued in submission order, the calls in flight in the order they were sent, and how many
retries each call has left (``max_task_retries``). It must not do I/O: no sockets, no
asyncio, no threads, no clock. ``ActorQueues.handle(event)`` takes one event and returns the
instructions for the shell (``actor_submitter.ActorSubmitter``) to carry out; it is only
ever called on the core worker's IO thread.

Ordering, the property this module exists for: calls leave in sequence order, and when a
connection breaks, every call in flight on it goes back to the head of the queue together,
in the order it was sent, ahead of the calls not sent yet. So a caller's calls run in
submission order across restarts and retries (issue 9: retried calls used to run reversed).

States of an actor (``ActorState``) and the legal transitions, one per edge:

=============  ======================  ============  ==========================================
from           event                   to            why
=============  ======================  ============  ==========================================
UNKNOWN        CallSubmitted           RESOLVING     first call: ask the GCS where it lives
ALIVE          CallSentDirect          ALIVE         a caller sent it on the current connection
UNKNOWN        ActorRegistered         UNKNOWN       remember the version the creator saw
RESOLVING      ActorAddressKnown       CONNECTING    the GCS says ALIVE at an address
RESOLVING      ActorRestarting         RESTARTING    not placed yet, or coming back
CONNECTING     Connected               ALIVE         send the queue, in order
CONNECTING     ConnectFailed           RESTARTING    it died again; the GCS will say how
ALIVE          ConnectionLost          RESTARTING    calls in flight go back to the queue
ALIVE          NotHosted               RESTARTING    the address is not the actor's: likewise
RESTARTING     ActorAddressKnown       CONNECTING    restarted (or the link came back)
RESTARTING     ActorRestarting         RESTARTING    still on its way back
any            ActorDead               DEAD          every call fails with the cause, now and later
=============  ======================  ============  ==========================================

Events not in the table leave the state as it is (a late reply, a repeated answer; a
``CallSentDirect`` whose connection broke first queues the call for a retry, or fails it).

The direct lane: while ``direct_epoch`` offers an epoch (connected, nothing queued), the
shell lets a user thread write a new call itself and report it afterwards as
``CallSentDirect``; every other way in closes the lane first, so the order holds.
"""

from __future__ import annotations

import enum
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from rayops import exceptions as rex

Address = tuple[str, int]


class ActorState(enum.Enum):
    UNKNOWN = "unknown"  # no call yet: nothing asked of the GCS
    RESOLVING = "resolving"  # asked the GCS where the actor is
    CONNECTING = "connecting"  # the GCS gave an address; connecting to it
    ALIVE = "alive"  # connected: calls are sent as they become ready
    RESTARTING = "restarting"  # the connection broke or the GCS says it is coming back
    DEAD = "dead"  # for good: every call fails with the cause


# ------------------------------------------------------------------------------ events
@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class CallSubmitted:
    """A call (or a call again, after an application error) to queue behind the others.

    ``retries``: how many times it may still be re-sent after its actor's process dies
    (``max_task_retries``; -1 for ever). ``args_ready``: False while an argument this
    process owns is still being computed; ``ArgsReady`` follows.
    """

    actor_id: bytes
    task_id: bytes
    retries: int
    args_ready: bool = True


@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class CallSentDirect:
    """A user thread sent this call itself on the connection of ``epoch``, which
    ``direct_epoch`` offered (the direct lane: see ``actor_submitter``). Its place in the
    caller's order is this event's place among the others."""

    actor_id: bytes
    task_id: bytes
    retries: int
    epoch: int


@dataclass(frozen=True, slots=True)
class ArgsReady:
    actor_id: bytes
    task_id: bytes


@dataclass(frozen=True, slots=True)
class CallDropped:
    """The shell finished this call otherwise (an argument failed, a cancel): forget it."""

    actor_id: bytes
    task_id: bytes


@dataclass(frozen=True, slots=True)
class ActorRegistered:
    """This process created the actor; ``version`` is the GCS's version at registration."""

    actor_id: bytes
    version: int


@dataclass(frozen=True, slots=True)
class ActorAddressKnown:
    """The GCS says the actor is ALIVE at ``address`` (in its ``version``)."""

    actor_id: bytes
    address: Address
    version: int


@dataclass(frozen=True, slots=True)
class ActorRestarting:
    """The GCS says the actor is not alive yet (pending creation or restarting)."""

    actor_id: bytes
    version: int


@dataclass(frozen=True, slots=True)
class ActorDead:
    actor_id: bytes
    cause: BaseException


@dataclass(frozen=True, slots=True)
class Connected:
    actor_id: bytes
    address: Address


@dataclass(frozen=True, slots=True)
class ConnectFailed:
    actor_id: bytes
    address: Address


@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class CallReplied:
    """The actor answered the call sent on connection ``epoch`` (replies come in any order)."""

    actor_id: bytes
    task_id: bytes
    epoch: int


@dataclass(frozen=True, slots=True)
class CallFailed:
    """This call alone could not be delivered or run (the connection is fine)."""

    actor_id: bytes
    task_id: bytes
    epoch: int


@dataclass(frozen=True, slots=True)
class NotHosted:
    """The process at the actor's address answered the call of ``epoch`` with "no such
    actor here" (its port was taken by a new process after the actor's died): no call ran
    there. Like a lost connection, but the calls cut off spend no retry."""

    actor_id: bytes
    epoch: int


@dataclass(frozen=True, slots=True)
class ConnectionLost:
    """The connection of ``epoch`` broke: every call in flight on it was cut off."""

    actor_id: bytes
    epoch: int


Event = (
    CallSubmitted
    | CallSentDirect
    | ArgsReady
    | CallDropped
    | ActorRegistered
    | ActorAddressKnown
    | ActorRestarting
    | ActorDead
    | Connected
    | ConnectFailed
    | CallReplied
    | CallFailed
    | NotHosted
    | ConnectionLost
)


# ------------------------------------------------------------------------ instructions
@dataclass(frozen=True, slots=True)
class WatchActor:
    """Ask the GCS about the actor, answering when its version passes ``version``; keep
    asking while ``ActorQueues.wants_address`` says so."""

    actor_id: bytes
    version: int


@dataclass(frozen=True, slots=True)
class Connect:
    actor_id: bytes
    address: Address


@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class SendCall:
    """Send the call on the connection of ``epoch`` (report its outcome with that epoch)."""

    actor_id: bytes
    task_id: bytes
    epoch: int


@dataclass(frozen=True, slots=True)
class RetryCall:
    """The call was cut off and will be sent again: count one retry against it."""

    actor_id: bytes
    task_id: bytes


@dataclass(frozen=True, slots=True)
class FailCall:
    """The call ends with ``error`` at get(), without running (again)."""

    actor_id: bytes
    task_id: bytes
    error: BaseException


Instruction = WatchActor | Connect | SendCall | RetryCall | FailCall


# ------------------------------------------------------------------------------- state
@dataclass(slots=True)
class _Call:
    task_id: bytes
    seq: int
    retries: int
    ready: bool


@dataclass(slots=True)
class ActorCalls:
    """What the caller knows of one actor, and its calls."""

    actor_id: bytes
    state: ActorState = ActorState.UNKNOWN
    version: int = 0
    address: Address | None = None
    epoch: int = 0  # bumped on every connection, so a stale connection's news is ignored
    next_seq: int = 0
    queued: deque[_Call] = field(default_factory=deque)  # by sequence number
    inflight: dict[bytes, _Call] = field(default_factory=dict)  # in send order
    lost: list[_Call] = field(default_factory=list)  # cut off, no retry left: fail once known
    cause: BaseException | None = None  # set when DEAD


_WANTS_ADDRESS = (ActorState.RESOLVING, ActorState.RESTARTING)


class ActorQueues:
    """Every actor's call queue in this process. Call ``handle`` on the IO thread only."""

    def __init__(self) -> None:
        self._actors: dict[bytes, ActorCalls] = {}

    # ------------------------------------------------------------------ queries
    def actor(self, actor_id: bytes) -> ActorCalls | None:
        return self._actors.get(actor_id)

    def state(self, actor_id: bytes) -> ActorState:
        a = self._actors.get(actor_id)
        return ActorState.UNKNOWN if a is None else a.state

    def wants_address(self, actor_id: bytes) -> bool:
        """Whether the shell should keep asking the GCS about this actor."""
        a = self._actors.get(actor_id)
        return a is not None and a.state in _WANTS_ADDRESS

    def version(self, actor_id: bytes) -> int:
        a = self._actors.get(actor_id)
        return 0 if a is None else a.version

    def queued(self, actor_id: bytes) -> list[bytes]:
        a = self._actors.get(actor_id)
        return [] if a is None else [c.task_id for c in a.queued]

    def inflight(self, actor_id: bytes) -> list[bytes]:
        a = self._actors.get(actor_id)
        return [] if a is None else list(a.inflight)

    def direct_epoch(self, actor_id: bytes) -> int | None:
        """The connection epoch a new call may be sent on at once by whoever submits it
        (``CallSentDirect``), or None when it must queue: the actor is not connected, or
        calls wait ahead of it."""
        a = self._actors.get(actor_id)
        if a is None or a.state is not ActorState.ALIVE or a.queued:
            return None
        return a.epoch

    def __contains__(self, actor_id: object) -> bool:
        return actor_id in self._actors

    # ------------------------------------------------------------------- events
    def handle(self, event: Event) -> list[Instruction]:
        a = self._actors.get(event.actor_id)
        if a is None:
            a = self._actors[event.actor_id] = ActorCalls(event.actor_id)
        handler = _HANDLERS[type(event)]
        return handler(self, a, event)

    def sent_direct(self, actor_id: bytes, task_id: bytes, retries: int, epoch: int) -> bool:
        """``CallSentDirect`` when it changes nothing but this call's state (the hot path:
        the actor is connected on ``epoch`` with nothing queued); False, with nothing done,
        otherwise (the caller then handles the event)."""
        a = self._actors.get(actor_id)
        if a is None or a.state is not ActorState.ALIVE or a.queued or a.epoch != epoch:
            return False
        a.inflight[task_id] = _Call(task_id, a.next_seq, retries, True)
        a.next_seq += 1
        return True

    def replied(self, actor_id: bytes, task_id: bytes, epoch: int) -> None:
        """``CallReplied`` (no event made: the hot path; it has no instructions)."""
        a = self._actors.get(actor_id)
        if a is not None and epoch == a.epoch:
            a.inflight.pop(task_id, None)

    def _on_call_submitted(self, a: ActorCalls, ev: CallSubmitted) -> list[Instruction]:
        if a.state is ActorState.DEAD:
            assert a.cause is not None
            return [FailCall(a.actor_id, ev.task_id, a.cause)]
        call = _Call(ev.task_id, a.next_seq, ev.retries, ev.args_ready)
        a.next_seq += 1
        if a.state is ActorState.ALIVE and not a.queued and ev.args_ready:
            a.inflight[ev.task_id] = call  # the hot path: straight out
            return [SendCall(a.actor_id, ev.task_id, a.epoch)]
        a.queued.append(call)
        if a.state is ActorState.UNKNOWN:
            a.state = ActorState.RESOLVING
            return [WatchActor(a.actor_id, a.version)]
        return self._pump(a)

    def _on_sent_direct(self, a: ActorCalls, ev: CallSentDirect) -> list[Instruction]:
        if a.state is ActorState.DEAD:
            assert a.cause is not None
            return [FailCall(a.actor_id, ev.task_id, a.cause)]
        call = _Call(ev.task_id, a.next_seq, ev.retries, True)
        a.next_seq += 1
        if a.state is ActorState.ALIVE and ev.epoch == a.epoch:
            a.inflight[ev.task_id] = call
            return []
        # Its connection broke before this event: it was in flight on it, and everything
        # queued now went out before it (or was submitted before it).
        if call.retries == 0:
            if a.state is ActorState.ALIVE:  # reconnected already: no later Connected
                return [FailCall(a.actor_id, ev.task_id, _not_retried(a))]
            a.lost.append(call)
            return []
        if call.retries > 0:
            call.retries -= 1
        a.queued.append(call)
        return [RetryCall(a.actor_id, ev.task_id), *self._pump(a)]

    def _on_args_ready(self, a: ActorCalls, ev: ArgsReady) -> list[Instruction]:
        for call in a.queued:
            if call.task_id == ev.task_id:
                call.ready = True
                break
        return self._pump(a)

    def _on_call_dropped(self, a: ActorCalls, ev: CallDropped) -> list[Instruction]:
        a.inflight.pop(ev.task_id, None)
        a.lost = [c for c in a.lost if c.task_id != ev.task_id]
        for call in a.queued:
            if call.task_id == ev.task_id:
                a.queued.remove(call)
                break
        return self._pump(a)

    def _on_registered(self, a: ActorCalls, ev: ActorRegistered) -> list[Instruction]:
        a.version = max(a.version, ev.version)
        return []

    def _on_address_known(self, a: ActorCalls, ev: ActorAddressKnown) -> list[Instruction]:
        a.version = max(a.version, ev.version)
        if a.state not in _WANTS_ADDRESS:
            return []
        a.state = ActorState.CONNECTING
        a.address = ev.address
        return [Connect(a.actor_id, ev.address)]

    def _on_restarting(self, a: ActorCalls, ev: ActorRestarting) -> list[Instruction]:
        a.version = max(a.version, ev.version)
        if a.state in _WANTS_ADDRESS:
            a.state = ActorState.RESTARTING
        return []

    def _on_dead(self, a: ActorCalls, ev: ActorDead) -> list[Instruction]:
        if a.state is ActorState.DEAD:
            return []
        a.state = ActorState.DEAD
        a.cause = ev.cause
        a.address = None
        a.epoch += 1  # whatever the old connection still reports is stale
        doomed = [*a.lost, *a.inflight.values(), *a.queued]
        a.lost, a.inflight, a.queued = [], {}, deque()
        return [FailCall(a.actor_id, c.task_id, ev.cause) for c in doomed]

    def _on_connected(self, a: ActorCalls, ev: Connected) -> list[Instruction]:
        if a.state is not ActorState.CONNECTING or ev.address != a.address:
            return []
        a.state = ActorState.ALIVE
        a.epoch += 1
        out: list[Instruction] = []
        if a.lost:
            err = _not_retried(a)
            out = [FailCall(a.actor_id, c.task_id, err) for c in a.lost]
            a.lost = []
        out.extend(self._pump(a))
        return out

    def _on_connect_failed(self, a: ActorCalls, ev: ConnectFailed) -> list[Instruction]:
        if a.state is not ActorState.CONNECTING or ev.address != a.address:
            return []
        a.state = ActorState.RESTARTING
        return [WatchActor(a.actor_id, a.version)]

    def _on_replied(self, a: ActorCalls, ev: CallReplied | CallFailed) -> list[Instruction]:
        if ev.epoch == a.epoch:
            a.inflight.pop(ev.task_id, None)
        return []

    def _on_connection_lost(self, a: ActorCalls, ev: ConnectionLost) -> list[Instruction]:
        if ev.epoch != a.epoch or a.state is not ActorState.ALIVE:
            return []  # an older connection's news: its calls were dealt with already
        a.state = ActorState.RESTARTING
        a.address = None
        a.epoch += 1
        out: list[Instruction] = []
        retried: list[_Call] = []
        for call in a.inflight.values():  # in send order
            if call.retries != 0:
                if call.retries > 0:
                    call.retries -= 1
                retried.append(call)
                out.append(RetryCall(a.actor_id, call.task_id))
            else:
                a.lost.append(call)  # failed with the cause, once the GCS tells it
        a.inflight = {}
        # All of them back to the head together, in the order they were sent: one at a
        # time, each to the front, they would run reversed after the restart.
        a.queued.extendleft(reversed(retried))
        out.append(WatchActor(a.actor_id, a.version))
        return out

    def _on_not_hosted(self, a: ActorCalls, ev: NotHosted) -> list[Instruction]:
        if ev.epoch != a.epoch or a.state is not ActorState.ALIVE:
            return []  # the other calls on that connection say the same: dealt with once
        a.state = ActorState.RESTARTING
        a.address = None
        a.epoch += 1
        # Nothing ran: every call in flight goes back to the head, in send order, as it was.
        a.queued.extendleft(reversed(list(a.inflight.values())))
        a.inflight = {}
        return [WatchActor(a.actor_id, a.version)]

    # --------------------------------------------------------------- internals
    def _pump(self, a: ActorCalls) -> list[Instruction]:
        """Send queued calls from the head while they are ready (an unready call holds
        back the ones behind it, to keep the caller's order)."""
        if a.state is not ActorState.ALIVE:
            return []
        out: list[Instruction] = []
        queued = a.queued
        while queued and queued[0].ready:
            call = queued.popleft()
            a.inflight[call.task_id] = call
            out.append(SendCall(a.actor_id, call.task_id, a.epoch))
        return out


def _not_retried(a: ActorCalls) -> BaseException:
    return rex.ActorDiedError(
        actor_id=a.actor_id.hex(),
        error_msg=(
            "The actor died while running this call and was restarted; the call "
            "was not retried (max_task_retries exhausted)."
        ),
    )


class PendingCalls:
    """How many calls this process submitted to each actor and has not finished, for
    ``max_pending_calls``. No entry is kept for an actor with none. Not thread-safe: the
    shell holds a lock around it (user threads admit calls, the IO thread finishes them)."""

    def __init__(self) -> None:
        self._counts: dict[bytes, int] = {}

    def admit(self, actor_id: bytes, limit: int) -> bool:
        """Count one more call, unless ``limit`` (> 0) calls are already pending."""
        n = self._counts.get(actor_id, 0)
        if 0 < limit <= n:
            return False
        self._counts[actor_id] = n + 1
        return True

    def finished(self, actor_id: bytes) -> None:
        n = self._counts.get(actor_id, 0) - 1
        if n > 0:
            self._counts[actor_id] = n
        else:
            self._counts.pop(actor_id, None)

    def count(self, actor_id: bytes | None = None) -> int:
        """Pending calls to ``actor_id``, or to any actor."""
        if actor_id is None:
            return sum(self._counts.values())
        return self._counts.get(actor_id, 0)

    def actors(self) -> int:
        """How many actors have an entry (only those with a call pending)."""
        return len(self._counts)


_HANDLERS: dict[type, Callable[[ActorQueues, ActorCalls, Any], list[Instruction]]] = {
    CallSubmitted: ActorQueues._on_call_submitted,
    CallSentDirect: ActorQueues._on_sent_direct,
    ArgsReady: ActorQueues._on_args_ready,
    CallDropped: ActorQueues._on_call_dropped,
    ActorRegistered: ActorQueues._on_registered,
    ActorAddressKnown: ActorQueues._on_address_known,
    ActorRestarting: ActorQueues._on_restarting,
    ActorDead: ActorQueues._on_dead,
    Connected: ActorQueues._on_connected,
    ConnectFailed: ActorQueues._on_connect_failed,
    CallReplied: ActorQueues._on_replied,
    CallFailed: ActorQueues._on_replied,
    ConnectionLost: ActorQueues._on_connection_lost,
    NotHosted: ActorQueues._on_not_hosted,
}
