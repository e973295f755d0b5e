"""Prometheus service discovery: the list of every live agent, served by the head's agent.

The same list is served over HTTP (``GET /api/prometheus/sd``, Prometheus ``http_sd_configs``)
and written as a ``file_sd_configs`` file at ``<temp_dir>/prom_metrics_service_discovery.json``
(Ray's file name). `sd_targets` builds it from the GCS's node table (pure); `write_file_sd`
replaces the file atomically (temp file in the same directory, fsync, rename), so Prometheus
never reads half a file.

How the head's agent learns of changes: it polls the GCS's GetAllNodeInfo(alive_only) every
`POLL_PERIOD_S` and rewrites the file only when the list changed. A node that registers is
listed within one period; a node the GCS declares dead (health checks, see
docs/architecture.md "Node health") or that unregisters leaves within one period after that.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any

__all__ = ["FILE_NAME", "POLL_PERIOD_S", "sd_targets", "write_file_sd"]

FILE_NAME = "prom_metrics_service_discovery.json"
POLL_PERIOD_S = 0.5


def sd_targets(nodes: Iterable[Any], session_name: str) -> list[dict[str, Any]]:
    """One target group per live node that runs an agent, in node-id order.

    ``nodes`` are `rayops.gcs.types.NodeInfo` records (only ``node_id``, ``node_ip``,
    ``metrics_export_port``, ``is_head_node`` and ``state`` are read).
    """
    groups = []
    for n in sorted(nodes, key=lambda n: n.node_id):
        if str(n.state) != "ALIVE" or not n.metrics_export_port:
            continue
        groups.append(
            {
                "targets": [f"{_host(n.node_ip)}:{n.metrics_export_port}"],
                "labels": {
                    "job": "ray",
                    "SessionName": session_name,
                    "NodeId": n.node_id,
                    "NodeAddress": n.node_ip,
                    "ray_io_node_type": "head" if n.is_head_node else "worker",
                },
            }
        )
    return groups


def _host(ip: str) -> str:
    return f"[{ip}]" if ":" in ip else ip


def write_file_sd(path: str, groups: list[dict[str, Any]]) -> None:
    """Replace ``path`` with ``groups`` as JSON, atomically."""
    directory = os.path.dirname(path) or "."
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".prom_sd.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(groups, f, indent=1)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
