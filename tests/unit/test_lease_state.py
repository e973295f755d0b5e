"""The owner's lease state machine, with no processes and no sockets: event sequences in,
instructions out (``rayops/core_worker/lease_state.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest

from rayops import exceptions as rex
from rayops.core_worker import lease_state as ls
from rayops.protocol.task_messages import TaskReply, TaskSpec
from rayops.scheduling.labels import parse_label_selector
from rayops.scheduling.strategy import scoped_strategy
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy

OWNER = ("127.0.0.1", 1)
FAR = ("127.0.0.2", 7002)  # another node's raylet
SLOW = 0.5  # a reply's run time: not pipelined
FAST = 0.0001  # pipelined


def spec(name: str, *, fn: bytes = b"f", strategy: Any = None, max_calls: int = 0) -> TaskSpec:
    return TaskSpec(
        task_id=name.encode(),
        job_id=1,
        name=name,
        function_id=fn,
        args=(),
        kwarg_names=(),
        num_returns=1,
        return_ids=(name.encode() + b"r",),
        owner=OWNER,
        resources={"CPU": 1.0},
        strategy=strategy,
        max_calls=max_calls,
    )


def reply(run_s: float = SLOW, *, exiting: bool = False) -> TaskReply:
    return TaskReply("ok", [], [], ("127.0.0.1", 2), run_s, 0, exiting)


CANCELLED = TaskReply("cancelled", [], [], ("127.0.0.1", 2), 0.0)


def grant(
    request_id: int,
    lease_id: int,
    node: str = "n1",
    conn: Any = "conn",
    now: float | None = None,
) -> ls.LeaseGranted:
    g = ls.Grant(lease_id, b"w%d" % lease_id, ("127.0.0.1", 3000 + lease_id), {}, node)
    return ls.LeaseGranted(request_id, g, raylet=f"raylet-{node}", conn=conn, now=now)


def queued(*names: str, **kw: Any) -> list[ls.TaskQueued]:
    return [ls.TaskQueued(spec(n, **kw)) for n in names]


def spread_queued(*names: str, now: float = 0.0) -> list[ls.TaskQueued]:
    return [ls.TaskQueued(spec(n, strategy="SPREAD"), now) for n in names]


@dataclass(frozen=True)
class Idle:
    """Stands for ``IdleTimerFired`` of the lease ``lease_id`` granted by node ``node``."""

    lease_id: int
    now: float
    node: str = "n1"


def name(lease: ls.Lease) -> Any:
    """A lease in the tables: its id, prefixed by its node unless that is n1."""
    return lease.lease_id if lease.node_id == "n1" else f"{lease.node_id}/{lease.lease_id}"


def show(ins: ls.Instruction) -> tuple[Any, ...]:
    """An instruction as a short comparable tuple."""
    if isinstance(ins, ls.RequestLease):
        return ("request", ins.request_id, ins.target, ins.spilled)
    if isinstance(ins, ls.PushTask):
        return ("push", name(ins.lease), ins.spec.name)
    if isinstance(ins, ls.ReturnLease):
        return ("return", name(ins.lease), ins.worker_ok)
    if isinstance(ins, ls.DropConnection):
        return ("drop", name(ins.lease))
    if isinstance(ins, ls.ArmIdleTimer):
        return ("arm", name(ins.lease), round(ins.at, 6))
    if isinstance(ins, ls.RetryLater):
        return ("retry", ins.delay)
    if isinstance(ins, ls.TaskFailed):
        return ("failed", ins.spec.name, type(ins.error).__name__)
    if isinstance(ins, ls.TaskDequeued):
        return ("dequeued", ins.spec.name)
    raise AssertionError(f"unexpected instruction {ins!r}")


Step = tuple[Any, list[tuple[Any, ...]]]


def run(steps: list[Step]) -> ls.LeaseState:
    """Feed each step's event(s); compare what comes out with the step's expectation."""
    machine = ls.LeaseState()
    seen: dict[tuple[str, int], ls.Lease] = {}  # every lease an instruction named
    for i, (events, expected) in enumerate(steps):
        events = events if isinstance(events, list) else [events]
        got = []
        for ev in events:
            if isinstance(ev, Idle):
                ev = ls.IdleTimerFired(seen[ev.node, ev.lease_id], ev.now)
            for ins in machine.handle(ev):
                lease = getattr(ins, "lease", None)
                if lease is not None:
                    seen[lease.node_id, lease.lease_id] = lease
                got.append(show(ins))
        assert got == expected, f"step {i} ({events!r}): got {got}, expected {expected}"
    return machine


IDLE = ls.LEASE_IDLE_S
SCENARIOS: dict[str, list[Step]] = {
    # Queued tasks of one key share a lease; a lease granted once nothing is queued goes back.
    "lease reused for queued tasks of the same key": [
        (queued("t1", "t2"), [("request", 1, None, False), ("request", 2, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.PushReplied(b"t1", reply(), now=1.0), [("push", 10, "t2")]),
        (grant(2, 11), [("return", 11, True)]),
        (ls.PushReplied(b"t2", reply(), now=2.0), [("arm", 10, 2.0 + IDLE)]),
        (queued("t3"), [("push", 10, "t3")]),
    ],
    # Idle for LEASE_IDLE_S: returned. Busy in between: the timer re-arms from the last idle.
    "idle lease returned": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.PushReplied(b"t1", reply(), now=1.0), [("arm", 10, 1.0 + IDLE)]),
        (queued("t2"), [("push", 10, "t2")]),
        (ls.PushReplied(b"t2", reply(), now=1.03), []),  # the timer is still armed
        (Idle(10, now=1.0 + IDLE), [("arm", 10, 1.03 + IDLE)]),
        (Idle(10, now=1.03 + IDLE), [("return", 10, True)]),
        (Idle(10, now=2.0), []),  # a stale timer of a returned lease
        (queued("t3"), [("request", 2, None, False)]),
    ],
    # Each raylet numbers its own leases: two leases may have one id.
    "lease ids are per raylet": [
        (queued("t1", "t2"), [("request", 1, None, False), ("request", 2, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (grant(2, 10, node="n2"), [("push", "n2/10", "t2")]),
        (ls.PushReplied(b"t1", reply(), now=1.0), [("arm", 10, 1.0 + IDLE)]),
        (ls.PushReplied(b"t2", reply(), now=1.01), [("arm", "n2/10", 1.01 + IDLE)]),
        (Idle(10, now=1.0 + IDLE), [("return", 10, True)]),
        (Idle(10, now=1.01 + IDLE, node="n2"), [("return", "n2/10", True)]),
    ],
    "idle timer of a busy lease does nothing": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.PushReplied(b"t1", reply(), now=1.0), [("arm", 10, 1.0 + IDLE)]),
        (queued("t2"), [("push", 10, "t2")]),
        (Idle(10, now=1.0 + IDLE), []),
        (ls.PushReplied(b"t2", reply(), now=3.0), [("arm", 10, 3.0 + IDLE)]),
    ],
    # The local raylet points at another node: ask that node's raylet, which must not spill.
    "spillback to another raylet": [
        (queued("t1"), [("request", 1, None, False)]),
        (ls.LeaseSpilled(1, "n2", FAR), [("request", 1, FAR, True)]),
        (grant(1, 20, node="n2"), [("push", "n2/20", "t1")]),
    ],
    # A failed push: the lease goes back as not reusable; queued work moves to other leases.
    "worker died mid-push": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (queued("t2"), [("request", 2, None, False)]),
        (ls.WorkerLost(b"t1"), [("return", 10, False)]),
        (ls.WorkerLost(b"t1"), []),  # reported twice: nothing more
        (grant(2, 11), [("push", 11, "t2")]),
    ],
    "every pipelined task of a lost worker is reported, the lease returned once": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.PushReplied(b"t1", reply(FAST), now=1.0), [("arm", 10, 1.0 + IDLE)]),
        (queued("t2", "t3"), [("push", 10, "t2"), ("push", 10, "t3")]),
        (ls.WorkerLost(b"t2"), [("return", 10, False)]),
        (ls.WorkerLost(b"t3"), []),
    ],
    # A dead node: its leases go back and their connections are dropped, so pushes fail over.
    "node dead": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10, node="n2"), [("push", "n2/10", "t1")]),
        (ls.NodesDead(frozenset({"n3"})), []),
        (ls.NodesDead(frozenset({"n2"})), [("return", "n2/10", False), ("drop", "n2/10")]),
        (ls.WorkerLost(b"t1"), []),
    ],
    "cancel of a queued task": [
        (queued("t1"), [("request", 1, None, False)]),
        (ls.CancelQueued(b"t1"), [("dequeued", "t1")]),
        (ls.CancelQueued(b"t1"), []),
        (grant(1, 10), [("return", 10, True)]),  # nothing left to run on it
    ],
    "cancel of a pushed task is not the queue's business": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.CancelQueued(b"t1"), []),
    ],
    # The worker may miss the interrupt and run on (a 60 s sleep): a fast task must not be
    # pipelined behind a cancelled one; the lease takes tasks again once it answers.
    "nothing is pipelined onto a lease whose in-flight task was cancelled": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.PushReplied(b"t1", reply(FAST), now=1.0), [("arm", 10, 1.0 + IDLE)]),
        (queued("t2"), [("push", 10, "t2")]),
        (ls.CancelPushed(b"t2"), []),
        (ls.CancelPushed(b"t2"), []),  # cancelled twice (force after all): counted once
        (ls.CancelPushed(b"t9"), []),  # not in flight (never pushed, or answered): nothing
        (queued("t3"), [("request", 2, None, False)]),  # fast, yet not behind t2
        (grant(2, 11), [("push", 11, "t3")]),
        (ls.PushReplied(b"t2", CANCELLED, now=2.0), []),  # its idle timer is still armed
        (queued("t4", "t5"), [("push", 10, "t4"), ("push", 10, "t5")]),  # pipelined again
    ],
    "a cancelled task's lost worker frees nothing twice": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.CancelPushed(b"t1"), []),
        (ls.WorkerLost(b"t1"), [("return", 10, False)]),
        (ls.CancelPushed(b"t1"), []),
        (queued("t2"), [("request", 2, None, False)]),
    ],
    # The policy refused (e.g. hard affinity to a dead node): every queued task of the key fails.
    "refused lease fails the key's queue": [
        (queued("t1", "t2"), [("request", 1, None, False), ("request", 2, None, False)]),
        (
            ls.LeaseRefused(1, "unschedulable", "node n9 is dead"),
            [
                ("failed", "t1", "TaskUnschedulableError"),
                ("failed", "t2", "TaskUnschedulableError"),
            ],
        ),
        (ls.LeaseRefused(2, "unschedulable", "node n9 is dead"), []),
    ],
    # A raylet that cannot be reached: back off, then ask again for what is queued then.
    "failed lease request backs off": [
        (queued("t1"), [("request", 1, None, False)]),
        (ls.LeaseRequestFailed(1, "ConnectionError()"), [("retry", ls.LEASE_RETRY_S)]),
        (queued("t2"), []),
        (
            ls.RetryDue(ls.key_of(spec("t1"))),
            [("request", 2, None, False), ("request", 3, None, False)],
        ),
    ],
    "a worker that cannot be reached is handed back": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10, conn=None), [("return", 10, False), ("request", 2, None, False)]),
    ],
    # Fast functions run up to PIPELINE_DEPTH deep on one lease.
    "pipelining of fast functions": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (queued("t2", "t3"), [("request", 2, None, False), ("request", 3, None, False)]),
        (ls.PushReplied(b"t1", reply(FAST), now=1.0), [("push", 10, "t2"), ("push", 10, "t3")]),
        (grant(2, 11), [("return", 11, True)]),
    ],
    # SPREAD: each lease request takes a task with it (the raylets' rotation places each
    # request on another node), so every node a request reaches runs at least its task;
    # tasks not bound to a request go round robin over the leases held.
    "SPREAD binds tasks to requests and deals the rest round robin": [
        (
            spread_queued(*[f"t{i}" for i in range(1, 21)]),
            [("request", i, None, False) for i in range(1, 17)],
        ),
        # A granted request makes room for another, which takes the next task with it.
        (grant(1, 10, now=0.001), [("push", 10, "t1"), ("request", 17, None, False)]),
        (ls.LeaseSpilled(2, "n2", FAR), [("request", 2, FAR, True)]),
        (
            grant(2, 11, node="n2", now=0.002),
            [("push", "n2/11", "t2"), ("request", 18, None, False)],
        ),
        # t1 was fast: the unbound t19 and t20 go one per lease per round.
        (
            ls.PushReplied(b"t1", reply(FAST), now=1.0),
            [("push", 10, "t19"), ("push", "n2/11", "t20")],
        ),
        # Nothing unbound is left: the idle local lease takes the oldest task bound to a
        # request its own raylet holds (never spilled, older than SPREAD_STEAL_S).
        (ls.PushReplied(b"t19", reply(FAST), now=1.001), [("push", 10, "t3")]),
        # Request 3 lost its task; its lease takes the next one its raylet holds.
        (grant(3, 12, now=1.002), [("push", 12, "t4")]),
    ],
    "SPREAD: a task bound to a request spilled elsewhere waits for that node": [
        (
            spread_queued("t1", "t2"),
            [("request", 1, None, False), ("request", 2, None, False)],
        ),
        (ls.LeaseSpilled(2, "n2", FAR), [("request", 2, FAR, True)]),
        (grant(1, 10, now=0.001), [("push", 10, "t1")]),
        (ls.PushReplied(b"t1", reply(), now=1.0), [("arm", 10, 1.0 + IDLE)]),
        (Idle(10, 1.0 + IDLE), [("return", 10, True)]),
        (grant(2, 11, node="n2", now=1.1), [("push", "n2/11", "t2")]),
    ],
    "SPREAD: a lease on the node a request was spilled to takes its task": [
        (spread_queued("t1"), [("request", 1, None, False)]),
        (ls.LeaseSpilled(1, "n2", FAR), [("request", 1, FAR, True)]),
        (grant(1, 11, node="n2", now=0.001), [("push", "n2/11", "t1")]),
        (spread_queued("t2", now=0.002), [("request", 2, None, False)]),
        (ls.LeaseSpilled(2, "n2", FAR), [("request", 2, FAR, True)]),
        (ls.PushReplied(b"t1", reply(), now=0.003), [("push", "n2/11", "t2")]),
        (grant(2, 12, node="n2", now=0.004), [("return", "n2/12", True)]),
    ],
    "SPREAD: a local lease waits SPREAD_STEAL_S before taking a task its raylet holds": [
        (spread_queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10, now=0.001), [("push", 10, "t1")]),
        (spread_queued("t2", now=0.002), [("request", 2, None, False)]),
        (
            ls.PushReplied(b"t1", reply(), now=0.005),
            [("arm", 10, round(0.002 + ls.SPREAD_STEAL_S, 6))],
        ),
        (Idle(10, 0.002 + ls.SPREAD_STEAL_S), [("push", 10, "t2")]),
        (grant(2, 11, now=0.03), [("return", 11, True)]),
    ],
    "SPREAD: a cancelled task leaves its request, whose lease goes back unused": [
        (spread_queued("t1"), [("request", 1, None, False)]),
        (ls.CancelQueued(b"t1"), [("dequeued", "t1")]),
        (grant(1, 10), [("return", 10, True)]),
    ],
    "SPREAD: a request that failed gives its task back to the queue": [
        (spread_queued("t1"), [("request", 1, None, False)]),
        (ls.LeaseRequestFailed(1, "ConnectionError()"), [("retry", ls.LEASE_RETRY_S)]),
        (ls.RetryDue(ls.key_of(spec("t1", strategy="SPREAD"))), [("request", 2, None, False)]),
        (grant(2, 10), [("push", 10, "t1")]),
    ],
    "SPREAD: a refusal fails the tasks bound to every request of the key": [
        (
            spread_queued("t1", "t2"),
            [("request", 1, None, False), ("request", 2, None, False)],
        ),
        (
            ls.LeaseRefused(2, "unschedulable", "no node has label x"),
            [
                ("failed", "t2", "TaskUnschedulableError"),
                ("failed", "t1", "TaskUnschedulableError"),
            ],
        ),
        (grant(1, 10), [("return", 10, True)]),
    ],
    "SPREAD: a worker that cannot be reached gives its task back": [
        (spread_queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10, conn=None), [("return", 10, False), ("request", 2, None, False)]),
        (grant(2, 11), [("push", 11, "t1")]),
    ],
    # max_calls: the worker's last reply says it exits; nothing more goes to it.
    "max_calls: an exiting worker's lease goes back not reusable": [
        (
            queued("t1", "t2", max_calls=1),
            [("request", 1, None, False), ("request", 2, None, False)],
        ),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.PushReplied(b"t1", reply(FAST, exiting=True), now=1.0), [("return", 10, False)]),
        (grant(2, 11), [("push", 11, "t2")]),
    ],
    "max_calls: never pipelined, the lease reused until the worker says it exits": [
        (queued("t1", max_calls=2), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (
            queued("t2", "t3", max_calls=2),
            [("request", 2, None, False), ("request", 3, None, False)],
        ),
        (ls.PushReplied(b"t1", reply(FAST), now=1.0), [("push", 10, "t2")]),
        (ls.PushReplied(b"t2", reply(FAST, exiting=True), now=1.1), [("return", 10, False)]),
        (grant(2, 11), [("push", 11, "t3")]),
        (grant(3, 12), [("return", 12, True)]),
    ],
    "shutdown returns every lease": [
        (queued("t1"), [("request", 1, None, False)]),
        (grant(1, 10), [("push", 10, "t1")]),
        (ls.ReturnAll(), [("return", 10, True)]),
    ],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_scenario(name: str) -> None:
    run(SCENARIOS[name])


def test_lease_of_follows_a_task_until_its_reply() -> None:
    m = run([(queued("t1"), [("request", 1, None, False)]), (grant(1, 10), [("push", 10, "t1")])])
    lease = m.lease_of(b"t1")
    assert lease is not None and lease.lease_id == 10 and lease.conn == "conn"
    assert [s.name for s in m.inflight()] == ["t1"]
    m.handle(ls.PushReplied(b"t1", reply(), now=1.0))
    assert m.lease_of(b"t1") is None and list(m.inflight()) == []


def test_keys_separate_what_must_not_share_a_worker() -> None:
    """Resources, strategy, label selector and max_calls each make their own key; tasks of
    different keys never run on one another's leases."""
    affinity = NodeAffinitySchedulingStrategy("n1", soft=False)
    selector_a = scoped_strategy(None, parse_label_selector({"zone": "a"}))
    selector_b = scoped_strategy(None, parse_label_selector({"zone": "b"}))
    variants = [
        spec("t"),
        spec("t", strategy="SPREAD"),
        spec("t", strategy=affinity),
        spec("t", strategy=selector_a),
        spec("t", strategy=selector_b),
        spec("t", max_calls=1),
        spec("t", max_calls=2),
        spec("t")._replace(resources={"CPU": 1.0, "GPU": 1.0}),
    ]
    assert len({ls.key_of(s) for s in variants}) == len(variants)
    assert ls.key_of(spec("t", fn=b"g")) == ls.key_of(spec("t"))  # the function does not matter
    assert ls.key_of(spec("t", strategy="DEFAULT")) == ls.key_of(spec("t"))

    m = ls.LeaseState()
    out = [show(i) for s in variants for i in m.handle(ls.TaskQueued(s))]
    assert out == [("request", i, None, False) for i in range(1, len(variants) + 1)]
    # A second task of a key asks for a second lease, with its key's strategy (the raylet's
    # policy decides with it).
    (req,) = m.handle(ls.TaskQueued(spec("u", strategy=affinity)))
    assert isinstance(req, ls.RequestLease) and req.strategy is affinity
    assert req.key == ls.key_of(variants[2]) and m.pending_requests(req.key) == 2


