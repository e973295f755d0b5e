"""Prometheus service discovery: the list of every live agent, served by the head's agent.

The same list is served over HTTP (``GET /api/prometheus/sd``, Prometheus ``http_sd_configs``)
and written as a ``file_sd_configs`` file at ``<temp_dir>/prom_metrics_service_discovery.json``
(Ray's file name). `sd_targets` builds it from the GCS's node table (pure); `write_file_sd`
replaces the file atomically (temp file in the same directory, fsync, rename), so Prometheus
never reads half a file.

How the head's agent learns of changes: it follows the GCS's "nodes" channel (the event
spine: a snapshot, then the events as they happen, resynced after a reconnect;
`rayops.gcs.follower.follow_channel`), keeps the membership in a `NodeMembership` and
rewrites the file only when the list changed. A node that registers is listed as soon as its
`NodeAdded` arrives (milliseconds); a node the GCS declares dead (health checks, see
docs/architecture.md "Node health") or that unregisters leaves with its `NodeDead`. Nothing
is polled: an idle cluster costs the GCS no calls for discovery. A file write that failed is
retried every `RETRY_PERIOD_S`.
"""

from __future__ import annotations

import dataclasses
import json
import os
import tempfile
from collections.abc import Iterable
from typing import Any

from rayops.gcs.node_events import NodeAdded, NodeDead, NodeRemoved, NodeSnapshot
from rayops.gcs.pubsub import Batch
from rayops.gcs.types import NodeInfo, NodeState

__all__ = ["FILE_NAME", "RETRY_PERIOD_S", "NodeMembership", "sd_targets", "write_file_sd"]

FILE_NAME = "prom_metrics_service_discovery.json"
RETRY_PERIOD_S = 0.5


class NodeMembership:
    """Every node of the GCS's node table, kept from its "nodes" channel. Pure: batches in.

    Usage-only events (`NodeResourcesChanged`) change nothing discovery reads and are skipped.
    """

    def __init__(self) -> None:
        self.nodes: dict[str, NodeInfo] = {}

    def apply(self, batch: Batch) -> bool:
        """Apply one batch; True when membership may have changed (a snapshot, a join, a
        death or a forgotten node)."""
        changed = False
        if batch.is_snapshot:
            snapshot: NodeSnapshot = batch.snapshot
            self.nodes = {n.node_id: n for n in snapshot.nodes}
            changed = True
        for event in batch.events:
            if isinstance(event, NodeAdded):
                self.nodes[event.node.node_id] = event.node
                changed = True
            elif isinstance(event, NodeDead):
                node = self.nodes.get(event.node_id)
                if node is not None:
                    self.nodes[event.node_id] = dataclasses.replace(
                        node,
                        state=NodeState.DEAD,
                        death_reason=event.death_reason,
                        end_time_ms=event.end_time_ms,
                    )
                    changed = True
            elif isinstance(event, NodeRemoved):
                changed |= self.nodes.pop(event.node_id, None) is not None
        return changed

    def alive(self) -> list[NodeInfo]:
        return [n for n in self.nodes.values() if n.state == NodeState.ALIVE]


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
