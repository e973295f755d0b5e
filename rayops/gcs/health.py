"""Node health checks: the GCS pings every raylet and declares silent nodes dead.

Settings (environment of the GCS process; documented in docs/architecture.md):

    RAYOPS_HEALTH_CHECK_PERIOD_S             1.0   time between pings of a node
    RAYOPS_HEALTH_CHECK_TIMEOUT_S            1.0   a ping unanswered this long is a miss
    RAYOPS_HEALTH_CHECK_FAILURE_THRESHOLD    3     misses in a row before the node is dead

So a node that stops answering is declared dead within about
period * threshold + timeout = 4 s by default (Ray's defaults take 30 s or more).
Every raylet sees the death in its cluster view within ~100 ms and tells its core
workers; actors on the node restart or die per max_restarts.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HealthSettings:
    period_s: float = 1.0
    timeout_s: float = 1.0
    failure_threshold: int = 3

    @staticmethod
    def from_env(env: dict[str, str] | None = None) -> HealthSettings:
        env = dict(os.environ) if env is None else env

        def num(name: str, default: float, kind: type) -> Any:
            raw = env.get(name)
            if raw is None:
                return default
            try:
                value = kind(raw)
            except ValueError as err:
                raise ValueError(f"{name} must be a {kind.__name__} > 0, got {raw!r}") from err
            if value <= 0:
                raise ValueError(f"{name} must be > 0, got {raw!r}")
            return value

        return HealthSettings(
            num("RAYOPS_HEALTH_CHECK_PERIOD_S", 1.0, float),
            num("RAYOPS_HEALTH_CHECK_TIMEOUT_S", 1.0, float),
            num("RAYOPS_HEALTH_CHECK_FAILURE_THRESHOLD", 3, int),
        )


class MissCounter:
    """Decision logic, no I/O: which nodes crossed the failure threshold."""

    def __init__(self, threshold: int) -> None:
        self._threshold = threshold
        self._misses: dict[str, int] = {}

    def record(self, node_id: str, ok: bool) -> bool:
        """Record one check; True exactly when the node has just reached the threshold."""
        if ok:
            self._misses.pop(node_id, None)
            return False
        n = self._misses.get(node_id, 0) + 1
        self._misses[node_id] = n
        return n == self._threshold

    def forget(self, node_id: str) -> None:
        self._misses.pop(node_id, None)


async def health_loop(
    settings: HealthSettings,
    alive_nodes: Callable[[], list[Any]],
    ping: Callable[[Any], Awaitable[bool]],
    declare_dead: Callable[[Any, str], None],
) -> None:
    counter = MissCounter(settings.failure_threshold)

    async def check(node: Any) -> None:
        try:
            ok = await asyncio.wait_for(ping(node), settings.timeout_s)
        except Exception:
            ok = False
        if counter.record(node.node_id, ok):
            counter.forget(node.node_id)
            declare_dead(
                node,
                f"missed {settings.failure_threshold} health checks in a row "
                f"(every {settings.period_s:g} s, {settings.timeout_s:g} s timeout)",
            )

    while True:
        await asyncio.sleep(settings.period_s)
        nodes = alive_nodes()
        if nodes:
            await asyncio.gather(*(check(n) for n in nodes))
