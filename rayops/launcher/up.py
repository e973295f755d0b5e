"""``rayops up``: facts, then the plan, then (after asking) apply, then the head's record.

The flow of one run, each stage printed as it happens:

1. facts from every host in parallel (one SSH command each);
2. the plan (``plan.make_plan``, no I/O) printed; stop here with ``--dry``, or when the head
   is unreachable, or when there is nothing to do;
3. ask unless ``-y``; apply with Ansible (``apply.apply_plan``), a progress line per host;
4. check that every started node registered with the GCS; stop hosts that left the spec;
5. rewrite the cluster record on the head if anything changed; print the summary table.

Exit status: 0 when every host is up, 1 otherwise.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from rayops.launcher.apply import HostOutcome, apply_plan
from rayops.launcher.assets import launcher_assets
from rayops.launcher.autoscaling import place_wheelhouse, write_head_bundle
from rayops.launcher.cluster import Cluster
from rayops.launcher.desired import HostTarget, LocalInputs, host_target, mounts_digest
from rayops.launcher.errors import HostFailure, LauncherError
from rayops.launcher.extras import require_launcher_extras
from rayops.launcher.facts import HostFacts, gather_facts
from rayops.launcher.plan import Plan, PlanOptions, make_plan, render_plan
from rayops.launcher.record import build_record, host_entry, same_record, shell_path, write_record
from rayops.launcher.wheelhouse import runtime_source
from rayops.providers.local import autoscaling_enabled


@dataclass(frozen=True)
class UpOptions:
    yes: bool = False
    dry: bool = False
    no_restart: bool = False
    restart_only: bool = False


def cluster_record(cluster: Cluster, facts: Mapping[str, HostFacts]) -> dict[str, Any] | None:
    rec = facts[cluster.head].record if cluster.head in facts else None
    if rec and rec.get("cluster_name") == cluster.spec.cluster_name:
        return dict(rec)
    return None


def read_facts(cluster: Cluster) -> dict[str, HostFacts]:
    spec = cluster.spec
    return gather_facts(
        cluster.pool, list(cluster.roles), spec.rayops.python, spec.install_dir, spec.temp_dir
    )


def run_up(cluster: Cluster, opts: UpOptions, confirm: Callable[[str], bool]) -> int:
    if opts.no_restart and opts.restart_only:
        raise LauncherError("--no-restart and --restart-only contradict each other: pick one")
    require_launcher_extras("up")
    out, spec = cluster.out, cluster.spec
    started = time.monotonic()
    for note in cluster.notes:
        out(f"note: {note}")
    facts = read_facts(cluster)
    out(f"facts from {len(facts)} host(s) in {time.monotonic() - started:.1f} s")
    record = cluster_record(cluster, facts)
    source = runtime_source(spec)
    source_digest = source.digest()
    inputs = LocalInputs(runtime_source=source_digest, mounts=mounts_digest(spec))
    roles = cluster.roles
    targets: dict[str, HostTarget] = {
        a: host_target(spec, inputs, facts[a], role)
        for a, role in roles.items()
        if facts[a].reachable
    }
    plan = make_plan(
        spec.cluster_name,
        spec.config_hash(),
        cluster.head,
        roles,
        targets,
        facts,
        PlanOptions(no_restart=opts.no_restart, restart_only=opts.restart_only),
        record,
    )
    out(render_plan(plan))
    if plan.head_failure is not None:
        out("")
        out(f"The head {cluster.head} failed:")
        out(_indent(plan.head_failure.detail()))
        return 1
    if opts.dry:
        return 0
    outcomes = {h.address: HostOutcome(h.address, h.role, failure=h.failure) for h in plan.hosts}
    if not plan.nothing_to_do:
        if not opts.yes and not confirm("Apply this plan?"):
            out("Nothing changed.")
            return 1
        scaling = autoscaling_enabled(spec)
        if scaling and (failure := write_head_bundle(cluster, source_digest)) is not None:
            out(f"The head {cluster.head} failed:")
            out(_indent(failure.detail()))
            return 1
        with launcher_assets() as assets:
            outcomes = apply_plan(
                spec, cluster.ssh, cluster.pool, plan, targets, facts, source, source_digest,
                cluster.cache_dir, assets, out, started,
            )  # fmt: skip
        if scaling and outcomes[plan.head].failure is None:
            outcomes[plan.head].failure = place_wheelhouse(
                cluster, targets[plan.head].install_dir, source_digest,
                facts[plan.head].python_tag,
            )  # fmt: skip
        _check_registration(cluster, plan, outcomes, targets)
        _stop_removed(cluster, plan, record)
    elif autoscaling_enabled(spec) and (failure := write_head_bundle(cluster, source_digest)):
        # Nothing to do on the hosts, but the scaling rules may have changed: the running
        # autoscaler reads its spec again when the file changes.
        outcomes[plan.head].failure = failure
    _save_record(cluster, plan, outcomes, targets, record)
    out("")
    out(render_summary(plan, outcomes, time.monotonic() - started))
    return 0 if all(o.failure is None for o in outcomes.values()) else 1


def _check_registration(
    cluster: Cluster,
    plan: Plan,
    outcomes: dict[str, HostOutcome],
    targets: Mapping[str, HostTarget],
) -> None:
    """Every host started in this run must show up ALIVE in the head's GCS."""
    started = [
        h.address for h in plan.hosts if "start" in h.steps and outcomes[h.address].failure is None
    ]
    if not started or outcomes[plan.head].failure is not None:
        return
    nodes, failure = runtime_nodes(cluster, targets[plan.head].install_dir)
    if failure is not None:
        outcomes[plan.head].failure = failure
        return
    alive = {str(n.get("node_ip")) for n in nodes if n.get("state") == "ALIVE"}
    for address in started:
        ip = str(targets[address].node_config.get("node_ip", address))
        if ip not in alive:
            outcomes[address].failure = HostFailure(
                "command-failed",
                f"daemons started but the node is not ALIVE in the GCS at "
                f"{cluster.spec.head_address} "
                f"(see {targets[address].temp_dir}/session_latest/logs)",
                step="start",
            )


