"""Applying a plan: wheelhouses, the generated inventory, one playbook run, per-host results.

``build_inventory`` is pure (plan, targets and facts in, an Ansible inventory out).
``apply_plan`` does the I/O: builds the wheelhouses the plan needs, pushes the file mounts of
hosts whose ``mounts`` step runs (over SFTP on the command's own connections, all hosts in
parallel, before the playbook: like Ray, mounts are in place before any command runs), runs
``playbooks/site.yml`` for the hosts with work to do, reports a progress line per host and task
as results arrive, and returns each host's outcome. A host's failure never stops the others; a
failing head leaves the workers unstarted (they are reported as such).
"""

from __future__ import annotations

import base64
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayops.launcher import tls_certs
from rayops.launcher.ansible_runner import (
    Event,
    failure_from_event,
    run_playbook,
    split_task_name,
    write_config,
    write_inventory,
)
from rayops.launcher.desired import HostTarget
from rayops.launcher.errors import HostFailure, LauncherError
from rayops.launcher.facts import HostFacts
from rayops.launcher.plan import HostPlan, Plan
from rayops.launcher.spec import ClusterSpec
from rayops.launcher.ssh import SshConfig, SshError, SshPool
from rayops.launcher.transfer import Excludes, SyncStats, push
from rayops.launcher.wheelhouse import RuntimeSource, build_wheelhouse

Printer = Callable[[str], None]

# Bookkeeping tasks that would only add noise to the progress lines.
_QUIET_ACTIONS = {"include_role", "import_role", "set_fact", "meta", "include_tasks"}


@dataclass
class HostOutcome:
    address: str
    role: str
    done: list[str] = field(default_factory=list)  # steps that completed
    failure: HostFailure | None = None


def _b64_json(value: Any) -> str:
    return base64.b64encode(json.dumps(list(value)).encode()).decode()


def host_vars(
    hp: HostPlan, t: HostTarget, f: HostFacts, ssh: SshConfig, wheelhouse: str
) -> dict[str, Any]:
    """Everything the playbooks need to know about one host (no I/O)."""
    d = t.install_dir
    return {
        "ansible_host": hp.address,
        "ansible_port": ssh.port,
        "ansible_user": ssh.user,
        "ansible_python_interpreter": f.python,
        "ansible_remote_tmp": f"{d}/.ansible-tmp",
        "rayops_role": hp.role,
        "rayops_steps": list(hp.steps),
        "rayops_restart": hp.restart,
        "rayops_install_dir": d,
        "rayops_python": f.python,
        "rayops_keys": dict(t.keys),
        "rayops_node_config": dict(t.node_config),
        "rayops_process_manager": t.process_manager,
        "rayops_layout_dirs": [d, f"{d}/bin", f"{d}/state", f"{d}/run", f"{d}/jobs"],
        "rayops_init_commands_b64": _b64_json(t.init_commands),
        "rayops_setup_commands_b64": _b64_json(t.setup_commands),
        "rayops_wheelhouse": wheelhouse,
        # The launcher pushed the mounts over SFTP before the playbook (push_mounts),
        # creating their directories; the mounts role only records the step's key.
    }


def build_inventory(
    spec: ClusterSpec,
    ssh: SshConfig,
    plan: Plan,
    targets: Mapping[str, HostTarget],
    facts: Mapping[str, HostFacts],
    wheelhouses: Mapping[str, Path],
    assets: Path,
) -> dict[str, Any]:
    """The Ansible inventory for ``plan`` (every reachable host; ``--limit`` picks)."""
    groups: dict[str, dict[str, Any]] = {"head": {}, "workers": {}}
    for hp in plan.hosts:
        if hp.failure is not None:
            continue
        f = facts[hp.address]
        wheelhouse = str(wheelhouses.get(f.python_tag, ""))
        group = groups["head" if hp.role == "head" else "workers"]
        group[hp.address] = host_vars(hp, targets[hp.address], f, ssh, wheelhouse)
    localhost = {"ansible_connection": "local", "ansible_python_interpreter": sys.executable}
    workers_start = any("start" in h.steps for h in plan.hosts if h.role == "worker")
    return {
        "all": {
            "hosts": {"localhost": localhost},
            "vars": {
                "rayops_head": plan.head,
                "rayops_runtime_dir": str(assets / "runtime"),
                "rayops_ssh_user": ssh.user,
                "rayops_service_name": f"rayops-{spec.cluster_name}",
                "rayops_workers_start": workers_start,
            },
            "children": {
                "rayops": {
                    "children": {
                        "head": {"hosts": groups["head"]},
                        "workers": {"hosts": groups["workers"]},
                    }
                }
            },
        }
    }


