"""The caller's actor-call state machine (core_worker/actor_queue.py): events in,
instructions out, with no process, no socket and no event loop."""

from __future__ import annotations

from typing import Any

import pytest

from rayops import exceptions as rex
from rayops.core_worker import actor_queue as aq
from rayops.core_worker.actor_queue import (
    ActorAddressKnown,
    ActorDead,
    ActorRegistered,
    ActorRestarting,
    ActorState,
    ArgsReady,
    CallDropped,
    CallFailed,
    CallReplied,
    CallSentDirect,
    CallSubmitted,
    Connect,
    Connected,
    ConnectFailed,
    ConnectionLost,
    FailCall,
    NotHosted,
    RetryCall,
    SendCall,
    WatchActor,
)

A = b"actor-a"
ADDR = ("127.0.0.1", 7001)
ADDR2 = ("127.0.0.1", 7002)


def t(i: int) -> bytes:
    return b"task-%03d" % i


def run(machine: aq.ActorQueues, events: list[Any]) -> list[aq.Instruction]:
    out: list[aq.Instruction] = []
    for ev in events:
        out.extend(machine.handle(ev))
    return out


def alive(machine: aq.ActorQueues, actor: bytes = A, address: aq.Address = ADDR) -> int:
    """Bring ``actor`` to ALIVE through the GCS and a connection; returns its epoch."""
    run(machine, [ActorAddressKnown(actor, address, 1), Connected(actor, address)])
    state = machine.actor(actor)
    assert state is not None and state.state is ActorState.ALIVE
    return state.epoch


def sends(out: list[aq.Instruction]) -> list[bytes]:
    return [i.task_id for i in out if isinstance(i, SendCall)]


def fails(out: list[aq.Instruction]) -> list[bytes]:
    return [i.task_id for i in out if isinstance(i, FailCall)]


# ----------------------------------------------------------------- the first calls
def test_first_call_asks_the_gcs_and_calls_go_out_in_order_once_connected() -> None:
    m = aq.ActorQueues()
    assert m.handle(ActorRegistered(A, 3)) == []
    assert m.handle(CallSubmitted(A, t(0), 0)) == [WatchActor(A, 3)]
    assert m.wants_address(A)
    assert run(m, [CallSubmitted(A, t(i), 0) for i in (1, 2)]) == []  # one watch is enough
    assert m.handle(ActorRestarting(A, 4)) == []  # pending creation
    assert m.state(A) is ActorState.RESTARTING and m.wants_address(A)
    assert m.handle(ActorAddressKnown(A, ADDR, 5)) == [Connect(A, ADDR)]
    assert not m.wants_address(A)
    out = m.handle(Connected(A, ADDR))
    epoch = m.actor(A).epoch  # type: ignore[union-attr]
    assert out == [SendCall(A, t(i), epoch) for i in range(3)]
    assert m.inflight(A) == [t(0), t(1), t(2)]
    # Once alive a call goes straight out.
    assert m.handle(CallSubmitted(A, t(3), 0)) == [SendCall(A, t(3), epoch)]


# Each row: events after the actor is alive with calls 0..2 in flight, and the
# instructions expected from the last event (None: don't check), and the in-flight ids after.
ROWS: list[tuple[str, list[Any], list[bytes], list[bytes]]] = [
    (
        "replies in any order leave the others in flight, in send order",
        [CallReplied(A, t(1), -1), CallReplied(A, t(0), -1)],
        [],
        [t(2)],
    ),
    (
        "a reply from a stale connection changes nothing",
        [CallReplied(A, t(1), 999)],
        [],
        [t(0), t(1), t(2)],
    ),
    ("a call that alone failed leaves the rest", [CallFailed(A, t(0), -1)], [], [t(1), t(2)]),
    ("a dropped (cancelled) call is forgotten", [CallDropped(A, t(2))], [], [t(0), t(1)]),
]


@pytest.mark.parametrize(("why", "events", "expected", "after"), ROWS, ids=[r[0] for r in ROWS])
def test_replies_table(
    why: str, events: list[Any], expected: list[Any], after: list[bytes]
) -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 0))
    epoch = alive(m)
    run(m, [CallSubmitted(A, t(i), 0) for i in (1, 2)])
    events = [
        type(e)(e.actor_id, e.task_id, epoch) if getattr(e, "epoch", None) == -1 else e
        for e in events
    ]
    assert run(m, events) == expected
    assert m.inflight(A) == after


