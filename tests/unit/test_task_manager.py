"""The owner's task state machine, without processes: event sequences in, instructions out.

Each row of a table is one task's story: the events the shell would feed in, and the kinds
of instructions expected after each one. Retries, worker deaths and the races of cancel
(before the arguments are ready, while queued, after the push, between retries, a reply
that arrives after the cancel) are all here.
"""

from __future__ import annotations

from typing import Any

import pytest

from rayops import exceptions as rex
from rayops import serialization
from rayops.core_worker import task_manager as tm
from rayops.core_worker.task_metrics import (
    ST_ARGS,
    ST_FAILED,
    ST_FINISHED,
    ST_NODE,
    ST_SUBMITTED,
)
from rayops.protocol.task_messages import STREAMING, TaskReply, TaskSpec

OWNER = ("127.0.0.1", 1000)
WORKER = ("127.0.0.1", 2000)
_ids = iter(range(1, 1_000_000))


def _spec(
    *, args: bool = False, actor: bool = False, parent: bytes = b"", streaming: bool = False
) -> TaskSpec:
    tid = next(_ids).to_bytes(16, "big")
    return TaskSpec(
        task_id=tid,
        job_id=1,
        name="f",
        function_id=b"fn",
        args=(("r", b"o" * 20, OWNER),) if args else (),
        kwarg_names=(),
        num_returns=STREAMING if streaming else 1,
        return_ids=(tid + b"\0\0\0\1",),
        owner=OWNER,
        resources={} if actor else {"CPU": 1.0},
        parent_task_id=parent,
        actor_id=b"A" * 16 if actor else b"",
    )


def _error_entry(err: BaseException) -> tuple[Any, ...]:
    return ("v", serialization.serialize(err, serialization.META_ERROR).to_wire())


def _reply(status: str, cause: BaseException | None = None) -> TaskReply:
    returns: list[Any]
    if status == "ok":
        returns = [(("v", serialization.serialize(1).to_wire()), [])]
    elif status == "error":
        assert cause is not None
        err = rex.RayTaskError.from_exception(cause, "f", 1, "127.0.0.1")
        returns = [(_error_entry(err), [])]
    else:
        returns = []
    return TaskReply(status, returns, [], WORKER, 0.001)


def _kinds(out: list[tm.Instruction]) -> list[str]:
    return [type(i).__name__ for i in out]


def _feed(m: tm.TaskManager, spec: TaskSpec, event: tuple[Any, ...]) -> list[tm.Instruction]:
    """One event for ``spec`` (the shell's calls, by name)."""
    kind = event[0]
    current = m.record(spec.task_id)
    cur = current.spec if current is not None else spec
    if kind == "resolved":
        return m.args_resolved(cur)
    if kind == "pending":
        m.waiting_for_args(spec.task_id)
        return []
    if kind == "args_failed":
        return m.args_failed(spec.task_id, _error_entry(ValueError("arg")))
    if kind == "pushed":
        m.pushed(spec.task_id)
        return []
    if kind == "reply":
        return m.reply(cur, _reply(*event[1:]))
    if kind == "died":
        return m.worker_died(cur, ConnectionError("lost"))
    if kind == "cancel":
        force, recursive = event[1], event[2]
        return m.cancel(spec.task_id, force, recursive)
    if kind == "fail":
        return m.fail(spec.task_id, error=RuntimeError("unschedulable"))
    raise AssertionError(kind)


OK = ("reply", "ok")
APP_ERR = ("reply", "error", ValueError("boom"))
KEY_ERR = ("reply", "error", KeyError("k"))
CANCELLED = ("reply", "cancelled")
DIED = ("died",)
CANCEL = ("cancel", False, True)
FORCE = ("cancel", True, True)
END = ["Release"]
FAIL_END = ["FailWith", "Release"]

