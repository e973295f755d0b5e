"""Where the state API's rows come from: the GCS, every raylet, every core worker.

| resource | source |
|---|---|
| nodes | the GCS node table |
| actors | the GCS actor table (``TaskInfoGcsService.ListActors``) |
| tasks | the GCS task-event store (``GetTaskEvents``) |
| placement_groups | the GCS placement-group table |
| jobs | the GCS job table (drivers) and the Jobs API's records (submissions) |
| workers | each alive raylet's worker pool (``ListWorkers``, framed) |
| objects | each alive raylet's workers and drivers (``ListReferences`` on their core worker, |
| | framed), sizes and places from each raylet's store (``ListStoreObjects``) |

Rows are dicts with Ray's column names and Ray's id forms (hex). Columns rayops has no data
for are None, never invented. A node or process that does not answer within the timeout is
left out and named in ``partial_failure_warning``. This module does I/O only; what to keep
and how to shape it is ``state_query``'s.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from rayops.gcs import task_calls
from rayops.gcs.types import NodeInfo, job_id_hex
from rayops.protocol import gcs_actor_pb2, gcs_pg_pb2, gcs_task_pb2
from rayops.protocol import state_messages as sm
from rayops.rpc import framed
from rayops.rpc.framed_settings import FramedSettings

__all__ = ["Gathered", "StateSources"]

logger = logging.getLogger(__name__)

_ACTOR_STATES = {
    gcs_actor_pb2.ActorInfo.PENDING_CREATION: "PENDING_CREATION",
    gcs_actor_pb2.ActorInfo.ALIVE: "ALIVE",
    gcs_actor_pb2.ActorInfo.RESTARTING: "RESTARTING",
    gcs_actor_pb2.ActorInfo.DEAD: "DEAD",
}
_END_STATES = ("FINISHED", "FAILED")
_PENDING_STATES = ("PENDING_ARGS_AVAIL", "PENDING_NODE_ASSIGNMENT")


@dataclass
class Gathered:
    rows: list[dict[str, Any]]
    total: int | None = None  # how many the source holds, when it truncated
    partial_failure_warning: str = ""
    warnings: list[str] = field(default_factory=list)


def _hex(b: bytes) -> str | None:
    return b.hex() if b else None


def node_row(n: NodeInfo) -> dict[str, Any]:
    return {
        "node_id": n.node_id,
        "node_ip": n.node_ip,
        "is_head_node": n.is_head_node,
        "state": str(n.state),
        "state_message": n.death_reason or None,
        "node_name": n.node_name or n.node_ip,
        "resources_total": dict(n.resources_total),
        "labels": dict(n.labels),
        "start_time_ms": n.start_time_ms,
        "end_time_ms": n.end_time_ms,
    }


def actor_row(a: gcs_actor_pb2.ActorInfo) -> dict[str, Any]:
    state = _ACTOR_STATES.get(a.state, "DEPENDENCIES_UNREADY")
    return {
        "actor_id": a.actor_id.hex(),
        "class_name": a.class_name,
        "state": state,
        "job_id": job_id_hex(a.job_id),
        "name": a.name,
        "node_id": a.node_id or None,
        "pid": a.pid or None,
        "ray_namespace": a.ray_namespace,
        "serialized_runtime_env": None,
        "required_resources": None,
        "death_cause": {"error_message": a.death_cause} if state == "DEAD" else None,
        "is_detached": a.is_detached,
        "placement_group_id": None,
        "repr_name": "",
        "num_restarts": a.num_restarts,
        "address": {
            "ip_address": a.address_ip,
            "port": a.address_port,
            "worker_id": _hex(a.worker_id),
            "node_id": a.node_id,
        }
        if a.address_ip
        else None,
    }


def task_row(t: gcs_task_pb2.TaskAttempt) -> dict[str, Any]:
    ts = t.state_ts_ms
    created = min((ts[s] for s in _PENDING_STATES if s in ts), default=None)
    if created is None and ts:
        created = min(ts.values())
    ended = min((ts[s] for s in _END_STATES if s in ts), default=None)
    return {
        "task_id": t.task_id.hex(),
        "attempt_number": t.attempt,
        "name": t.name,
        "state": t.state,
        "job_id": job_id_hex(t.job_id),
        "actor_id": _hex(t.actor_id),
        "type": t.type,
        "func_or_class_name": t.func_or_class_name,
        "parent_task_id": _hex(t.parent_task_id),
        "node_id": t.node_id or None,
        "worker_id": _hex(t.worker_id),
        "worker_pid": t.worker_pid or None,
        "error_type": t.error_type or None,
        "language": "PYTHON",
        "required_resources": dict(t.required_resources),
        "placement_group_id": None,
        "events": [
            {"state": s, "created_ms": ms} for s, ms in sorted(ts.items(), key=lambda kv: kv[1])
        ],
        "creation_time_ms": created,
        "start_time_ms": ts.get("RUNNING"),
        "end_time_ms": ended,
        "error_message": t.error_message or None,
    }


def pg_row(g: gcs_pg_pb2.PlacementGroupInfo) -> dict[str, Any]:
    return {
        "placement_group_id": g.placement_group_id.hex(),
        "name": g.name,
        "creator_job_id": job_id_hex(g.creator_job_id),
        "state": g.state,
        "bundles": [
            {
                "bundle_id": i,
                "node_id": g.bundle_nodes.get(i) or None,
                "unit_resources": dict(b.resources),
            }
            for i, b in enumerate(g.bundles)
        ],
        "is_detached": g.is_detached,
        "stats": {
            "scheduling_state": g.scheduling_state,
            "scheduling_attempt": g.scheduling_attempts,
            "end_to_end_creation_latency_ms": g.creation_latency_ms,
        },
    }


class StateSources:
    """Reads the cluster for the state API (the API server's event loop)."""

    def __init__(self, gcs: Any, token: str, jobs: Any) -> None:
        self._gcs = gcs
        self._jobs = jobs
        self._pool = framed.ConnectionPool(
            token.encode(), {}, timeout=5.0, settings=FramedSettings.from_env()
        )

    def close(self) -> None:
        self._pool.close_all()

    # ------------------------------------------------------------------ GCS
    async def nodes(self, timeout: float) -> Gathered:
        nodes = await asyncio.wait_for(self._gcs.get_all_nodes(), timeout)
        return Gathered([node_row(n) for n in nodes])

    async def actors(self, timeout: float) -> Gathered:
        actors = await self._gcs.call(task_calls.list_actors(), timeout)
        return Gathered([actor_row(a) for a in actors])

    async def tasks(self, timeout: float, job_id: int | None = None) -> Gathered:
        reply = await self._gcs.call(task_calls.get_task_events(job_id=job_id), timeout)
        warnings = []
        if reply.num_evicted or reply.num_dropped:
            warnings.append(
                f"{reply.num_evicted} task attempts were evicted from the GCS (it keeps the "
                f"newest 100,000) and {reply.num_dropped} task events were dropped before "
                "reaching it (workers' buffers were full): the list may be incomplete"
            )
        return Gathered([task_row(t) for t in reply.tasks], reply.total, warnings=warnings)

    async def placement_groups(self, timeout: float) -> Gathered:
        from rayops.gcs.calls import get_all_placement_groups

        groups = await self._gcs.call(get_all_placement_groups(), timeout)
        return Gathered([pg_row(g) for g in groups])

    async def jobs(self, timeout: float) -> Gathered:
        infos, records = await asyncio.wait_for(
            asyncio.gather(self._gcs.get_all_jobs(), self._jobs.list()), timeout
        )
        rows = [r.details() for r in records]
        for j in infos:
            rows.append(
                {
                    "job_id": j.job_id_hex,
                    "submission_id": None,
                    "type": "DRIVER",
                    "status": "SUCCEEDED" if j.is_dead else "RUNNING",
                    "entrypoint": j.entrypoint,
                    "message": None,
                    "error_type": None,
                    "start_time": j.start_time_ms,
                    "end_time": j.end_time_ms or None,
                    "metadata": {},
                    "runtime_env": {},
                    "driver_info": {"id": j.job_id_hex, "node_ip_address": j.driver_ip,
                                    "pid": str(j.driver_pid)},
                    "driver_node_id": None,
                    "driver_exit_code": None,
                }
            )  # fmt: skip
        return Gathered(rows)

    # ------------------------------------------------------------------ raylets
    async def _alive_nodes(self, timeout: float) -> list[NodeInfo]:
        return list(await asyncio.wait_for(self._gcs.get_all_nodes(alive_only=True), timeout))

    async def _ask(self, address: tuple[str, int], msg: Any, timeout: float) -> Any:
        conn = await asyncio.wait_for(self._pool.get(address), timeout)
        return await asyncio.wait_for(conn.request(msg), timeout)

    async def _each_node(
        self, nodes: list[NodeInfo], ask: Callable[[NodeInfo], Awaitable[Any]]
    ) -> tuple[list[tuple[NodeInfo, Any]], list[str]]:
        results = await asyncio.gather(*(ask(n) for n in nodes), return_exceptions=True)
        ok, failed = [], []
        for n, r in zip(nodes, results, strict=True):
            if isinstance(r, BaseException):
                logger.info("state API: node %s did not answer: %r", n.node_id[:12], r)
                failed.append(n.node_id)
            else:
                ok.append((n, r))
        return ok, failed

    @staticmethod
    def _partial(what: str, failed: list[str]) -> str:
        if not failed:
            return ""
        return (
            f"{len(failed)} of the queried {what} did not answer in time; their data is "
            f"missing: {', '.join(f[:12] for f in failed)}"
        )

    async def workers(self, timeout: float) -> Gathered:
        nodes = await self._alive_nodes(timeout)
        answered, failed = await self._each_node(
            nodes, lambda n: self._ask((n.node_ip, n.raylet_port), sm.ListWorkers(), timeout)
        )
        rows = []
        for n, reply in answered:
            for w in reply.workers:
                rows.append(
                    {
                        "worker_id": w.worker_id.hex() if w.worker_id else None,
                        "is_alive": w.is_alive,
                        "worker_type": w.worker_type,
                        "exit_type": None,
                        "node_id": n.node_id,
                        "ip": w.ip,
                        "pid": w.pid,
                        "exit_detail": None,
                        "job_id": job_id_hex(w.job_id) if w.worker_type == "DRIVER" else None,
                        "port": w.port,
                        "log_path": w.log_path or None,
                    }
                )
        return Gathered(rows, partial_failure_warning=self._partial("nodes", failed))

    async def objects(self, timeout: float) -> Gathered:
        nodes = await self._alive_nodes(timeout)

        async def node_view(n: NodeInfo) -> tuple[Any, Any]:
            addr = (n.node_ip, n.raylet_port)
            return await asyncio.gather(
                self._ask(addr, sm.ListWorkers(), timeout),
                self._ask(addr, sm.ListStoreObjects(), timeout),
            )

        answered, failed = await self._each_node(nodes, node_view)
        stored: dict[bytes, tuple[int, bool, bool]] = {}
        processes: list[tuple[NodeInfo, sm.WorkerState]] = []
        for n, (workers, store) in answered:
            for o in store.objects:
                size, mem, spilled = stored.get(o.object_id, (o.size, False, False))
                stored[o.object_id] = (size, mem or o.in_memory, spilled or o.spilled)
            processes += [(n, w) for w in workers.workers if w.port]
        replies = await asyncio.gather(
            *(self._ask((w.ip, w.port), sm.ListReferences(), timeout) for _, w in processes),
            return_exceptions=True,
        )
        rows: list[dict[str, Any]] = []
        missing = 0
        for (n, w), reply in zip(processes, replies, strict=True):
            if isinstance(reply, BaseException):
                missing += 1
                continue
            for ref in reply.references:
                size, mem, spilled = stored.get(ref.object_id, (None, False, False))
                rows.append(
                    {
                        "object_id": ref.object_id.hex(),
                        "object_size": size,
                        "task_status": ref.task_status or "NIL",
                        "attempt_number": 0,
                        "reference_type": ref.reference_type,
                        "call_site": "disabled",
                        "type": "DRIVER" if reply.is_driver else "WORKER",
                        "pid": reply.pid,
                        "ip": w.ip,
                        "node_id": n.node_id,
                        "worker_id": reply.worker_id.hex(),
                        "in_memory": mem,
                        "spilled": spilled,
                    }
                )
        warning = self._partial("nodes", failed)
        if missing:
            warning = (warning + "; " if warning else "") + (
                f"{missing} worker processes did not answer (they may have exited)"
            )
        return Gathered(rows, partial_failure_warning=warning)
