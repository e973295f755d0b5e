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
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from rayops.providers.base import CloudInstance, ProviderError

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
    "Instance",
    "LaunchNodes",
    "LaunchRequested",
    "ProviderFailed",
    "Provision",
    "ProvisionFailed",
    "ProvisionStarted",
    "RayNodeRegistered",
    "Report",
    "RetryPolicy",
    "TerminateNodes",
    "TerminateRequested",
    "Tick",
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
    ("launching", "requested"): "the provider failed the launch; a retry is due later",
    ("launching", "failed"): "the provider failed the launch and no retry is left",
    ("launching", "terminating"): "terminate requested while the machine was being made",
    ("launching", "terminated"): "terminate requested and no machine was ever seen",
    ("provisioning", "running"): "a rayops node registered from the machine",
    ("provisioning", "requested"): "provisioning failed; this machine goes, a retry is due",
    ("provisioning", "terminating"): "terminate requested, or provisioning failed for good",
    ("provisioning", "failed"): "the machine vanished while provisioning, no retry left",
    ("running", "terminating"): "terminate requested (idle, or by hand)",
    ("running", "terminated"): "the machine vanished on its own (preempted, deleted)",
    ("terminating", "terminated"): "the provider no longer lists the machine",
    ("terminating", "failed"): "the machine of a failed-for-good record is gone",
}


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
    due_at: float = 0.0  # requested: when the launch may be issued
    issued_at: float = 0.0  # launching/terminating: when the call was last made
    causes: tuple[Failure, ...] = ()
    reason: str = ""  # why it is terminating/terminated/failed
    end_state: State = "terminated"  # terminating: the state once the machine is gone

    @property
    def failed_cause(self) -> str:
        return self.causes[-1].cause if self.causes else ""


@dataclass(frozen=True)
class RetryPolicy:
    """How failures are retried and how long calls wait before they are repeated.

    ``reissue_after_s``: a launch with no machine seen (or a terminate whose machine is
    still listed) after this long is called again with the same request id, which the
    provider's idempotency makes safe; this is what resumes a restarted autoscaler.
    ``keep_finished_s``: terminated and failed records are dropped this long after.
    """

    launch_retries: int = 3
    retry_backoff_s: float = 5.0
    reissue_after_s: float = 60.0
    keep_finished_s: float = 3600.0

    def backoff(self, attempt: int) -> float:
        """The wait before try ``attempt + 1`` after try ``attempt`` failed."""
        return float(self.retry_backoff_s * 2 ** max(0, attempt - 1))


# --- events ------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchRequested:
    """The decision wants ``count`` more nodes of ``node_type``; ``request_id`` is unique."""

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
