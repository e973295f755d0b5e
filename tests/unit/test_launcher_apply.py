"""The apply side without hosts: inventory from a plan, playbook limit, event -> failure."""

from __future__ import annotations

import base64
import json
from dataclasses import replace
from pathlib import Path

from rayops.launcher.ansible_runner import failure_from_event, split_task_name
from rayops.launcher.apply import HostOutcome, build_inventory, mount_excludes, playbook_limit
from rayops.launcher.desired import HostTarget, MountTarget
from rayops.launcher.errors import HostFailure
from rayops.launcher.facts import HostFacts
from rayops.launcher.plan import Action, HostPlan, Plan
from rayops.launcher.spec import ClusterSpec
from rayops.launcher.ssh import SshConfig
from rayops.launcher.up import render_summary

HEAD, W1, W2 = "10.0.0.1", "10.0.0.2", "10.0.0.3"
SSH = SshConfig(user="root", key_file="/k", known_hosts="/kh")
SPEC = ClusterSpec.model_validate(
    {"cluster_name": "t", "provider": {"type": "local", "head_ip": HEAD, "worker_ips": [W1, W2]},
     "auth": {"ssh_user": "root"}, "rsync_exclude": ["**/.git"]}
)  # fmt: skip


def facts(a: str) -> HostFacts:
    return HostFacts(address=a, python="/usr/bin/python3", python_version="3.11.2",
                     machine="x86_64", home=f"/h/{a}")  # fmt: skip


def target(a: str) -> HostTarget:
    return HostTarget(
        address=a, role="head" if a == HEAD else "worker", keys={"install": "i", "config": "c"},
        node_config={"node_ip": a}, install_dir=f"/h/{a}/rayops/t",
        temp_dir=f"/h/{a}/rayops/t/sessions", setup_commands=("echo $HOME",),
        mounts=(MountTarget("/src/app/", f"/h/{a}/app"),),
    )  # fmt: skip


def plan(head: HostPlan, w1: HostPlan, w2: HostPlan) -> Plan:
    return Plan("t", "hash", HEAD, (head, w1, w2))


def test_limit_has_the_hosts_with_work_and_the_head_when_workers_start() -> None:
    p = plan(HostPlan(HEAD, "head"), HostPlan(W1, "worker", (Action("start", "x"),)),
             HostPlan(W2, "worker"))  # fmt: skip
    assert playbook_limit(p) == [HEAD, W1]
    p = plan(HostPlan(HEAD, "head"), HostPlan(W1, "worker", (Action("setup", "x"),)),
             HostPlan(W2, "worker", failure=HostFailure("timed-out", "t")))  # fmt: skip
    assert playbook_limit(p) == [W1]
    p = plan(HostPlan(HEAD, "head"), HostPlan(W1, "worker"), HostPlan(W2, "worker"))
    assert playbook_limit(p) == []


def test_inventory_carries_each_hosts_steps_and_values() -> None:
    p = plan(
        HostPlan(HEAD, "head", (Action("install", "x"), Action("start", "y"))),
        HostPlan(W1, "worker", (Action("start", "y"),), restart=True),
        HostPlan(W2, "worker", failure=HostFailure("connection-refused", "refused")),
    )
    targets = {a: target(a) for a in (HEAD, W1, W2)}
    inv = build_inventory(SPEC, SSH, p, targets, {a: facts(a) for a in (HEAD, W1, W2)},
                          {"3.11-x86_64": Path("/cache/wh")}, Path("/assets"))  # fmt: skip
    groups = inv["all"]["children"]["rayops"]["children"]
    assert list(groups["head"]["hosts"]) == [HEAD]
    assert list(groups["workers"]["hosts"]) == [W1]  # the unreachable worker is left out
    h = groups["head"]["hosts"][HEAD]
    assert h["rayops_steps"] == ["install", "start"] and h["rayops_restart"] is False
    assert groups["workers"]["hosts"][W1]["rayops_restart"] is True
    assert h["ansible_python_interpreter"] == "/usr/bin/python3"
    assert h["ansible_remote_tmp"] == f"/h/{HEAD}/rayops/t/.ansible-tmp"
    assert h["rayops_wheelhouse"] == "/cache/wh"
    cmds = json.loads(base64.b64decode(h["rayops_setup_commands_b64"]))
    assert cmds == ["echo $HOME"]
    # Mounts travel over the launcher's own SFTP before the playbook, not by rsync in it.
    assert "rayops_mount_commands" not in h and "rayops_mount_parents" not in h
    assert mount_excludes(SPEC).patterns == ("**/.git",)
    assert inv["all"]["vars"]["rayops_workers_start"] is True
    assert inv["all"]["hosts"]["localhost"]["ansible_connection"] == "local"


