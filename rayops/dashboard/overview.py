"""The dashboard page's data endpoints: a followed, cached view of the cluster in the API server.

`ClusterOverview` follows the GCS's "nodes", "actors" and "placement_groups" channels
(`gcs/follower.follow_channel`: a snapshot, then events, resubscribing after a broken stream)
into a `ClusterState`, and samples the cluster's use every `sample_every_s` into a bounded
`UsageHistory` (the last `history_s`) for the charts. A page view never reaches the GCS: each
answer is rendered from the view and encoded once per change of its channel (a cache keyed by
the channel's version), so a thousand browsers polling a thousand actors cost one encoding per
change.

Routes (token-checked, as every route but the health check):

* ``GET /api/dashboard/nodes``: nodes with state, address, resources used/total and object
  store; the cluster's totals.
* ``GET /api/dashboard/actors``: every actor the GCS holds (id, state, class, name, node, pid,
  job) and the counts by state.
* ``GET /api/dashboard/placement_groups``: every placement group, its bundles and their nodes.
* ``GET /api/dashboard/usage``: the usage rings: sample times and, per series (the cluster,
  each node), used and total per metric.

Each answer carries ``synced``: False until the channel's first snapshot arrived (the page
says "loading" rather than "0 nodes").
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from rayops.dashboard.jobs import BadRequest
from rayops.dashboard.overview_state import (
    CHANNELS,
    ClusterState,
    UsageHistory,
    actors_payload,
    groups_payload,
    nodes_payload,
)
from rayops.gcs.follower import follow_channel
from rayops.gcs.pubsub import ACTORS_CHANNEL, NODES_CHANNEL, PG_CHANNEL, Batch

__all__ = ["DEFAULT_HISTORY_S", "DEFAULT_SAMPLE_EVERY_S", "ClusterOverview"]

logger = logging.getLogger(__name__)

DEFAULT_SAMPLE_EVERY_S = 2.0
DEFAULT_HISTORY_S = 600.0


class ClusterOverview:
    """The server's followed view of the cluster and its usage history (see the module doc)."""

    def __init__(
        self,
        gcs: Any,
        *,
        sample_every_s: float = DEFAULT_SAMPLE_EVERY_S,
        history_s: float = DEFAULT_HISTORY_S,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if sample_every_s <= 0:
            raise ValueError(f"sample_every_s must be positive, got {sample_every_s}")
        self._gcs = gcs
        self._clock = clock
        self.sample_every_s = sample_every_s
        self.state = ClusterState()
        self.history = UsageHistory(max(2, round(history_s / sample_every_s)))
        self._samples = 0
        self._cache: dict[str, tuple[Any, bytes]] = {}
        self._tasks: list[asyncio.Task[None]] = []

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> None:
        for channel in CHANNELS:
            self._tasks.append(
                asyncio.create_task(
                    follow_channel(
                        lambda: self._gcs,
                        channel,
                        self._apply,
                        subscriber_id=f"dashboard-{channel}",
                    ),
                    name=f"dashboard-follow-{channel}",
                )
            )
        self._tasks.append(asyncio.create_task(self._sample_loop(), name="dashboard-usage"))

    async def stop(self) -> None:
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()

    def _apply(self, batch: Batch) -> bool:
        self.state.apply(batch)
        return True

    async def _sample_loop(self) -> None:
        while True:
            if NODES_CHANNEL in self.state.synced:
                self.sample()
            await asyncio.sleep(self.sample_every_s)

    def sample(self) -> None:
        """Take one usage sample now (the loop's step; tests call it directly)."""
        self.history.record(self._clock(), self.state)
        self._samples += 1

    # --------------------------------------------------------------------- routes
    def register(self, router: web.UrlDispatcher) -> None:
        router.add_get("/api/dashboard/nodes", self._nodes)
        router.add_get("/api/dashboard/actors", self._actors)
        router.add_get("/api/dashboard/placement_groups", self._groups)
        router.add_get("/api/dashboard/usage", self._usage)
        router.add_get("/api/dashboard/autoscaler", self._autoscaler)

    def _encoded(self, name: str, key: Any, build: Callable[[], dict[str, Any]]) -> bytes:
        hit = self._cache.get(name)
        if hit is not None and hit[0] == key:
            return hit[1]
        body = json.dumps(build(), separators=(",", ":")).encode()
        self._cache[name] = (key, body)
        return body

    def _answer(self, channel: str, build: Callable[[ClusterState], dict[str, Any]]) -> bytes:
        state = self.state

        def render() -> dict[str, Any]:
            payload = build(state)
            payload["synced"] = channel in state.synced
            return payload

        return self._encoded(channel, (state.version[channel], channel in state.synced), render)

    @staticmethod
    def _json(request: web.Request, body: bytes) -> web.Response:
        # These routes take no parameters: one given would be ignored, so it is refused.
        if request.query:
            names = ", ".join(sorted(request.query))
            raise BadRequest(f"{request.path} takes no query parameters, got: {names}")
        return web.Response(
            body=body, content_type="application/json", headers={"Cache-Control": "no-store"}
        )

    async def _nodes(self, request: web.Request) -> web.Response:
        return self._json(request, self._answer(NODES_CHANNEL, nodes_payload))

    async def _actors(self, request: web.Request) -> web.Response:
        return self._json(request, self._answer(ACTORS_CHANNEL, actors_payload))

    async def _groups(self, request: web.Request) -> web.Response:
        return self._json(request, self._answer(PG_CHANNEL, groups_payload))

    async def _autoscaler(self, request: web.Request) -> web.Response:
        """The autoscaler's status record (its monitor rewrites it every round), or null."""
        from rayops.protocol.autoscaler_messages import AUTOSCALER_NAMESPACE, STATUS_KEY

        raw = await self._gcs.kv_get(STATUS_KEY, namespace=AUTOSCALER_NAMESPACE)
        body = b'{"status":' + (raw or b"null") + b"}"
        return self._json(request, body)

    async def _usage(self, request: web.Request) -> web.Response:
        def render() -> dict[str, Any]:
            payload = self.history.payload()
            payload["interval_s"] = self.sample_every_s
            payload["max_samples"] = self.history.max_samples
            return payload

        return self._json(request, self._encoded("usage", self._samples, render))
