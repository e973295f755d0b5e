"""The instance state machine as tables: events in, records and actions out
(rayops.autoscaler.instances; no processes, no clock but the events' ``now``)."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from rayops.autoscaler.instances import (
    STATES,
    TRANSITIONS,
    Action,
    CloudInstanceGone,
    CloudInstanceSeen,
    Event,
    Instance,
    LaunchNodes,
    LaunchRequested,
    ProviderFailed,
    Provision,
    ProvisionFailed,
    ProvisionStarted,
    RayNodeRegistered,
    Report,
    Resume,
    RetryPolicy,
    TerminateNodes,
    TerminateRequested,
    Tick,
    from_json,
    observe,
    pending_counts,
    reconcile,
    reconcile_all,
    to_json,
)
from rayops.autoscaler.types import AutoscalerConfig, NodeTypeConfig
from rayops.providers.base import TAG_ROLE, CloudInstance, ProviderError

POLICY = RetryPolicy(launch_retries=2, retry_backoff_s=5.0, reissue_after_s=30.0)


def machine(
    n: int, request: str = "r", node_type: str = "cpu", running: bool = True, ip: str = ""
) -> CloudInstance:
    return CloudInstance(f"c{n}", node_type, request, ip or f"10.0.0.{n}", "", {}, running)


def launch_err(
    request: str, count: int = 1, cause: str = "quota exceeded", now: float = 0.0
) -> ProviderFailed:
    return ProviderFailed(ProviderError("launch", request, cause, now, "cpu", count), now)


def states(table: dict[str, Instance]) -> dict[str, str]:
    return {k: v.state for k, v in sorted(table.items())}


def non_reports(actions: list[Action]) -> list[Action]:
    return [a for a in actions if not isinstance(a, Report)]


@dataclass
class Step:
    event: Event
    states: dict[str, str]
    actions: list[Action]


# One table per story: each step's event, then the states of every record and the actions
# other than Reports (Reports are checked where they matter).
STORIES: dict[str, list[Step]] = {
    "launch, machine up, provisioned, node joins": [
        Step(
            LaunchRequested("cpu", 2, "r", 0.0),
            {"r/0": "launching", "r/1": "launching"},
            [LaunchNodes("cpu", 2, "r")],
        ),
        Step(LaunchRequested("cpu", 2, "r", 1.0), {"r/0": "launching", "r/1": "launching"}, []),
        Step(
            CloudInstanceSeen(machine(1, running=False), 2.0),
            {"r/0": "launching", "r/1": "launching"},
            [],
        ),
        Step(
            CloudInstanceSeen(machine(1), 3.0),
            {"r/0": "provisioning", "r/1": "launching"},
            [Provision("r/0", "10.0.0.1", "cpu")],
        ),
        Step(ProvisionStarted("r/0", 3.5), {"r/0": "provisioning", "r/1": "launching"}, []),
        Step(
            RayNodeRegistered("r/0", "node-a", 4.0),
            {"r/0": "running", "r/1": "launching"},
            [],
        ),
        Step(
            CloudInstanceSeen(machine(2), 5.0),
            {"r/0": "running", "r/1": "provisioning"},
            [Provision("r/1", "10.0.0.2", "cpu")],
        ),
    ],
    "a launch the provider fails is retried with backoff, then given up": [
        Step(
            LaunchRequested("cpu", 1, "r", 0.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r")]
        ),
        Step(launch_err("r"), {"r/0": "requested"}, []),
        Step(Tick(4.9), {"r/0": "requested"}, []),  # due at 0 + 5
        Step(Tick(5.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r/0#2")]),
        Step(launch_err("r/0#2", now=5.0), {"r/0": "requested"}, []),
        Step(Tick(14.9), {"r/0": "requested"}, []),  # due at 5 + 10: the backoff doubled
        Step(Tick(15.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r/0#3")]),
        Step(launch_err("r/0#3", now=15.0), {"r/0": "failed"}, []),  # 1 + 2 retries used
        Step(Tick(500.0), {"r/0": "failed"}, []),
    ],
    "a launch failure with other capacity in the provider is retried at once": [
        Step(
            LaunchRequested("cpu", 1, "r", 0.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r")]
        ),
        Step(
            ProviderFailed(
                ProviderError("launch", "r", "h2 down", 3.0, "cpu", 1, retry_now=True), 3.0
            ),
            {"r/0": "requested"},
            [],
        ),
        Step(Tick(3.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r/0#2")]),  # no backoff
        # Without other capacity the next failure waits the (doubled) backoff again.
        Step(launch_err("r/0#2", now=4.0), {"r/0": "requested"}, []),
        Step(Tick(13.9), {"r/0": "requested"}, []),
        Step(Tick(14.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r/0#3")]),
    ],
    "a provisioning failure retires the machine and retries on a new one": [
        Step(
            LaunchRequested("cpu", 1, "r", 0.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r")]
        ),
        Step(
            CloudInstanceSeen(machine(1), 1.0),
            {"r/0": "provisioning"},
            [Provision("r/0", "10.0.0.1", "cpu")],
        ),
        Step(
            ProvisionFailed("r/0", "apt-get exited 100", 2.0),
            {"r/0": "requested", "r/0#1": "terminating"},
            [TerminateNodes(("c1",), "terminate/r/0#1")],
        ),
        Step(CloudInstanceGone("c1", 3.0), {"r/0": "requested", "r/0#1": "terminated"}, []),
        Step(
            Tick(7.0), {"r/0": "launching", "r/0#1": "terminated"}, [LaunchNodes("cpu", 1, "r/0#2")]
        ),
        Step(
            CloudInstanceSeen(machine(2, "r/0#2"), 8.0),
            {"r/0": "provisioning", "r/0#1": "terminated"},
            [Provision("r/0", "10.0.0.2", "cpu")],
        ),
        Step(
            RayNodeRegistered("r/0", "node-b", 9.0), {"r/0": "running", "r/0#1": "terminated"}, []
        ),
    ],
    "provisioning failing on every try ends failed once its machine is gone": [
        Step(
            LaunchRequested("cpu", 1, "r", 0.0), {"r/0": "launching"}, [LaunchNodes("cpu", 1, "r")]
        ),
        Step(
            CloudInstanceSeen(machine(1), 0.0),
            {"r/0": "provisioning"},
            [Provision("r/0", "10.0.0.1", "cpu")],
        ),
        Step(
            ProvisionFailed("r/0", "boom", 0.0),
            {"r/0": "requested", "r/0#1": "terminating"},
            [TerminateNodes(("c1",), "terminate/r/0#1")],
        ),
        Step(
            Tick(5.0),
            {"r/0": "launching", "r/0#1": "terminating"},
            [LaunchNodes("cpu", 1, "r/0#2")],
        ),
        Step(
            CloudInstanceSeen(machine(2, "r/0#2"), 5.0),
            {"r/0": "provisioning", "r/0#1": "terminating"},
            [Provision("r/0", "10.0.0.2", "cpu")],
        ),
        Step(
            ProvisionFailed("r/0", "boom", 5.0),
            {"r/0": "requested", "r/0#1": "terminating", "r/0#2": "terminating"},
            [TerminateNodes(("c2",), "terminate/r/0#2")],
        ),
        Step(
            Tick(15.0),
            {"r/0": "launching", "r/0#1": "terminating", "r/0#2": "terminating"},
            [LaunchNodes("cpu", 1, "r/0#3")],
        ),
        Step(
            CloudInstanceSeen(machine(3, "r/0#3"), 15.0),
            {"r/0": "provisioning", "r/0#1": "terminating", "r/0#2": "terminating"},
            [Provision("r/0", "10.0.0.3", "cpu")],
        ),
        Step(
            ProvisionFailed("r/0", "boom", 16.0),
            {"r/0": "terminating", "r/0#1": "terminating", "r/0#2": "terminating"},
            [TerminateNodes(("c3",), "terminate/r/0")],
        ),
        Step(
            CloudInstanceGone("c3", 17.0),
            {"r/0": "failed", "r/0#1": "terminating", "r/0#2": "terminating"},
            [],
        ),
    ],
    "terminate: before launch, while launching, running; a vanished machine": [
        Step(
            LaunchRequested("cpu", 3, "r", 0.0),
            {"r/0": "launching", "r/1": "launching", "r/2": "launching"},
            [LaunchNodes("cpu", 3, "r")],
        ),
        Step(
            CloudInstanceSeen(machine(1), 1.0),
            {"r/0": "provisioning", "r/1": "launching", "r/2": "launching"},
            [Provision("r/0", "10.0.0.1", "cpu")],
        ),
        Step(
            RayNodeRegistered("r/0", "n0", 2.0),
            {"r/0": "running", "r/1": "launching", "r/2": "launching"},
            [],
        ),
        Step(
            TerminateRequested("r/0", "idle", 3.0),
            {"r/0": "terminating", "r/1": "launching", "r/2": "launching"},
            [TerminateNodes(("c1",), "terminate/r/0")],
        ),
        Step(
            TerminateRequested("r/1", "no longer needed", 3.0),
            {"r/0": "terminating", "r/1": "terminating", "r/2": "launching"},
            [],
        ),
        # the machine of r/1's request shows up: it is bound to r/1 and terminated
        Step(
            CloudInstanceSeen(machine(2), 4.0),
            {"r/0": "terminating", "r/1": "terminating", "r/2": "launching"},
            [TerminateNodes(("c2",), "terminate/r/1")],
        ),
        Step(
            CloudInstanceGone("c1", 5.0),
            {"r/0": "terminated", "r/1": "terminating", "r/2": "launching"},
            [],
        ),
        Step(
            CloudInstanceSeen(machine(3), 6.0),
            {"r/0": "terminated", "r/1": "terminating", "r/2": "provisioning"},
            [Provision("r/2", "10.0.0.3", "cpu")],
        ),
        Step(
            RayNodeRegistered("r/2", "n2", 7.0),
            {"r/0": "terminated", "r/1": "terminating", "r/2": "running"},
            [],
        ),
        Step(
            CloudInstanceGone("c3", 8.0),
            {"r/0": "terminated", "r/1": "terminating", "r/2": "terminated"},
            [],
        ),
    ],
}


@pytest.mark.parametrize("story", list(STORIES), ids=list(STORIES))
def test_story_table(story: str) -> None:
    table: dict[str, Instance] = {}
    for n, step in enumerate(STORIES[story]):
        table, actions = reconcile(table, step.event, POLICY)
        where = f"{story}, step {n}: {step.event}"
        assert states(table) == step.states, where
        assert non_reports(actions) == step.actions, where


def test_failure_causes_are_kept_and_reported() -> None:
    table, actions = reconcile({}, LaunchRequested("cpu", 1, "r", 0.0), POLICY)
    for ev_now, cause in [(0.0, "quota exceeded"), (5.0, "no capacity")]:
        err = launch_err(table["r/0"].request_id, 1, cause, ev_now)
        table, actions = reconcile(table, err, POLICY)
        assert any(isinstance(a, Report) and cause in a.message for a in actions)
        table, _ = reconcile(table, Tick(ev_now + 100), POLICY)
    inst = table["r/0"]
    assert [(f.cause, f.attempt) for f in inst.causes] == [
        ("launch failed: quota exceeded", 1),
        ("launch failed: no capacity", 2),
    ]
    assert inst.failed_cause == "launch failed: no capacity"


def test_the_status_of_a_record_given_up_says_why() -> None:
    policy = RetryPolicy(launch_retries=0)
    table, _ = reconcile({}, LaunchRequested("cpu", 1, "r", 0.0), policy)
    table, actions = reconcile(table, launch_err("r", 1, "InsufficientInstanceCapacity"), policy)
    assert table["r/0"].state == "failed"
    assert "gave up after 1 attempts" in table["r/0"].reason
    assert any(
        "InsufficientInstanceCapacity" in a.message for a in actions if isinstance(a, Report)
    )


def test_a_launch_with_no_machine_is_reissued_with_the_same_request_then_times_out() -> None:
    policy = RetryPolicy(reissue_after_s=30.0, launch_timeout_s=100.0)
    table, _ = reconcile({}, LaunchRequested("cpu", 2, "r", 0.0), policy)
    table, actions = reconcile(table, Tick(29.0), policy)
    assert actions == []
    table, actions = reconcile(table, Tick(30.0), policy)
    assert actions == [LaunchNodes("cpu", 2, "r")]  # same id: the provider makes no more
    table, actions = reconcile(table, CloudInstanceSeen(machine(1), 31.0), policy)
    table, actions = reconcile(table, Tick(61.0), policy)
    assert actions == [LaunchNodes("cpu", 1, "r")]  # only the one still without a machine
    table, actions = reconcile(table, Tick(100.0), policy)
    assert table["r/1"].state == "requested" and table["r/1"].attempt == 2
    assert "no machine appeared within 100s" in table["r/1"].causes[0].cause


def test_provisioning_that_never_ends_fails_after_its_timeout() -> None:
    policy = RetryPolicy(provision_timeout_s=50.0)
    table, _ = reconcile_all(
        {},
        [LaunchRequested("cpu", 1, "r", 0.0), CloudInstanceSeen(machine(1), 1.0)],
        policy,
    )
    table, actions = reconcile(table, ProvisionStarted("r/0", 10.0), policy)
    table, actions = reconcile(table, Tick(59.0), policy)
    assert table["r/0"].state == "provisioning" and actions == []
    table, actions = reconcile(table, Tick(60.0), policy)
    assert table["r/0"].state == "requested"
    assert TerminateNodes(("c1",), "terminate/r/0#1") in actions


def test_a_failed_terminate_is_retried_after_the_backoff() -> None:
    table, _ = reconcile_all(
        {},
        [
            LaunchRequested("cpu", 1, "r", 0.0),
            CloudInstanceSeen(machine(1), 0.0),
            RayNodeRegistered("r/0", "n", 0.0),
            TerminateRequested("r/0", "idle", 10.0),
        ],
        POLICY,
    )
    err = ProviderError("terminate", "terminate/r/0", "API throttled", 10.0, node_ids=("c1",))
    table, actions = reconcile(table, ProviderFailed(err, 10.0), POLICY)
    assert [type(a) for a in actions] == [Report]
    table, actions = reconcile(table, Tick(14.0), POLICY)
    assert actions == []
    table, actions = reconcile(table, Tick(15.0), POLICY)
    assert actions == [TerminateNodes(("c1",), "terminate/r/0")]


def test_a_running_machine_that_vanishes_is_reported() -> None:
    table, _ = reconcile_all(
        {},
        [
            LaunchRequested("cpu", 1, "r", 0.0),
            CloudInstanceSeen(machine(1), 0.0),
            RayNodeRegistered("r/0", "n", 0.0),
        ],
        POLICY,
    )
    table, actions = reconcile(table, CloudInstanceGone("c1", 5.0), POLICY)
    assert table["r/0"].state == "terminated"
    assert "disappeared while running" in table["r/0"].reason
    assert [type(a) for a in actions] == [Report]


def test_an_unknown_worker_machine_is_adopted_and_the_head_is_not() -> None:
    head = CloudInstance("h", "head", "", "10.0.0.9", "", {TAG_ROLE: "head"}, True)
    table, actions = reconcile({}, CloudInstanceSeen(head, 0.0), POLICY)
    assert table == {} and actions == []
    table, actions = reconcile({}, CloudInstanceSeen(machine(4, "lost"), 0.0), POLICY)
    assert states(table) == {"adopted/c4": "provisioning"}
    assert non_reports(actions) == [Provision("adopted/c4", "10.0.0.4", "cpu")]
    again, actions = reconcile(table, CloudInstanceSeen(machine(4, "lost"), 1.0), POLICY)
    assert again == table and actions == []


def test_events_for_records_that_moved_on_change_nothing_and_unknown_ones_are_reported() -> None:
    table, _ = reconcile({}, LaunchRequested("cpu", 1, "r", 0.0), POLICY)
    for stale in (ProvisionFailed("r/0", "late", 1.0), ProvisionStarted("r/0", 1.0)):
        after, actions = reconcile(table, stale, POLICY)
        assert after == table and actions == []
    for unknown in (
        ProvisionFailed("zz", "x", 1.0),
        RayNodeRegistered("zz", "n", 1.0),
        TerminateRequested("zz", "x", 1.0),
    ):
        after, actions = reconcile(table, unknown, POLICY)
        assert after == table and [type(a) for a in actions] == [Report]


def test_finished_records_are_dropped_after_keep_finished() -> None:
    policy = RetryPolicy(keep_finished_s=100.0)
    table, _ = reconcile_all(
        {}, [LaunchRequested("cpu", 1, "r", 0.0), TerminateRequested("r/0", "x", 0.0)], policy
    )
    assert states(table) == {"r/0": "terminating"}  # its launch was issued: wait for a machine
    table, _ = reconcile(table, Tick(700.0), policy)  # launch_timeout: none came
    assert states(table) == {"r/0": "terminated"}
    table, _ = reconcile(table, Tick(799.0), policy)
    assert "r/0" in table
    table, _ = reconcile(table, Tick(800.0), policy)
    assert table == {}


def test_restart_from_json_resumes_without_launching_twice() -> None:
    table, actions = reconcile({}, LaunchRequested("cpu", 2, "r", 0.0), POLICY)
    table, _ = reconcile(table, CloudInstanceSeen(machine(1), 1.0), POLICY)
    stored = to_json(table)
    # the autoscaler restarts: the table comes back from the GCS KV
    back = from_json(stored)
    assert back == table
    resumed, actions = reconcile(back, Resume(2.0), POLICY)
    assert non_reports(actions) == [
        Provision("r/0", "10.0.0.1", "cpu"),
        LaunchNodes("cpu", 1, "r"),  # the same request id: an idempotent provider adds none
    ]
    assert states(resumed) == {"r/0": "provisioning", "r/1": "launching"}


def test_json_round_trip_keeps_every_field() -> None:
    table, _ = reconcile_all(
        {},
        [
            LaunchRequested("cpu", 1, "r", 0.0),
            CloudInstanceSeen(machine(1), 1.0),
            ProvisionFailed("r/0", 'exit 2: "quoted" output\nline', 2.0),
        ],
        POLICY,
    )
    assert from_json(to_json(table)) == table
    assert from_json(to_json(table).encode()) == table


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("not json", "not JSON"),
        ('{"format": 99, "instances": []}', "format 1"),
        ('{"format": 1, "instances": {}}', "must be a list"),
        ('{"format": 1, "instances": [3]}', "instances[0]: expected an object"),
        ('{"format": 1, "instances": [{"instance_id": "x"}]}', "missing keys"),
    ],
)
def test_a_bad_stored_table_is_refused_naming_what(text: str, says: str) -> None:
    with pytest.raises(ValueError, match="instance table") as err:
        from_json(text)
    assert says in str(err.value)


def test_a_bad_field_is_named() -> None:
    table, _ = reconcile({}, LaunchRequested("cpu", 1, "r", 0.0), POLICY)
    bad = to_json(table).replace('"launching"', '"flying"')
    with pytest.raises(ValueError, match=r"instances\[0\]\.state: expected one of"):
        from_json(bad)


def test_observe_turns_a_listing_into_events() -> None:
    table, _ = reconcile_all(
        {},
        [
            LaunchRequested("cpu", 2, "r", 0.0),
            CloudInstanceSeen(machine(1), 0.0),
            CloudInstanceSeen(machine(2), 0.0),
        ],
        POLICY,
    )
    listing = {"c2": machine(2), "c5": machine(5, "other")}
    events = observe(table, listing, 3.0)
    assert events == [
        CloudInstanceSeen(machine(2), 3.0),
        CloudInstanceSeen(machine(5, "other"), 3.0),
        CloudInstanceGone("c1", 3.0),
    ]


def test_pending_counts_by_type() -> None:
    table, _ = reconcile_all(
        {},
        [LaunchRequested("cpu", 2, "r", 0.0), LaunchRequested("gpu", 1, "g", 0.0)],
        POLICY,
    )
    assert pending_counts(table) == {"cpu": 2, "gpu": 1}


def test_the_transition_table_names_only_known_states_and_every_state_is_reachable() -> None:
    assert {s for edge in TRANSITIONS for s in edge} <= set(STATES)
    reached = {"requested"} | {b for _, b in TRANSITIONS}
    assert reached == set(STATES)


def test_bad_events_raise() -> None:
    with pytest.raises(ValueError, match="count must be > 0"):
        reconcile({}, LaunchRequested("cpu", 0, "r", 0.0))
    with pytest.raises(TypeError, match="not an instance event"):
        reconcile({}, "tick")  # type: ignore[arg-type]


def test_the_policy_comes_from_the_config() -> None:
    cfg = AutoscalerConfig(
        {"h": NodeTypeConfig("h", {"CPU": 1})}, "h", launch_retries=7, retry_backoff_s=2.0
    )
    policy = RetryPolicy.from_config(cfg, reissue_after_s=9.0)
    assert (policy.launch_retries, policy.retry_backoff_s, policy.reissue_after_s) == (7, 2.0, 9.0)
    assert [policy.backoff(a) for a in (1, 2, 3)] == [2.0, 4.0, 8.0]
