"""One node agent: its parts wired together, and the background loops that feed them.

* a framed server on ``agent_port`` where core workers send metric reports
  (``rayops.agent.reports``);
* a framed connection to its raylet, read every `SAMPLE_PERIOD_S` (``metrics_snapshot``);
  when it closes, the raylet is gone and the agent stops;
* psutil samples of the machine and of the node's processes, taken off the event loop;
* on the head: the GCS's cluster counts every `SAMPLE_PERIOD_S`, and the GCS's "nodes"
  channel (the event spine, followed, not polled) for service discovery (the file and the
  HTTP list) and for whether the GCS is reachable;
* the HTTP server (``rayops.agent.server``), whose /metrics only renders what these loops
  cached, so a scrape never waits on another process.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

from prometheus_client import CollectorRegistry
from prometheus_client.core import Metric

from rayops.agent import discovery
from rayops.agent.autoscaler_metrics import autoscaler_families
from rayops.agent.cluster_metrics import cluster_families, gcs_reachable_family
from rayops.agent.families import SnapshotCollector
from rayops.agent.log_routes import LogRoutes
from rayops.agent.node_metrics import NodeFacts, NodeSampler, node_families
from rayops.agent.reports import ReportCollector
from rayops.agent.server import AgentHttp, TokenCheck
from rayops.protocol import node_messages as nm
from rayops.protocol import raylet_messages as rm
from rayops.protocol.autoscaler_messages import (
    AUTOSCALER_NAMESPACE,
    STATUS_KEY,
    AutoscalerStatus,
)
from rayops.protocol.node_snapshot import ClusterSnapshot, ProcessRef, RayletSnapshot
from rayops.rpc import framed
from rayops.rpc.framed_settings import FramedSettings

__all__ = ["AgentConfig", "NodeAgent"]

logger = logging.getLogger(__name__)

SAMPLE_PERIOD_S = 2.0
_RAYLET_TIMEOUT_S = 5.0
# The GCS counts as reachable while the head agent's node stream is connected and the GCS
# answered (a batch on the stream, or the cluster-metrics read every `sample_period_s`) within
# this long, or twice the sample period if that is longer. The answer matters besides the
# connection: a hung GCS (SIGSTOPped, deadlocked) keeps its TCP connections open.
GCS_SILENCE_S = 3.0


@dataclass(frozen=True)
class AgentConfig:
    node_id: str
    node_ip: str
    raylet_port: int
    metrics_export_port: int
    agent_port: int
    gcs_address: str
    token: str
    session_dir: str
    session_name: str
    temp_dir: str
    is_head: bool
    sample_period_s: float = SAMPLE_PERIOD_S
    discovery_period_s: float = discovery.RETRY_PERIOD_S  # retrying a failed file write
    framed: FramedSettings = field(default_factory=FramedSettings)

    @property
    def sd_file(self) -> str:
        return os.path.join(self.temp_dir, discovery.FILE_NAME)


class NodeAgent:
    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self._base = (config.session_name, config.node_ip)
        self.registry = CollectorRegistry(auto_describe=False)
        self.check = TokenCheck(config.token)
        self.registry.register(SnapshotCollector(self._families))
        self.reports = ReportCollector(config.session_name, config.node_ip)
        self.registry.register(self.reports)
        self._facts: NodeFacts | None = None
        self._raylet_snap: RayletSnapshot | None = None
        self._cluster: ClusterSnapshot | None = None
        self._autoscaler: AutoscalerStatus | None = None  # the monitor's record (head only)
        self._sd_groups: list[dict[str, Any]] = []
        self._stopping = asyncio.Event()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._framed: framed.FramedServer | None = None
        self._raylet: framed.Connection | None = None
        self._http: AgentHttp | None = None
        self.logs = LogRoutes(
            os.path.join(config.session_dir, "logs"),
            config.node_id,
            lambda request: self._http is not None and self._http.authorized(request),
        )
        self._gcs: Any = None
        # When the head's agent last had an answer from the GCS (monotonic; None: never), and
        # whether its node stream is connected.
        self._gcs_ok_at: float | None = None
        self._gcs_connected = False
        self._nodes = discovery.NodeMembership()
        self._sd_changed = asyncio.Event()

    # ----------------------------------------------------------------- lifecycle
    async def start(self) -> None:
        c = self.config
        handlers: dict[Any, Any] = {
            rm.Ping: lambda conn, msg: rm.Pong(),
            nm.ReportMetrics: lambda conn, msg: self.reports.h_report_metrics(conn, msg.report),
        }
        self._framed = await framed.serve(
            c.node_ip,
            c.agent_port,
            c.token.encode(),
            handlers,
            on_close=self._on_report_closed,
            settings=c.framed,
        )
        self._raylet = await framed.connect(
            c.node_ip,
            c.raylet_port,
            c.token.encode(),
            {},
            on_close=lambda conn: self.request_stop("the raylet connection closed"),
        )
        self._http = AgentHttp(self.registry, self.check, self.sd_list if c.is_head else None)
        self.logs.register(self._http.app)
        await self._http.start(c.node_ip, c.metrics_export_port)
        self._spawn(self._node_loop())
        if c.is_head:
            from rayops.gcs.client import AsyncGcsClient

            self._gcs = AsyncGcsClient(c.gcs_address, c.token, timeout=5.0)
            self._spawn(self._cluster_loop())
            self._spawn(self._follow_nodes())
            self._spawn(self._sd_file_loop())
        logger.info(
            "agent serving /metrics on %s:%d and reports on :%d (head=%s)",
            c.node_ip,
            c.metrics_export_port,
            c.agent_port,
            c.is_head,
        )

    def request_stop(self, reason: str) -> None:
        if not self._stopping.is_set():
            logger.info("agent stopping: %s", reason)
            self._stopping.set()

    async def wait_stopped(self) -> None:
        await self._stopping.wait()

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._http is not None:
            await self._http.stop()
        if self._framed is not None:
            self._framed.close()
        if self._raylet is not None:
            self._raylet.close()
        if self._gcs is not None:
            try:
                await self._gcs.close()
            except Exception as err:
                logger.info("closing the GCS client: %r", err)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_report_closed(self, conn: framed.Connection) -> None:
        self.reports.forget_connection(conn)

    # ------------------------------------------------------------------- metrics
    def _families(self) -> list[Metric]:
        fams = node_families(
            self._facts,
            self._raylet_snap,
            self._base,
            is_head=self.config.is_head,
            refused_scrapes=self.check.refused,
        )
        if self._cluster is not None:
            fams += cluster_families(self._cluster, self._base)
        if self._autoscaler is not None:
            fams += autoscaler_families(self._autoscaler, self._base)
        if self.config.is_head:
            fams.append(gcs_reachable_family(self._gcs_reachable(), self._base))
        return fams

    def _gcs_reachable(self) -> bool:
        """The node stream from the GCS is connected and the GCS answered lately."""
        if not self._gcs_connected or self._gcs_ok_at is None:
            return False
        window = max(GCS_SILENCE_S, 2 * self.config.sample_period_s)
        return time.monotonic() - self._gcs_ok_at < window

    def sd_list(self) -> list[dict[str, Any]]:
        return self._sd_groups

    async def _node_loop(self) -> None:
        sampler = NodeSampler(self.config.temp_dir)
        while not self._stopping.is_set():
            assert self._raylet is not None
            try:
                snap = await asyncio.wait_for(
                    self._raylet.request(nm.MetricsSnapshot()), _RAYLET_TIMEOUT_S
                )
                if isinstance(snap, RayletSnapshot):
                    self._raylet_snap = snap
            except (TimeoutError, framed.ConnectionLost, OSError) as err:
                logger.warning("could not read the raylet's snapshot: %r", err)
            procs = [ProcessRef("agent", os.getpid())]
            if self._raylet_snap is not None:
                procs += self._raylet_snap.processes
                self.logs.remember_workers(p.pid for p in procs if p.component == "workers")
            if self._cluster is not None and self._cluster.gcs_pid:
                procs.append(ProcessRef("gcs", self._cluster.gcs_pid))
            self._facts = await sampler.sample(procs)
            await self._sleep(self.config.sample_period_s)

    async def _cluster_loop(self) -> None:
        from rayops.gcs import calls

        while not self._stopping.is_set():
            try:
                self._cluster = await self._gcs.call(calls.get_cluster_metrics())
                self._gcs_ok_at = time.monotonic()
                raw = await self._gcs.kv_get(STATUS_KEY, namespace=AUTOSCALER_NAMESPACE)
                self._autoscaler = AutoscalerStatus.from_json(raw) if raw else None
            except Exception as err:
                logger.warning("could not read cluster metrics from the GCS: %s", err)
            await self._sleep(self.config.sample_period_s)

    async def _follow_nodes(self) -> None:
        """Service discovery from the GCS's "nodes" channel: snapshot, then events; resynced
        (events missed, or a snapshot) after a reconnect."""
        from rayops.gcs.follower import follow_channel
        from rayops.gcs.pubsub import NODES_CHANNEL

        def apply(batch: Any) -> bool:
            self._gcs_ok_at = time.monotonic()
            if self._nodes.apply(batch):
                alive = self._nodes.alive()
                self._sd_groups = discovery.sd_targets(alive, self.config.session_name)
                self._sd_changed.set()
            return True

        def connected(up: bool) -> None:
            self._gcs_connected = up
            if not up:
                logger.warning("service discovery: the node stream from the GCS broke")

        await follow_channel(
            lambda: self._gcs,
            NODES_CHANNEL,
            apply,
            stopping=self._stopping,
            subscriber_id=f"agent {self.config.node_id[:12]}",
            on_connected=connected,
        )

    async def _sd_file_loop(self) -> None:
        """Write the file_sd file whenever the list changed (retrying a failed write)."""
        path = self.config.sd_file
        written: list[dict[str, Any]] | None = None
        while not self._stopping.is_set():
            await self._sd_changed.wait()
            self._sd_changed.clear()
            groups = self._sd_groups
            if groups == written:
                continue
            try:
                await asyncio.to_thread(discovery.write_file_sd, path, groups)
                written = groups
                logger.info("service discovery: %d target(s) in %s", len(groups), path)
            except OSError as err:
                logger.warning("service discovery: could not write %s: %s", path, err)
                self._sd_changed.set()
                await self._sleep(self.config.discovery_period_s)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            pass
