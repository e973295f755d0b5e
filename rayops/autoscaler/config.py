"""The scaling rules of a cluster spec (Ray's YAML keys) as the decision's ``AutoscalerConfig``."""

from __future__ import annotations

from typing import Any

from rayops.autoscaler.types import AutoscalerConfig, NodeTypeConfig

__all__ = ["config_from_spec"]


def config_from_spec(spec: Any) -> AutoscalerConfig:
    """The scaling rules of a cluster spec (Ray's keys; minutes become seconds)."""
    types: dict[str, NodeTypeConfig] = {}
    for name, t in spec.available_node_types.items():
        types[name] = NodeTypeConfig(
            name=name,
            resources=dict(t.resources),
            labels=dict(t.labels),
            min_workers=t.min_workers,
            max_workers=t.max_workers,
        )
    head = spec.head_node_type or "head"
    if head not in types:
        types[head] = NodeTypeConfig(name=head, resources={})
    max_workers = spec.max_workers
    if max_workers is None:
        max_workers = sum(t.max_workers or 0 for n, t in types.items() if n != head) or 2
    return AutoscalerConfig(
        node_types=types,
        head_node_type=head,
        max_workers=max_workers,
        upscaling_speed=spec.upscaling_speed,
        idle_timeout_s=spec.idle_timeout_minutes * 60.0,
    )
