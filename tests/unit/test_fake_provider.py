"""The fake node provider keeps the NodeProvider guarantees, and the autoscaler's pure parts
driven against it (decide -> reconcile -> provider -> observe, on a manual clock) scale a
cluster up and back down, retry a failing launch, and resume after a restart without
launching twice."""

from __future__ import annotations

import pytest

from rayops.autoscaler.decide import decide
from rayops.autoscaler.instances import (
    Action,
    Instance,
    LaunchNodes,
    LaunchRequested,
    ProviderFailed,
    Provision,
    ProvisionFailed,
    RayNodeRegistered,
    Resume,
    RetryPolicy,
    TerminateNodes,
    TerminateRequested,
    Tick,
    from_json,
    observe,
    reconcile_all,
    to_json,
)
from rayops.autoscaler.types import (
    AutoscalerConfig,
    BundleDemand,
    Demand,
    NodeTypeConfig,
    NodeView,
    ResourceDemand,
)
from rayops.providers.base import TAG_NODE_TYPE, TAG_REQUEST, TAG_ROLE
from rayops.testing.fake_provider import FakeClock, FakeProvider

TYPES = {"head": NodeTypeConfig("head", {"CPU": 2}), "cpu": NodeTypeConfig("cpu", {"CPU": 4})}


def test_launch_is_idempotent_by_request_id() -> None:
    p = FakeProvider(TYPES)
    p.launch("cpu", 2, "r1")
    p.launch("cpu", 2, "r1")
    assert sorted(p.non_terminated()) == ["fake-1", "fake-2"]
    assert p.launched("r1") == 2 and len(p.launch_calls) == 2
    m = p.non_terminated()["fake-1"]
    assert (m.node_type, m.request_id, m.running, m.internal_ip) == ("cpu", "r1", True, "10.0.0.2")
    assert m.tags[TAG_REQUEST] == "r1" and m.tags[TAG_NODE_TYPE] == "cpu"
    assert m.tags[TAG_ROLE] == "worker"


def test_listing_lags_behind_launch_and_terminate_by_the_delays() -> None:
    clock = FakeClock()
    p = FakeProvider(TYPES, launch_delay_s=10, terminate_delay_s=5, clock=clock)
    p.launch("cpu", 1, "r")
    assert p.non_terminated() == {} and list(p.alive()) == ["fake-1"]
    clock.advance(10)
    assert list(p.non_terminated()) == ["fake-1"]
    p.terminate(["fake-1"], "t")
    assert list(p.non_terminated()) == ["fake-1"] and p.alive() == {}
    clock.advance(5)
    assert p.non_terminated() == {}


def test_failures_are_values_reported_once() -> None:
    clock = FakeClock(50.0)
    p = FakeProvider(TYPES, fail_next={"cpu": 1}, capacity={"cpu": 2}, clock=clock)
    p.launch("cpu", 3, "r1")  # one injected failure, two made
    p.launch("cpu", 1, "r2")  # over capacity
    errors = p.poll_errors()
    assert [(e.kind, e.request_id, e.count, e.timestamp) for e in errors] == [
        ("launch", "r1", 1, 50.0),
        ("launch", "r2", 1, 50.0),
    ]
    assert "injected" in errors[0].cause and "capacity" in errors[1].cause
    assert p.poll_errors() == []
    p.fail_next_terminate("throttled")
    p.terminate(["fake-1"], "t1")
    (err,) = p.poll_errors()
    assert (err.kind, err.node_ids, err.cause) == ("terminate", ("fake-1",), "throttled")
    assert "fake-1" in p.non_terminated()
    p.terminate(["fake-1", "nope"], "t2")  # an unknown id is a no-op
    p.terminate(["fake-1"], "t3")  # again: a no-op
    assert "fake-1" not in p.non_terminated() and p.poll_errors() == []