def playbook_limit(plan: Plan) -> list[str]:
    """Hosts with work to do, plus the head whenever a worker starts (it hands out the token)."""
    hosts = [h.address for h in plan.hosts if h.actions and h.failure is None]
    workers_start = any("start" in h.steps for h in plan.hosts if h.role == "worker")
    if workers_start and plan.head not in hosts:
        hosts.insert(0, plan.head)
    return hosts


class ProgressPrinter:
    """Prints one line per host and task result, prefixed with the time since the start."""

    def __init__(self, out: Printer, width: int, started: float) -> None:
        self.out = out
        self.width = width
        self.started = started

    def __call__(self, ev: Event) -> None:
        if ev.get("ev") != "result" or ev.get("host") == "localhost":
            return
        if str(ev.get("action", "")).rpartition(".")[2] in _QUIET_ACTIONS:
            return
        status = str(ev.get("status"))
        name = split_task_name(str(ev.get("task", "")))
        secs = ev.get("seconds")
        took = f" ({secs:.1f} s)" if isinstance(secs, (int, float)) and secs >= 0.5 else ""
        mark = {"ok": "ok", "changed": "done", "failed": "FAILED", "unreachable": "UNREACHABLE"}
        self.out(
            f"[{time.monotonic() - self.started:6.1f}s] {ev.get('host', ''):<{self.width}}  "
            f"{name.step:<7} {name.what} ... {mark.get(status, status)}{took}"
        )
        for note in ev.get("notes") or ():
            self.out(f"{'':9}{ev.get('host', ''):<{self.width}}  {name.step:<7}   {note}")


def mount_excludes(spec: ClusterSpec) -> Excludes:
    return Excludes(tuple(spec.rsync_exclude), tuple(spec.rsync_filter))


def push_mounts(
    pool: SshPool, target: HostTarget, excludes: Excludes
) -> tuple[SyncStats, HostFailure | None]:
    """Push one host's file mounts (rsync's rules, nothing deleted); the failure if any."""
    total = SyncStats()
    for m in target.mounts:
        try:
            stats = push(pool.sftp(target.address), m.src, m.dst, excludes)
        except SshError as err:
            return total, HostFailure(err.failure.kind, err.failure.message, step="mounts")
        except OSError as err:
            return total, HostFailure(
                "command-failed", f"pushing file mount {m.src} to {m.dst} failed: {err}",
                step="mounts",
            )  # fmt: skip
        total.sent += stats.sent
        total.skipped += stats.skipped
        total.dirs_made += stats.dirs_made
        total.bytes += stats.bytes
    return total, None


def _push_all_mounts(
    spec: ClusterSpec,
    pool: SshPool,
    plan: Plan,
    targets: Mapping[str, HostTarget],
    outcomes: dict[str, HostOutcome],
    progress: Callable[[str, str, str, float], None],
) -> None:
    hosts = [
        h.address
        for h in plan.hosts
        if "mounts" in h.steps and h.failure is None and targets[h.address].mounts
    ]
    if not hosts:
        return
    excludes = mount_excludes(spec)

    def one(address: str) -> None:
        t0 = time.monotonic()
        stats, failure = push_mounts(pool, targets[address], excludes)
        if failure is not None:
            outcomes[address].failure = failure
            progress(address, "mounts", "push file mounts (SFTP)", -1.0)
        else:
            progress(address, "mounts", f"push file mounts (SFTP): {stats.summary()}",
                     time.monotonic() - t0)  # fmt: skip

    with ThreadPoolExecutor(min(16, len(hosts)), thread_name_prefix="rayops-mounts") as ex:
        list(ex.map(one, hosts))


