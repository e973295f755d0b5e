"""The instance state machine: one record per machine the autoscaler asked for, typed events
in, typed actions out.

Pure: no I/O, no clock (every event carries ``now``). The head-side shell feeds it what it
saw (the decision's launches and terminations, the provider's machines and errors, rayops
nodes registering, provisioning results, ticks), carries the actions out, and stores the
table (``to_json``/``from_json``) in the GCS after every change, so a restarted autoscaler
resumes the same records instead of launching again.

States and their edges (the table ``TRANSITIONS`` is the reference; each edge says why):

    requested ──launch issued──▶ launching ──machine up──▶ provisioning ──node joined──▶ running
        │                           │                          │                          │
        └─────────── terminate ─────┴──────── terminate ───────┴──────── terminate ───────┘
                                                   ▼
                                             terminating ──machine gone──▶ terminated

A launch the provider reports failed, or a machine whose provisioning failed, is retried
``RetryPolicy.launch_retries`` times: the record goes back to ``requested`` with a new request
id, due after ``retry_backoff_s * 2**(attempt-1)`` (the machine of a failed provisioning is
terminated first, as its own ``terminating`` record). When no retry is left the record ends
``failed``. Every failure's cause is kept on the record (``causes``) for ``rayops status``.

Records are born in ``requested`` (``LaunchRequested``), in ``terminating`` (the machine of a
failed provisioning, retired while its record retries) or in ``provisioning`` (a machine of
this cluster that no record knew, adopted rather than leaked: see ``CloudInstanceSeen``).
Events about records that have moved on (a late ``ProvisionFailed`` for a terminated record)
change nothing; events naming an unknown record produce a ``Report``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, cast

from rayops.providers.base import CloudInstance, ProviderError

if TYPE_CHECKING:
    from rayops.autoscaler.types import AutoscalerConfig

__all__ = [
    "ACTIVE_STATES",
    "PENDING_STATES",
    "STATES",
    "TRANSITIONS",
    "Action",
    "CloudInstanceGone",
    "CloudInstanceSeen",
    "Event",
    "Failure",
    "IllegalTransition",
    "Instance",
    "LaunchNodes",
    "LaunchRequested",
    "ProviderFailed",
    "Provision",
    "ProvisionFailed",
    "ProvisionStarted",
    "RayNodeRegistered",
    "Report",
    "Resume",
    "RetryPolicy",
    "TerminateNodes",
    "TerminateRequested",
    "Tick",
    "from_json",
    "observe",
    "pending_counts",
    "reconcile",
    "reconcile_all",
    "to_json",
]

State = Literal[
    "requested", "launching", "provisioning", "running", "failed", "terminating", "terminated"
]
STATES: tuple[State, ...] = (
    "requested",
    "launching",
    "provisioning",
    "running",
    "failed",
    "terminating",
    "terminated",
)
#: states of a record whose node will (probably) join: what ``decide`` counts as coming.
PENDING_STATES: frozenset[str] = frozenset({"requested", "launching", "provisioning"})
#: states of a record that holds, or will hold, a machine.
ACTIVE_STATES: frozenset[str] = PENDING_STATES | {"running"}

#: Every legal edge, with why it is taken. ``reconcile`` refuses (raises) any other.
TRANSITIONS: Mapping[tuple[str, str], str] = {
    ("requested", "launching"): "its launch was issued to the provider (first try or retry)",
    ("requested", "terminated"): "terminate requested before any machine was asked for",
    ("launching", "provisioning"): "its machine is up with an address; provisioning starts",
    ("launching", "running"): "a rayops node registered before the provider listed it",
    ("launching", "requested"): "the launch failed (provider error, machine vanished, or none "
    "appeared in time); a retry is due later",
    ("launching", "failed"): "the launch failed and no retry is left",
    ("launching", "terminating"): "terminate requested while the machine was being made",
    ("provisioning", "running"): "a rayops node registered from the machine",
    ("provisioning", "requested"): "provisioning failed; this machine goes, a retry is due",
    ("provisioning", "terminating"): "terminate requested, or provisioning failed for good",
    ("provisioning", "failed"): "the machine vanished while provisioning, no retry left",
    ("running", "terminating"): "terminate requested (idle, or by hand)",
    ("running", "terminated"): "the machine vanished on its own (preempted, deleted)",
    ("terminating", "terminated"): "the provider no longer lists the machine (or none ever "
    "appeared for a launch terminated before it was seen)",
    ("terminating", "failed"): "the machine of a failed-for-good record is gone",
}


class IllegalTransition(ValueError):
    """A bug: ``reconcile`` tried an edge that is not in ``TRANSITIONS``."""


@dataclass(frozen=True)
class Failure:
    """One failure of a record, kept for ``rayops status`` and the logs."""

    at: float
    cause: str
    attempt: int


@dataclass(frozen=True)
class Instance:
    """One machine the autoscaler asked for (or found and adopted), through its life.

    ``instance_id`` is the autoscaler's own id (stable across retries); ``cloud_id`` the
    provider's id of the current machine ("" until the provider lists it). ``request_id`` is
    the current launch request (a retry gets a new one; replaying the same one is safe, the
    provider is idempotent by it). ``node_id`` is the rayops (GCS) node id once it joined.
    """

    instance_id: str
    node_type: str
    state: State
    request_id: str
    since: float  # when it entered ``state``
    cloud_id: str = ""
    ip: str = ""
    node_id: str = ""
    attempt: int = 1
    due_at: float = 0.0  # requested: issue the launch; launching/terminating: repeat the call
    causes: tuple[Failure, ...] = ()
    reason: str = ""  # why it is terminating/terminated/failed
    end_state: State = "terminated"  # terminating: the state once the machine is gone

    @property
    def failed_cause(self) -> str:
        return self.causes[-1].cause if self.causes else ""


@dataclass(frozen=True)
class RetryPolicy:
    """How failures are retried and how long calls wait before they are repeated.

    ``launch_retries``: tries after the first (a launch the provider failed, a machine that
    vanished or failed provisioning), each ``retry_backoff_s * 2**(attempt-1)`` later.
    ``reissue_after_s``: a launch with no machine seen yet (or a terminate whose machine is
    still listed) is called again after this long, with the same request id (the provider's
    idempotency makes that safe).
    ``launch_timeout_s``: a launch that shows no machine this long has failed.
    ``provision_timeout_s``: a machine with no rayops node this long after provisioning began
    has failed provisioning.
    ``keep_finished_s``: terminated and failed records are dropped this long after.
    """

    launch_retries: int = 3
    retry_backoff_s: float = 5.0
    reissue_after_s: float = 30.0
    launch_timeout_s: float = 600.0
    provision_timeout_s: float = 900.0
    keep_finished_s: float = 3600.0

    def backoff(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` after try ``attempt`` failed."""
        return float(self.retry_backoff_s * 2 ** max(0, attempt - 1))

    @classmethod
    def from_config(cls, config: AutoscalerConfig, **overrides: float) -> RetryPolicy:
        """The policy of a cluster's ``launch_retries`` and ``retry_backoff_s``."""
        fields: dict[str, Any] = {
            "launch_retries": config.launch_retries,
            "retry_backoff_s": config.retry_backoff_s,
            **overrides,
        }
        return cls(**fields)


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRequested:
    """The decision wants ``count`` more nodes of ``node_type``.

    ``request_id`` must never have been used before, also not by an earlier run of the
    autoscaler (a uuid, not a counter): the same id again is taken for a replay of this
    event and launches nothing, and the provider ignores a request id it has seen.
    """

    node_type: str
    count: int
    request_id: str
    now: float