def runtime_nodes(
    cluster: Cluster, head_install_dir: str
) -> tuple[list[dict[str, Any]], HostFailure | None]:
    """The GCS's node table, read on the head with the head's own token."""
    d = shell_path(head_install_dir)
    cmd = (
        f"RAYOPS_TOKEN_FILE={d}/cluster_token {d}/venv/bin/rayops status "
        f"--address {cluster.spec.head_address} --json"
    )
    res = cluster.pool.run(cluster.head, cmd, timeout=60)
    if res.failure is not None:
        return [], res.failure
    if res.exit_code != 0:
        return [], HostFailure(
            "command-failed",
            f"`rayops status` on the head failed with exit code {res.exit_code}",
            step="status",
            command=cmd,
            exit_code=res.exit_code,
            output_tail=res.tail(),
        )
    try:
        nodes: list[dict[str, Any]] = json.loads(res.stdout)
    except ValueError:
        return [], HostFailure(
            "command-failed",
            "`rayops status --json` printed no JSON",
            step="status",
            output_tail=res.tail(),
        )
    return nodes, None


def _stop_removed(cluster: Cluster, plan: Plan, record: Mapping[str, Any] | None) -> None:
    hosts = (record or {}).get("hosts") or {}
    for address in plan.removed:
        entry = hosts.get(address) or {}
        d = shell_path(str(entry.get("install_dir") or cluster.spec.install_dir))
        res = cluster.pool.run(
            address, f"[ ! -x {d}/bin/rayops-node ] || {d}/bin/rayops-node stop", timeout=60
        )
        what = "stopped" if res.ok else f"could not stop it: {res.failure or res.tail()}"
        cluster.out(f"{address}: no longer in the spec; {what}")


def _save_record(
    cluster: Cluster,
    plan: Plan,
    outcomes: Mapping[str, HostOutcome],
    targets: Mapping[str, HostTarget],
    old: Mapping[str, Any] | None,
) -> None:
    if outcomes[plan.head].failure is not None and plan.head not in targets:
        return
    hosts = {}
    spec = cluster.spec
    for h in plan.hosts:
        o = outcomes[h.address]
        t = targets.get(h.address)
        hosts[h.address] = host_entry(
            h.role,
            "failed" if o.failure is not None else "up",
            t.install_dir if t else spec.install_dir,
            t.temp_dir if t else spec.temp_dir,
            o.failure,
        )
    new = build_record(spec.cluster_name, spec.config_hash(), plan.head, spec.head_address, hosts)
    if same_record(old, new):
        return
    failure = write_record(cluster.pool, plan.head, targets[plan.head].install_dir, new)
    if failure is not None:
        cluster.out(f"warning: could not write the cluster record on the head: "
                    f"{failure.one_line()}")  # fmt: skip


def render_summary(plan: Plan, outcomes: Mapping[str, HostOutcome], seconds: float) -> str:
    """The table printed at the end of ``up`` (and the details of every failure)."""
    failed = [o for o in outcomes.values() if o.failure is not None]
    width = max(len(h.address) for h in plan.hosts)
    head_line = f"{'HOST':<{width}}  ROLE    RESULT     DETAIL"
    lines = [f"Summary: {len(plan.hosts) - len(failed)} of {len(plan.hosts)} host(s) up "
             f"({seconds:.1f} s)", "  " + head_line]  # fmt: skip
    for h in plan.hosts:
        o = outcomes[h.address]
        if o.failure is not None:
            result, detail = "FAILED", o.failure.one_line()
        elif h.actions:
            result, detail = "changed", ", ".join(dict.fromkeys(h.steps))
        else:
            result, detail = "unchanged", "up to date"
        lines.append(f"  {h.address:<{width}}  {h.role:<6}  {result:<9}  {detail}")
    for o in failed:
        lines.append("")
        lines.append(
            f"{o.address} ({o.role}) failed"
            + (f" in step {o.failure.step}" if o.failure and o.failure.step else "")
            + ":"
        )
        lines.append(_indent(o.failure.detail() if o.failure else ""))
    return "\n".join(lines)


def _indent(text: str) -> str:
    return "\n".join("  " + ln for ln in text.splitlines())
