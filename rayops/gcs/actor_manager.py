"""Carrying out the actor table's decisions: placing actors on workers, watching them
and their owners, stopping them.

The GCS leases a worker from a node's raylet and pushes the creation task to it over
the framed transport, then keeps that connection open: when it closes, the actor's
worker is gone. It also connects to each owner's core worker so that non-detached
actors die with their owner. All of it runs on the GCS's event loop.
"""

from __future__ import annotations

import asyncio
import logging
import pickle
import time
from collections.abc import Callable
from typing import Any

from rayops import exceptions as rex
from rayops.gcs.actor_placement import SPREAD, place_actor
from rayops.gcs.actor_table import Action, ActorRecord, ActorState, ActorTable
from rayops.gcs.node_table import NodeTable
from rayops.gcs.types import NodeInfo
from rayops.protocol import raylet_messages as rm
from rayops.protocol import worker_messages as wm
from rayops.protocol.bundle_resources import group_of
from rayops.protocol.framed_message import RefusalCode
from rayops.protocol.node_snapshot import PLACEMENT_BOUNDS_S, LatencyRecorder
from rayops.raylet.resources import format_shape
from rayops.rpc import framed
from rayops.rpc.framed_settings import FramedSettings
from rayops.scheduling.labels import LabelSelector, format_selector, parse_label_selector

logger = logging.getLogger(__name__)