# name, spec kwargs, retries, retry_exceptions, [(event, expected kinds)], final counts state
CASES: list[tuple[str, dict[str, Any], int, Any, list[tuple[Any, list[str]]], int]] = [
    (
        "no args: straight to the scheduler, then done",
        {},
        0,
        False,
        [("submit", ["SubmitToScheduler"]), (("pushed",), []), (OK, [*END, "StoreReturns"])],
        ST_FINISHED,
    ),
    (
        "args: resolved at the owner first",
        {"args": True},
        0,
        False,
        [
            ("submit", ["ResolveArgs"]),
            (("pending",), []),
            (("resolved",), ["SubmitToScheduler"]),
            (("pushed",), []),
            (OK, [*END, "StoreReturns"]),
        ],
        ST_FINISHED,
    ),
    (
        "an argument holds an error: the task returns it unrun",
        {"args": True},
        3,
        True,
        [("submit", ["ResolveArgs"]), (("args_failed",), FAIL_END)],
        ST_FAILED,
    ),
    (
        "app error without retry_exceptions: stored, not retried",
        {},
        3,
        False,
        [("submit", ["SubmitToScheduler"]), (("pushed",), []), (APP_ERR, [*END, "StoreReturns"])],
        ST_FAILED,
    ),
    (
        "app error with retry_exceptions=True: retried until retries run out",
        {},
        2,
        True,
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (APP_ERR, ["LogRetry", "SubmitToScheduler"]),
            (("pushed",), []),
            (APP_ERR, ["LogRetry", "SubmitToScheduler"]),
            (("pushed",), []),
            (APP_ERR, [*END, "StoreReturns"]),
        ],
        ST_FAILED,
    ),
    (
        "retry_exceptions as a list of classes: only those retry",
        {},
        5,
        (ValueError,),
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (APP_ERR, ["LogRetry", "SubmitToScheduler"]),
            (("pushed",), []),
            (KEY_ERR, [*END, "StoreReturns"]),
        ],
        ST_FAILED,
    ),
    (
        "worker died with retries left: resubmitted (args resolved again)",
        {"args": True},
        1,
        False,
        [
            ("submit", ["ResolveArgs"]),
            (("resolved",), ["SubmitToScheduler"]),
            (("pushed",), []),
            (DIED, ["LogRetry", "ResolveArgs"]),
            (("resolved",), ["SubmitToScheduler"]),
            (("pushed",), []),
            (OK, [*END, "StoreReturns"]),
        ],
        ST_FINISHED,
    ),
    (
        "worker died with no retries left: WorkerCrashedError",
        {},
        0,
        False,
        [("submit", ["SubmitToScheduler"]), (("pushed",), []), (DIED, FAIL_END)],
        ST_FAILED,
    ),
    (
        "infinite retries (-1) never run out",
        {},
        -1,
        False,
        [
            ("submit", ["SubmitToScheduler"]),
            *[
                (e, k)
                for _ in range(5)
                for e, k in ((("pushed",), []), (DIED, ["LogRetry", "SubmitToScheduler"]))
            ],
            (("pushed",), []),
            (OK, [*END, "StoreReturns"]),
        ],
        ST_FINISHED,
    ),
    (
        "cancel before the arguments are resolved: fails now; the late resolution is dropped",
        {"args": True},
        3,
        False,
        [
            ("submit", ["ResolveArgs"]),
            (("pending",), []),
            (CANCEL, FAIL_END),
            (("resolved",), []),
        ],
        ST_FAILED,
    ),
    (
        "cancel while queued for a lease: taken out of the queue, fails now",
        {},
        3,
        False,
        [("submit", ["SubmitToScheduler"]), (CANCEL, ["DropQueued", *FAIL_END])],
        ST_FAILED,
    ),
    (
        "cancel after the push: resolves now, the worker is told; its late reply only ends it",
        {},
        3,
        False,
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (CANCEL, ["SendCancel", "FailWith"]),
            (OK, END),
        ],
        ST_FAILED,
    ),
    (
        "cancel after the push, the worker answers 'cancelled'",
        {},
        3,
        False,
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (CANCEL, ["SendCancel", "FailWith"]),
            (CANCELLED, END),
        ],
        ST_FAILED,
    ),
    (
        "force cancel after the push: the worker exits; never retried",
        {},
        3,
        False,
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (FORCE, ["SendCancel", "FailWith"]),
            (DIED, END),
        ],
        ST_FAILED,
    ),
    (
        "cancel between retries: the retry is queued again, then dropped",
        {},
        3,
        True,
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (APP_ERR, ["LogRetry", "SubmitToScheduler"]),
            (CANCEL, ["DropQueued", *FAIL_END]),
        ],
        ST_FAILED,
    ),
    (
        "reply after the task ended (cancelled while queued): ignored",
        {},
        3,
        False,
        [("submit", ["SubmitToScheduler"]), (CANCEL, ["DropQueued", *FAIL_END]), (OK, [])],
        ST_FAILED,
    ),
    (
        "cancel twice: the second does nothing",
        {},
        0,
        False,
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (CANCEL, ["SendCancel", "FailWith"]),
            (CANCEL, []),
            (FORCE, ["SendCancel"]),  # escalating to force tells the worker again
            (DIED, END),
        ],
        ST_FAILED,
    ),
    (
        "cancel a finished task: nothing happens",
        {},
        0,
        False,
        [
            ("submit", ["SubmitToScheduler"]),
            (("pushed",), []),
            (OK, [*END, "StoreReturns"]),
            (CANCEL, []),
        ],
        ST_FINISHED,
    ),
    (
        "actor call: queued with its actor, done",
        {"actor": True},
        0,
        False,
        [
            ("submit", ["SubmitToActor"]),
            (("pushed",), []),
            (OK, ["Release", "StoreReturns"]),
        ],
        ST_FINISHED,
    ),
    (
        "actor call cancelled while queued: dropped from the actor queue",
        {"actor": True},
        0,
        False,
        [
            ("submit", ["SubmitToActor"]),
            (CANCEL, ["DropQueued", "FailWith", "Release"]),
        ],
        ST_FAILED,
    ),
    (
        "actor call cancelled while running: the actor is told, the call ends now",
        {"actor": True},
        2,
        False,
        [
            ("submit", ["SubmitToActor"]),
            (("pushed",), []),
            (CANCEL, ["SendCancel", "DropQueued", "FailWith", "Release"]),
            (OK, []),
        ],
        ST_FAILED,
    ),
    (
        "actor call retried after an app error goes back to its actor queue",
        {"actor": True},
        1,
        True,
        [
            ("submit", ["SubmitToActor"]),
            (("pushed",), []),
            (APP_ERR, ["LogRetry", "SubmitToActor"]),
            (("pushed",), []),
            (OK, ["Release", "StoreReturns"]),
        ],
        ST_FINISHED,
    ),
    (
        "streaming generator: the generator component ends it",
        {"streaming": True},
        0,
        False,
        [("submit", ["SubmitToScheduler"]), (("pushed",), []), (OK, [*END, "FinishGenerator"])],
        ST_FINISHED,
    ),
    (
        "unschedulable: failed by the scheduler",
        {},
        3,
        False,
        [("submit", ["SubmitToScheduler"]), (("fail",), FAIL_END)],
        ST_FAILED,
    ),
]