def apply_plan(
    spec: ClusterSpec,
    ssh: SshConfig,
    pool: SshPool,
    plan: Plan,
    targets: Mapping[str, HostTarget],
    facts: Mapping[str, HostFacts],
    source: RuntimeSource,
    source_digest: str,
    cache_dir: Path,
    assets: Path,
    out: Printer,
    started: float,
) -> dict[str, HostOutcome]:
    """Run the plan; return every planned host's outcome (hosts without actions included)."""
    outcomes = {h.address: HostOutcome(h.address, h.role, failure=h.failure) for h in plan.hosts}
    limit = playbook_limit(plan)
    if not limit:
        return outcomes
    width = max(len(a) for a in limit)

    def mount_progress(address: str, step: str, what: str, secs: float) -> None:
        mark = "FAILED" if secs < 0 else "done"
        took = f" ({secs:.1f} s)" if secs >= 0.5 else ""
        out(f"[{time.monotonic() - started:6.1f}s] {address:<{width}}  {step:<7} {what} ... "
            f"{mark}{took}")  # fmt: skip

    _push_all_mounts(spec, pool, plan, targets, outcomes, mount_progress)
    # A host whose mounts failed gets nothing else this run (the next `up` retries it).
    limit = [a for a in limit if outcomes[a].failure is None]
    if outcomes[plan.head].failure is not None:  # nothing may start without the head
        starting = {h.address for h in plan.hosts if "start" in h.steps}
        limit = [a for a in limit if a not in starting]
    if not limit:
        _finish(plan, outcomes)
        return outcomes
    tags = sorted({facts[h.address].python_tag for h in plan.hosts if "install" in h.steps})
    wheelhouses: dict[str, Path] = {}
    for tag in tags:
        t0 = time.monotonic()
        wheelhouses[tag] = build_wheelhouse(source, source_digest, tag, cache_dir)
        out(f"wheelhouse for Python {tag}: {wheelhouses[tag]} ({time.monotonic() - t0:.1f} s)")
    run_dir = Path(tempfile.mkdtemp(prefix="ansible-run-", dir=_runs_dir(cache_dir)))
    try:
        write_config(run_dir, assets / "playbooks", ssh, forks=min(50, len(limit) + 1))
        inventory = build_inventory(spec, ssh, plan, targets, facts, wheelhouses, assets)
        # TLS: the cluster CA and each host's certificate, made here (launcher/tls_certs.py).
        inventory["all"]["vars"]["rayops_tls_dir"] = str(
            tls_certs.ensure_for(spec, plan, targets, cache_dir)
        )
        write_inventory(run_dir, inventory)
        progress = ProgressPrinter(out, width, started)

        unreachable: set[str] = set()

        def on_event(ev: Event) -> None:
            progress(ev)
            _record_event(ev, outcomes, unreachable)

        rc, stderr_tail = run_playbook(run_dir, assets / "playbooks" / "site.yml", limit, on_event)
    finally:
        shutil.rmtree(run_dir, ignore_errors=True)
    if rc not in (0, 2, 4) and not any(o.failure for o in outcomes.values()):
        raise LauncherError(
            f"ansible-playbook failed (exit code {rc}) before reporting any host:\n"
            + "\n".join(stderr_tail[-20:])
        )
    _diagnose_unreachable(pool, unreachable, outcomes)
    _finish(plan, outcomes)
    return outcomes


def _diagnose_unreachable(pool: SshPool, hosts: set[str], outcomes: dict[str, HostOutcome]) -> None:
    """Ansible said a host became unreachable: name the cause from the launcher's own
    connection (paramiko's exception), keeping Ansible's words if that one still works."""
    for address in sorted(hosts):
        o = outcomes[address]
        res = pool.run(address, "true", timeout=pool.cfg.connect_timeout + pool.cfg.dead_after_s)
        if res.failure is not None and o.failure is not None:
            o.failure = HostFailure(res.failure.kind, res.failure.message, step=o.failure.step)


def _runs_dir(cache_dir: Path) -> Path:
    d = cache_dir / "runs"
    d.mkdir(parents=True, exist_ok=True, mode=0o700)
    return d


def _record_event(ev: Event, outcomes: dict[str, HostOutcome], unreachable: set[str]) -> None:
    host = str(ev.get("host", ""))
    o = outcomes.get(host)
    if o is None or ev.get("ev") != "result":
        return
    status = ev.get("status")
    if status in ("failed", "unreachable") and o.failure is None:
        o.failure = failure_from_event(ev, host)
        if status == "unreachable":
            unreachable.add(host)
    elif status in ("ok", "changed"):
        step = split_task_name(str(ev.get("task", ""))).step
        if step not in o.done:
            o.done.append(step)


def _finish(plan: Plan, outcomes: dict[str, HostOutcome]) -> None:
    """Workers that were to start but could not, because the head failed, say so."""
    head = outcomes[plan.head]
    if head.failure is None:
        return
    for h in plan.hosts:
        o = outcomes[h.address]
        if h.role == "worker" and "start" in h.steps and o.failure is None:
            o.failure = HostFailure(
                "skipped", f"not started: the head {plan.head} failed ({head.failure.one_line()})"
            )
