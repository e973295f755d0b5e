"""The raylet's view of the cluster: every node's resources and liveness.

Kept from the GCS's "nodes" channel (the event spine, `rayops.gcs.pubsub`): `follow_gcs`
subscribes with the epoch and version the view holds, applies the first batch (a snapshot,
or the events missed while disconnected) and then each batch of events as the GCS streams
it; nothing is polled. On a lost stream it subscribes again from where it was (the GCS
sends a snapshot if it cannot send the missing events, e.g. after a GCS restart): that part
is `rayops.gcs.follower.follow_channel`, which every follower of the spine shares. The
raylet's own node is always taken from its live numbers. When a node turns DEAD in the
view, the raylet tells its core workers so they stop waiting on connections into that node;
when its own node turns DEAD it stops (no split brain).

`ClusterView` itself does no I/O: batches in, (newly dead nodes, whether we are dead) out.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from rayops.gcs.follower import follow_channel
from rayops.gcs.node_events import (
    NodeAdded,
    NodeDead,
    NodeRemoved,
    NodeResourcesChanged,
    NodeSnapshot,
)
from rayops.gcs.pubsub import NODES_CHANNEL, Batch
from rayops.gcs.types import NodeInfo
from rayops.scheduling.policy import NodeView

# NodeView is re-exported: what the view holds per node, for the view's callers.
__all__ = ["ClusterView", "NodeView", "follow_gcs"]

logger = logging.getLogger(__name__)


def _wall_ms() -> int:
    return time.time_ns() // 1_000_000


def _view_of(n: NodeInfo) -> NodeView:
    return NodeView(
        n.node_id,
        (n.node_ip, n.raylet_port),
        dict(n.resources_total),
        dict(n.resources_available),
        n.state == "ALIVE",
        dict(n.labels),
    )


class ClusterView:
    def __init__(
        self,
        local_id: str,
        local_view: Callable[[], NodeView],
        clock_ms: Callable[[], int] = _wall_ms,
    ) -> None:
        self._local_id = local_id
        self._local_view = local_view
        self._clock_ms = clock_ms
        self.remote: dict[str, NodeView] = {}
        self.dead: set[str] = set()
        # The GCS epoch and channel version this view is at (what a resubscribe sends).
        self.epoch = ""
        self.version = 0
        # When (wall-clock ms) each other node was first seen ALIVE.
        self.seen_ms: dict[str, int] = {}

    def nodes(self) -> list[NodeView]:
        local = self._local_view()
        return [local, *(n for nid, n in self.remote.items() if nid != self._local_id)]

    def get(self, node_id: str) -> NodeView | None:
        if node_id == self._local_id:
            return self._local_view()
        return self.remote.get(node_id)

    def apply(self, batch: Batch) -> tuple[list[str], bool]:
        """Apply a batch of the "nodes" channel; returns (newly dead node ids, are we DEAD)."""
        newly_dead: list[str] = []
        me_dead = False
        if batch.is_snapshot:
            snapshot: NodeSnapshot = batch.snapshot
            self.remote = {}
            for n in snapshot.nodes:
                me_dead |= self._put(n, newly_dead)
        for event in batch.events:
            if isinstance(event, NodeAdded):
                me_dead |= self._put(event.node, newly_dead)
            elif isinstance(event, NodeResourcesChanged):
                old = self.remote.get(event.node_id)
                if old is not None:
                    self.remote[event.node_id] = NodeView(
                        old.node_id,
                        old.address,
                        dict(event.resources_total),
                        dict(event.resources_available),
                        old.alive,
                        old.labels,
                    )
            elif isinstance(event, NodeDead):
                me_dead |= self._mark_dead(event.node_id, newly_dead)
            elif isinstance(event, NodeRemoved):
                self.remote.pop(event.node_id, None)
        self.epoch = batch.epoch
        self.version = batch.version
        return newly_dead, me_dead

    def _put(self, n: NodeInfo, newly_dead: list[str]) -> bool:
        if n.node_id == self._local_id:
            return n.state != "ALIVE"
        view = _view_of(n)
        self.remote[n.node_id] = view
        if view.alive:
            self.seen_ms.setdefault(n.node_id, self._clock_ms())
        elif n.node_id not in self.dead:
            self.dead.add(n.node_id)
            newly_dead.append(n.node_id)
        return False

    def _mark_dead(self, node_id: str, newly_dead: list[str]) -> bool:
        if node_id == self._local_id:
            return True
        old = self.remote.get(node_id)
        if old is not None:
            self.remote[node_id] = NodeView(
                old.node_id, old.address, old.total, old.available, False, old.labels
            )
        if node_id not in self.dead:
            self.dead.add(node_id)
            newly_dead.append(node_id)
        return False


async def follow_gcs(
    view: ClusterView,
    gcs: Callable[[], Any],
    on_dead: Callable[[list[str]], None],
    on_self_dead: Callable[[], None],
    on_change: Callable[[], None],
    stopping: asyncio.Event,
    subscriber_id: str = "",
    on_connected: Callable[[bool], None] = lambda connected: None,
) -> None:
    """Keep `view` current from the GCS's node channel until `stopping` or our own death;
    `on_connected` hears when the stream comes up and goes down (`raylet/gcs_link.py`)."""

    def apply(batch: Batch) -> bool:
        dead, me_dead = view.apply(batch)
        if me_dead:
            logger.error("the GCS declared this node dead; stopping (no split brain)")
            on_self_dead()
            return False
        if dead:
            on_dead(dead)
        on_change()
        return True

    await follow_channel(
        gcs,
        NODES_CHANNEL,
        apply,
        stopping=stopping,
        subscriber_id=subscriber_id,
        on_connected=on_connected,
        epoch=view.epoch,
        version=view.version,
    )