@dataclass(frozen=True)
class CloudInstanceSeen:
    """The provider lists this machine (sent for every listed machine, every round)."""

    instance: CloudInstance
    now: float


@dataclass(frozen=True)
class CloudInstanceGone:
    """A machine a record held is no longer listed by the provider."""

    cloud_id: str
    now: float


@dataclass(frozen=True)
class ProvisionStarted:
    """The shell began provisioning the record's machine."""

    instance_id: str
    now: float


@dataclass(frozen=True)
class ProvisionFailed:
    """Provisioning the record's machine failed (the cause: command, exit code, output)."""

    instance_id: str
    cause: str
    now: float


@dataclass(frozen=True)
class RayNodeRegistered:
    """A rayops node from the record's machine registered with the GCS."""

    instance_id: str
    node_id: str
    now: float


@dataclass(frozen=True)
class TerminateRequested:
    """The decision (idle) or an operator wants this record's machine gone."""

    instance_id: str
    reason: str
    now: float


@dataclass(frozen=True)
class ProviderFailed:
    """The provider reported an error (from ``poll_errors``)."""

    error: ProviderError
    now: float


@dataclass(frozen=True)
class Resume:
    """The autoscaler (re)started with a stored table: repeat every call whose outcome is
    unknown (launches with no machine yet, provisioning, terminations), all idempotent."""

    now: float


