"""The autoscaler's records in the GCS internal KV: what crosses processes about autoscaling.

Namespace ``AUTOSCALER_NAMESPACE``; three keys, each one JSON document:

* ``REQUESTS_KEY``: the latest ``request_resources`` call (a driver writes it with
  ``rayops.autoscaler.sdk``; the monitor reads it). Like Ray, each call replaces the last.
* ``INSTANCES_KEY``: the monitor's instance table (the reconciler's own JSON, opaque here), so
  a restarted monitor resumes instead of launching twice.
* ``STATUS_KEY``: what the monitor last did and sees (pending launches, failures with cause
  and retry time, counters, pending demand by shape). ``rayops status``, the head's agent
  (metrics) and the dashboard read it.

This module imports nothing of rayops: it is the contract between those processes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "AUTOSCALER_NAMESPACE",
    "INSTANCES_KEY",
    "REQUESTS_KEY",
    "STATUS_KEY",
    "AutoscalerStatus",
    "FailureRecord",
    "PendingLaunch",
    "ResourceRequestRecord",
    "check_bundles",
]

AUTOSCALER_NAMESPACE = "autoscaler"
REQUESTS_KEY = b"resource_requests"
INSTANCES_KEY = b"instances"
STATUS_KEY = b"status"


def check_bundles(bundles: object, arg: str = "bundles") -> tuple[dict[str, float], ...]:
    """``bundles`` as a tuple of {resource: amount > 0}; ValueError naming what is wrong."""
    if not isinstance(bundles, (list, tuple)):
        raise ValueError(f"{arg}: expected a list of dicts, found {type(bundles).__name__}")
    out = []
    for i, b in enumerate(bundles):
        if not isinstance(b, Mapping) or not b:
            raise ValueError(f"{arg}[{i}]: expected a non-empty dict of resources, found {b!r}")
        clean: dict[str, float] = {}
        for k, v in b.items():
            if not isinstance(k, str) or not k:
                raise ValueError(f"{arg}[{i}]: expected resource names, found {k!r}")
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{arg}[{i}][{k!r}]: expected a number, found {v!r}")
            if v < 0:
                raise ValueError(f"{arg}[{i}][{k!r}]: expected an amount >= 0, found {v!r}")
            if v > 0:
                clean[k] = float(v)
        if clean:
            out.append(clean)
    return tuple(out)


@dataclass(frozen=True)
class ResourceRequestRecord:
    """One ``request_resources`` call: bundles the cluster must be able to hold at once."""

    bundles: tuple[Mapping[str, float], ...]
    time: float  # time.time() of the call

    def to_json(self) -> bytes:
        return json.dumps({"bundles": [dict(b) for b in self.bundles], "time": self.time}).encode()

    @staticmethod
    def from_json(data: bytes) -> ResourceRequestRecord:
        d = json.loads(data)
        return ResourceRequestRecord(check_bundles(d.get("bundles", [])), float(d.get("time", 0)))


@dataclass(frozen=True)
class PendingLaunch:
    instance_id: str
    node_type: str
    state: str  # the instance state (requested, launching, provisioning, ...)
    address: str  # "" until the provider knows it
    since: float  # time.time() the instance entered that state


@dataclass(frozen=True)
class FailureRecord:
    instance_id: str
    node_type: str
    address: str
    cause: str  # one line a human can act on
    time: float
    retry_at: float | None  # time.time() of the next attempt; None: given up


@dataclass(frozen=True)
class AutoscalerStatus:
    """The monitor's view, rewritten after every decision."""

    time: float
    provider: str
    running: int  # worker instances up and registered
    pending: tuple[PendingLaunch, ...] = ()
    failures: tuple[FailureRecord, ...] = ()  # the newest first, bounded
    # (shape, count) of demand no node holds now, and the shapes no node type can ever hold
    pending_demand: tuple[tuple[Mapping[str, float], int], ...] = ()
    infeasible: tuple[Mapping[str, float], ...] = ()
    # cumulative counters since the first monitor of this GCS (carried across restarts)
    started_nodes: int = 0
    stopped_nodes: int = 0
    failed_create_nodes: int = 0
    launch_requests: dict[str, int] = field(default_factory=dict)  # node type -> nodes asked

    def to_json(self) -> bytes:
        d = asdict(self)
        d["pending_demand"] = [[dict(s), n] for s, n in self.pending_demand]
        d["infeasible"] = [dict(s) for s in self.infeasible]
        return json.dumps(d).encode()

    @staticmethod
    def from_json(data: bytes) -> AutoscalerStatus:
        d: dict[str, Any] = json.loads(data)
        return AutoscalerStatus(
            time=float(d["time"]),
            provider=str(d.get("provider", "")),
            running=int(d.get("running", 0)),
            pending=tuple(PendingLaunch(**p) for p in d.get("pending", [])),
            failures=tuple(FailureRecord(**f) for f in d.get("failures", [])),
            pending_demand=tuple((dict(s), int(n)) for s, n in d.get("pending_demand", [])),
            infeasible=tuple(dict(s) for s in d.get("infeasible", [])),
            started_nodes=int(d.get("started_nodes", 0)),
            stopped_nodes=int(d.get("stopped_nodes", 0)),
            failed_create_nodes=int(d.get("failed_create_nodes", 0)),
            launch_requests={str(k): int(v) for k, v in d.get("launch_requests", {}).items()},
        )