# --------------------------------------------------------------- ordering on restart
def test_twenty_calls_in_flight_are_resent_in_submission_order_after_a_restart() -> None:
    """The issue's reproduction: max_task_retries=2, 20 calls in flight, the process is
    SIGKILLed after 5 have answered: the 15 cut off run again in submission order, ahead of
    calls submitted while the actor was restarting."""
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 2))
    epoch = alive(m)
    out = run(m, [CallSubmitted(A, t(i), 2) for i in range(1, 20)])
    assert sends(out) == [t(i) for i in range(1, 20)]
    run(m, [CallReplied(A, t(i), epoch) for i in range(5)])
    lost = m.handle(ConnectionLost(A, epoch))
    assert [i.task_id for i in lost if isinstance(i, RetryCall)] == [t(i) for i in range(5, 20)]
    assert lost[-1] == WatchActor(A, 1)
    assert m.state(A) is ActorState.RESTARTING
    # Calls submitted during the restart queue behind the retried ones.
    assert run(m, [CallSubmitted(A, t(i), 2) for i in (20, 21)]) == []
    # Stale news from the dead connection: ignored.
    assert run(m, [ConnectionLost(A, epoch), CallReplied(A, t(7), epoch)]) == []
    assert m.queued(A) == [t(i) for i in range(5, 22)]
    run(m, [ActorRestarting(A, 2)])
    assert m.handle(ActorAddressKnown(A, ADDR2, 3)) == [Connect(A, ADDR2)]
    out = m.handle(Connected(A, ADDR2))
    assert sends(out) == [t(i) for i in range(5, 22)]
    assert fails(out) == []


def test_retries_count_down_and_exhausted_calls_fail_once_the_actor_is_back() -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 1))  # one retry
    epoch = alive(m)
    run(m, [CallSubmitted(A, t(1), 0), CallSubmitted(A, t(2), -1)])  # none; for ever
    out = m.handle(ConnectionLost(A, epoch))
    assert [i.task_id for i in out if isinstance(i, RetryCall)] == [t(0), t(2)]
    out = run(m, [ActorAddressKnown(A, ADDR2, 2), Connected(A, ADDR2)])
    assert fails(out) == [t(1)]  # no retry left: the actor was restarted without it
    err = next(i.error for i in out if isinstance(i, FailCall))
    assert isinstance(err, rex.ActorDiedError)
    assert sends(out) == [t(0), t(2)]
    epoch = m.actor(A).epoch  # type: ignore[union-attr]
    out = m.handle(ConnectionLost(A, epoch))  # second death: t0 has none left, t2 infinite
    assert [i.task_id for i in out if isinstance(i, RetryCall)] == [t(2)]
    cause = rex.ActorDiedError(error_msg="max_restarts reached")
    out = m.handle(ActorDead(A, cause))
    assert [(i.task_id, i.error) for i in out] == [(t(0), cause), (t(2), cause)]


def test_actor_dead_fails_queued_in_flight_and_later_calls_with_the_cause() -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 0))
    epoch = alive(m)
    m.handle(CallSubmitted(A, t(1), 0))
    m.handle(ConnectionLost(A, epoch))  # t0, t1 lost (no retries)
    m.handle(CallSubmitted(A, t(2), 0))  # queued while restarting
    cause = rex.ActorDiedError(error_msg="killed")
    out = m.handle(ActorDead(A, cause))
    assert out == [FailCall(A, t(i), cause) for i in range(3)]
    assert m.state(A) is ActorState.DEAD and not m.wants_address(A)
    assert m.handle(CallSubmitted(A, t(3), 5)) == [FailCall(A, t(3), cause)]
    assert m.handle(ActorAddressKnown(A, ADDR, 9)) == []  # dead is for good
    assert m.handle(ActorDead(A, rex.ActorDiedError(error_msg="again"))) == []


def test_actor_dead_while_calls_wait_for_the_gcs() -> None:
    m = aq.ActorQueues()
    run(m, [CallSubmitted(A, t(i), 3) for i in range(4)])
    cause = rex.ActorDiedError(error_msg="constructor raised")
    assert fails(m.handle(ActorDead(A, cause))) == [t(i) for i in range(4)]