@dataclass(frozen=True)
class Tick:
    """Time passed: issue due retries, repeat stale calls, drop old finished records."""

    now: float


Event = (
    LaunchRequested
    | CloudInstanceSeen
    | CloudInstanceGone
    | ProvisionStarted
    | ProvisionFailed
    | RayNodeRegistered
    | TerminateRequested
    | ProviderFailed
    | Resume
    | Tick
)

# --- actions -----------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchNodes:
    """Call ``provider.launch(node_type, count, request_id)``."""

    node_type: str
    count: int
    request_id: str


@dataclass(frozen=True)
class Provision:
    """Install and start rayops on the machine at ``ip`` (then send ``RayNodeRegistered``
    or ``ProvisionFailed``)."""

    instance_id: str
    ip: str
    node_type: str


@dataclass(frozen=True)
class TerminateNodes:
    """Call ``provider.terminate(ids, request_id)``."""

    ids: tuple[str, ...]
    request_id: str


@dataclass(frozen=True)
class Report:
    """Tell the operator (autoscaler log, events, ``rayops status``)."""

    instance_id: str
    message: str


Action = LaunchNodes | Provision | TerminateNodes | Report


# --- the reconciler ----------------------------------------------------------------------


class _Work:
    """One reconcile step's scratch: the table being changed and the actions so far."""

    def __init__(self, instances: Mapping[str, Instance], policy: RetryPolicy) -> None:
        self.table: dict[str, Instance] = dict(instances)
        self.policy = policy
        self.actions: list[Action] = []

    def put(self, inst: Instance) -> None:
        self.table[inst.instance_id] = inst

    def move(self, inst: Instance, state: State, now: float, **changes: Any) -> Instance:
        if (inst.state, state) not in TRANSITIONS:
            raise IllegalTransition(f"instance {inst.instance_id}: no edge {inst.state} -> {state}")
        moved = replace(inst, state=state, since=now, **changes)
        self.put(moved)
        return moved

    def report(self, instance_id: str, message: str) -> None:
        self.actions.append(Report(instance_id, message))

    def by_cloud_id(self, cloud_id: str) -> Instance | None:
        for inst in self.table.values():
            if inst.cloud_id == cloud_id and inst.state not in ("terminated", "failed"):
                return inst
        return None


def reconcile(
    instances: Mapping[str, Instance], event: Event, policy: RetryPolicy | None = None
) -> tuple[dict[str, Instance], list[Action]]:
    """The table after ``event``, and what to do about it (in order)."""
    work = _Work(instances, policy or RetryPolicy())
    handler = _HANDLERS.get(type(event))
    if handler is None:
        raise TypeError(f"reconcile: not an instance event: {event!r}")
    handler(work, event)
    return work.table, work.actions


def reconcile_all(
    instances: Mapping[str, Instance], events: Iterable[Event], policy: RetryPolicy | None = None
) -> tuple[dict[str, Instance], list[Action]]:
    """``reconcile`` each event in turn; the actions of all of them, in order."""
    table, actions = dict(instances), []
    for event in events:
        table, more = reconcile(table, event, policy)
        actions.extend(more)
    return table, actions


