"""The I/O shell of actor method calls on the caller's side.

Feeds ``actor_queue.ActorQueues`` (the state machine that decides the order, the retries
and the failures of actor calls) with what happens, and carries out what it says: sends a
call on the actor's connection, connects to the actor's address, follows where the
actor is while it needs to know (``actor_directory``: one subscription per process to the
GCS's actors channel, keyed by the actors being resolved; the calls themselves never touch
the GCS), fails a call. It also holds the calls' specs (the machine only
knows their ids) and counts each actor's pending calls for ``max_pending_calls``.

Threads: user threads count pending calls (``admit``, ``pending_calls``) and hand new
calls over (``hand_over_call``); everything else runs on the core worker's IO thread,
which alone touches the machine. New calls reach the machine through ``tasks.Tasks``
(which owns their records and retry budgets) as ``submit``.

The direct lane (the hot path of ``get(actor.f.remote())``): while the machine says a new
call to an actor would go out at once (``direct_epoch``), the IO thread keeps a lane open
for it: the connection and its epoch. A user thread that finds the lane open registers the
reply, hands the call over for bookkeeping, and writes the frame itself, under the lane
lock, without waking the IO thread (the loop is marked behind: ``threads.new_io_loop``). The
IO thread records it (``CallSentDirect``) when the reply wakes it, before the reply, or when
any later hand-off from a user thread makes it catch up first (``tasks.drain_pending``); a
reply with values that comes with that call's hand-over alone ends the call at once, never
queued or recorded (``tasks.take_alone``/``finish_alone``, the hot path).
That saves the IO thread's wake-up and its turn on the way out. Anything else that could put a
call ahead of a direct one closes the lane first: a call handed over the usual way (it
needs the IO thread, or others are pending), a queue, a lost connection; the IO thread
reopens it only after its own frames for the actor are written (``flush``) and with no
call handed over and not taken (checked under the lane lock, which every hand-over of an
actor call holds).

The sync lane (``core_worker/sync_lane``): once a caller has sent ``SYNC_LANE_AFTER``
calls in a row to an actor through its direct lane on one connection, each answered while
a user thread waited for it (``get(actor.f.remote())``: not a batch, whose calls may go out
one at a time too when replies come back as fast), and none sent the usual way in between,
the IO thread opens a second connection to the actor's worker, on the same host only,
and asks for it to become a sync lane (``OpenSyncLane``); a plain sync actor agrees, and
its main thread then reads and runs the calls written on it without its IO thread. From
then on the direct lane writes on that connection; the replies come back on it to this IO
thread, as before. It belongs to the ordinary connection's epoch: a call on it cut off by
a lost connection closes the ordinary connection too, so the machine sees one
``ConnectionLost`` for the epoch (retries and ``ActorDiedError`` as for any call in
flight), and a new epoch opens a new lane. The direct lane only ever carries a call alone
in flight from this process, so a call on one connection never overtakes one on the other.
"""

from __future__ import annotations

import logging
import pickle
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayops import exceptions as rex
from rayops.core_worker import actor_queue as aq
from rayops.core_worker.actor_directory import ActorDirectory
from rayops.core_worker.caller_lane import CallerLanes
from rayops.core_worker.threads import any_thread, io_thread
from rayops.gcs.actor_events import ActorChanged
from rayops.protocol import worker_messages as wm
from rayops.protocol.framed_message import RefusalCode
from rayops.protocol.task_messages import STREAMING, TaskReply, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker
    from rayops.core_worker.task_manager import TaskRecord

logger = logging.getLogger(__name__)

# Calls sent through the direct lane on one connection before a sync lane is asked for: a
# caller that makes one call at a time, not a batch or a one-off.
SYNC_LANE_AFTER = 4