@pytest.mark.parametrize(
    ("name", "kw", "retries", "rx", "story", "final"), CASES, ids=[c[0] for c in CASES]
)
def test_story(
    name: str,
    kw: dict[str, Any],
    retries: int,
    rx: Any,
    story: list[tuple[Any, list[str]]],
    final: int,
) -> None:
    m = tm.TaskManager()
    spec = _spec(**kw)
    deps = [b"o" * 20] if kw.get("args") else [b"p" * 20]  # a task with no pins: no Release
    record: tm.TaskRecord | None = None
    for step, (event, expected) in enumerate(story):
        if event == "submit":
            out = m.submit(spec, deps, retries, rx, "C")
            record = m.record(spec.task_id)
        else:
            out = _feed(m, spec, event)
        assert _kinds(out) == expected, f"{name}: step {step} {event!r}"
    assert spec.task_id not in m, f"{name}: the record must end"
    assert record is not None and record.mstate == final
    # Nothing left counted as in flight: every live state's count went back to 0.
    for row in m.counts.counts.values():
        assert row[ST_ARGS] == row[ST_NODE] == row[ST_SUBMITTED] == 0, name


def test_cancel_errors_are_task_cancelled_error() -> None:
    m = tm.TaskManager()
    spec = _spec()
    m.submit(spec, [], 0, False)
    m.pushed(spec.task_id)
    fail = next(i for i in m.cancel(spec.task_id, False, True) if isinstance(i, tm.FailWith))
    assert type(fail.error) is rex.TaskCancelledError


def test_async_actor_cancel_is_caught_by_ray_task_error_and_task_cancelled_error() -> None:
    m = tm.TaskManager()
    spec = _spec(actor=True)
    m.submit(spec, [], 0, False, "A", async_actor=True)
    m.pushed(spec.task_id)
    fail = next(i for i in m.cancel(spec.task_id, False, True) if isinstance(i, tm.FailWith))
    assert isinstance(fail.error, rex.RayTaskError)
    assert isinstance(fail.error, rex.TaskCancelledError)
    again = serialization.deserialize(*_error_entry(fail.error)[1][1:])
    assert isinstance(again, rex.RayTaskError) and isinstance(again, rex.TaskCancelledError)