def test_programming_errors_raise_at_once() -> None:
    p = FakeProvider(TYPES)
    with pytest.raises(ValueError, match="unknown node type 'tpu'"):
        p.launch("tpu", 1, "r")
    with pytest.raises(ValueError, match="count must be >= 0"):
        p.launch("cpu", -1, "r")
    with pytest.raises(ValueError, match="only moves forward"):
        FakeClock().advance(-1)


def test_tags_merge_and_the_head_is_listed() -> None:
    p = FakeProvider(TYPES)
    head = p.add_machine("head", role="head")
    p.set_tags(head, {"x": "1"})
    p.set_tags("unknown", {"x": "1"})  # a no-op
    m = p.non_terminated()[head]
    assert m.role == "head" and m.tags["x"] == "1" and m.tags[TAG_ROLE] == "head"


# --- the pure parts driven against the fake -----------------------------------------------


class Sim:
    """What the head-side shell does, with the fake provider and a simulated GCS: each
    ``round`` decides, reconciles, carries the actions out and observes the provider."""

    def __init__(self, provider: FakeProvider, clock: FakeClock, config: AutoscalerConfig):
        self.p, self.clock, self.config = provider, clock, config
        self.policy = RetryPolicy.from_config(config)
        self.table: dict[str, Instance] = {}
        self.busy: dict[str, float] = {}  # instance id -> CPUs in use on its node
        self.idle_since: dict[str, float] = {}
        self.fail_provision: set[str] = set()  # ips whose provisioning fails
        self.actions: list[Action] = []
        self.rounds = 0

    def nodes(self) -> list[NodeView]:
        out = [NodeView("head", None, "head", {"CPU": 2}, {"CPU": 0}, is_head=True)]
        for inst in self.table.values():
            if inst.state in ("running", "terminating") and inst.node_id:
                used = self.busy.get(inst.instance_id, 0.0)
                idle = 0.0 if used else self.clock() - self.idle_since.get(inst.instance_id, 0)
                out.append(
                    NodeView(
                        inst.node_id, inst.instance_id, "cpu", {"CPU": 4}, {"CPU": 4 - used}, idle
                    )
                )
        return out

    def round(self, demand: Demand) -> None:
        now = self.clock()
        self.rounds += 1
        d = decide(demand, self.nodes(), self.table, self.config, now)
        events: list = [
            LaunchRequested(t, n, f"d{self.rounds}-{t}", now) for t, n in d.launch.items()
        ]
        events += [TerminateRequested(i, why, now) for i, why in d.terminate]
        events += [ProviderFailed(e, now) for e in self.p.poll_errors()]
        events += observe(self.table, self.p.non_terminated(), now)
        events.append(Tick(now))
        self.apply(events)

    def apply(self, events: list) -> None:
        now = self.clock()
        while events:
            self.table, actions = reconcile_all(self.table, events, self.policy)
            self.actions += actions
            events = []  # what carrying the actions out reports back
            for a in actions:
                if isinstance(a, LaunchNodes):
                    self.p.launch(a.node_type, a.count, a.request_id)
                elif isinstance(a, TerminateNodes):
                    self.p.terminate(a.ids, a.request_id)
                elif isinstance(a, Provision) and a.ip in self.fail_provision:
                    events.append(ProvisionFailed(a.instance_id, f"{a.ip}: exit 1", now))
                elif isinstance(a, Provision):
                    events.append(RayNodeRegistered(a.instance_id, f"node-{a.ip}", now))
                    self.idle_since[a.instance_id] = now

    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for inst in self.table.values():
            out[inst.state] = out.get(inst.state, 0) + 1
        return out


def _sim(**config: float) -> tuple[Sim, FakeProvider, FakeClock]:
    clock = FakeClock(0.0)
    provider = FakeProvider(TYPES, launch_delay_s=3.0, terminate_delay_s=2.0, clock=clock)
    args: dict = {"max_workers": 10, "idle_timeout_s": 60.0, **config}
    return Sim(provider, clock, AutoscalerConfig(TYPES, "head", **args)), provider, clock


