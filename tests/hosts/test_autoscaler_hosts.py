"""The autoscaler with the SSH pool on three real hosts in network namespaces: the head (h1)
alone after `rayops up`, the pool (h2, h3) provisioned by the head itself.

A task needing a resource only pool nodes have scales the cluster up (a pool host installed
and started from the head) and back down after the idle timeout; a pool host that cannot be
reached is reported with its cause and retried later while the other host is used; a
STRICT_SPREAD placement group of 3 bundles launches 2 nodes. Real sshd, Ansible, installs.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest

from rayops.testing.hosts import wait_until

pytestmark = pytest.mark.slow

IDLE_TIMEOUT_S = 15.0
TARGETS = {"scale_up_s": 60.0, "scale_down_s": IDLE_TIMEOUT_S + 10.0}

DRIVER = """\
import json, time, rayops
rayops.init()
{body}
"""

TASK = """\
@rayops.remote(num_cpus=1, resources={"pool": 1})
def where():
    return rayops.get_runtime_context().get_node_id()
t0 = time.monotonic()
nid = rayops.get(where.remote(), timeout=300)
took = time.monotonic() - t0
ip = [n["NodeManagerAddress"] for n in rayops.nodes() if n["NodeID"] == nid][0]
print("RESULT " + json.dumps({"ip": ip, "seconds": took}))
"""

GROUP = """\
from rayops.util.placement_group import placement_group, remove_placement_group
t0 = time.monotonic()
pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD")
assert pg.wait(300), "the group was not placed"
took = time.monotonic() - t0
from rayops.util.placement_group import placement_group_table
nodes = sorted(set(placement_group_table(pg)["bundles_to_node_id"].values()))
print("RESULT " + json.dumps({"nodes": len(nodes), "seconds": took}))
remove_placement_group(pg)
"""


def spec(launcher: Any) -> Path:
    return launcher.spec(
        "autoscale.yaml",
        available_node_types={
            "head.default": {"resources": {"CPU": 1}},
            "worker.default": {
                "resources": {"CPU": 1, "pool": 1},
                "min_workers": 0,
                "max_workers": 2,
            },
        },
        max_workers=2,
        idle_timeout_minutes=IDLE_TIMEOUT_S / 60.0,
    )


def drive(launcher: Any, body: str, timeout: float = 400) -> dict[str, Any]:
    code = DRIVER.format(body=body)
    res = launcher.run(
        "exec", str(spec(launcher)), f"python -u - <<'EOF'\n{code}EOF", timeout=timeout
    )
    assert res.rc == 0, res.text
    m = re.search(r"^RESULT (.*)$", res.out, re.M)
    assert m, res.text
    out: dict[str, Any] = json.loads(m.group(1))
    return out


def provisioning_lines(launcher: Any) -> str:
    """The autoscaler's log of its launches (per-task progress with seconds): the breakdown."""
    log = launcher.net.ssh("h1", "cat ~/rayops/hosttest/sessions/session_latest/logs/monitor.log")
    keep = ("decision:", "provisioning", "plan:", "] ", "provisioned", "joined", "failed")
    return "\n".join(
        ln for ln in log.stdout.splitlines() if "paramiko" not in ln and any(k in ln for k in keep)
    )


def alive_workers(launcher: Any) -> list[str]:
    res = launcher.run("exec", str(spec(launcher)), "rayops status --json")
    assert res.rc == 0, res.text
    nodes = json.loads(res.out)
    return [n["node_ip"] for n in nodes if n["state"] == "ALIVE" and not n["is_head"]]


