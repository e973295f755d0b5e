"""The autoscaler's loop on the head: GCS and provider in, provider calls and records out.

Each round (``Monitor.step``, every ``interval_s``):

1. read the GCS (``gcs_view.read_cluster``): live nodes with their usage and queued shapes,
   placement groups, the latest ``request_resources``;
2. feed the instance reconciler (``instances.reconcile``) what the provider lists and
   reports (machines seen and gone, errors), which nodes registered, and a tick;
3. call ``decide`` with the demand, the node views and the instance table; feed its launches
   and terminations to the reconciler;
4. carry out the reconciler's actions through the provider (launch, terminate; ``Provision``
   is answered by the provider itself for the SSH pool, which provisions while launching);
5. store the instance table in the GCS KV (namespace ``autoscaler``) when it changed, so a
   restarted monitor resumes instead of launching twice; write the status record
   (``AutoscalerStatus``) that ``rayops status``, the head's agent and the dashboard read.

Everything that decides is in ``decide`` and ``instances``; this module only moves data.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Protocol

from rayops.autoscaler import instances as inst
from rayops.autoscaler.decide import decide
from rayops.autoscaler.gcs_view import (
    ClusterRead,
    IdleTracker,
    build_demand,
    node_views,
    read_cluster,
)
from rayops.autoscaler.types import AutoscalerConfig, Decision
from rayops.protocol.autoscaler_messages import (
    AUTOSCALER_NAMESPACE,
    INSTANCES_KEY,
    STATUS_KEY,
    AutoscalerStatus,
    FailureRecord,
    PendingLaunch,
)
from rayops.providers.base import NodeProvider, ProviderError

__all__ = ["Monitor", "Provisioner"]

log = logging.getLogger("rayops.autoscaler")


class Provisioner(Protocol):
    """Installs and starts rayops on machines (``launcher.pool_provisioner``)."""

    def provision(self, addresses: Sequence[str], node_type: str) -> Mapping[str, str | None]:
        """Per address the failure's cause (one line), or None on success."""


MAX_FAILURES_SHOWN = 20