class ActorManager:
    def __init__(
        self,
        table: ActorTable,
        nodes: NodeTable,
        token: bytes,
        settings: FramedSettings | None = None,
    ) -> None:
        self.table = table
        self._nodes = nodes
        self._token = token
        # The GCS's outgoing framed connections honour RAYOPS_FRAMED_* like every other end.
        self._settings = settings or FramedSettings.from_env()
        self._raylets = framed.ConnectionPool(token, {}, settings=self._settings)
        self._workers: dict[bytes, framed.Connection] = {}
        # worker id -> (actor id, generation, node id) of the worker each actor was given:
        # a raylet's report of that worker's death is the actor's (liveness never comes from
        # the GCS's own connection to the worker).
        self._by_worker: dict[bytes, tuple[bytes, int, str]] = {}
        self._tasks: set[asyncio.Future[Any]] = set()
        # Registration -> ALIVE of each actor's first creation (exported by the head's agent).
        self.placement_time = LatencyRecorder(PLACEMENT_BOUNDS_S)
        # SPREAD actors placed so far: the rotation over nodes, as a raylet keeps for tasks.
        self._spread_counter = 0

    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _apply(self, rec: ActorRecord, action: Action) -> None:
        # The table published the change already (the event spine's actors channel).
        if action == Action.SCHEDULE:
            self._spawn(self._schedule(rec))
        elif action == Action.STOP_WORKER:
            conn = self._workers.pop(rec.actor_id, None)
            if conn is not None and not conn.closed:
                conn.notify(wm.ExitActor(rec.death_cause))

    # --------------------------------------------------------------- entry points
    def on_registered(self, rec: ActorRecord) -> None:
        rec.extra["registered_at"] = time.monotonic()
        self._apply(rec, Action.SCHEDULE)

    def adopt(self, rec: ActorRecord) -> None:
        """An actor a restarted GCS read back from its store: an ALIVE one keeps running on
        its worker (its raylet reports that worker's death to us as before; we connect to it
        again to be able to stop it); one that was being created is scheduled again."""
        if rec.state == ActorState.ALIVE:
            self._by_worker[rec.worker_id] = (rec.actor_id, rec.generation, rec.node_id)
            self._spawn(self._reconnect(rec, rec.generation))
        elif rec.state in (ActorState.PENDING_CREATION, ActorState.RESTARTING):
            self._apply(rec, Action.SCHEDULE)

    async def _reconnect(self, rec: ActorRecord, generation: int) -> None:
        handlers: dict[Any, Callable[..., Any]] = {wm.ActorExiting: self._h_actor_exiting}
        try:
            conn = await framed.connect(
                rec.address_ip,
                rec.address_port,
                self._token,
                handlers,
                on_close=lambda c: self._on_worker_closed(rec, c, generation),
                settings=self._settings,
            )
        except OSError as err:  # the worker is gone: its raylet reports it
            logger.info("actor %s: its worker is unreachable: %s", rec.actor_id.hex()[:12], err)
            return
        conn.context["actor_id"] = rec.actor_id
        if rec.generation == generation and rec.state == ActorState.ALIVE:
            self._workers[rec.actor_id] = conn
        else:
            conn.close()

    def kill(self, rec: ActorRecord, no_restart: bool) -> None:
        self._apply(rec, self.table.killed(rec, no_restart=no_restart))

    def out_of_scope(self, rec: ActorRecord) -> None:
        self._apply(rec, self.table.out_of_scope(rec))

    async def shutdown(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        for conn in self._workers.values():
            conn.close()
        self._raylets.close_all()

    # ----------------------------------------------------------------- placing
    async def _raylet(self, node: NodeInfo) -> framed.Connection:
        return await self._raylets.get((node.node_ip, node.raylet_port))

    async def _schedule(self, rec: ActorRecord) -> None:
        generation = rec.generation
        delay = 0.05
        warned = False
        selector = parse_label_selector(rec.label_selector)
        while rec.generation == generation and rec.state != ActorState.DEAD:
            nodes = self._nodes.all_nodes(alive_only=True)
            decision = place_actor(rec, nodes, spread_counter=self._spread_counter)
            if decision.kind == "fail":
                self._unschedulable(rec, decision.reason)
                return
            node = next(
                (n for n in nodes if decision.node and n.node_id == decision.node.node_id), None
            )
            if node is None:
                # infeasible: stays pending; say so once, as the raylet does (not while it
                # waits for its placement group's bundles)
                if not warned and not any(group_of(k) for k in rec.placement_resources):
                    warned = True
                    self._spawn(self._warn_infeasible(rec, selector))
                await asyncio.sleep(min(delay, 1.0))
                delay *= 2
                continue
            if rec.scheduling_strategy == SPREAD:
                self._spread_counter += 1
            try:
                await self._create_on(rec, node, generation)
                return
            except (TimeoutError, OSError, framed.ConnectionLost) as err:
                logger.warning(
                    "placing actor %s on %s failed: %r; retrying",
                    rec.actor_id.hex(),
                    node.node_id[:12],
                    err,
                )
                await asyncio.sleep(min(delay, 1.0))
                delay *= 2

    def _unschedulable(self, rec: ActorRecord, reason: str) -> None:
        """The actor can never be placed as asked: it dies, and its callers get Ray's
        ActorUnschedulableError (pickled here, raised by each caller's core worker)."""
        logger.warning("actor %s cannot be scheduled: %s", rec.actor_id.hex()[:12], reason)
        error = pickle.dumps(rex.ActorUnschedulableError(reason))
        self._apply(rec, self.table.unschedulable(rec, reason, error))

    async def _warn_infeasible(self, rec: ActorRecord, selector: LabelSelector) -> None:
        where = (
            f" on a node matching label_selector {format_selector(selector)}" if selector else ""
        )
        msg = (
            f"No node can place actor {rec.class_name} ({rec.actor_id.hex()}), which needs "
            f"{format_shape(rec.placement_resources)}{where}. It stays pending until such a node "
            "joins; change its resources or label_selector, or add a node that has them."
        )
        logger.warning(msg)
        host, _, port = rec.owner_address.rpartition(":")
        try:
            owner = await self._raylets.get((host, int(port)))
            owner.notify(rm.ShowWarning(msg))
        except (TimeoutError, OSError, ValueError, framed.ConnectionLost) as err:
            logger.info("could not tell the owner of actor %s: %r", rec.actor_id.hex(), err)

    async def _create_on(self, rec: ActorRecord, node: NodeInfo, generation: int) -> None:
        raylet = await self._raylet(node)
        # spilled=True: the GCS already chose this node; its raylet must not send it on.
        try:
            grant = await raylet.request(
                rm.RequestLease(
                    rec.placement_resources,
                    strategy=None,
                    spilled=True,
                    runtime_env=rec.runtime_env,
                    for_actor=True,
                )
            )
        except framed.Refused as err:
            if err.refusal.code != RefusalCode.RUNTIME_ENV_SETUP_FAILED:
                raise
            # Its env cannot be set up: the actor dies, and callers get RuntimeEnvSetupError.
            reason = err.refusal.message
            logger.warning("actor %s: runtime_env setup failed: %s", rec.actor_id.hex(), reason)
            error = pickle.dumps(rex.RuntimeEnvSetupError(reason))
            self._apply(rec, self.table.unschedulable(rec, reason, error))
            return
        assert isinstance(grant, rm.LeaseGranted), grant  # spilled=True: never sent on
        lease_id, worker_id, address = grant.lease_id, grant.worker_id, grant.worker_address
        instances, node_id = grant.instances, grant.node_id
        if rec.generation != generation or rec.state == ActorState.DEAD:
            raylet.notify(rm.ReturnLease(lease_id, worker_ok=True))
            return
        handlers: dict[Any, Callable[..., Any]] = {wm.ActorExiting: self._h_actor_exiting}
        conn = await framed.connect(
            address[0],
            address[1],
            self._token,
            handlers,
            on_close=lambda c: self._on_worker_closed(rec, c, generation),
            settings=self._settings,
        )
        conn.context["actor_id"] = rec.actor_id
        # From here the worker is the actor's: its raylet reports its death to us.
        self._by_worker[worker_id] = (rec.actor_id, generation, node_id)
        try:
            created = await conn.request(
                wm.CreateActor(
                    rec.actor_id, rec.creation_spec, instances, lease_id, rec.num_restarts
                )
            )
        except framed.ConnectionLost:
            # It died while being created (its raylet's report may have come first, before
            # the worker was known to be this actor's: a second one finds nothing).
            self.on_worker_dead(worker_id, "the process died while the actor was being created")
            return
        if isinstance(created, wm.ActorCreationFailed):
            self._by_worker.pop(worker_id, None)
            conn.close()
            raylet.notify(rm.ReturnLease(lease_id, worker_ok=False))
            self._apply(rec, self.table.creation_failed(rec, created.message, created.error))
            return
        pid = created.pid
        if rec.hold_resources != rec.placement_resources:
            raylet.notify(rm.ResizeLease(lease_id, rec.hold_resources))
        self._workers[rec.actor_id] = conn
        action = self.table.created(
            rec, ip=address[0], port=address[1], node_id=node_id, pid=pid, worker_id=worker_id
        )
        registered_at = rec.extra.pop("registered_at", None)
        if isinstance(registered_at, float):
            self.placement_time.observe("Actor", time.monotonic() - registered_at)
        logger.info(
            "actor %s (%s) alive at %s:%d pid %d",
            rec.actor_id.hex()[:12],
            rec.class_name,
            address[0],
            address[1],
            pid,
        )
        self._apply(rec, action)

    def _on_worker_closed(self, rec: ActorRecord, conn: framed.Connection, generation: int) -> None:
        """Only a connection gone: whether the worker lives is its raylet's to say."""
        if self._workers.get(rec.actor_id) is conn:
            del self._workers[rec.actor_id]

    def on_worker_dead(self, worker_id: bytes, reason: str) -> None:
        """A raylet reports one of its workers gone: if it ran an actor (this generation of
        it), the actor exited, or restarts or dies per its max_restarts."""
        held = self._by_worker.pop(worker_id, None)
        if held is None:
            return
        actor_id, generation, _node = held
        rec = self.table.get(actor_id)
        if rec is None or rec.generation != generation:
            return
        conn = self._workers.pop(actor_id, None)
        if conn is not None:
            conn.close()
        if rec.extra.pop("exiting_generation", None) == generation:
            self._apply(rec, self.table.exited(rec))
            return
        self._apply(rec, self.table.worker_died(rec, reason or "the process exited or was killed"))

    def _h_actor_exiting(self, conn: framed.Connection, msg: wm.ActorExiting) -> None:
        aid = conn.context.get("actor_id")
        rec = self.table.get(aid) if aid is not None else None
        if rec is not None:
            rec.extra["exiting_generation"] = rec.generation

    async def ping(self, node: NodeInfo) -> bool:
        conn = await self._raylet(node)
        return isinstance(await conn.request(rm.Ping()), rm.Pong)

    @property
    def raylet_pool(self) -> framed.ConnectionPool:
        """The GCS's connections to raylets (the placement-group manager shares them)."""
        return self._raylets

    def on_pg_removed(self, pg_id: bytes) -> None:
        """Actors scheduled in a removed placement group die, without restarts (Ray)."""
        pg_hex = pg_id.hex()
        for rec in self.table.all():
            if rec.state != ActorState.DEAD and any(
                group_of(k) == pg_hex for k in rec.placement_resources
            ):
                self._apply(rec, self.table.pg_removed(rec))

    def on_node_dead(self, node: NodeInfo) -> None:
        """A dead node's workers are dead (no raylet is left to report them): each actor it
        ran, or was being created on, restarts or dies per max_restarts."""
        self._raylets.drop((node.node_ip, node.raylet_port))
        gone = [w for w, (_a, _g, n) in self._by_worker.items() if n == node.node_id]
        for worker_id in gone:
            self.on_worker_dead(worker_id, f"its node {node.node_id[:12]} died")
        # Owners on the dead node are dead too: their actors (not detached) die with them.
        for rec in self.table.all():
            owned_there = rec.owner_node_id == node.node_id and not rec.is_detached
            if owned_there and rec.state != ActorState.DEAD:
                self._apply(rec, self.table.owner_died(rec))

    # ------------------------------------------------------------------ owners
    def on_owner_dead(self, owner: str) -> None:
        """A raylet reports a worker or driver gone: the actors it owned (not detached) die
        with it, as in Ray."""
        for rec in self.table.owned_by(owner):
            logger.info("owner %s of actor %s died", owner, rec.actor_id.hex()[:12])
            self._apply(rec, self.table.owner_died(rec))