def test_task_names_map_to_steps() -> None:
    assert split_task_name("install : install | copy the wheelhouse").step == "install"
    assert split_task_name("setup | run setup commands").what == "run setup commands"
    assert split_task_name("Gathering Facts").step == "start"


def test_failed_setup_command_is_reported_with_command_code_and_output() -> None:
    ev = {
        "ev": "result", "host": W1, "task": "setup : setup | run setup commands",
        "status": "failed", "rc": 3, "cmd": None, "msg": "non-zero return code",
        "stdout": ["$ echo ok", "ok", "$ echo boom; exit 3", "boom"],
        "stderr": ['RAYOPS-FAILED-COMMAND {"step": "setup", "index": 1, "count": 2, '
                   '"command": "echo boom; exit 3", "rc": 3}'],
    }  # fmt: skip
    f = failure_from_event(ev, W1)
    assert f.kind == "command-failed" and f.step == "setup"
    assert f.message == "setup command 2 of 2 exited with code 3"
    assert f.command == "echo boom; exit 3" and f.exit_code == 3
    assert f.output_tail == ["ok", "boom"]
    assert "last 2 lines of output" in f.detail()


def test_failed_module_and_unreachable_events() -> None:
    ev = {"status": "failed", "task": "start | start the daemons", "rc": 1,
          "cmd": "/x/rayops-node start", "stdout": [],
          "stderr": ["rayops start: error: nope"]}  # fmt: skip
    f = failure_from_event(ev, HEAD)
    assert f.message == "start the daemons failed with exit code 1"
    assert f.command == "/x/rayops-node start" and f.output_tail == ["rayops start: error: nope"]
    ev = {"status": "unreachable", "task": "install | copy the wheelhouse",
          "msg": "Failed to connect to the host via ssh: ssh: connect to host 10.0.0.1 port 22: "
                 "Connection timed out"}  # fmt: skip
    f = failure_from_event(ev, HEAD)
    # A placeholder until the launcher's own connection names the cause (apply.py): Ansible's
    # text is not parsed.
    assert f.kind == "ssh-error" and f.step == "install" and "Connection timed out" in f.message


def test_summary_table_lists_every_host_and_details_failures() -> None:
    p = plan(HostPlan(HEAD, "head", (Action("setup", "x"),)), HostPlan(W1, "worker"),
             HostPlan(W2, "worker"))  # fmt: skip
    fail = HostFailure("command-failed", "setup command 1 of 1 exited with code 3", step="setup",
                       command="exit 3", exit_code=3, output_tail=["boom"])  # fmt: skip
    outcomes = {HEAD: HostOutcome(HEAD, "head"), W1: HostOutcome(W1, "worker"),
                W2: HostOutcome(W2, "worker", failure=fail)}  # fmt: skip
    text = render_summary(p, outcomes, 12.0)
    assert "Summary: 2 of 3 host(s) up" in text
    assert f"{HEAD}  head    changed    setup" in text
    assert f"{W1}  worker  unchanged  up to date" in text
    assert f"{W2}  worker  FAILED     setup command 1 of 1 exited with code 3" in text
    assert "command: exit 3" in text and "| boom" in text
    assert replace(fail, output_tail=[]).detail().count("\n") == 1


def test_workers_waiting_for_a_failed_head_are_reported_not_started() -> None:
    from rayops.launcher.apply import _finish

    p = plan(HostPlan(HEAD, "head", (Action("setup", "x"), Action("start", "y"))),
             HostPlan(W1, "worker", (Action("start", "y"),)),
             HostPlan(W2, "worker", (Action("setup", "x"),)))  # fmt: skip
    head_fail = HostFailure("command-failed", "head setup command 1 of 1 exited with code 4")
    outcomes = {
        HEAD: HostOutcome(HEAD, "head", failure=head_fail),
        W1: HostOutcome(W1, "worker"),
        W2: HostOutcome(W2, "worker", done=["setup"]),
    }
    _finish(p, outcomes)
    w1 = outcomes[W1].failure
    assert w1 is not None and w1.kind == "skipped"
    assert w1.message.startswith(f"not started: the head {HEAD} failed")
    assert outcomes[W2].failure is None  # it had nothing to start