def test_up_starts_the_head_alone_and_leaves_it_what_it_needs(launcher: Any) -> None:
    res = launcher.up(spec(launcher))
    assert res.rc == 0, res.text
    assert "Summary: 1 of 1 host(s) up" in res.out, res.out
    assert "autoscaler files in" in res.out
    for name in ("h2", "h3"):
        assert not launcher.rayops_processes(name), launcher.rayops_processes(name)
    check = launcher.net.ssh(
        "h1",
        "cd ~/rayops/hosttest/autoscaler && stat -c '%a %n' ssh_key && cat runtime.json && "
        "ls cache/wheelhouse/*/wheelhouse.tar && grep -c ssh_key cluster.yaml",
    )
    assert check.returncode == 0, check.stderr
    assert check.stdout.startswith("600 ssh_key"), check.stdout
    assert any("rayops.autoscaler" in c for c in launcher.rayops_processes("h1"))
    wait_until(
        lambda: (
            "autoscaler started"
            in launcher.net.ssh(
                "h1", "cat ~/rayops/hosttest/sessions/session_latest/logs/monitor.log"
            ).stdout
        ),
        "the autoscaler's first log line",
        timeout=30,
    )


def test_monitor_follows_the_heads_autoscaler_log(launcher: Any) -> None:
    import subprocess
    import sys

    try:
        proc = subprocess.run(
            [sys.executable, "-m", launcher.module, "monitor", str(spec(launcher))],
            capture_output=True,
            text=True,
            env=launcher.env,
            cwd=launcher.base,
            timeout=8,
        )
        out = proc.stdout + proc.stderr
        pytest.fail(f"rayops monitor returned (rc {proc.returncode}) instead of following: {out}")
    except subprocess.TimeoutExpired as err:  # it follows the log until stopped, as Ray's
        out = err.stdout.decode() if isinstance(err.stdout, bytes) else str(err.stdout or "")
    assert "autoscaler started: provider local" in out, out


def test_task_scales_up_past_a_failing_host_then_back_down(launcher: Any) -> None:
    launcher.net.link("h2", False)  # h2 is unreachable: its provisioning fails (timeouts)
    try:
        got = drive(launcher, TASK)
    finally:
        launcher.net.link("h2", True)
    launcher.figures["scale_up_s"] = round(got["seconds"], 1)
    took, target = got["seconds"], TARGETS["scale_up_s"]
    print(f"\nscale-up: the task ran on the new pool node {took:.1f} s after it was submitted "
          f"(target {target:g} s)\n" + provisioning_lines(launcher))  # fmt: skip
    assert got["ip"] == launcher.ips["h3"], got
    status = launcher.run("exec", str(spec(launcher)), "rayops status")
    assert "Autoscaler" in status.out and launcher.ips["h2"] in status.out, status.out
    # The target: a fresh pool host (h3: nothing installed) runs the task within 60 s
    # of its submission, here even with the failed try of h2 first (its 3 s connect timeout;
    # the retry goes to h3 at once, h2 rests under the pool's own backoff).
    assert got["seconds"] < TARGETS["scale_up_s"], got
    t0 = time.monotonic()
    wait_until(lambda: not alive_workers(launcher), "the idle node gone", timeout=90)
    launcher.figures["scale_down_s"] = round(time.monotonic() - t0, 1)
    assert launcher.figures["scale_down_s"] < TARGETS["scale_down_s"] + 10
    wait_until(lambda: not launcher.rayops_processes("h3"), "h3's daemons stopped", timeout=30)


def test_strict_spread_group_of_three_launches_two_nodes(launcher: Any) -> None:
    got = drive(launcher, GROUP)
    launcher.figures["strict_spread_s"] = round(got["seconds"], 1)
    took = got["seconds"]
    print(f"\nstrict spread: 3 nodes (one pool host fresh) in {took:.1f} s\n"
          + provisioning_lines(launcher))  # fmt: skip
    assert got["nodes"] == 3, got
    log = launcher.net.ssh("h1", "cat ~/rayops/hosttest/sessions/session_latest/logs/monitor.log")
    assert (
        "decision: launch 2 'worker.default' node(s)" in log.stdout
        or log.stdout.count("decision: launch") >= 2
    ), log.stdout[-3000:]


def test_down_stops_the_pool_hosts_too(launcher: Any) -> None:
    res = launcher.run("down", str(spec(launcher)), "-y")
    assert res.rc == 0, res.text
    for name in launcher.net.hosts:
        wait_until(lambda n=name: not launcher.rayops_processes(n), f"{name} stopped", timeout=30)