class ActorSubmitter:
    """Caller side of actor calls: the machine, the connections, the specs."""

    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._machine = aq.ActorQueues()
        self._specs: dict[bytes, TaskSpec] = {}  # calls the machine knows, by task id
        self._conns: dict[bytes, framed.Connection] = {}  # actor id -> its connection
        self._node_ids: dict[bytes, str] = {}  # actor id -> the node it lives on
        # The one subscription to the GCS's actors channel, for the actors being resolved.
        self._directory = ActorDirectory(
            cw.async_gcs,
            cw.spawn,
            self._machine.wants_address,
            self._on_info,
            self._on_unreachable,
            subscriber_id=lambda: f"core worker {cw.address[0]}:{cw.address[1]}",
        )
        # Between hold() and flush(): the connections corked with calls not yet written.
        self._holding = False
        self._unflushed: set[framed.Connection] = set()
        # Calls submitted from this process and not finished, per actor (max_pending_calls).
        self._pending_lock = threading.Lock()
        self._pending = aq.PendingCalls()
        # The direct lanes (see the module doc); _lane_lock guards _lanes and the hand-over
        # of actor calls (so the IO thread reopens a lane only with no call handed over).
        self._lane_lock = threading.Lock()
        self._lanes: dict[bytes, tuple[framed.Connection, int]] = {}
        self._direct: dict[bytes, int] = {}  # task id -> epoch it was sent on, until taken
        self._touched: set[bytes] = set()  # actors whose lane flush() must recompute
        # Sync lanes (see the module doc): actor id -> (its connection, the epoch it
        # belongs to); direct calls counted on the current epoch; the epoch a lane was
        # last asked for (once per epoch).
        self._sync: dict[bytes, tuple[framed.Connection, int]] = {}
        self._direct_sent: dict[bytes, tuple[int, int]] = {}  # actor id -> (epoch, count)
        self._sync_tried: dict[bytes, int] = {}
        # Their replies are read by the user thread that waits for them (caller_lane).
        self.caller_lanes = CallerLanes(cw)

    # ------------------------------------------------------------ user threads
    @any_thread
    def admit(self, actor_id: bytes, limit: int) -> bool:
        """Count a new call to ``actor_id`` as pending, unless ``limit`` (> 0) already are;
        ``call_finished`` undoes it."""
        with self._pending_lock:
            return self._pending.admit(actor_id, limit)

    @any_thread
    def call_finished(self, actor_id: bytes) -> None:
        """A call admitted for ``actor_id`` finished (or was never submitted)."""
        with self._pending_lock:
            self._pending.finished(actor_id)

    @any_thread
    def took_direct(self, task_id: bytes) -> None:
        """A user thread claimed a call it sent through the direct lane (``caller_lane``)."""
        self._direct.pop(task_id, None)

    @any_thread
    def pending_calls(self, actor_id: bytes | None = None) -> int:
        """Calls to ``actor_id`` (to any actor if None) submitted here and not finished."""
        with self._pending_lock:
            return self._pending.count(actor_id)

    @any_thread
    def pending_actors(self) -> int:
        """How many actors have calls pending from here (no entry is kept for the others)."""
        with self._pending_lock:
            return self._pending.actors()

    @any_thread
    def hand_over_call(
        self,
        spec: TaskSpec,
        queue: Callable[[], None],
        wake: Callable[[], None],
        direct_ok: bool = True,
        defer: Callable[[], None] | None = None,
    ) -> None:
        """Pass a new call to the IO thread (``queue`` it, then ``wake`` the thread),
        writing it at once through the actor's direct lane when it is open and the call
        needs nothing of the IO thread first (an argument this process owns is inlined
        there) and no other call to the actor is pending here. A call written here is left
        for the IO thread to take when its reply wakes it: ``defer`` instead of ``wake``
        (``wake`` if no ``defer`` is given, after the write: a woken IO thread would take
        the GIL from this one in the middle of it)."""
        aid = spec.actor_id
        me = self._cw.address
        # Only a call alone in flight: a batch of calls (``[a.f.remote() for ...]``) goes
        # out faster as one frame the IO thread writes than as a write per call.
        direct_ok = direct_ok and self._pending.count(aid) <= 1
        with self._lane_lock:
            lane = self._lanes.get(aid) if direct_ok else None
            if lane is not None and not (
                spec.args and any(a[0] == "r" and a[2] == me for a in spec.args)
            ):
                conn, epoch = lane
                slot = framed.ReplySlot(
                    lambda reply, err: self._on_done_direct(spec, epoch, reply, err, conn)
                )
                req_id = conn.register_threadsafe(slot)
                if req_id is not None:
                    # Queued before the frame is written: its reply finds it.
                    self._direct[spec.task_id] = epoch
                    caller_lane = self.caller_lanes.lane_of(conn)
                    if caller_lane is not None:
                        self.caller_lanes.sent(caller_lane, req_id, spec)
                    queue()
                    conn.send_threadsafe(framed.request_tuple(req_id, wm.ActorCall(spec)))
                    (defer or wake)()
                    return
            self._lanes.pop(aid, None)
            queue()
            wake()

    # ------------------------------------------------------------- IO thread
    def _refresh_lanes(self) -> None:
        """Open or close the lanes of the actors whose state changed (after their frames
        are written: a direct call must not overtake one the IO thread sent)."""
        touched, self._touched = self._touched, set()
        has_incoming = self._cw.tasks.has_incoming
        for aid in touched:
            epoch = self._machine.direct_epoch(aid)
            conn = self._conns.get(aid)
            sync = self._sync.get(aid)
            if sync is not None and (sync[1] != epoch or sync[0].closed):
                sync = None
            with self._lane_lock:
                # A call handed over and not taken yet could be one to this actor: it must
                # not be overtaken (the next flush looks again).
                if epoch is None or conn is None or conn.closed or has_incoming():
                    self._lanes.pop(aid, None)
                else:
                    self._lanes[aid] = (conn if sync is None else sync[0], epoch)

    @io_thread
    def submit(self, spec: TaskSpec, record: TaskRecord | None = None) -> None:
        """Queue a call (new, or again after an application error) behind the others
        (``record``: its task record, when the caller has it at hand)."""
        cw = self._cw
        aid = spec.actor_id
        if record is None:
            record = cw.tasks.record(spec.task_id)
        epoch = self._direct.pop(spec.task_id, None)
        if epoch is not None:  # a user thread sent it already
            self._specs[spec.task_id] = spec
            retries = 0
            if record is not None:
                cw.tasks.machine.pushed_record(record)
                retries = record.retries_left
            machine = self._machine
            if machine.sent_direct(aid, spec.task_id, retries, epoch):
                return  # the hot path: nothing changes
            self._handle(aq.CallSentDirect(aid, spec.task_id, retries, epoch))
            return
        ready = True
        if spec.args:
            resolved = cw.tasks.resolve_owned_args(spec, lambda: self._args_ready(spec))
            if resolved is None:
                ready = False
            elif isinstance(resolved, tuple) and resolved and resolved[0] == "error":
                cw.tasks.fail(spec, entry=resolved[1])
                return
            else:
                spec = resolved
        self._specs[spec.task_id] = spec
        if aid in self._direct_sent:  # not one call at a time: no sync lane (yet)
            del self._direct_sent[aid]
        conn = self._conns.get(aid)
        machine = self._machine
        if conn is not None and conn.closed:
            # The actor went away while we were idle: nothing was in flight to notice.
            self._forget_conn(aid)
            actor = machine.actor(aid)
            if actor is not None:
                self._handle(aq.ConnectionLost(aid, actor.epoch))
        retries = record.retries_left if record is not None else 0
        self._handle(aq.CallSubmitted(aid, spec.task_id, retries, ready))

    def _args_ready(self, spec: TaskSpec) -> None:
        if spec.task_id not in self._specs:
            return  # failed or dropped meanwhile
        cw = self._cw
        resolved = cw.tasks.resolve_owned_args(spec, lambda: self._args_ready(spec))
        if resolved is None:
            return
        if isinstance(resolved, tuple) and resolved and resolved[0] == "error":
            del self._specs[spec.task_id]
            self._handle(aq.CallDropped(spec.actor_id, spec.task_id))
            cw.tasks.fail(spec, entry=resolved[1])
            return
        self._specs[spec.task_id] = resolved
        self._handle(aq.ArgsReady(spec.actor_id, spec.task_id))

    @io_thread
    def drop(self, actor_id: bytes, task_id: bytes) -> bool:
        """Forget a call finished some other way (cancelled); True if it was still queued
        or in flight here. The caller finishes its record."""
        if self._specs.pop(task_id, None) is None:
            return False
        self._handle(aq.CallDropped(actor_id, task_id))
        return True

    @io_thread
    def connection_of(self, actor_id: bytes) -> framed.Connection | None:
        """The open connection to the actor, if there is one (to send it a cancel)."""
        conn = self._conns.get(actor_id)
        return None if conn is None or conn.closed else conn

    @io_thread
    def registered(self, actor_id: bytes, version: int) -> None:
        """This process created the actor, which the GCS has at ``version``."""
        self._handle(aq.ActorRegistered(actor_id, version))

    @io_thread
    def mark_dead(self, actor_id: bytes, err: BaseException) -> None:
        """This process killed the actor: fail its calls now instead of racing the exit."""
        self._forget_conn(actor_id)
        self._handle(aq.ActorDead(actor_id, err))
        self._directory.drop(actor_id)

    @io_thread
    def on_nodes_dead(self, node_ids: set[str]) -> None:
        """Nodes the GCS declared dead: close connections into them, so the calls in flight
        fail over and the GCS says where each actor went."""
        for aid, conn in list(self._conns.items()):
            if self._node_ids.get(aid) in node_ids:
                conn.close()

    # ---------------------------------------------------------- instructions
    def _handle(self, event: aq.Event) -> None:
        """Feed the machine one event and carry out its instructions; frames it sends are
        written, and the actor's lane recomputed, when the outermost batch ends."""
        self._touched.add(event.actor_id)
        if self._holding:
            self._run(self._machine.handle(event))
            return
        self._holding = True
        try:
            self._run(self._machine.handle(event))
        finally:
            self.flush()

    def _run(self, instructions: list[aq.Instruction]) -> None:
        for ins in instructions:
            kind = type(ins)
            if kind is aq.SendCall:
                self._send(ins)  # type: ignore[arg-type]
            elif kind is aq.FailCall:
                self._fail(ins)  # type: ignore[arg-type]
            elif kind is aq.RetryCall:
                self._count_retry(ins)  # type: ignore[arg-type]
            elif kind is aq.WatchActor:
                self._watch(ins.actor_id)
            elif kind is aq.Connect:
                self._cw.spawn(self._connect(ins.actor_id, ins.address))  # type: ignore[union-attr]

    def _send(self, ins: aq.SendCall) -> None:
        spec = self._specs[ins.task_id]
        conn = self._conns[ins.actor_id]
        self._cw.tasks.pushed(spec.task_id)
        epoch = ins.epoch
        # The reply is handled as its frame is read, not one loop iteration later.
        slot = framed.ReplySlot(lambda reply, err: self._on_done(spec, epoch, reply, err))
        if self._holding and conn not in self._unflushed:
            conn.cork()
            self._unflushed.add(conn)
        conn.request_to(slot, wm.ActorCall(spec))

    @io_thread
    def hold(self) -> None:
        """Calls sent from now on wait for ``flush`` (the end of a batch of submissions),
        which writes them at once: no loop iteration between submitting and writing."""
        self._holding = True

    @io_thread
    def flush(self) -> None:
        """Write the calls held since ``hold`` now, one frame per connection."""
        self._holding = False
        if self._unflushed:
            unflushed, self._unflushed = self._unflushed, set()
            for conn in unflushed:
                conn.uncork()
        if self._touched:
            self._refresh_lanes()

    def _on_done_direct(
        self,
        spec: TaskSpec,
        epoch: int,
        reply: TaskReply | None,
        err: BaseException | None,
        conn: framed.Connection,
    ) -> None:
        # The answer to a call a user thread sent: the IO thread may not have taken the
        # call yet (its hand-over and this reply race); take it first.
        if self.caller_lanes.by_oid:
            self.caller_lanes.forget(spec)
        tasks = self._cw.tasks
        if (
            err is None
            and reply is not None
            and reply.status == "ok"
            and not reply.borrowed
            and self._direct.get(spec.task_id) == epoch
            and self._machine.direct_epoch(spec.actor_id) == epoch
            and spec.num_returns != STREAMING
            and all(r[0][0] == "v" for r in reply.returns)
        ):
            # The hot path (``get(a.f.remote())``): the reply came with the call's
            # hand-over, which holds nothing else; the call ends at once, never queued.
            item = tasks.take_alone(spec)
            if item is not None:
                del self._direct[spec.task_id]
                if self._cw.memory_store.blocked_waits():  # a user thread waits
                    self._count_direct(spec.actor_id, epoch)
                tasks.finish_alone(item, reply)
                return
        if not tasks.drain_pending():  # answered inside a drain: after it
            self._cw.loop.call_soon(self._on_done_direct, spec, epoch, reply, err, conn)
            return
        if err is None:
            if self._cw.memory_store.blocked_waits():  # a user thread waits: a sync caller
                self._count_direct(spec.actor_id, epoch)
        elif isinstance(err, ConnectionError) and conn is not self._conns.get(spec.actor_id):
            # Cut off on a sync lane: the epoch is lost, its ordinary connection with it.
            self._lose_epoch(spec.actor_id, epoch)
        self._on_done(spec, epoch, reply, err)

    # ------------------------------------------------------------ sync lanes
    def _count_direct(self, aid: bytes, epoch: int) -> None:
        """A call that went out through the direct lane on ``epoch`` was answered while a
        user thread waited (in ``get`` or ``wait``): after SYNC_LANE_AFTER of them in a row,
        ask the actor for a sync lane (once per epoch). A batch whose calls go out one at a
        time because the replies come back as fast does not count: its thread is busy
        submitting when they come."""
        seen_epoch, count = self._direct_sent.get(aid, (epoch, 0))
        count = count + 1 if seen_epoch == epoch else 1
        self._direct_sent[aid] = (epoch, count)
        if count < SYNC_LANE_AFTER or self._sync_tried.get(aid) == epoch:
            return
        conn = self._conns.get(aid)
        if conn is None or conn.closed or conn.local_peer is None or aid in self._sync:
            return
        self._sync_tried[aid] = epoch
        self._cw.spawn(self._open_sync_lane(aid, epoch, conn.local_peer))

    async def _open_sync_lane(self, aid: bytes, epoch: int, address: aq.Address) -> None:
        cw = self._cw
        try:
            lane = await framed.connect(
                address[0],
                address[1],
                cw.token,
                {},
                on_close=lambda c: self._sync_closed(aid, c),
                settings=cw.framed_settings,
            )
        except (TimeoutError, OSError, framed.ConnectionLost):
            return
        try:
            ok = lane.local_peer is not None and await lane.request(wm.OpenSyncLane(aid))
        except (framed.Refused, framed.RemoteError, ConnectionError):
            ok = False
        actor = self._machine.actor(aid)
        conn = self._conns.get(aid)
        if (
            not ok
            or cw.is_shut_down
            or actor is None
            or actor.epoch != epoch
            or conn is None
            or conn.closed
            or aid in self._sync
        ):
            lane.close()
            return
        self._sync[aid] = (lane, epoch)
        self.caller_lanes.adopt(aid, lane)
        self._touched.add(aid)
        self.flush()

    def _sync_closed(self, aid: bytes, lane: framed.Connection) -> None:
        """A sync lane's connection closed: the direct lane goes back to the ordinary one
        (a call cut off on it is reported by its own reply slot)."""
        self.caller_lanes.drop(lane)
        sync = self._sync.get(aid)
        if sync is not None and sync[0] is lane:
            del self._sync[aid]
            self._touched.add(aid)
            if not self._holding:
                self.flush()

    def _lose_epoch(self, aid: bytes, epoch: int) -> None:
        actor = self._machine.actor(aid)
        conn = self._conns.get(aid)
        if actor is not None and actor.epoch == epoch and conn is not None:
            conn.close()
            self._forget_conn(aid)

    @io_thread
    def close_lanes(self) -> None:
        """Close every sync lane (the core worker shuts down)."""
        self.caller_lanes.close_all()
        for lane, _epoch in list(self._sync.values()):
            lane.close()
        self._sync.clear()

    def _on_done(
        self, spec: TaskSpec, epoch: int, reply: TaskReply | None, err: BaseException | None
    ) -> None:
        aid = spec.actor_id
        if err is None:
            self._specs.pop(spec.task_id, None)
            self._machine.replied(aid, spec.task_id, epoch)
            assert reply is not None
            self._cw.tasks.on_reply(spec, reply)
            return
        if isinstance(err, framed.Refused) and err.code is RefusalCode.NOT_HOSTED:
            # The actor is not at that address (any more): ask the GCS where it went.
            actor = self._machine.actor(aid)
            conn = self._conns.get(aid)
            if actor is not None and epoch == actor.epoch:  # once, for the current connection
                self._forget_conn(aid)
                if conn is not None:
                    conn.close()
            self._handle(aq.NotHosted(aid, epoch))
            return
        if not isinstance(err, ConnectionError):
            # This call alone failed (too large to send, or the actor's process could not
            # take it); the connection and the calls behind it are fine.
            self._specs.pop(spec.task_id, None)
            self._machine.handle(aq.CallFailed(aid, spec.task_id, epoch))
            self._cw.tasks.fail(spec, error=err)
            return
        conn = self._conns.get(aid)
        if conn is not None and conn.closed:
            self._forget_conn(aid)
        self._handle(aq.ConnectionLost(aid, epoch))

    def _fail(self, ins: aq.FailCall) -> None:
        spec = self._specs.pop(ins.task_id, None)
        if spec is not None:
            self._cw.tasks.fail(spec, error=ins.error)

    def _count_retry(self, ins: aq.RetryCall) -> None:
        """Spend the retry on the task's record; one the record refuses (cancelled) is
        dropped from the queue, and ends here unless the record has ended already."""
        cw = self._cw
        if cw.tasks.actor_call_resent(ins.task_id):
            return
        spec = self._specs.get(ins.task_id)
        if spec is None or not self.drop(ins.actor_id, ins.task_id):
            return
        if cw.tasks.record(ins.task_id) is not None:
            cw.tasks.fail(
                spec,
                rex.ActorDiedError(
                    actor_id=ins.actor_id.hex(),
                    error_msg="The actor died while running this call; it is not retried.",
                ),
            )

    def _forget_conn(self, actor_id: bytes) -> None:
        self._conns.pop(actor_id, None)
        with self._lane_lock:
            self._lanes.pop(actor_id, None)
        sync = self._sync.pop(actor_id, None)
        if sync is not None:
            sync[0].close()
        self._touched.add(actor_id)

    async def _connect(self, actor_id: bytes, address: aq.Address) -> None:
        try:
            conn = await self._cw.peer(address)
        except (TimeoutError, OSError, framed.ConnectionLost):
            self._handle(aq.ConnectFailed(actor_id, address))
            return
        self._conns[actor_id] = conn
        self._handle(aq.Connected(actor_id, address))

    # ---------------------------------------------------------------- the GCS
    def _watch(self, actor_id: bytes) -> None:
        self._directory.want(actor_id)

    def _on_info(self, actor_id: bytes, info: ActorChanged | None) -> None:
        """The GCS's word on an actor the machine is resolving (None: it has no such actor)."""
        self._handle(self._event_of(actor_id, info))
        if not self._machine.wants_address(actor_id):
            self._directory.drop(actor_id)

    def _on_unreachable(self, actor_id: bytes, cause: BaseException) -> None:
        if not self._cw.is_shut_down:
            self._handle(aq.ActorDead(actor_id, cause))

    def _event_of(self, actor_id: bytes, info: ActorChanged | None) -> aq.Event:
        """The machine's event for the GCS's answer about an actor."""
        if info is None:
            return aq.ActorDead(
                actor_id,
                rex.ActorDiedError(error_msg=f"the GCS does not know actor {actor_id.hex()}"),
            )
        if info.state == "DEAD":
            return aq.ActorDead(actor_id, _death_error(info))
        address = info.address
        if info.state == "ALIVE" and address is not None:
            self._node_ids[actor_id] = info.node_id
            return aq.ActorAddressKnown(actor_id, address, info.version)
        return aq.ActorRestarting(actor_id, info.version)


def _death_error(info: ActorChanged) -> BaseException:
    cause: Any = None
    if info.death_error:
        try:
            cause = pickle.loads(info.death_error)
        except Exception:
            cause = None
    if isinstance(cause, (rex.ActorUnschedulableError, rex.RuntimeEnvSetupError)):
        # never placed, or its runtime_env failed: Ray raises these themselves, not an
        # ActorDiedError
        return cause
    msg = f"The actor {info.class_name} ({info.actor_id.hex()}) died: {info.death_cause}."
    if cause is not None:
        return rex.ActorDiedError(cause=cause, actor_id=info.actor_id.hex(), error_msg=msg)
    return rex.ActorDiedError(actor_id=info.actor_id.hex(), error_msg=msg)