def _launch_requested(work: _Work, ev: LaunchRequested) -> None:
    if ev.count <= 0:
        raise ValueError(f"LaunchRequested: count must be > 0, got {ev.count}")
    if any(i.request_id == ev.request_id for i in work.table.values()):
        return  # the same request again (a replayed event): it is already recorded
    for n in range(ev.count):
        iid = f"{ev.request_id}/{n}"
        if iid in work.table:
            raise ValueError(f"LaunchRequested: instance id {iid} is taken; reuse of a request id")
        work.put(Instance(iid, ev.node_type, "requested", ev.request_id, ev.now, due_at=ev.now))
    _issue_due_launches(work, ev.now)


def _issue_due_launches(work: _Work, now: float) -> None:
    due = [i for i in work.table.values() if i.state == "requested" and i.due_at <= now]
    for group in _by_request(due):
        for inst in group:
            work.move(inst, "launching", now, due_at=now + work.policy.reissue_after_s)
        work.actions.append(LaunchNodes(group[0].node_type, len(group), group[0].request_id))


def _by_request(instances: Iterable[Instance]) -> list[list[Instance]]:
    groups: dict[str, list[Instance]] = {}
    for inst in sorted(instances, key=lambda i: i.instance_id):
        groups.setdefault(inst.request_id, []).append(inst)
    return list(groups.values())


def _cloud_seen(work: _Work, ev: CloudInstanceSeen) -> None:
    ci = ev.instance
    inst = work.by_cloud_id(ci.node_id)
    if inst is None:
        inst = _bind(work, ci)
        if inst is None:
            _adopt(work, ci, ev.now)
            return
    if inst.state == "launching" and ci.running and ci.internal_ip:
        work.move(inst, "provisioning", ev.now, ip=ci.internal_ip, due_at=0.0)
        work.actions.append(Provision(inst.instance_id, ci.internal_ip, inst.node_type))
    elif inst.state == "terminating" and inst.due_at <= ev.now:
        _terminate_call(work, inst, ev.now)
    elif ci.internal_ip and ci.internal_ip != inst.ip and inst.state != "launching":
        work.put(replace(inst, ip=ci.internal_ip))


def _bind(work: _Work, ci: CloudInstance) -> Instance | None:
    """The record waiting for this machine (same request and type, no machine yet)."""
    waiting = sorted(
        (
            i
            for i in work.table.values()
            if i.request_id == ci.request_id
            and i.node_type == ci.node_type
            and not i.cloud_id
            and i.state in ("launching", "terminating")
        ),
        key=lambda i: i.instance_id,
    )
    if not waiting:
        return None
    inst = replace(waiting[0], cloud_id=ci.node_id)
    if inst.state == "terminating":  # terminated before its machine showed: now it has one
        inst = replace(inst, due_at=0.0)
    work.put(inst)
    return inst


def _adopt(work: _Work, ci: CloudInstance, now: float) -> None:
    if ci.role == "head":
        return  # the head is rayops up's, never the autoscaler's
    iid = f"adopted/{ci.node_id}"
    if iid in work.table:
        return  # adopted before and since finished: the machine is on its way out
    running = ci.running and bool(ci.internal_ip)
    inst = Instance(
        iid,
        ci.node_type,
        "provisioning" if running else "launching",
        ci.request_id,
        now,
        cloud_id=ci.node_id,
        ip=ci.internal_ip,
        due_at=now + work.policy.reissue_after_s,
    )
    work.put(inst)
    work.report(
        iid,
        f"adopted machine {ci.node_id} ({ci.node_type}, request {ci.request_id or 'none'}) "
        "that no record knew (a record lost, or a launch retried after a slow machine)",
    )
    if running:
        work.actions.append(Provision(iid, ci.internal_ip, ci.node_type))


def _cloud_gone(work: _Work, ev: CloudInstanceGone) -> None:
    inst = work.by_cloud_id(ev.cloud_id)
    if inst is None:
        return
    if inst.state == "terminating":
        work.move(inst, inst.end_state, ev.now)
    elif inst.state == "running":
        cause = f"machine {ev.cloud_id} disappeared while running (preempted or deleted)"
        work.move(inst, "terminated", ev.now, reason=cause)
        work.report(inst.instance_id, cause)
    elif inst.state in ("launching", "provisioning"):
        cause = f"machine {ev.cloud_id} disappeared before rayops ran on it"
        _fail_attempt(work, inst, cause, ev.now, retire_machine=False)


