"""The Grafana dashboards for a rayops cluster, as data.

Each dashboard is a list of panels (title, unit, PromQL targets) turned into the
Grafana JSON model by :func:`dashboard_json`. Queries filter on ``SessionName``
and ``NodeAddress`` (labels every rayops series carries, as in Ray) through
dashboard variables, and use the ``${datasource}`` variable so one file works
with any Prometheus data source. Per-node panels group by
Prometheus's ``instance`` (the agent's ip:port, unique even when several nodes share an
address). ``python -m rayops.monitoring.dashboards DIR``
writes them (``monitoring/grafana/dashboards`` in the source tree is that output;
``--check`` fails when it is stale). Only metric names from docs/metrics.md are used.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from dataclasses import dataclass, field
from typing import Any

# Label matchers every query carries; the variables are defined in _templating().
SESSION = 'SessionName=~"$SessionName"'
NODE = 'NodeAddress=~"$NodeAddress"'
F = f"{SESSION},{NODE}"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
RATE = "$__rate_interval"
PLACEMENT = "ray_scheduler_placement_time_s"
TASK = f'WorkloadType="Task",{F}'  # lease grants, per raylet
ACTOR = f'WorkloadType="Actor",{SESSION}'  # actor creation, from the head's GCS


@dataclass(frozen=True)
class Target:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    description: str
    unit: str
    targets: tuple[Target, ...]
    kind: str = "timeseries"  # or "stat"
    width: int = 12
    height: int = 8
    stack: bool = False


@dataclass(frozen=True)
class Dashboard:
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]
    tags: tuple[str, ...] = field(default=("rayops",))


def _t(expr: str, legend: str = "") -> Target:
    return Target(expr, legend)


def _quantile(q: float, histogram: str, matchers: str) -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({histogram}_bucket{{{matchers}}}[{RATE}])))"


CLUSTER = Dashboard(
    uid="rayops-cluster",
    title="rayops / Cluster overview",
    description="Nodes, logical resources, tasks, actors and jobs of a rayops cluster.",
    panels=(
        Panel(
            "Alive nodes",
            "Nodes the GCS reports ALIVE (from the head's agent).",
            "none",
            (_t(f"sum(ray_cluster_active_nodes{{{SESSION}}})", "alive"),),
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Dead nodes",
            "Nodes the GCS has marked DEAD in this session (left or failed).",
            "none",
            (_t(f"sum(ray_cluster_failed_nodes{{{SESSION}}})", "dead"),),
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Agents scraped",
            "Agents Prometheus scrapes successfully, out of those it discovered.",
            "none",
            (
                _t(f'sum(up{{job="ray",{SESSION}}})', "up"),
                _t(f'count(up{{job="ray",{SESSION}}})', "discovered"),
            ),
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Jobs",
            "Driver jobs running, and finished ones the GCS remembers.",
            "none",
            (
                _t(f"sum(ray_running_jobs{{{SESSION}}})", "running"),
                _t(f"sum(ray_finished_jobs{{{SESSION}}})", "finished"),
            ),
            kind="stat",
            width=6,
            height=4,
        ),
        Panel(
            "Logical CPUs",
            "CPU slots used by tasks and actors (num_cpus), and the total.",
            "cores",
            (
                _t(
                    f'sum by (instance) (ray_resources{{Name="CPU",State="USED",{F}}})',
                    "used: {{instance}}",
                ),
                _t(f'sum(ray_resources{{Name="CPU",{F}}})', "total"),
            ),
        ),
        Panel(
            "Logical resources in use",
            "Every logical resource (CPU, GPU, memory, custom): used / total.",
            "percentunit",
            (
                _t(
                    f'sum by (Name) (ray_resources{{State="USED",{F}}})'
                    f" / sum by (Name) (ray_resources{{{F}}})",
                    "{{Name}}",
                ),
            ),
        ),
        Panel(
            "Tasks by state",
            "Tasks (remote functions and actor calls) by state.",
            "none",
            (_t(f"sum by (State) (ray_tasks{{{F}}})", "{{State}}"),),
        ),
        Panel(
            "Actors by state",
            "Actors by state, from the GCS.",
            "none",
            (_t(f"sum by (State) (ray_actors{{{SESSION}}})", "{{State}}"),),
        ),
        Panel(
            "Cluster CPU (hardware)",
            "Busy cores per node, from each node's CPU utilization.",
            "cores",
            (
                _t(
                    f"sum by (instance) (ray_node_cpu_utilization{{{F}}}"
                    f" * ray_node_cpu_count{{{F}}} / 100)",
                    "{{instance}}",
                ),
                _t(f"sum(ray_node_cpu_count{{{F}}})", "cores"),
            ),
        ),
        Panel(
            "Cluster memory (hardware)",
            "Memory used per node, and the total.",
            "bytes",
            (
                _t(f"sum by (instance) (ray_node_mem_used{{{F}}})", "{{instance}}"),
                _t(f"sum(ray_node_mem_total{{{F}}})", "total"),
            ),
        ),
    ),
)

NODES = Dashboard(
    uid="rayops-nodes",
    title="rayops / Nodes",
    description="Hardware and daemons of each node: CPU, memory, disk, network, components.",
    panels=(
        Panel(
            "CPU utilization",
            "Per node, percent of all its cores.",
            "percent",
            (_t(f"max by (instance) (ray_node_cpu_utilization{{{F}}})", "{{instance}}"),),
        ),
        Panel(
            "Memory used",
            "Per node, percent of its memory in use (heap and shared memory).",
            "percent",
            (
                _t(
                    f"sum by (instance) (ray_node_mem_used{{{F}}})"
                    f" / sum by (instance) (ray_node_mem_total{{{F}}}) * 100",
                    "{{instance}}",
                ),
            ),
        ),
        Panel(
            "Memory available",
            "Per node, memory the kernel can still hand out.",
            "bytes",
            (_t(f"sum by (instance) (ray_node_mem_available{{{F}}})", "{{instance}}"),),
        ),
        Panel(
            "Disk",
            "Per node: used bytes on the temp dir's file system, and percent used.",
            "bytes",
            (
                _t(f"sum by (instance) (ray_node_disk_usage{{{F}}})", "used: {{instance}}"),
                _t(f"sum by (instance) (ray_node_disk_free{{{F}}})", "free: {{instance}}"),
            ),
        ),
        Panel(
            "Disk used (%)",
            "Per node, percent of the temp dir's file system in use.",
            "percent",
            (
                _t(
                    f"max by (instance) (ray_node_disk_utilization_percentage{{{F}}})",
                    "{{instance}}",
                ),
            ),
        ),
        Panel(
            "Network",
            "Per node, bytes per second sent and received.",
            "Bps",
            (
                _t(
                    f"sum by (instance) (ray_node_network_send_speed{{{F}}})",
                    "sent: {{instance}}",
                ),
                _t(
                    f"sum by (instance) (ray_node_network_receive_speed{{{F}}})",
                    "received: {{instance}}",
                ),
            ),
        ),
        Panel(
            "Memory by component",
            "Resident memory of each daemon and of the workers, per node.",
            "mbytes",
            (
                _t(
                    f"sum by (instance, Component) (ray_component_rss_mb{{{F}}})",
                    "{{Component}}: {{instance}}",
                ),
            ),
            stack=True,
        ),
        Panel(
            "CPU by component",
            "CPU of each daemon and of the workers, per node (100 = one core).",
            "percent",
            (
                _t(
                    f"sum by (instance, Component) (ray_component_cpu_percentage{{{F}}})",
                    "{{Component}}: {{instance}}",
                ),
            ),
            stack=True,
        ),
        Panel(
            "Workers by state",
            "Worker processes of each node's pool by state: starting, idle, or leased to a task "
            "or actor.",
            "none",
            (
                _t(
                    f"sum by (instance, State) (ray_workers{{{F}}})",
                    "{{State}}: {{instance}}",
                ),
            ),
            stack=True,
        ),
        Panel(
            "Agent scrape duration",
            "How long Prometheus takes to scrape each agent's /metrics.",
            "s",
            (
                _t(
                    f'max by (instance) (scrape_duration_seconds{{job="ray",{F}}})',
                    "{{instance}}",
                ),
            ),
        ),
    ),
)

TASKS = Dashboard(
    uid="rayops-tasks-actors",
    title="rayops / Tasks and actors",
    description="Tasks by state and name, actors by state and class, scheduling and RPC latency.",
    panels=(
        Panel(
            "Tasks by state",
            "Tasks by state; retries (IsRetry != 0) are counted separately.",
            "none",
            (
                _t(f'sum by (State) (ray_tasks{{IsRetry="0",{F}}})', "{{State}}"),
                _t(f'sum by (State) (ray_tasks{{IsRetry!="0",{F}}})', "{{State}} (retry)"),
            ),
        ),
        Panel(
            "Live tasks by name",
            "Tasks not yet finished or failed, by function or method name.",
            "none",
            (
                _t(
                    f'sum by (Name) (ray_tasks{{State!~"FINISHED|FAILED",{F}}})',
                    "{{Name}}",
                ),
            ),
        ),
        Panel(
            "Finished tasks by name",
            "Tasks that completed, by function or method name.",
            "none",
            (_t(f'sum by (Name) (ray_tasks{{State="FINISHED",{F}}})', "{{Name}}"),),
        ),
        Panel(
            "Failed tasks by name",
            "Tasks that raised or lost their worker, by function or method name.",
            "none",
            (_t(f'sum by (Name) (ray_tasks{{State="FAILED",{F}}})', "{{Name}}"),),
        ),
        Panel(
            "Scheduler queue",
            "Task leases waiting in each raylet by scheduling state. Infeasible: no node "
            "in the cluster has the resources the task asks for.",
            "none",
            (
                _t(
                    f"sum by (State) (ray_scheduler_tasks{{{F}}})",
                    "{{State}}",
                ),
            ),
        ),
        Panel(
            "Actors by state",
            "Actors by lifecycle state, from the GCS.",
            "none",
            (_t(f"sum by (State) (ray_actors{{{SESSION}}})", "{{State}}"),),
        ),
        Panel(
            "Alive actors by class",
            "Alive actors by class name.",
            "none",
            (_t(f'sum by (Name) (ray_actors{{State="ALIVE",{SESSION}}})', "{{Name}}"),),
        ),
        Panel(
            "Task scheduling latency (p50, p99)",
            "Time from a lease request reaching a raylet to a worker being granted.",
            "s",
            (
                _t(_quantile(0.5, PLACEMENT, TASK), "p50"),
                _t(_quantile(0.99, PLACEMENT, TASK), "p99"),
            ),
        ),
        Panel(
            "Actor creation latency (p50, p99)",
            "Time from an actor's registration with the GCS to the actor being ALIVE.",
            "s",
            (
                _t(_quantile(0.5, PLACEMENT, ACTOR), "p50"),
                _t(_quantile(0.99, PLACEMENT, ACTOR), "p99"),
            ),
        ),
        Panel(
            "GCS RPC latency (p99)",
            "Server-side latency of GCS gRPC methods, by method.",
            "ms",
            (
                _t(
                    "histogram_quantile(0.99, sum by (le, Method) "
                    f"(rate(ray_grpc_server_req_process_time_ms_bucket{{{SESSION}}}[{RATE}])))",
                    "{{Method}}",
                ),
            ),
        ),
        Panel(
            "GCS RPC rate",
            "GCS gRPC calls per second, by method.",
            "reqps",
            (
                _t(
                    "sum by (Method) "
                    f"(rate(ray_grpc_server_req_process_time_ms_count{{{SESSION}}}[{RATE}]))",
                    "{{Method}}",
                ),
            ),
        ),
    ),
)

OBJECT_STORE = Dashboard(
    uid="rayops-object-store",
    title="rayops / Object store",
    description="Shared-memory object store of each node: use, objects, spilling and restoring.",
    panels=(
        Panel(
            "Object store used (%)",
            "Per node, percent of the object store's capacity in use. Above 90% new objects "
            "spill to disk.",
            "percent",
            (
                _t(
                    f"100 * sum by (instance) (ray_object_store_used_memory{{{F}}})"
                    f" / (sum by (instance) (ray_object_store_used_memory{{{F}}})"
                    f" + sum by (instance) (ray_object_store_available_memory{{{F}}}))",
                    "{{instance}}",
                ),
            ),
        ),
        Panel(
            "Object store memory by location",
            "Bytes of objects by where they are: in shared memory or spilled to disk.",
            "bytes",
            (_t(f"sum by (Location) (ray_object_store_memory{{{F}}})", "{{Location}}"),),
            stack=True,
        ),
        Panel(
            "Object store used and capacity",
            "Per node, bytes in use and the capacity of the store.",
            "bytes",
            (
                _t(
                    f"sum by (instance) (ray_object_store_used_memory{{{F}}})",
                    "used: {{instance}}",
                ),
                _t(
                    f"sum by (instance) (ray_object_store_used_memory{{{F}}})"
                    f" + sum by (instance) (ray_object_store_available_memory{{{F}}})",
                    "capacity: {{instance}}",
                ),
            ),
        ),
        Panel(
            "Objects in the store",
            "Per node, number of objects in shared memory.",
            "none",
            (
                _t(
                    f"sum by (instance) (ray_object_store_num_local_objects{{{F}}})",
                    "{{instance}}",
                ),
            ),
        ),
        Panel(
            "Spilled bytes",
            "Per node, bytes of objects currently spilled to disk.",
            "bytes",
            (
                _t(
                    f'sum by (instance) (ray_object_store_memory{{Location="SPILLED",{F}}})',
                    "{{instance}}",
                ),
            ),
        ),
        Panel(
            "Spill and restore rate",
            "Per node, spill and restore requests per second.",
            "ops",
            (
                _t(
                    "sum by (instance, Type) "
                    f"(rate(ray_spill_manager_request_total{{{F}}}[{RATE}]))",
                    "{{Type}}: {{instance}}",
                ),
            ),
        ),
    ),
)

DASHBOARDS: tuple[Dashboard, ...] = (CLUSTER, NODES, TASKS, OBJECT_STORE)


def _templating() -> dict[str, Any]:
    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name,
            "label": label,
            "type": "query",
            "datasource": DATASOURCE,
            "query": {"query": query, "refId": f"{name}-var"},
            "definition": query,
            "refresh": 2,  # on time range change
            "includeAll": True,
            "allValue": ".+",
            "multi": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "sort": 1,
            "hide": 0,
        }

    return {
        "list": [
            {
                "name": "datasource",
                "label": "Data source",
                "type": "datasource",
                "query": "prometheus",
                "current": {},
                "hide": 0,
                "includeAll": False,
                "multi": False,
                "refresh": 1,
                "regex": "",
            },
            query_var("SessionName", "Session", "label_values(ray_node_cpu_count, SessionName)"),
            query_var(
                "NodeAddress",
                "Node",
                'label_values(ray_node_cpu_count{SessionName=~"$SessionName"}, NodeAddress)',
            ),
        ]
    }


def _layout(panels: tuple[Panel, ...]) -> list[tuple[int, int]]:
    """Grafana's 24-column grid, filled left to right."""
    out = []
    x = y = row_h = 0
    for p in panels:
        if x + p.width > 24:
            x, y, row_h = 0, y + row_h, 0
        out.append((x, y))
        x += p.width
        row_h = max(row_h, p.height)
    return out


