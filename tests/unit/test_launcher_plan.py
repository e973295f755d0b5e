"""Launch plans without SSH: facts in, per-host actions out (rayops/launcher/plan.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from rayops.launcher.desired import HostTarget, LocalInputs, host_target
from rayops.launcher.errors import HostFailure
from rayops.launcher.facts import HostFacts
from rayops.launcher.plan import Plan, PlanOptions, make_plan, render_plan
from rayops.launcher.spec import ClusterSpec

HEAD, W1, W2 = "10.0.0.1", "10.0.0.2", "10.0.0.3"
ROLES = {HEAD: "head", W1: "worker", W2: "worker"}
KEYS = {"install": "i1", "config": "c1", "setup": "s1"}


def target(address: str, **keys: str) -> HostTarget:
    return HostTarget(
        address=address,
        role=ROLES[address],
        keys={**KEYS, **keys},
        node_config={"node_ip": address},
        install_dir="/home/u/rayops/t",
        temp_dir="/home/u/rayops/t/sessions",
        setup_commands=("echo hi",),
    )


def fresh(address: str) -> HostFacts:
    return HostFacts(address=address, python="/usr/bin/python3", python_version="3.11.2",
                     machine="x86_64", home="/home/u", rsync=True)  # fmt: skip


def done(address: str, token: str = "tok1") -> HostFacts:
    """A host on which every step was applied and the daemons run."""
    daemons = {"gcs": 10, "raylet": 11} if address == HEAD else {"raylet": 11}
    return replace(fresh(address), venv_ok=True, applied=dict(KEYS), daemons=daemons,
                   token_sha=token)  # fmt: skip


def plan_for(
    facts: dict[str, HostFacts],
    targets: dict[str, HostTarget] | None = None,
    options: PlanOptions | None = None,
    record: dict[str, object] | None = None,
) -> Plan:
    targets = targets or {a: target(a) for a in ROLES}
    reachable = {a: t for a, t in targets.items() if facts[a].reachable}
    return make_plan("t", "hash", HEAD, ROLES, reachable, facts, options or PlanOptions(), record)


def test_fresh_hosts_get_every_step() -> None:
    plan = plan_for({a: fresh(a) for a in ROLES})
    for h in plan.hosts:
        assert h.steps == ("install", "setup", "config", "start")
        assert not h.restart
    assert plan.host(HEAD).actions[0].reason == "not installed"


def test_nothing_changed_means_nothing_to_do() -> None:
    plan = plan_for({a: done(a) for a in ROLES})
    assert plan.nothing_to_do and all(h.up_to_date for h in plan.hosts)
    assert "Nothing to do" in render_plan(plan)


def test_changed_setup_command_reruns_only_setup() -> None:
    targets = {a: target(a, setup="s2") for a in ROLES}
    plan = plan_for({a: done(a) for a in ROLES}, targets)
    for h in plan.hosts:
        assert h.steps == ("setup",)
        assert h.actions[0].reason == "setup commands changed"


def test_changed_file_mount_syncs_only_mounts() -> None:
    targets = {a: target(a, mounts="m2") for a in ROLES}
    facts = {a: replace(done(a), applied={**KEYS, "mounts": "m1"}) for a in ROLES}
    plan = plan_for(facts, targets)
    assert all(h.steps == ("mounts",) for h in plan.hosts)


def test_changed_runtime_reinstalls_and_restarts_everything() -> None:
    targets = {a: target(a, install="i2") for a in ROLES}
    plan = plan_for({a: done(a) for a in ROLES}, targets)
    for h in plan.hosts:
        assert h.steps == ("install", "start") and h.restart


def test_no_restart_keeps_running_daemons() -> None:
    targets = {a: target(a, config="c2") for a in ROLES}
    plan = plan_for({a: done(a) for a in ROLES}, targets, PlanOptions(no_restart=True))
    assert all(h.steps == ("config",) and not h.restart for h in plan.hosts)


def test_restart_only_skips_setup_and_restarts() -> None:
    targets = {a: target(a, setup="s2") for a in ROLES}
    plan = plan_for({a: done(a) for a in ROLES}, targets, PlanOptions(restart_only=True))
    assert all(h.steps == ("start",) and h.restart for h in plan.hosts)


def test_restart_only_on_an_uninstalled_host_fails_that_host() -> None:
    facts = {a: done(a) for a in ROLES}
    facts[W2] = fresh(W2)
    plan = plan_for(facts, options=PlanOptions(restart_only=True))
    failure = plan.host(W2).failure
    assert failure is not None and "without --restart-only" in failure.message


def test_a_missing_virtualenv_reinstalls_and_reruns_setup() -> None:
    facts = {a: done(a) for a in ROLES}
    facts[W1] = replace(facts[W1], venv_ok=False, daemons={})
    plan = plan_for(facts)
    assert plan.host(W1).steps == ("install", "setup", "start")
    assert plan.host(W1).actions[1].reason == "the virtualenv is new"
    assert plan.host(HEAD).up_to_date and plan.host(W2).up_to_date


def test_stopped_worker_is_started_alone() -> None:
    facts = {a: done(a) for a in ROLES}
    facts[W2] = replace(facts[W2], daemons={})
    plan = plan_for(facts)
    assert plan.host(W2).steps == ("start",) and not plan.host(W2).restart
    assert plan.host(HEAD).up_to_date and plan.host(W1).up_to_date


def test_head_start_restarts_running_workers() -> None:
    facts = {a: done(a) for a in ROLES}
    facts[HEAD] = replace(facts[HEAD], daemons={})
    plan = plan_for(facts)
    assert plan.host(HEAD).steps == ("start",)
    for w in (W1, W2):
        assert plan.host(w).steps == ("start",) and plan.host(w).restart
        assert "head starts" in plan.host(w).actions[0].reason


def test_worker_of_another_head_session_rejoins() -> None:
    facts = {a: done(a) for a in ROLES}
    facts[W1] = done(W1, token="old")
    plan = plan_for(facts)
    assert plan.host(W1).steps == ("start",) and plan.host(W1).restart
    assert plan.host(W1).actions[0].reason == "restart: joined another head session"
    assert plan.host(W2).up_to_date


def test_unreachable_worker_is_failed_and_others_proceed() -> None:
    facts = {a: fresh(a) for a in ROLES}
    cause = HostFailure("connection-refused", f"connection refused by {W2}:22")
    facts[W2] = HostFacts.unreachable(W2, cause)
    plan = plan_for(facts)
    assert plan.host(W2).failure == cause and not plan.host(W2).actions
    assert plan.head_failure is None
    assert plan.host(W1).steps and plan.host(HEAD).steps
    assert f"FAILED: connection refused by {W2}:22" in render_plan(plan)


def test_unreachable_head_fails_the_plan() -> None:
    facts = {a: fresh(a) for a in ROLES}
    facts[HEAD] = HostFacts.unreachable(HEAD, HostFailure("auth-rejected", "rejected"))
    plan = plan_for(facts)
    assert plan.head_failure is not None and plan.head_failure.kind == "auth-rejected"
    assert "nothing will be changed" in render_plan(plan)


def test_mounts_do_not_need_rsync_on_the_host() -> None:
    # File mounts travel over the launcher's own SFTP connection (transfer.py).
    targets = {a: target(a, mounts="m1") for a in ROLES}
    facts = {a: done(a) for a in ROLES}
    facts[W1] = replace(facts[W1], rsync=False)
    plan = plan_for(facts, targets)
    assert plan.host(W1).failure is None
    assert [a.step for a in plan.host(W1).actions] == ["mounts"]


def test_previous_failure_and_removed_hosts_come_from_the_head_record() -> None:
    record = {
        "hosts": {
            W1: {"state": "failed", "error": "setup command 1 of 1 exited with code 3"},
            "10.0.0.9": {"state": "up"},
        }
    }
    facts = {a: done(a) for a in ROLES}
    facts[W1] = replace(facts[W1], applied={k: v for k, v in KEYS.items() if k != "setup"})
    plan = plan_for(facts, record=record)
    assert plan.host(W1).previous_error == "setup command 1 of 1 exited with code 3"
    assert plan.removed == ("10.0.0.9",)
    text = render_plan(plan)
    assert "retry; failed last time" in text and "10.0.0.9" in text


def test_host_target_derives_per_host_paths_and_keys() -> None:
    spec = ClusterSpec.model_validate(
        {
            "cluster_name": "demo",
            "provider": {"type": "local", "head_ip": HEAD, "worker_ips": [W1]},
            "auth": {"ssh_user": "u"},
            "available_node_types": {"h": {"resources": {"CPU": 2, "GPU": 1, "x": 3}},
                                     "w": {"resources": {"CPU": 4}}},
            "head_node_type": "h",
            "setup_commands": ["a"],
            "head_setup_commands": ["b"],
        }
    )  # fmt: skip
    inputs = LocalInputs(runtime_source="src", mounts="m")
    head = host_target(spec, inputs, fresh(HEAD), "head")
    worker = host_target(spec, inputs, fresh(W1), "worker")
    assert head.install_dir == "/home/u/rayops/demo"
    assert head.node_config["num_cpus"] == 2 and head.node_config["num_gpus"] == 1
    assert head.node_config["resources"] == {"x": 3}
    assert head.setup_commands == ("a", "b") and worker.setup_commands == ("a",)
    assert head.keys["setup"] != worker.keys["setup"]
    assert "init" not in head.keys and "mounts" not in head.keys
    assert worker.node_config["head_address"] == f"{HEAD}:6379"
    assert head.process_manager == "plain"
    systemd_root = replace(fresh(HEAD), systemd=True, user="root")
    assert host_target(spec, inputs, systemd_root, "head").process_manager == "systemd"
    other = LocalInputs(runtime_source="src2", mounts="m")
    assert host_target(spec, other, fresh(HEAD), "head").keys["install"] != head.keys["install"]


def test_metrics_export_port_reaches_every_node_and_a_change_restarts_them() -> None:
    def spec(ports: dict[str, int]) -> ClusterSpec:
        return ClusterSpec.model_validate(
            {
                "provider": {"type": "local", "head_ip": HEAD, "worker_ips": [W1, W2]},
                "auth": {"ssh_user": "u"},
                "rayops": {"ports": ports},
            }
        )

    inputs = LocalInputs(runtime_source="src", mounts="m")
    default = {a: host_target(spec({}), inputs, fresh(a), r) for a, r in ROLES.items()}
    moved = {
        a: host_target(spec({"metrics_export": 9100}), inputs, fresh(a), r)
        for a, r in ROLES.items()
    }
    for a in ROLES:
        assert default[a].node_config["metrics_export_port"] == 8080
        assert moved[a].node_config["metrics_export_port"] == 9100
        assert moved[a].keys["config"] != default[a].keys["config"]
        assert moved[a].keys["install"] == default[a].keys["install"]
    # Hosts running with the old port: the config step is re-applied and the daemons restart.
    facts = {a: replace(done(a), applied=dict(default[a].keys)) for a in ROLES}
    assert plan_for(facts, default).nothing_to_do
    plan = plan_for(facts, moved)
    for h in plan.hosts:
        assert h.steps == ("config", "start") and h.restart


@pytest.mark.parametrize(("tls", "scheme"), [(False, "http"), (None, "https")])
def test_status_shows_registered_metrics_endpoints_and_the_discovery_url(
    tls: bool | None, scheme: str
) -> None:
    from rayops.launcher.down_status import discovery_url, metrics_endpoint

    rayops_keys: dict[str, object] = {"ports": {"metrics_export": 9100}}
    if tls is not None:
        rayops_keys["tls"] = tls
    spec = ClusterSpec.model_validate(
        {
            "provider": {"type": "local", "head_ip": HEAD, "worker_ips": [W1]},
            "auth": {"ssh_user": "u"},
            "rayops": rayops_keys,
        }
    )
    head = {"node_ip": HEAD, "state": "ALIVE", "is_head": True, "metrics_export_port": 9100}
    worker = {"node_ip": W1, "state": "ALIVE", "is_head": False, "metrics_export_port": 9100}
    assert metrics_endpoint(worker, scheme) == f"{scheme}://{W1}:9100/metrics"
    assert metrics_endpoint({**worker, "state": "DEAD"}) is None
    assert metrics_endpoint(None) is None
    # What the GCS registered wins (a node started before the port was fixed) ...
    old = {**head, "metrics_export_port": 41234}
    assert discovery_url(spec, [worker, old]) == f"{scheme}://{HEAD}:41234/api/prometheus/sd"
    # ... and with no live head the spec says where discovery will be (two hosts: TLS on
    # unless the spec turns it off).
    assert discovery_url(spec, [worker]) == f"{scheme}://{HEAD}:9100/api/prometheus/sd"