def _fail_attempt(
    work: _Work,
    inst: Instance,
    cause: str,
    now: float,
    *,
    retire_machine: bool,
    retry_now: bool = False,
) -> None:
    """One try of ``inst`` failed: retry after the backoff, or give up.

    ``retire_machine``: the try's machine still exists and must be terminated.
    ``retry_now``: the provider has other capacity at once (``ProviderError.retry_now``): the
    retry is due now, not after the backoff (the failed machine rests in the provider).
    """
    failure = Failure(now, cause, inst.attempt)
    causes = (*inst.causes, failure)
    tries = work.policy.launch_retries + 1
    if inst.attempt < tries:
        if retire_machine and inst.cloud_id:
            old = Instance(
                f"{inst.instance_id}#{inst.attempt}",
                inst.node_type,
                "terminating",
                f"retire/{inst.instance_id}#{inst.attempt}",
                now,
                cloud_id=inst.cloud_id,
                ip=inst.ip,
                causes=(failure,),
                reason=f"attempt {inst.attempt} failed: {cause}",
            )
            work.put(old)
            _terminate_call(work, old, now)
        wait = 0.0 if retry_now else work.policy.backoff(inst.attempt)
        work.move(
            inst,
            "requested",
            now,
            attempt=inst.attempt + 1,
            request_id=f"{inst.instance_id}#{inst.attempt + 1}",
            cloud_id="",
            ip="",
            due_at=now + wait,
            causes=causes,
        )
        when = "now (the provider has other capacity)" if retry_now else f"in {wait:g}s"
        work.report(
            inst.instance_id,
            f"{inst.node_type} attempt {inst.attempt} of {tries} failed: {cause}; retrying {when}",
        )
        return
    reason = f"gave up after {tries} attempts; last cause: {cause}"
    if retire_machine and inst.cloud_id:
        moved = work.move(
            inst, "terminating", now, causes=causes, reason=reason, end_state="failed"
        )
        _terminate_call(work, moved, now)
    else:
        work.move(inst, "failed", now, causes=causes, reason=reason)
    work.report(inst.instance_id, f"{inst.node_type}: {reason}")


def _terminate_call(work: _Work, inst: Instance, now: float) -> None:
    work.put(replace(inst, due_at=now + work.policy.reissue_after_s))
    work.actions.append(TerminateNodes((inst.cloud_id,), f"terminate/{inst.instance_id}"))


def _provision_started(work: _Work, ev: ProvisionStarted) -> None:
    inst = work.table.get(ev.instance_id)
    if inst is None:
        work.report(ev.instance_id, "provisioning started for an instance with no record")
    elif inst.state == "provisioning":
        work.put(replace(inst, since=ev.now))  # the provisioning timeout counts from here


def _provision_failed(work: _Work, ev: ProvisionFailed) -> None:
    inst = work.table.get(ev.instance_id)
    if inst is None:
        work.report(ev.instance_id, f"provisioning failed for an unknown instance: {ev.cause}")
    elif inst.state == "provisioning":
        _fail_attempt(work, inst, f"provisioning failed: {ev.cause}", ev.now, retire_machine=True)


def _node_registered(work: _Work, ev: RayNodeRegistered) -> None:
    inst = work.table.get(ev.instance_id)
    if inst is None:
        work.report(ev.instance_id, f"rayops node {ev.node_id} joined from an unknown instance")
    elif inst.state in ("launching", "provisioning"):
        work.move(inst, "running", ev.now, node_id=ev.node_id, due_at=0.0)
    elif inst.state == "running" and inst.node_id != ev.node_id:
        work.put(replace(inst, node_id=ev.node_id))  # its raylet restarted with a new id


