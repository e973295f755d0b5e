"""The I/O shell of placement groups in the GCS: carries out what ``pg_table`` decides.

- ``Schedule``: a placement pass runs on the next loop turn (so groups created together are
  placed together, each seeing what the ones before it took): for every waiting group, the
  one placement policy (``rayops.scheduling.bundles.place_bundles``) picks nodes for its
  unplaced bundles from the node table's current view, minus what this pass already gave away.
- ``SendPrepare`` / ``SendCommit``: the two phases, one framed request per raylet involved,
  concurrently; any refusal or lost raylet aborts the attempt (``Aborted``), which releases
  every prepared bundle and schedules another attempt.
- ``ReleaseBundles``: tell each raylet to drop the group's bundles (it ends the leases that hold
  them, killing their workers); a dead raylet has nothing left to release.
- ``StateChanged``: wake ``wait_ready`` callers; a removed group's actors die for good.

Other parts of the GCS call in on events: ``node_dead``, ``nodes_changed`` (a node joined or
freed resources: waiting groups try again), ``job_ended``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import time
from collections.abc import Callable, Mapping
from typing import Any

from rayops.gcs import pg_table as pt
from rayops.gcs.actor_placement import node_views
from rayops.gcs.node_table import NodeTable
from rayops.gcs.pg_table import PgRecord, PgState, PgTable
from rayops.gcs.types import NodeInfo
from rayops.protocol import raylet_messages as rm
from rayops.protocol.bundle_resources import plain_resources
from rayops.rpc import framed
from rayops.scheduling.bundles import place_bundles
from rayops.scheduling.labels import parse_label_selector
from rayops.scheduling.policy import NodeView

logger = logging.getLogger(__name__)

RAYLET_TIMEOUT_S = 10.0
# Fault injection for tests: seconds between a group's prepare and its commit (a raylet can be
# killed in between). Read once, at start.
COMMIT_DELAY_ENV = "RAYOPS_TESTING_PG_COMMIT_DELAY_S"


class PgManager:
    def __init__(
        self,
        table: PgTable,
        nodes: NodeTable,
        raylets: framed.ConnectionPool,
        on_removed: Callable[[bytes], None] = lambda _pg: None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.table = table
        self._nodes = nodes
        self._raylets = raylets
        self._on_removed = on_removed
        self._clock = clock
        self._tasks: set[asyncio.Future[Any]] = set()
        self._pass_scheduled = False
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._commit_delay = float(os.environ.get(COMMIT_DELAY_ENV, "0") or 0)

    # ----------------------------------------------------------------- entry points
    def create(self, rec: PgRecord) -> None:
        """Register a group (raises ``PgNameTaken``) and start placing it."""
        rec.created_at = self._clock()
        self._run(self.table.handle(pt.Create(rec)))

    def remove(self, pg_id: bytes) -> bool:
        if self.table.get(pg_id) is None:
            return False
        self._run(self.table.handle(pt.Removed(pg_id)))
        return True

    def job_ended(self, job_id: int) -> None:
        self._run(self.table.handle(pt.JobEnded(job_id)))

    def node_dead(self, node_id: str) -> None:
        self._run(self.table.handle(pt.NodeLost(node_id)))

    def nodes_changed(self) -> None:
        """A node joined or reported free resources: waiting groups may fit now."""
        if self.table.waiting():
            self._want_pass()

    async def wait_ready(self, pg_id: bytes, timeout: float) -> str:
        """The group's state once it is CREATED or REMOVED, or when ``timeout`` passes."""
        rec = self.table.get(pg_id)
        if rec is None:
            return ""
        if rec.state not in (PgState.CREATED, PgState.REMOVED) and timeout > 0:
            fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(pg_id, []).append(fut)
            try:
                await asyncio.wait_for(asyncio.shield(fut), timeout)
            except TimeoutError:
                pass
            finally:
                waiters = self._waiters.get(pg_id)
                if waiters is not None and fut in waiters:
                    waiters.remove(fut)
                    if not waiters:
                        del self._waiters[pg_id]
        return str(rec.state)

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()

    # ----------------------------------------------------------------- actions
    def _run(self, actions: list[pt.Action]) -> None:
        for action in actions:
            if isinstance(action, pt.Schedule):
                self._want_pass(action.delay_s)
            elif isinstance(action, pt.SendPrepare):
                self._spawn(self._prepare(action))
            elif isinstance(action, pt.SendCommit):
                self._spawn(self._commit(action))
            elif isinstance(action, pt.ReleaseBundles):
                self._release(action.pg_id, action.nodes)
            elif isinstance(action, pt.Warn):
                logger.warning("%s", action.message)
            elif isinstance(action, pt.StateChanged):
                for fut in self._waiters.pop(action.pg_id, []):
                    if not fut.done():
                        fut.set_result(None)
                if action.state == PgState.REMOVED:
                    self._on_removed(action.pg_id)

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _want_pass(self, delay: float = 0.0) -> None:
        loop = asyncio.get_running_loop()
        if delay > 0:
            loop.call_later(delay, self._want_pass)
            return
        if not self._pass_scheduled:
            self._pass_scheduled = True
            loop.call_soon(self._placement_pass)

    def _placement_pass(self) -> None:
        self._pass_scheduled = False
        waiting = self.table.waiting()
        if not waiting:
            return
        views = {v.node_id: _plain(v) for v in node_views(self._nodes.all_nodes(alive_only=True))}
        for rec in waiting:
            placement = place_bundles(
                [rec.bundles[i] for i in range(rec.bundle_count)],
                rec.strategy,
                list(views.values()),
                bundle_label_selectors=[
                    parse_label_selector(s or None) for s in rec.bundle_label_selectors
                ]
                or (),
                fixed=dict(rec.bundle_nodes),
            )
            if placement.kind != "placed":
                self._run(
                    self.table.handle(
                        pt.NotPlaced(
                            rec.pg_id,
                            placement.kind == "infeasible",
                            _infeasible_message(rec, placement.reason),
                        )
                    )
                )
                continue
            new = {i: n for i, n in placement.nodes.items() if i not in rec.bundle_nodes}
            for i, node_id in new.items():  # later groups in this pass see what this took
                views[node_id] = _minus(views[node_id], rec.bundles[i])
            self._run(self.table.handle(pt.Placed(rec.pg_id, new)))

    async def _prepare(self, action: pt.SendPrepare) -> None:
        by_node = _by_node(action.nodes)
        rec = self.table.get(action.pg_id)
        assert rec is not None
        msgs = {
            node_id: rm.PrepareBundles(action.pg_id, [(i, rec.bundles[i]) for i in indexes])
            for node_id, indexes in by_node.items()
        }
        failure = await self._all_ok(msgs)
        if failure:
            self._run(self.table.handle(pt.Aborted(action.pg_id, action.attempt, failure)))
            return
        self._run(self.table.handle(pt.Prepared(action.pg_id, action.attempt)))

    async def _commit(self, action: pt.SendCommit) -> None:
        if self._commit_delay:
            await asyncio.sleep(self._commit_delay)
        msgs = {
            node_id: rm.CommitBundles(action.pg_id, indexes)
            for node_id, indexes in _by_node(action.nodes).items()
        }
        failure = await self._all_ok(msgs)
        if failure:
            self._run(self.table.handle(pt.Aborted(action.pg_id, action.attempt, failure)))
            return
        self._run(self.table.handle(pt.Committed(action.pg_id, action.attempt, self._clock())))

    async def _all_ok(self, msgs: Mapping[str, Any]) -> str:
        """Send each node its message at once; "" if all answered ok, else why not."""

        async def one(node_id: str, msg: Any) -> str:
            node = self._nodes.get(node_id)
            if node is None or node.state != "ALIVE":
                return f"node {node_id} is gone"
            try:
                conn = await self._raylets.get((node.node_ip, node.raylet_port))
                reply = await asyncio.wait_for(conn.request(msg), RAYLET_TIMEOUT_S)
            except (TimeoutError, OSError, framed.ConnectionLost, framed.Refused) as err:
                return f"raylet of node {node_id} failed: {err!r}"
            return "" if reply.ok else f"raylet of node {node_id} refused: {reply.reason}"

        results = await asyncio.gather(*(one(n, m) for n, m in msgs.items()))
        return "; ".join(r for r in results if r)

    def _release(self, pg_id: bytes, nodes: Mapping[int, str]) -> None:
        for node_id, indexes in _by_node(nodes).items():
            node = self._nodes.get(node_id)
            if node is None or node.state != "ALIVE":
                continue  # a dead raylet holds nothing any more
            self._spawn(self._release_on(node, rm.ReleaseBundles(pg_id, indexes)))

    async def _release_on(self, node: NodeInfo, msg: rm.ReleaseBundles) -> None:
        try:
            conn = await self._raylets.get((node.node_ip, node.raylet_port))
            await asyncio.wait_for(conn.request(msg), RAYLET_TIMEOUT_S)
        except (TimeoutError, OSError, framed.ConnectionLost, framed.Refused) as err:
            # A raylet that cannot be told is going away: what it held goes with it.
            logger.warning(
                "releasing bundles of group %s on node %s failed: %r",
                msg.pg_id.hex(),
                node.node_id[:12],
                err,
            )
        # Freed resources may let a waiting group in.
        self.nodes_changed()


def _plain(view: NodeView) -> NodeView:
    """A node without the bundle resources of groups already there (bundles reserve plain
    resources)."""
    return dataclasses.replace(
        view, total=plain_resources(view.total), available=plain_resources(view.available)
    )


def _minus(view: NodeView, shape: Mapping[str, float]) -> NodeView:
    available = dict(view.available)
    for k, v in shape.items():
        available[k] = available.get(k, 0.0) - v
    return dataclasses.replace(view, available=available)


def _by_node(nodes: Mapping[int, str]) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for index, node_id in sorted(nodes.items()):
        out.setdefault(node_id, []).append(index)
    return out


def _infeasible_message(rec: PgRecord, reason: str) -> str:
    name = f" {rec.name!r}" if rec.name else ""
    return (
        f"Placement group{name} ({rec.pg_id.hex()}) with strategy {rec.strategy} and bundles "
        f"{rec.bundles} cannot be placed on any current node: {reason}. It stays PENDING "
        "until nodes that can hold it join."
    )