def test_request_carries_shape_strategy_and_argument_nodes() -> None:
    s = spec("t", strategy="SPREAD")._replace(args=(("s", b"obj", "n7"), ("v", None)))
    (req,) = ls.LeaseState().handle(ls.TaskQueued(s))
    assert isinstance(req, ls.RequestLease)
    assert (req.resources, req.strategy, req.preferred) == ({"CPU": 1.0}, "SPREAD", ("n7",))


def test_at_most_four_lease_requests_per_key_sixteen_for_spread() -> None:
    m = ls.LeaseState()
    plain = [i for n in range(10) for i in m.handle(ls.TaskQueued(spec(f"p{n}")))]
    spread = [
        i for n in range(20) for i in m.handle(ls.TaskQueued(spec(f"s{n}", strategy="SPREAD")))
    ]
    assert len(plain) == ls.MAX_PENDING_LEASE_REQUESTS
    assert len(spread) == ls.SPREAD_PENDING_LEASE_REQUESTS


def test_refusal_error_names_the_reason() -> None:
    m = ls.LeaseState()
    m.handle(ls.TaskQueued(spec("t")))
    (failed,) = m.handle(ls.LeaseRefused(1, "unschedulable", "node n9 is dead; use soft=True"))
    assert isinstance(failed, ls.TaskFailed)
    assert isinstance(failed.error, rex.TaskUnschedulableError)
    assert "node n9 is dead" in str(failed.error)


def test_a_shape_leaves_no_entry_once_its_last_lease_goes() -> None:
    """Per-key state lives while the key has queued tasks, leases, requests or pushes; the
    last idle lease (or a late grant with nothing to run) takes the entry with it."""
    m = run(
        [
            (queued("t1", "t2"), [("request", 1, None, False), ("request", 2, None, False)]),
            (grant(1, 10), [("push", 10, "t1")]),
            (ls.PushReplied(b"t1", reply(), now=1.0), [("push", 10, "t2")]),
            (ls.PushReplied(b"t2", reply(), now=2.0), [("arm", 10, 2.0 + IDLE)]),
            (Idle(10, 2.0 + IDLE), [("return", 10, True)]),
        ]
    )
    assert m.table_sizes()["keys"] == 1  # request 2 is still out
    m.handle(grant(2, 11))
    assert m.table_sizes() == {
        "pushed": 0, "queued": 0, "keys": 0, "requests": 0, "leases": 0, "cancelled": 0
    }  # fmt: skip
    # The same shape later starts afresh.
    assert [show(i) for i in m.handle(ls.TaskQueued(spec("t3")))] == [("request", 3, None, False)]