def _terminate_requested(work: _Work, ev: TerminateRequested) -> None:
    inst = work.table.get(ev.instance_id)
    if inst is None:
        work.report(ev.instance_id, f"terminate requested for an unknown instance: {ev.reason}")
        return
    if inst.state == "requested":
        work.move(inst, "terminated", ev.now, reason=ev.reason)
    elif inst.state in ("launching", "provisioning", "running"):
        moved = work.move(inst, "terminating", ev.now, reason=ev.reason)
        if moved.cloud_id:
            _terminate_call(work, moved, ev.now)
        # else: no machine yet; the first one its request brings is bound and terminated


def _provider_failed(work: _Work, ev: ProviderFailed) -> None:
    err = ev.error
    if err.kind == "launch":
        waiting = sorted(
            (
                i
                for i in work.table.values()
                if i.request_id == err.request_id and i.state == "launching" and not i.cloud_id
            ),
            key=lambda i: i.instance_id,
            reverse=True,
        )
        if not waiting:
            work.report("", f"launch request {err.request_id} failed: {err.cause}")
        for inst in waiting if err.count <= 0 else waiting[: err.count]:
            _fail_attempt(
                work,
                inst,
                f"launch failed: {err.cause}",
                ev.now,
                retire_machine=False,
                retry_now=err.retry_now,
            )
        return
    hit = [
        i
        for i in work.table.values()
        if i.state == "terminating" and i.cloud_id and i.cloud_id in err.node_ids
    ]
    for inst in hit:
        work.put(replace(inst, due_at=ev.now + work.policy.retry_backoff_s))
        work.report(inst.instance_id, f"terminate of {inst.cloud_id} failed: {err.cause}")
    if not hit:
        work.report("", f"terminate request {err.request_id} failed: {err.cause}")


def _resume(work: _Work, ev: Resume) -> None:
    for inst in sorted(work.table.values(), key=lambda i: i.instance_id):
        if inst.state == "provisioning":
            work.actions.append(Provision(inst.instance_id, inst.ip, inst.node_type))
        elif inst.state == "terminating" and inst.cloud_id:
            _terminate_call(work, work.table[inst.instance_id], ev.now)
    _reissue_launches(work, ev.now, force=True)
    _issue_due_launches(work, ev.now)


def _reissue_launches(work: _Work, now: float, *, force: bool) -> None:
    stale = [
        i
        for i in work.table.values()
        if i.state == "launching" and not i.cloud_id and (force or i.due_at <= now)
    ]
    for group in _by_request(stale):
        for inst in group:
            work.put(replace(inst, due_at=now + work.policy.reissue_after_s))
        work.actions.append(LaunchNodes(group[0].node_type, len(group), group[0].request_id))


def _tick(work: _Work, ev: Tick) -> None:
    now, policy = ev.now, work.policy
    for inst in sorted(work.table.values(), key=lambda i: i.instance_id):
        inst = work.table[inst.instance_id]
        age = now - inst.since
        if inst.state == "launching" and not inst.cloud_id and age >= policy.launch_timeout_s:
            cause = f"no machine appeared within {policy.launch_timeout_s:g}s of the launch"
            _fail_attempt(work, inst, cause, now, retire_machine=False)
        elif inst.state == "provisioning" and age >= policy.provision_timeout_s:
            cause = f"no rayops node joined within {policy.provision_timeout_s:g}s"
            _fail_attempt(work, inst, cause, now, retire_machine=True)
        elif inst.state == "terminating" and not inst.cloud_id and age >= policy.launch_timeout_s:
            work.move(inst, inst.end_state, now)
        elif inst.state == "terminating" and inst.cloud_id and inst.due_at <= now:
            _terminate_call(work, inst, now)
        elif inst.state in ("terminated", "failed") and age >= policy.keep_finished_s:
            del work.table[inst.instance_id]
    _reissue_launches(work, now, force=False)
    _issue_due_launches(work, now)


_HANDLERS: dict[type, Any] = {
    LaunchRequested: _launch_requested,
    CloudInstanceSeen: _cloud_seen,
    CloudInstanceGone: _cloud_gone,
    ProvisionStarted: _provision_started,
    ProvisionFailed: _provision_failed,
    RayNodeRegistered: _node_registered,
    TerminateRequested: _terminate_requested,
    ProviderFailed: _provider_failed,
    Resume: _resume,
    Tick: _tick,
}