def _panel_json(pid: int, p: Panel, x: int, y: int) -> dict[str, Any]:
    targets = [
        {
            "refId": chr(ord("A") + i),
            "datasource": DATASOURCE,
            "expr": t.expr,
            "legendFormat": t.legend,
            "range": p.kind == "timeseries",
            "instant": p.kind == "stat",
        }
        for i, t in enumerate(p.targets)
    ]
    custom: dict[str, Any] = {}
    if p.kind == "timeseries":
        custom = {
            "drawStyle": "line",
            "fillOpacity": 10,
            "lineWidth": 1,
            "stacking": {"mode": "normal" if p.stack else "none", "group": "A"},
        }
    return {
        "id": pid,
        "type": p.kind,
        "title": p.title,
        "description": p.description,
        "datasource": DATASOURCE,
        "gridPos": {"x": x, "y": y, "w": p.width, "h": p.height},
        "fieldConfig": {"defaults": {"unit": p.unit, "custom": custom}, "overrides": []},
        "options": {"legend": {"displayMode": "list", "placement": "bottom"}}
        if p.kind == "timeseries"
        else {"reduceOptions": {"calcs": ["lastNotNull"]}, "textMode": "value_and_name"},
        "targets": targets,
    }


def dashboard_json(d: Dashboard) -> dict[str, Any]:
    """The Grafana JSON model of one dashboard."""
    places = _layout(d.panels)
    panels = [
        _panel_json(i + 1, p, x, y)
        for i, (p, (x, y)) in enumerate(zip(d.panels, places, strict=True))
    ]
    return {
        "uid": d.uid,
        "title": d.title,
        "description": d.description,
        "tags": list(d.tags),
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": "now-30m", "to": "now"},
        "timepicker": {},
        "timezone": "",
        "annotations": {"list": []},
        "links": [],
        "templating": _templating(),
        "panels": panels,
    }


