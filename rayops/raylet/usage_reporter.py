"""The raylet's usage reports to the GCS: sent only on change, coalesced.

Whatever changes the node's resources, object store or waiting lease shapes calls `mark()`
(a flag, no I/O). The reporter then reads the node's usage once, sends it if it differs from
the last report the GCS accepted, and waits `coalesce_s` before looking again, so a busy
node sends at most one report per window however many leases come and go, and an idle node
sends nothing at all. The GCS turns a report that changed something into one
NodeResourcesChanged event on the spine, which every raylet's cluster view applies.

Liveness is not this module's business: the GCS's health checks ping every raylet
(`rayops.gcs.health`); a report is never a heartbeat.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)

__all__ = ["REPORT_COALESCE_S", "UsageReport", "UsageReporter"]

# At most one report per this window while the node's usage keeps changing.
REPORT_COALESCE_S = 0.05
# After a failed report (GCS unreachable), wait this long before trying again.
RETRY_S = 1.0


@dataclass(frozen=True)
class UsageReport:
    """What a raylet tells the GCS about its node (compared by value to skip repeats)."""

    resources_total: Mapping[str, float]
    resources_available: Mapping[str, float]
    store_used: int
    store_capacity: int
    store_spilled: int
    pending_demand: tuple[tuple[Mapping[str, float], int, bool], ...]


class UsageReporter:
    """Change-only, coalesced usage reports. `run` is the loop; `mark` is called on change."""

    def __init__(
        self,
        read: Callable[[], UsageReport],
        send: Callable[[UsageReport], Awaitable[object]],
        *,
        coalesce_s: float = REPORT_COALESCE_S,
        retry_s: float = RETRY_S,
    ) -> None:
        self._read = read
        self._send = send
        self._coalesce_s = coalesce_s
        self._retry_s = retry_s
        self._wanted = asyncio.Event()
        self._last: UsageReport | None = None
        self.sent = 0

    def resend(self) -> None:
        """The GCS may have lost what it was told (it restarted): report again, changed or not."""
        self._last = None
        self._wanted.set()

    def mark(self) -> None:
        """The node's usage may have changed: report it within the window if it did."""
        self._wanted.set()

    async def run(self, stopping: asyncio.Event) -> None:
        while not stopping.is_set():
            await self._wanted.wait()
            self._wanted.clear()
            report = self._read()
            if report != self._last:
                try:
                    await self._send(report)
                except Exception as err:
                    logger.warning("resource report to the GCS failed: %s", err)
                    self._wanted.set()
                    await asyncio.sleep(self._retry_s)
                    continue
                self._last = report
                self.sent += 1
            await asyncio.sleep(self._coalesce_s)