# --- helpers for the shell ---------------------------------------------------------------


def observe(
    instances: Mapping[str, Instance], cloud: Mapping[str, CloudInstance], now: float
) -> list[Event]:
    """The events of one ``provider.non_terminated()`` listing: ``CloudInstanceSeen`` for
    every machine listed, ``CloudInstanceGone`` for every machine a live record holds that
    is not listed."""
    events: list[Event] = [CloudInstanceSeen(ci, now) for _, ci in sorted(cloud.items())]
    held = sorted(
        i.cloud_id
        for i in instances.values()
        if i.cloud_id and i.state not in ("terminated", "failed")
    )
    events += [CloudInstanceGone(cid, now) for cid in held if cid not in cloud]
    return events


def pending_counts(instances: Mapping[str, Instance]) -> dict[str, int]:
    """Records whose node is still to come (requested, launching, provisioning), by type."""
    out: dict[str, int] = {}
    for inst in instances.values():
        if inst.state in PENDING_STATES:
            out[inst.node_type] = out.get(inst.node_type, 0) + 1
    return out


# --- JSON --------------------------------------------------------------------------------

_FORMAT = 1


def to_json(instances: Mapping[str, Instance]) -> str:
    """The table as JSON (what the shell stores in the GCS KV)."""
    rows = [asdict(inst) for _, inst in sorted(instances.items())]
    return json.dumps({"format": _FORMAT, "instances": rows}, sort_keys=True)


def from_json(text: str | bytes) -> dict[str, Instance]:
    """The table ``to_json`` wrote; ValueError naming the record and key when it is not."""
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise ValueError(f"instance table: not JSON ({err})") from err
    if not isinstance(doc, dict) or doc.get("format") != _FORMAT:
        raise ValueError(
            f"instance table: expected an object with format {_FORMAT}, found {str(doc)[:80]!r}"
        )
    rows = doc.get("instances")
    if not isinstance(rows, list):
        raise ValueError("instance table: 'instances' must be a list")
    table: dict[str, Instance] = {}
    for n, row in enumerate(rows):
        inst = _instance_from(row, f"instance table: instances[{n}]")
        table[inst.instance_id] = inst
    return table


_FIELDS = {
    "instance_id": str,
    "node_type": str,
    "state": str,
    "request_id": str,
    "since": float,
    "cloud_id": str,
    "ip": str,
    "node_id": str,
    "attempt": int,
    "due_at": float,
    "causes": list,
    "reason": str,
    "end_state": str,
}


def _instance_from(row: object, where: str) -> Instance:
    if not isinstance(row, dict):
        raise ValueError(f"{where}: expected an object, found {type(row).__name__}")
    unknown = set(row) - set(_FIELDS)
    missing = set(_FIELDS) - set(row)
    if unknown or missing:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}, missing keys {sorted(missing)}")
    for key, kind in _FIELDS.items():
        ok = isinstance(row[key], (int, float) if kind is float else kind)
        if not ok or (kind is not float and isinstance(row[key], bool)):
            raise ValueError(f"{where}.{key}: expected {kind.__name__}, found {row[key]!r}")
    for key in ("state", "end_state"):
        if row[key] not in STATES:
            raise ValueError(f"{where}.{key}: expected one of {STATES}, found {row[key]!r}")
    causes = []
    for k, c in enumerate(row["causes"]):
        if not (isinstance(c, dict) and set(c) == {"at", "cause", "attempt"}):
            raise ValueError(f"{where}.causes[{k}]: expected {{at, cause, attempt}}, found {c!r}")
        causes.append(Failure(float(c["at"]), str(c["cause"]), int(c["attempt"])))
    return Instance(
        **{k: row[k] for k in _FIELDS if k not in ("causes", "state", "end_state")},
        state=cast(State, row["state"]),
        end_state=cast(State, row["end_state"]),
        causes=tuple(causes),
    )