def test_force_cancel_of_an_actor_call_is_refused_and_changes_nothing() -> None:
    m = tm.TaskManager()
    spec = _spec(actor=True)
    m.submit(spec, [], 0, False, "A")
    with pytest.raises(ValueError, match="force=True is not supported for actor tasks"):
        m.cancel(spec.task_id, True, True)
    record = m.record(spec.task_id)
    assert record is not None and not record.cancelled


def test_cancel_of_an_unknown_task_does_nothing() -> None:
    assert tm.TaskManager().cancel(b"x" * 16, True, True) == []


def test_cancelled_task_is_not_retried_after_its_worker_dies() -> None:
    m = tm.TaskManager()
    spec = _spec()
    m.submit(spec, [b"dep"], 5, True)
    m.pushed(spec.task_id)
    m.cancel(spec.task_id, False, True)
    assert _kinds(m.worker_died(spec, ConnectionError("x"))) == ["Release"]
    assert spec.task_id not in m


def test_no_pins_no_release() -> None:
    m = tm.TaskManager()
    spec = _spec()
    m.submit(spec, [], 0, False)
    m.pushed(spec.task_id)
    assert _kinds(m.reply(spec, _reply("ok"))) == ["StoreReturns"]


def test_recursive_cancel_reaches_only_the_parents_children() -> None:
    m = tm.TaskManager()
    parent = b"P" * 16
    queued = _spec(parent=parent)
    pushed = _spec(parent=parent)
    call = _spec(parent=parent, actor=True)
    stranger = _spec(parent=b"Q" * 16)
    for s in (queued, pushed, call, stranger):
        m.submit(s, [], 3, False, "A")
    m.pushed(pushed.task_id)
    m.pushed(call.task_id)
    out = m.cancel_children(parent, force=True)
    sends = {i.spec.task_id: i for i in out if isinstance(i, tm.SendCancel)}
    # force reaches the normal task; an actor call is never force-cancelled (as in Ray)
    assert sends[pushed.task_id].force is True and sends[pushed.task_id].recursive is True
    assert sends[call.task_id].force is False
    failed = {i.spec.task_id for i in out if isinstance(i, tm.FailWith)}
    assert failed == {queued.task_id, pushed.task_id, call.task_id}
    assert stranger.task_id in m and queued.task_id not in m


def test_retry_bumps_the_attempt_and_counts_the_failed_attempt() -> None:
    m = tm.TaskManager()
    spec = _spec()
    m.submit(spec, [], 1, False)
    m.pushed(spec.task_id)
    out = m.worker_died(spec, ConnectionError("x"))
    again = next(i for i in out if isinstance(i, tm.SubmitToScheduler)).spec
    assert again.attempt == 1
    assert m.counts.counts[("f", False)][ST_FAILED] == 1
    assert m.counts.counts[("f", True)][ST_NODE] == 1
    assert m.counts.retries == 1


def test_actor_call_resent_spends_retries_and_refuses_cancelled_calls() -> None:
    m = tm.TaskManager()
    spec = _spec(actor=True)
    m.submit(spec, [], 1, False, "A")
    m.pushed(spec.task_id)
    assert m.actor_call_resent(spec.task_id) is True
    assert m.actor_call_resent(spec.task_id) is False  # none left
    assert m.counts.retries == 1  # the owner's count of attempts after the first
    other = _spec(actor=True)
    m.submit(other, [], 5, False, "A")
    m.cancel(other.task_id, False, True)
    assert m.actor_call_resent(other.task_id) is False


def test_answers_for_an_older_attempt_are_ignored() -> None:
    m = tm.TaskManager()
    spec = _spec()
    m.submit(spec, [b"dep"], 3, False)
    m.pushed(spec.task_id)
    retry = m.worker_died(spec, ConnectionError("lost"))
    second = next(i for i in retry if isinstance(i, tm.SubmitToScheduler)).spec
    m.pushed(spec.task_id)
    # The first attempt's worker answers (or fails) late: no second retry, no early end.
    assert m.worker_died(spec, ConnectionError("again")) == []
    assert m.reply(spec, _reply("ok")) == []
    assert _kinds(m.reply(second, _reply("ok"))) == ["Release", "StoreReturns"]
