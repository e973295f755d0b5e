"""The raylet's view of the cluster: every node's resources and liveness.

Refreshed from the GCS every ``VIEW_PERIOD_S`` (a few hundred ms old at most);
the raylet's own node is always taken from its live numbers. When a node turns
DEAD in the view, the raylet tells its core workers so they stop waiting on
connections into that node.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rayops.scheduling.policy import NodeView

logger = logging.getLogger(__name__)

VIEW_PERIOD_S = 0.1


class ClusterView:
    def __init__(self, local_id: str, local_view: Callable[[], NodeView]) -> None:
        self._local_id = local_id
        self._local_view = local_view
        self.remote: dict[str, NodeView] = {}
        self.dead: set[str] = set()
        self.version = 0

    def nodes(self) -> list[NodeView]:
        local = self._local_view()
        return [local, *(n for nid, n in self.remote.items() if nid != self._local_id)]

    def get(self, node_id: str) -> NodeView | None:
        if node_id == self._local_id:
            return self._local_view()
        return self.remote.get(node_id)

    def update(self, infos: list[Any]) -> tuple[list[str], bool]:
        """Apply the GCS's node list; returns (newly dead node ids, whether we are DEAD)."""
        newly_dead: list[str] = []
        me_dead = False
        fresh: dict[str, NodeView] = {}
        for n in infos:
            alive = n.state == "ALIVE"
            if n.node_id == self._local_id:
                me_dead = not alive
                continue
            fresh[n.node_id] = NodeView(
                n.node_id,
                (n.node_ip, n.raylet_port),
                dict(n.resources_total),
                dict(n.resources_available),
                alive,
                dict(n.labels),
            )
            if not alive and n.node_id not in self.dead:
                self.dead.add(n.node_id)
                newly_dead.append(n.node_id)
        if fresh != self.remote:
            self.remote = fresh
            self.version += 1
        return newly_dead, me_dead


async def poll_gcs(
    view: ClusterView,
    gcs: Callable[[], Any],
    on_dead: Callable[[list[str]], None],
    on_self_dead: Callable[[], None],
    on_change: Callable[[], None],
    stopping: asyncio.Event,
) -> None:
    while not stopping.is_set():
        client = gcs()
        if client is not None:
            try:
                infos = await client.get_all_nodes()
            except Exception as err:  # GCS briefly unreachable: keep the last view
                logger.debug("could not refresh the cluster view: %r", err)
            else:
                before = view.version
                dead, me_dead = view.update(infos)
                if me_dead:
                    logger.error("the GCS declared this node dead; stopping (no split brain)")
                    on_self_dead()
                    return
                if dead:
                    on_dead(dead)
                if view.version != before:
                    on_change()
        await asyncio.sleep(VIEW_PERIOD_S)