def test_an_unready_call_holds_back_the_calls_behind_it() -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 0))
    epoch = alive(m)
    assert m.handle(CallSubmitted(A, t(1), 0, args_ready=False)) == []
    assert m.handle(CallSubmitted(A, t(2), 0)) == []  # behind t1
    assert m.handle(ArgsReady(A, t(1))) == [SendCall(A, t(1), epoch), SendCall(A, t(2), epoch)]
    m.handle(CallSubmitted(A, t(3), 0, args_ready=False))
    m.handle(CallSubmitted(A, t(4), 0))
    # t3's argument failed: the shell drops it and t4 goes.
    assert m.handle(CallDropped(A, t(3))) == [SendCall(A, t(4), epoch)]


def test_connect_failure_asks_the_gcs_again_and_stale_connects_are_ignored() -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 0))
    m.handle(ActorAddressKnown(A, ADDR, 1))
    assert m.handle(ConnectFailed(A, ADDR2)) == []  # not the address being connected
    assert m.handle(ConnectFailed(A, ADDR)) == [WatchActor(A, 1)]
    assert m.state(A) is ActorState.RESTARTING
    assert m.handle(Connected(A, ADDR)) == []  # late: not connecting any more
    assert m.handle(ActorAddressKnown(A, ADDR2, 2)) == [Connect(A, ADDR2)]
    assert sends(m.handle(Connected(A, ADDR2))) == [t(0)]


def test_an_application_error_retry_goes_behind_the_calls_already_queued() -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 2))
    epoch = alive(m)
    m.handle(CallSubmitted(A, t(1), 2))
    m.handle(CallReplied(A, t(0), epoch))
    # The shell resubmits t0 (retry_exceptions): it is a new call, after t1.
    assert m.handle(CallSubmitted(A, t(0), 1)) == [SendCall(A, t(0), epoch)]
    assert m.inflight(A) == [t(1), t(0)]


def test_actors_are_independent() -> None:
    m = aq.ActorQueues()
    b = b"actor-b"
    run(m, [CallSubmitted(A, t(0), 0), CallSubmitted(b, t(1), 0)])
    alive(m, A)
    assert m.state(b) is ActorState.RESOLVING
    assert m.inflight(A) == [t(0)] and m.queued(b) == [t(1)]
    cause = rex.ActorDiedError(error_msg="b died")
    assert fails(m.handle(ActorDead(b, cause))) == [t(1)]
    assert m.state(A) is ActorState.ALIVE


# ------------------------------------------------------------------ max_pending_calls
# (limit, admitted so far, finished so far) -> whether the next call is admitted
PENDING_ROWS = [
    (-1, 1000, 0, True),  # no limit
    (0, 5, 0, True),  # 0 means no limit too
    (2, 1, 0, True),
    (2, 2, 0, False),  # the limit reached: refused at .remote()
    (2, 2, 1, True),  # one finished: room again
]


@pytest.mark.parametrize(("limit", "admitted", "finished", "ok"), PENDING_ROWS)
def test_max_pending_calls(limit: int, admitted: int, finished: int, ok: bool) -> None:
    p = aq.PendingCalls()
    for _ in range(admitted):
        assert p.admit(A, -1)
    for _ in range(finished):
        p.finished(A)
    assert p.admit(A, limit) is ok
    assert p.count(A) == admitted - finished + ok


def test_pending_calls_keep_no_entry_for_an_actor_with_none() -> None:
    p = aq.PendingCalls()
    b = b"actor-b"
    assert p.admit(A, 1) and p.admit(b, 1) and not p.admit(A, 1)
    assert p.count() == 2 and p.actors() == 2
    p.finished(A)
    p.finished(b)
    assert p.count() == 0 and p.actors() == 0


# ------------------------------------------------------------------ the direct lane
def test_the_lane_is_offered_only_while_a_new_call_would_go_out_at_once() -> None:
    m = aq.ActorQueues()
    assert m.direct_epoch(A) is None  # unknown actor
    m.handle(CallSubmitted(A, t(0), 0))
    assert m.direct_epoch(A) is None  # resolving
    epoch = alive(m)
    assert m.direct_epoch(A) == epoch
    m.handle(CallSubmitted(A, t(1), 0, args_ready=False))
    assert m.direct_epoch(A) is None  # a call waits ahead: a direct one would overtake it
    assert sends(m.handle(ArgsReady(A, t(1)))) == [t(1)]
    assert m.direct_epoch(A) == epoch
    m.handle(ConnectionLost(A, epoch))
    assert m.direct_epoch(A) is None
    m.handle(ActorDead(A, RuntimeError("gone")))
    assert m.direct_epoch(A) is None


