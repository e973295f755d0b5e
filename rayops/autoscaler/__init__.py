"""The autoscaler: pending demand in, launches and terminations out.

The pure parts live here: ``types`` (node types, limits, demand, nodes, decisions),
``decide`` (the decision function) and ``instances`` (the instance state machine and its
reconciler; not re-exported here, so ``rayops.autoscaler.decide`` stays the module). They
do no I/O and read no clock; the head-side daemon (its own module) reads
the GCS and the provider, feeds these, and carries their actions out.
"""

from __future__ import annotations

from rayops.autoscaler.types import (
    AutoscalerConfig,
    BundleDemand,
    Decision,
    Demand,
    Infeasible,
    NodeTypeConfig,
    NodeView,
    ResourceDemand,
    ResourceRequest,
    Termination,
)

__all__ = [
    "AutoscalerConfig",
    "BundleDemand",
    "Decision",
    "Demand",
    "Infeasible",
    "NodeTypeConfig",
    "NodeView",
    "ResourceDemand",
    "ResourceRequest",
    "Termination",
]
