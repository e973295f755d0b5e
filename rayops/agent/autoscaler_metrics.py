"""The autoscaler's metrics, exported by the head's agent under Ray's names.

Pure: ``autoscaler_families`` turns the monitor's status record (``AutoscalerStatus``, which
the head's agent reads from the GCS KV with the cluster metrics) into Prometheus families:
Ray's ``autoscaler_pending_nodes``, ``autoscaler_running_workers``, the counters
``autoscaler_started_nodes``, ``autoscaler_stopped_nodes``, ``autoscaler_failed_create_nodes``
(exposed with ``_total``), and rayops's ``autoscaler_pending_demand`` (queued shapes by
shape) and ``autoscaler_infeasible_shapes``.
"""

from __future__ import annotations

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from rayops.agent.node_metrics import BASE_LABELS
from rayops.protocol.autoscaler_messages import AutoscalerStatus

__all__ = ["autoscaler_families", "shape_label"]


def shape_label(shape: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"


def autoscaler_families(st: AutoscalerStatus, base: tuple[str, str]) -> list[Metric]:
    b = list(BASE_LABELS)
    pending = GaugeMetricFamily(
        "autoscaler_pending_nodes", "Number of nodes pending to be started.", labels=b
    )
    pending.add_metric(list(base), len(st.pending))
    running = GaugeMetricFamily(
        "autoscaler_running_workers", "Number of worker nodes running.", labels=b
    )
    running.add_metric(list(base), st.running)
    out: list[Metric] = [pending, running]
    for name, help_text, value in (
        ("autoscaler_started_nodes", "Number of nodes started.", st.started_nodes),
        ("autoscaler_stopped_nodes", "Number of nodes stopped.", st.stopped_nodes),
        (
            "autoscaler_failed_create_nodes",
            "Number of nodes that failed to be created or provisioned.",
            st.failed_create_nodes,
        ),
    ):
        c = CounterMetricFamily(name, help_text, labels=b)
        c.add_metric(list(base), value)
        out.append(c)
    demand = GaugeMetricFamily(
        "autoscaler_pending_demand",
        "Queued tasks, actors and bundles waiting for resources, by shape",
        labels=[*b, "shape"],
    )
    for shape, count in st.pending_demand:
        demand.add_metric([*base, shape_label(dict(shape))], count)
    infeasible = GaugeMetricFamily(
        "autoscaler_infeasible_shapes",
        "Shapes no node type can hold (1 per shape)",
        labels=[*b, "shape"],
    )
    for shape in st.infeasible:
        infeasible.add_metric([*base, shape_label(dict(shape))], 1)
    return [*out, demand, infeasible]