def test_direct_calls_take_their_place_in_order_and_are_resent_in_it() -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 2))
    epoch = alive(m)
    # Sent by user threads: nothing left for the shell to do.
    assert run(m, [CallSentDirect(A, t(i), 2, epoch) for i in (1, 2)]) == []
    assert sends(m.handle(CallSubmitted(A, t(3), 2))) == [t(3)]
    assert m.inflight(A) == [t(0), t(1), t(2), t(3)]
    m.handle(CallReplied(A, t(1), epoch))
    lost = m.handle(ConnectionLost(A, epoch))
    assert [i.task_id for i in lost if isinstance(i, RetryCall)] == [t(0), t(2), t(3)]
    run(m, [ActorAddressKnown(A, ADDR2, 2)])
    assert sends(m.handle(Connected(A, ADDR2))) == [t(0), t(2), t(3)]


def test_a_direct_call_whose_connection_broke_first_is_retried_behind_the_others() -> None:
    """The reply slot of a direct call can fail (connection lost) before the IO thread
    has taken the call: the machine then hears of the call with a stale epoch."""
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 1))
    epoch = alive(m)
    m.handle(ConnectionLost(A, epoch))  # t(0) goes back to the queue
    out = m.handle(CallSentDirect(A, t(1), 1, epoch))
    assert out == [RetryCall(A, t(1))]
    assert m.queued(A) == [t(0), t(1)]
    run(m, [ActorAddressKnown(A, ADDR2, 2)])
    assert sends(m.handle(Connected(A, ADDR2))) == [t(0), t(1)]


@pytest.mark.parametrize("reconnected", [False, True], ids=["restarting", "alive-again"])
def test_a_direct_call_on_a_broken_connection_without_retries_fails(reconnected: bool) -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 0))
    epoch = alive(m)
    m.handle(ConnectionLost(A, epoch))
    if reconnected:
        run(m, [ActorAddressKnown(A, ADDR2, 2), Connected(A, ADDR2)])
        out = m.handle(CallSentDirect(A, t(1), 0, epoch))
        assert fails(out) == [t(1)]  # no later Connected would fail it
        return
    assert m.handle(CallSentDirect(A, t(1), 0, epoch)) == []
    run(m, [ActorAddressKnown(A, ADDR2, 2)])
    assert fails(m.handle(Connected(A, ADDR2))) == [t(0), t(1)]


def test_a_direct_call_to_a_dead_actor_fails_with_the_cause() -> None:
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 0))
    epoch = alive(m)
    cause = rex.ActorDiedError(error_msg="killed")
    m.handle(ActorDead(A, cause))
    assert m.handle(CallSentDirect(A, t(1), 3, epoch)) == [FailCall(A, t(1), cause)]


def test_an_address_that_does_not_host_the_actor_resends_everything_without_a_retry() -> None:
    """A new process took the port of the actor's dead one and refuses the calls: none ran,
    so none spends a retry (even calls with none left), and they go out again in order once
    the GCS gives the actor's real address."""
    m = aq.ActorQueues()
    m.handle(CallSubmitted(A, t(0), 0))
    epoch = alive(m)
    run(m, [CallSubmitted(A, t(i), 0) for i in (1, 2)])
    assert m.handle(NotHosted(A, epoch)) == [WatchActor(A, 1)]
    assert m.state(A) is ActorState.RESTARTING
    assert m.queued(A) == [t(0), t(1), t(2)] and m.inflight(A) == []
    # The same answer for the other calls of that connection: already dealt with.
    assert run(m, [NotHosted(A, epoch), NotHosted(A, epoch)]) == []
    assert m.handle(CallSubmitted(A, t(3), 0)) == []
    run(m, [ActorAddressKnown(A, ADDR2, 2)])
    out = m.handle(Connected(A, ADDR2))
    assert sends(out) == [t(0), t(1), t(2), t(3)] and fails(out) == []