class Monitor:
    def __init__(
        self,
        gcs: Any,
        provider: NodeProvider,
        config: AutoscalerConfig,
        *,
        provider_name: str = "",
        policy: inst.RetryPolicy | None = None,
        clock: Callable[[], float] = time.time,
        provisioner: Provisioner | None = None,
    ) -> None:
        self.gcs = gcs
        self.provider = provider
        self.config = config
        self.provider_name = provider_name
        self.policy = policy or inst.RetryPolicy.from_config(config)
        self.clock = clock
        self.idle = IdleTracker()
        self.table: dict[str, inst.Instance] = {}
        self._stored = b""
        self.failures: list[FailureRecord] = []
        self.counters = {"started": 0, "stopped": 0, "failed": 0}
        self.launch_requests: dict[str, int] = {}
        self.last_decision = Decision()
        # Machines the provider only creates (a cloud's) get rayops from ``provisioner`` (the
        # launcher over SSH), one thread each; the SSH pool provisions while it launches.
        self.provisioner = None if getattr(provider, "provisions_nodes", False) else provisioner
        self._provisioning: set[str] = set()
        self._provisioned: queue.SimpleQueue[tuple[str, str, str | None]] = queue.SimpleQueue()
        self._resume()

    # ---- persistence ------------------------------------------------------------------
    def _resume(self) -> None:
        raw = self.gcs.kv_get(INSTANCES_KEY, namespace=AUTOSCALER_NAMESPACE)
        if raw:
            self.table = inst.from_json(raw)
            self._stored = raw
            log.info("resumed %d instance record(s) from the GCS", len(self.table))
            # Repeat every call whose outcome is unknown, under the same request ids.
            self.feed(inst.Resume(self.clock()))
        status = self.gcs.kv_get(STATUS_KEY, namespace=AUTOSCALER_NAMESPACE)
        if status:
            prev = AutoscalerStatus.from_json(status)
            self.counters = {
                "started": prev.started_nodes,
                "stopped": prev.stopped_nodes,
                "failed": prev.failed_create_nodes,
            }
            self.failures = list(prev.failures)
            self.launch_requests = dict(prev.launch_requests)

    def _store(self) -> None:
        raw = inst.to_json(self.table).encode()
        if raw != self._stored:
            self.gcs.kv_put(INSTANCES_KEY, raw, namespace=AUTOSCALER_NAMESPACE, overwrite=True)
            self._stored = raw

    # ---- one round ----------------------------------------------------------------------
    def feed(self, event: inst.Event) -> None:
        self.table, actions = inst.reconcile(self.table, event, self.policy)
        for action in actions:
            self._carry_out(action)

    def step(self) -> Decision:
        now = self.clock()
        read = read_cluster(self.gcs)
        self._observe_provider(now)
        self._observe_nodes(read, now)
        self._collect_provisioning(now)
        self.feed(inst.Tick(now))
        decision = self._decide(read, now)
        for node_type, count in sorted(decision.launch.items()):
            if count > 0:
                rid = f"launch-{uuid.uuid4().hex[:12]}"
                log.info("decision: launch %d %r node(s) (request %s)", count, node_type, rid)
                self.launch_requests[node_type] = self.launch_requests.get(node_type, 0) + count
                self.feed(inst.LaunchRequested(node_type, count, rid, now))
        for term in decision.terminate:
            log.info("decision: terminate %s (%s)", term.instance_id, term.reason)
            self.feed(inst.TerminateRequested(term.instance_id, term.reason, now))
        for bad in decision.infeasible:
            log.warning("infeasible: %d x %s: %s", bad.count, dict(bad.shape), bad.reason)
        self._store()
        self._write_status(decision, now)
        self.last_decision = decision
        return decision

    def _decide(self, read: ClusterRead, now: float) -> Decision:
        idle = self.idle.update(read.nodes, now)
        running = {i.ip: i for i in self.table.values() if i.state in inst.ACTIVE_STATES and i.ip}
        views = node_views(
            read,
            idle,
            {ip: i.instance_id for ip, i in running.items()},
            {ip: i.node_type for ip, i in running.items()},
            self.config.head_node_type,
        )
        return decide(build_demand(read), views, self.table, self.config, now)

    def _observe_provider(self, now: float) -> None:
        # Errors first: a launch that failed carries its cause before its absence is seen.
        for err in self.provider.poll_errors():
            log.warning("provider %s failed (request %s): %s", err.kind, err.request_id, err.cause)
            hit = [i.instance_id for i in self.table.values() if i.request_id == err.request_id]
            if err.kind == "launch":
                self.counters["failed"] += max(1, err.count)
            self.feed(inst.ProviderFailed(err, now))
            self._note_failure(hit[0] if hit else err.request_id, err, now)
        # The head and the static workers (no launch request made them) are `rayops up`'s.
        machines = {
            cid: m
            for cid, m in self.provider.non_terminated().items()
            if m.role != "head" and m.request_id
        }
        for event in inst.observe(self.table, machines, now):
            self.feed(event)

    def _observe_nodes(self, read: ClusterRead, now: float) -> None:
        by_ip = {n.node_ip: n.node_id for n in read.nodes if not n.is_head}
        for i in list(self.table.values()):
            if i.state == "provisioning" and i.ip in by_ip:
                log.info("%s (%s) joined as node %s", i.instance_id, i.ip, by_ip[i.ip][:12])
                self.counters["started"] += 1
                self.feed(inst.RayNodeRegistered(i.instance_id, by_ip[i.ip], now))

    def _carry_out(self, action: inst.Action) -> None:
        now = self.clock()
        if isinstance(action, inst.LaunchNodes):
            self.provider.launch(action.node_type, action.count, action.request_id)
        elif isinstance(action, inst.TerminateNodes):
            self.counters["stopped"] += len(action.ids)
            self.provider.terminate(list(action.ids), action.request_id)
        elif isinstance(action, inst.Provision):
            self._provision(action, now)
        elif isinstance(action, inst.Report):
            log.info("%s: %s", action.instance_id, action.message)

    def _provision(self, action: inst.Provision, now: float) -> None:
        """Without a provisioner the machine comes up as a node by itself (the SSH pool
        provisioned it before listing it; a cloud image that starts rayops)."""
        if action.instance_id in self._provisioning:
            return
        self.feed(inst.ProvisionStarted(action.instance_id, now))
        if self.provisioner is None:
            return
        self._provisioning.add(action.instance_id)
        threading.Thread(
            target=self._provision_one,
            args=(action,),
            daemon=True,
            name=f"rayops-provision-{action.ip}",
        ).start()

    def _provision_one(self, action: inst.Provision) -> None:
        assert self.provisioner is not None
        try:
            result = self.provisioner.provision([action.ip], action.node_type)
            cause = result.get(action.ip, "the provisioner returned no result")
        except Exception as err:  # reported as the instance's failure, never lost
            log.exception("provisioning %s failed", action.ip)
            cause = f"{type(err).__name__}: {err}"
        self._provisioned.put((action.instance_id, action.ip, cause))

    def _collect_provisioning(self, now: float) -> None:
        while not self._provisioned.empty():
            iid, ip, cause = self._provisioned.get()
            self._provisioning.discard(iid)
            if cause is None:
                log.info("%s (%s) provisioned", iid, ip)
                continue
            self.counters["failed"] += 1
            self.feed(inst.ProvisionFailed(iid, cause, now))
            rec = self.table.get(iid)
            err = ProviderError(
                "launch",
                rec.request_id if rec else "",
                f"{ip}: {cause}",
                now,
                node_type=rec.node_type if rec else None,
                count=1,
            )
            self._note_failure(iid, err, now)

    def _note_failure(self, instance_id: str, err: ProviderError, now: float) -> None:
        """Keep the failure for ``rayops status``: its cause, and when the reconciler will
        try again (None: it gave up, or the error was a terminate's)."""
        rec = self.table.get(instance_id)
        retry_at = rec.due_at if rec is not None and rec.state == "requested" else None
        address = err.node_ids[0] if err.node_ids else (rec.ip if rec else "")
        self.failures.insert(
            0,
            FailureRecord(
                instance_id=instance_id,
                node_type=err.node_type or (rec.node_type if rec else ""),
                address=address,
                cause=f"{err.kind}: {err.cause}",
                time=now,
                retry_at=retry_at,
            ),
        )
        del self.failures[MAX_FAILURES_SHOWN:]

    # ---- status ---------------------------------------------------------------------------
    def status(self, decision: Decision, now: float) -> AutoscalerStatus:
        pending = tuple(
            PendingLaunch(i.instance_id, i.node_type, i.state, i.ip, i.since)
            for i in sorted(self.table.values(), key=lambda i: i.since)
            if i.state in inst.PENDING_STATES
        )
        return AutoscalerStatus(
            time=now,
            provider=self.provider_name,
            running=sum(1 for i in self.table.values() if i.state == "running"),
            pending=pending,
            failures=tuple(self.failures),
            pending_demand=tuple((dict(s), n) for s, n in decision.pending),
            infeasible=tuple(dict(bad.shape) for bad in decision.infeasible),
            started_nodes=self.counters["started"],
            stopped_nodes=self.counters["stopped"],
            failed_create_nodes=self.counters["failed"],
            launch_requests=dict(self.launch_requests),
        )

    def _write_status(self, decision: Decision, now: float) -> None:
        st = self.status(decision, now)
        self.gcs.kv_put(STATUS_KEY, st.to_json(), namespace=AUTOSCALER_NAMESPACE, overwrite=True)

    # ---- the loop -------------------------------------------------------------------------
    def run(
        self,
        stop: threading.Event,
        interval_s: float = 1.0,
        before_round: Callable[[], None] | None = None,
    ) -> None:
        """Rounds until ``stop`` is set; a failing round is logged and the next one runs.
        ``before_round`` (the daemon's spec reload) runs first in each round."""
        log.info(
            "autoscaler started: provider %s, node types %s, max_workers %d, idle timeout %.0f s",
            self.provider_name or "?",
            ", ".join(self.config.node_types),
            self.config.max_workers,
            self.config.idle_timeout_s,
        )
        while not stop.is_set():
            started = time.monotonic()
            try:
                if before_round is not None:
                    before_round()
                self.step()
            except Exception:
                log.exception("autoscaler round failed; retrying in %.1f s", interval_s)
            stop.wait(max(0.0, interval_s - (time.monotonic() - started)))
