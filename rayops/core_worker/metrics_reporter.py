"""Sends this process's metrics to its node's agent: task counts by state and user metrics.

Runs on the core worker's IO loop. About once a second (``REPORT_INTERVAL_S``) it builds a
``MetricsReport`` from the in-memory counts (``task_metrics``) and the process's user metric
store (``user_metrics.STORE``) and, only if something changed, sends it as
``NOTIFY "report_metrics" (report,)`` over a framed connection to the agent. Nothing here
runs per task.

Where the agent listens: workers get ``RAYOPS_AGENT_ADDRESS`` from the raylet (read by
``worker_main`` and passed in); drivers ask the raylet (``node_info`` -> ``agent_port``). A
node without an agent (an older raylet) gets no reports, and nothing else changes. An agent
that is down or restarting is retried on the next tick; the first report on every new
connection is complete, so a restarted agent learns everything again.
"""

from __future__ import annotations

import asyncio
import logging
import os
from typing import TYPE_CHECKING

from rayops.core_worker import user_metrics
from rayops.core_worker.task_metrics import ExecutorTaskCounts, OwnerTaskCounts
from rayops.protocol import node_messages as nm
from rayops.protocol import raylet_messages as rm
from rayops.protocol.metrics import MetricsReport, TaskStateCount
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

REPORT_INTERVAL_S = 1.0
# After a failed connect, wait this many ticks before trying again (an agent restarting).
RETRY_TICKS = 3

Address = tuple[str, int]


def parse_agent_address(value: str | None) -> Address | None:
    """``"ip:port"`` (the RAYOPS_AGENT_ADDRESS format) -> (ip, port); None if unset or bad."""
    if not value:
        return None
    host, sep, port = value.rpartition(":")
    if not sep or not host or not port.isdigit():
        logger.warning("ignoring RAYOPS_AGENT_ADDRESS=%r: expected ip:port", value)
        return None
    return (host, int(port))


class MetricsReporter:
    def __init__(
        self,
        cw: CoreWorker,
        agent_address: Address | None,
        *,
        interval_s: float = REPORT_INTERVAL_S,
    ) -> None:
        self._cw = cw
        self.owner_counts = OwnerTaskCounts()
        self.executor_counts = ExecutorTaskCounts()
        self._store = user_metrics.STORE
        self._address = agent_address
        self._interval = interval_s
        self._pool: framed.ConnectionPool | None = None
        self._conn: framed.Connection | None = None
        self._last_counts: tuple[TaskStateCount, ...] = ()
        self._seq = 0
        self._skip = 0

    # ---------------------------------------------------------------- IO loop
    async def run(self) -> None:
        """Report about once a second until cancelled (the core worker's shutdown)."""
        if self._address is None and self._cw.mode == "driver":
            self._address = await self._driver_agent_address()
        if self._address is None:
            logger.debug("no node agent known: metrics are not reported")
            return
        while True:
            await asyncio.sleep(self._interval)
            await self.report_once()

    async def report_once(self) -> bool:
        """Send a report if something changed; True if one was sent."""
        if self._address is None:
            return False
        if self._skip:
            self._skip -= 1
            return False
        counts = tuple(self.owner_counts.rows() + self.executor_counts.rows())
        conn = self._conn
        new_conn = conn is None or conn.closed
        if not new_conn and counts == self._last_counts and not self._store.has_changes():
            return False
        if new_conn:
            if not counts and self._store.is_empty():
                return False  # nothing to say yet: do not connect at all
            try:
                conn = await self._connect()
            except (OSError, TimeoutError, framed.ConnectionLost) as err:
                logger.debug("node agent at %s unreachable: %r", self._address, err)
                self._skip = RETRY_TICKS
                return False
        assert conn is not None
        infos, samples = self._store.snapshot(full=new_conn)
        self._seq += 1
        cw = self._cw
        report = MetricsReport(
            worker_id=cw.worker_id,
            pid=os.getpid(),
            job_id=cw.job_id,
            component=cw.mode,
            seq=self._seq,
            full=new_conn,
            task_counts=counts,
            metrics=tuple(infos),
            samples=tuple(samples),
        )
        conn.notify(nm.ReportMetrics(report))
        self._last_counts = counts
        return True

    async def flush(self) -> None:
        """A last report at clean shutdown, over the open connection only (never waits for a
        connect); lets the write go out before connections close."""
        if self._conn is None or self._conn.closed:
            return
        try:
            if await self.report_once():
                await asyncio.sleep(0)
                await asyncio.sleep(0)
        except Exception as err:
            logger.debug("final metrics report failed: %r", err)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close_all()

    async def _connect(self) -> framed.Connection:
        if self._pool is None:
            self._pool = framed.ConnectionPool(
                self._cw.token, {}, timeout=5.0, settings=self._cw.framed_settings
            )
        assert self._address is not None
        self._conn = await self._pool.get(self._address)
        return self._conn

    async def _driver_agent_address(self) -> Address | None:
        try:
            info: rm.NodeInfoReply = await self._cw.raylet.request(rm.NodeInfo())
        except Exception as err:
            logger.debug("could not ask the raylet for the agent's port: %r", err)
            return None
        port = info.node.agent_port
        if not port:
            return None
        return (self._cw.raylet_address[0], int(port))