def queries() -> list[tuple[str, str, str]]:
    """(dashboard uid, panel title, PromQL with Grafana variables) of every target."""
    return [(d.uid, p.title, t.expr) for d in DASHBOARDS for p in d.panels for t in p.targets]


def concrete_query(expr: str, *, session: str = ".+", node: str = ".+", rate: str = "1m") -> str:
    """``expr`` with the dashboard variables replaced, as Grafana would send it."""
    return (
        expr.replace("$SessionName", session)
        .replace("$NodeAddress", node)
        .replace("$__rate_interval", rate)
    )


def rendered() -> dict[str, str]:
    """File name -> JSON text of every dashboard."""
    return {f"{d.uid}.json": json.dumps(dashboard_json(d), indent=2) + "\n" for d in DASHBOARDS}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Write rayops's Grafana dashboards as JSON.")
    p.add_argument("directory", help="where to write them")
    p.add_argument("--check", action="store_true", help="fail if the files there are stale")
    args = p.parse_args(argv)
    stale = []
    for name, text in rendered().items():
        path = os.path.join(args.directory, name)
        if args.check:
            try:
                with open(path, encoding="utf-8") as f:
                    if f.read() == text:
                        continue
            except FileNotFoundError:
                pass
            stale.append(path)
            continue
        os.makedirs(args.directory, exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    if stale:
        sys.stderr.write(
            f"stale dashboards: {', '.join(stale)}; run "
            f"`python -m rayops.monitoring.dashboards {args.directory}`\n"
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
