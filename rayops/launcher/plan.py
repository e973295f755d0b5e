"""The launch plan: facts and desired state in, per-host actions out. No I/O.

Rules (each is one branch below, and one unit test):

* a step runs when its key differs from the key the host recorded after applying it last
  (``init``, ``install``, ``mounts``, ``setup``, ``config``); ``install`` also runs when the
  virtualenv is missing, and then ``setup`` runs again too (it may have installed into it);
* daemons start when not running; they restart when ``install`` or ``config`` changed,
  unless ``--no-restart``; ``--restart-only`` skips every other step and restarts;
* a worker restarts when the head (re)starts, or when it is running with another head
  session's token: it must join the head that is running now;
* an unreachable worker is marked failed with the cause and gets no actions; an unreachable
  head fails the whole plan (``head_failure``); hosts in the head's record that left the spec
  are listed in ``removed`` (their daemons are stopped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from rayops.launcher.desired import HostTarget
from rayops.launcher.errors import HostFailure
from rayops.launcher.facts import HostFacts

PREPARE_STEPS = ("init", "install", "mounts", "setup", "config")


@dataclass(frozen=True)
class PlanOptions:
    no_restart: bool = False
    restart_only: bool = False


@dataclass(frozen=True)
class Action:
    step: str
    reason: str


@dataclass(frozen=True)
class HostPlan:
    address: str
    role: str
    actions: tuple[Action, ...] = ()
    failure: HostFailure | None = None
    restart: bool = False  # stop the running daemons before starting them
    previous_error: str | None = None  # what the head's record says went wrong last time

    @property
    def steps(self) -> tuple[str, ...]:
        return tuple(a.step for a in self.actions)

    @property
    def up_to_date(self) -> bool:
        return self.failure is None and not self.actions


@dataclass(frozen=True)
class Plan:
    cluster_name: str
    config_hash: str
    head: str
    hosts: tuple[HostPlan, ...]
    head_failure: HostFailure | None = None
    removed: tuple[str, ...] = field(default_factory=tuple)

    def host(self, address: str) -> HostPlan:
        return next(h for h in self.hosts if h.address == address)

    @property
    def nothing_to_do(self) -> bool:
        return not self.removed and all(not h.actions for h in self.hosts)

    @property
    def failed(self) -> tuple[HostPlan, ...]:
        return tuple(h for h in self.hosts if h.failure is not None)


def make_plan(
    cluster_name: str,
    config_hash: str,
    head: str,
    roles: Mapping[str, str],
    targets: Mapping[str, HostTarget],
    facts: Mapping[str, HostFacts],
    options: PlanOptions,
    record: Mapping[str, Any] | None = None,
) -> Plan:
    """Decide what to do on every host. ``roles`` lists every host of the spec, in order;
    ``targets`` has an entry for each reachable host."""
    previous = _previous_errors(record)
    plans: dict[str, HostPlan] = {}
    for address, role in roles.items():
        f = facts[address]
        if f.failure is not None or address not in targets:
            failure = f.failure or HostFailure("precondition", f"no facts for {address}")
            plans[address] = HostPlan(
                address, role, failure=failure, previous_error=previous.get(address)
            )
            continue
        plans[address] = replace(
            _host_plan(targets[address], f, options), previous_error=previous.get(address)
        )
    head_plan = plans[head]
    head_facts = facts[head]
    if head_plan.failure is None:
        head_starts = "start" in head_plan.steps
        for address, role in roles.items():
            if role == "worker" and plans[address].failure is None:
                plans[address] = _rejoin(plans[address], facts[address], head_facts, head_starts)
    known = set(roles)
    removed = tuple(a for a in ((record or {}).get("hosts") or {}) if a not in known)
    return Plan(
        cluster_name=cluster_name,
        config_hash=config_hash,
        head=head,
        hosts=tuple(plans[a] for a in roles),
        head_failure=head_plan.failure,
        removed=removed,
    )


def _previous_errors(record: Mapping[str, Any] | None) -> dict[str, str]:
    out = {}
    for address, entry in ((record or {}).get("hosts") or {}).items():
        if isinstance(entry, Mapping) and entry.get("state") == "failed" and entry.get("error"):
            out[address] = str(entry["error"])
    return out


def _host_plan(t: HostTarget, f: HostFacts, options: PlanOptions) -> HostPlan:
    if options.restart_only:
        return _restart_only(t, f)
    actions: list[Action] = []
    for step in PREPARE_STEPS:
        reason = _step_reason(step, t, f)
        fresh_venv = any(a.step == "install" and not f.venv_ok for a in actions)
        if reason is None and step == "setup" and "setup" in t.keys and fresh_venv:
            reason = "the virtualenv is new"
        if reason is not None:
            actions.append(Action(step, reason))
    changed_runtime = [a.step for a in actions if a.step in ("install", "config")]
    restart = False
    if not f.running:
        actions.append(Action("start", "not running"))
    elif changed_runtime and not options.no_restart:
        actions.append(Action("start", f"restart: {' and '.join(changed_runtime)} changed"))
        restart = True
    return HostPlan(t.address, t.role, tuple(actions), restart=restart)


def _step_reason(step: str, t: HostTarget, f: HostFacts) -> str | None:
    applied = f.applied.get(step)
    if step == "install" and not f.venv_ok:
        return "not installed"
    want = t.keys.get(step)
    if want is None or applied == want:
        return None
    if applied is None:
        return "not applied yet"
    return {
        "init": "initialization_commands changed",
        "install": "runtime changed",
        "mounts": "file mounts changed",
        "setup": "setup commands changed",
        "config": "node config changed",
    }[step]


def _restart_only(t: HostTarget, f: HostFacts) -> HostPlan:
    if not f.venv_ok:
        return HostPlan(
            t.address,
            t.role,
            failure=HostFailure(
                "precondition",
                f"rayops is not installed on {t.address}: run `rayops up` without "
                "--restart-only first",
            ),
        )
    actions = []
    if f.applied.get("config") != t.keys.get("config"):
        actions.append(Action("config", "node config changed"))
    actions.append(Action("start", "restart (--restart-only)" if f.running else "not running"))
    return HostPlan(t.address, t.role, tuple(actions), restart=f.running)


def _rejoin(plan: HostPlan, f: HostFacts, head: HostFacts, head_starts: bool) -> HostPlan:
    """A running worker that is not part of the head session that will be running restarts."""
    if "start" in plan.steps or not f.running:
        return plan
    if head_starts:
        reason = "restart: the head starts a new session"
    elif head.token_sha and f.token_sha != head.token_sha:
        reason = "restart: joined another head session"
    else:
        return plan
    return replace(plan, actions=(*plan.actions, Action("start", reason)), restart=True)


def render_plan(plan: Plan) -> str:
    """The plan as printed before asking to proceed."""
    workers = sum(1 for h in plan.hosts if h.role == "worker")
    lines = [
        f"Cluster {plan.cluster_name!r}: 1 head + {workers} worker(s), config {plan.config_hash}"
    ]
    width = max(len(h.address) for h in plan.hosts)
    for h in plan.hosts:
        if h.failure is not None:
            what = f"FAILED: {h.failure.one_line()}"
        elif not h.actions:
            what = "up to date"
        else:
            what = "; ".join(f"{a.step} ({a.reason})" for a in h.actions)
        if h.previous_error and h.failure is None:
            what += f"  [retry; failed last time: {h.previous_error}]"
        lines.append(f"  {h.address:<{width}}  {h.role:<6}  {what}")
    for address in plan.removed:
        lines.append(f"  {address:<{width}}  gone    stop (no longer in the spec)")
    if plan.head_failure is not None:
        lines.append(f"The head {plan.head} failed: nothing will be changed.")
    elif plan.nothing_to_do:
        lines.append("Nothing to do: every reachable host is up to date.")
    return "\n".join(lines)
