"""The autoscaler's typed inputs and outputs: node types, limits, demand, nodes, decisions.

Plain frozen dataclasses, no I/O. The head-side shell builds them from the cluster spec and
the GCS; ``decide.decide`` reads them; ``instances.reconcile`` carries the decision out.
Resource amounts are Ray's (``CPU``, ``GPU``, ``memory`` in bytes, custom names,
``accelerator_type:X``); a shape is a mapping of resource name to amount.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

from rayops.scheduling.labels import LabelSelector, labels_match

__all__ = [
    "STRATEGIES",
    "AutoscalerConfig",
    "BundleDemand",
    "Decision",
    "Demand",
    "Infeasible",
    "NodeTypeConfig",
    "NodeView",
    "ResourceDemand",
    "ResourceRequest",
    "Shape",
    "Termination",
]

Shape = Mapping[str, float]
STRATEGIES = ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD")


@dataclass(frozen=True)
class NodeTypeConfig:
    """One entry of ``available_node_types``: what a node of this type offers, and how many.

    ``max_workers`` None: bounded only by the cluster-wide ``max_workers`` (Ray's default).
    """

    name: str
    resources: Shape
    labels: Mapping[str, str] = field(default_factory=dict)
    min_workers: int = 0
    max_workers: int | None = None

    def __post_init__(self) -> None:
        if self.min_workers < 0:
            raise ValueError(f"node type {self.name!r}: min_workers must be >= 0")
        if self.max_workers is not None and self.max_workers < self.min_workers:
            raise ValueError(
                f"node type {self.name!r}: max_workers ({self.max_workers}) is below "
                f"min_workers ({self.min_workers})"
            )
        bad = {k: v for k, v in self.resources.items() if v < 0}
        if bad:
            raise ValueError(f"node type {self.name!r}: negative resources {bad}")


@dataclass(frozen=True)
class AutoscalerConfig:
    """The cluster's scaling rules (Ray's cluster YAML keys, in seconds).

    ``max_workers``: cluster-wide cap on worker nodes (the head is not counted).
    ``upscaling_speed``: at most ``max(5, upscaling_speed * running workers)`` nodes are
    pending (launched, not yet running) at once, Ray's rule.
    ``launch_retries`` / ``retry_backoff_s``: a node that fails to come up is retried this
    many more times, waiting ``retry_backoff_s`` then doubling.
    """

    node_types: Mapping[str, NodeTypeConfig]
    head_node_type: str
    max_workers: int = 2
    upscaling_speed: float = 1.0
    idle_timeout_s: float = 300.0
    launch_retries: int = 3
    retry_backoff_s: float = 5.0

    def __post_init__(self) -> None:
        for key, t in self.node_types.items():
            if key != t.name:
                raise ValueError(f"node_types: key {key!r} holds node type named {t.name!r}")
        if self.head_node_type not in self.node_types:
            raise ValueError(
                f"head_node_type {self.head_node_type!r} is not one of the node types "
                f"({', '.join(self.node_types) or 'none'})"
            )
        for name, value in (
            ("max_workers", self.max_workers),
            ("upscaling_speed", self.upscaling_speed),
            ("idle_timeout_s", self.idle_timeout_s),
            ("launch_retries", self.launch_retries),
            ("retry_backoff_s", self.retry_backoff_s),
        ):
            if value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")


@dataclass(frozen=True)
class ResourceDemand:
    """``count`` queued tasks or actors of one ``shape`` (and label selector, if any)."""

    shape: Shape
    count: int = 1
    label_selector: LabelSelector = ()


@dataclass(frozen=True)
class BundleDemand:
    """A pending placement group: its bundles and strategy (PACK, SPREAD, STRICT_PACK,
    STRICT_SPREAD)."""

    bundles: tuple[Shape, ...]
    strategy: str = "PACK"
    label_selector: LabelSelector = ()

    def __post_init__(self) -> None:
        if self.strategy not in STRATEGIES:
            raise ValueError(
                f"placement group strategy: expected one of {', '.join(STRATEGIES)}, "
                f"got {self.strategy!r}"
            )


@dataclass(frozen=True)
class ResourceRequest:
    """``request_resources(num_cpus=, bundles=)``: bundles the cluster must be able to hold
    at once (a floor on its size, not work to run). Several requests add up."""

    bundles: tuple[Shape, ...]


@dataclass(frozen=True)
class NodeView:
    """One live node as the GCS reports it.

    ``instance_id``: the autoscaler instance that made it (None for nodes it did not make,
    such as the head or a node started by hand; those are never terminated).
    ``idle_s``: seconds since the node last ran anything (0 when busy).
    """

    node_id: str
    instance_id: str | None
    node_type: str
    total: Shape
    available: Shape
    idle_s: float = 0.0
    holds_objects: bool = False
    holds_bundles: bool = False
    is_head: bool = False
    labels: Mapping[str, str] = field(default_factory=dict)

    def matches(self, selector: LabelSelector) -> bool:
        return labels_match(selector, self.labels)


@dataclass(frozen=True)
class Demand:
    """Everything waiting for resources, as the GCS reports it."""

    tasks: tuple[ResourceDemand, ...] = ()
    groups: tuple[BundleDemand, ...] = ()
    requests: tuple[ResourceRequest, ...] = ()


class Termination(NamedTuple):
    instance_id: str
    reason: str


@dataclass(frozen=True)
class Infeasible:
    """A shape no node type can ever hold, how many of it wait, and why."""

    shape: Shape
    count: int
    reason: str


@dataclass(frozen=True)
class Decision:
    """What to do now: launch ``launch[type]`` nodes of each type, terminate these
    instances (with a reason), and the demand no node type can hold (reported, not
    launched for)."""

    launch: Mapping[str, int] = field(default_factory=dict)
    terminate: tuple[Termination, ...] = ()
    infeasible: tuple[Infeasible, ...] = ()
    #: demand that a launch of this decision (or one already pending) is for, by shape;
    #: for metrics ("pending demand by shape").
    pending: tuple[tuple[Shape, int], ...] = ()
    #: node types not launched until this time (their last record failed for good)
    cooling: Mapping[str, float] = field(default_factory=dict)