def _run(sim: Sim, demand: Demand, seconds: float) -> None:
    for _ in range(int(seconds)):
        sim.round(demand)
        sim.clock.advance(1.0)


def test_scale_up_for_a_queue_then_down_after_the_idle_timeout() -> None:
    sim, provider, clock = _sim()
    queue = Demand(tasks=(ResourceDemand({"CPU": 1}, 10),))
    _run(sim, queue, 10)
    assert sim.states() == {"running": 3}  # 10 CPUs of demand on 4-CPU nodes
    assert len(provider.alive()) == 3
    assert sum(c.count for c in provider.launch_calls) == 3  # no launch repeated
    for iid in sim.table:
        sim.busy[iid] = 4.0
    _run(sim, Demand(), 30)  # busy: nothing goes
    assert len(provider.alive()) == 3
    sim.busy.clear()
    for iid in sim.table:
        sim.idle_since[iid] = clock()
    _run(sim, Demand(), 59)
    assert len(provider.alive()) == 3
    _run(sim, Demand(), 10)  # past the 60 s timeout (plus the terminate lag)
    assert provider.alive() == {} and sim.states() == {"terminated": 3}


def test_strict_spread_of_three_launches_three_nodes_and_places_on_distinct_ones() -> None:
    sim, provider, _ = _sim()
    pg = Demand(groups=(BundleDemand(({"CPU": 1},) * 3, "STRICT_SPREAD"),))
    _run(sim, pg, 8)
    assert sim.states() == {"running": 3} and len(provider.alive()) == 3


def test_a_failing_launch_is_retried_with_backoff_and_reported() -> None:
    sim, provider, _ = _sim(retry_backoff_s=2.0, launch_retries=3)
    provider.fail_next_launch("cpu", 2, "InsufficientCapacity in zone a")
    _run(sim, Demand(tasks=(ResourceDemand({"CPU": 4}, 1),)), 15)
    assert sim.states() == {"running": 1}
    (inst,) = sim.table.values()
    assert (
        inst.attempt == 3
        and [f.cause for f in inst.causes] == ["launch failed: InsufficientCapacity in zone a"] * 2
    )
    calls = [(c.request_id, c.at) for c in provider.launch_calls]
    assert calls[1][1] - calls[0][1] >= 2.0 and calls[2][1] - calls[1][1] >= 4.0  # doubling
    assert any("retrying in 2s" in getattr(a, "message", "") for a in sim.actions)


def test_a_host_that_fails_provisioning_is_retired_and_another_is_used() -> None:
    sim, provider, _ = _sim()
    sim.fail_provision.add("10.0.0.2")  # the first machine the fake makes
    _run(sim, Demand(tasks=(ResourceDemand({"CPU": 4}, 1),)), 15)
    running = [i for i in sim.table.values() if i.state == "running"]
    assert len(running) == 1 and running[0].ip != "10.0.0.2"
    assert "provisioning failed: 10.0.0.2: exit 1" in running[0].causes[0].cause
    assert "fake-1" not in provider.alive()  # the failed host was released


def test_a_restart_from_the_stored_table_does_not_launch_twice() -> None:
    sim, provider, clock = _sim()
    queue = Demand(tasks=(ResourceDemand({"CPU": 4}, 2),))
    sim.round(queue)  # launches 2; the machines are not listed yet (3 s lag)
    assert sum(c.count for c in provider.launch_calls) == 2
    stored = to_json(sim.table)
    # the autoscaler process dies; a new one loads the table and resumes
    sim2 = Sim(provider, clock, sim.config)
    sim2.table = from_json(stored)
    sim2.apply([Resume(clock())])
    _run(sim2, queue, 10)
    assert len(provider.alive()) == 2  # the replayed launch used the same request id
    assert sim2.states() == {"running": 2}
