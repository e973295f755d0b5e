"""The shell around ``task_manager``: task submission, completion and cancel on the owner.

Owns the hand-over of new tasks from user threads to the IO thread (one wake-up per batch),
the inlining of the arguments this process owns, and carrying out the task manager's
instructions: queueing for a lease (``submitter``) or an actor (``actor_submitter``),
storing returns and errors (``references``), ending generators (``generators``), telling a
worker to cancel, releasing argument pins. It must not decide anything: retries, cancel
outcomes and counts are the task manager's.

Threads: ``submit`` and ``cancel`` are called from user threads; everything else runs on
the IO thread (asserted in debug runs), the only thread that touches the task manager.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayops.core_worker import task_manager as tm
from rayops.core_worker.borrowing import error_entry
from rayops.core_worker.object_ref import ObjectRef, ObjectRefGenerator
from rayops.core_worker.task_metrics import ST_SUBMITTED, OwnerTaskCounts
from rayops.core_worker.threads import any_thread, io_thread, user_thread
from rayops.protocol import worker_messages as wm
from rayops.protocol.task_messages import DYNAMIC, STREAMING, TaskReply, TaskSpec
from rayops.rpc import framed
from rayops.serialization import META_ERROR

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

Entry = tuple[Any, ...]
# A new task on its way to the IO thread: spec, pinned ids, retries, retry_exceptions,
# class name (actor calls), async actor
_Incoming = tuple[TaskSpec, list[bytes], int, Any, str, bool]
# Calls ended on user threads that wake the IO thread to count them (else it counts them
# at its next turn).
FINISHED_HERE_BATCH = 256


class Tasks:
    """``cw.tasks``: the tasks this process submitted (see module doc)."""

    def __init__(self, cw: CoreWorker, counts: OwnerTaskCounts) -> None:
        self._cw = cw
        self.machine = tm.TaskManager(counts)
        self._incoming: list[_Incoming] = []
        # Taking from _incoming (the IO thread's swap, a user thread's claim) holds this;
        # appending does not (an append racing a swap lands in one list or the other).
        self._take_lock = threading.Lock()
        # Actor calls a user thread claimed and finished itself (a sync lane's reply it
        # read: ``caller_lane``): the IO thread counts them through at its next turn.
        self._finished_here: list[_Incoming] = []
        self._drain_scheduled = False
        self._draining = False
        self._do: dict[type, Callable[[Any], None]] = {
            tm.SubmitToScheduler: self._submit_to_scheduler,
            tm.ResolveArgs: self._resolve,
            tm.SubmitToActor: self._submit_to_actor,
            tm.StoreReturns: self._store_returns,
            tm.FinishGenerator: self._finish_generator,
            tm.FailWith: self._fail_with,
            tm.DropQueued: self._drop_queued,
            tm.SendCancel: self._send_cancel,
            tm.Release: self._release,
            tm.LogRetry: _log_retry,
        }

    # ------------------------------------------------------------ user threads
    @any_thread
    def submit(
        self,
        spec: TaskSpec,
        deps: list[bytes],
        retries: int,
        retry_exceptions: Any,
        class_name: str = "",
        async_actor: bool = False,
    ) -> list[ObjectRef] | ObjectRefGenerator:
        """Own the returns, pin the arguments and hand the task to the IO thread.

        ``class_name`` and ``async_actor`` describe an actor call's actor (``spec.actor_id``).
        """
        cw = self._cw
        cw.references.pin_submitted(deps)
        dynamic = spec.num_returns == DYNAMIC
        if dynamic:  # the worker runs it as a stream; the owner collects the items
            spec = spec._replace(num_returns=STREAMING)
        item = (spec, deps, retries, retry_exceptions, class_name, async_actor)
        if spec.num_returns == STREAMING:
            if spec.actor_id:  # through the lane lock, to keep the caller's order
                calls = cw.actor_submitter
                return cw.generators.submitted(
                    spec,
                    dynamic,
                    lambda _s: calls.hand_over_call(
                        spec, lambda: self._incoming.append(item), self._wake, False
                    ),
                )
            return cw.generators.submitted(spec, dynamic, lambda _s: self._hand_over(item))
        address = cw.address
        for rid in spec.return_ids:
            cw.references.add_owned(rid, address, local=1)
        refs = [ObjectRef(rid, address, cw, counted=True) for rid in spec.return_ids]
        if spec.actor_id:
            cw.actor_submitter.hand_over_call(
                spec, lambda: self._incoming.append(item), self._wake, defer=self._defer
            )
        else:
            self._hand_over(item)
        return refs

    def _hand_over(self, item: _Incoming) -> None:
        # Lock-free: the IO thread swaps the list after clearing the flag, so an append that
        # races the swap lands in this batch or schedules the next one.
        self._incoming.append(item)
        self._wake()

    def _defer(self) -> None:
        """Leave what was handed over for the IO thread's next turn (see
        ``threads.new_io_loop``): a call written through a direct lane, whose reply wakes
        the IO thread, which takes the call first."""
        self._cw.loop.behind = True

    def _wake(self) -> None:
        """Have the IO thread take what was handed over (once per batch)."""
        if not self._drain_scheduled:
            self._drain_scheduled = True
            self._cw.loop.call_soon_threadsafe(self._drain)

    @any_thread
    def claim(self, spec: TaskSpec) -> _Incoming | None:
        """Take ``spec``'s call out of what was handed over, if the IO thread has not taken
        it yet: the caller (a user thread holding its reply) then ends it itself and hands
        it back with ``finished_here``. None if the IO thread took it (it ends it)."""
        with self._take_lock:
            inc = self._incoming
            for i in range(len(inc) - 1, -1, -1):
                if inc[i][0] is spec:
                    return inc.pop(i)
        return None

    @any_thread
    def finished_here(self, item: _Incoming) -> None:
        """A claimed call ended on a user thread (its values stored, its pending count
        dropped): the IO thread counts it through the task manager at its next turn, or
        now if many have piled up."""
        done = self._finished_here
        done.append(item)
        if len(done) >= FINISHED_HERE_BATCH:
            self._wake()
        else:
            self._cw.loop.behind = True  # caught up at the next hand-off or lane tick

    @user_thread
    def cancel(self, ref: ObjectRef, force: bool, recursive: bool) -> None:
        """``rayops.cancel``: the ref resolves with TaskCancelledError at once, wherever the
        task is. Raises ValueError for ``force=True`` on an actor call (before anything)."""
        cw = self._cw
        task_id = ref.task_id()
        owner = tuple(ref.owner_address)
        if owner != cw.address:  # a borrowed ref: its owner holds the record
            self._forward_cancel(owner, task_id, force, recursive)  # type: ignore[arg-type]
            return

        async def on_io() -> None:
            self._run(self.machine.cancel(task_id, force, recursive))

        # Queued behind the submissions made before it, so a just-submitted task is known.
        cw.run(on_io(), timeout=30)

    def _forward_cancel(
        self, owner: tuple[str, int], task_id: bytes, force: bool, recursive: bool
    ) -> None:
        cw = self._cw

        async def forward() -> None:
            conn = await cw.peer(owner)
            await conn.request(wm.CancelOwnedTask(task_id, force, recursive))

        try:
            cw.run(forward(), timeout=30)
        except (OSError, framed.ConnectionLost) as err:
            # The owner is gone, and with it the task's result (get() says so).
            logger.debug("could not forward cancel of %s to %s: %r", task_id.hex(), owner, err)

    @io_thread
    def h_cancel_owned_task(self, conn: Any, task_id: bytes, force: bool, recursive: bool) -> None:
        """A borrower called cancel() on a ref of a task this process owns."""
        self._run(self.machine.cancel(task_id, force, recursive))

    # ------------------------------------------------------------- IO thread
    @io_thread
    def _drain(self) -> None:
        self._drain_scheduled = False
        self._cw.loop.behind = False  # before the swap: a later hand-off sets it again
        if self._finished_here:
            self._count_finished_here()
        with self._take_lock:
            batch, self._incoming = self._incoming, []
        if batch:
            self._submit_batch(batch)

    def _count_finished_here(self) -> None:
        """Count through the task manager the calls user threads ended (``finished_here``):
        as ``finish_alone`` does, but their values are stored and their pending counts
        dropped already."""
        done, self._finished_here = self._finished_here, []
        for item in done:
            self._count_answered(item)

    def _count_answered(self, item: _Incoming) -> None:
        """An actor call answered with values before the IO thread took it: counted through
        its states at once, its pins released."""
        self.machine.answered_at_once(*item)
        deps = item[1]
        if deps:
            self._cw.references.unpin_submitted(deps)

    def _submit_batch(self, batch: list[_Incoming]) -> None:
        submit = self.machine.submit
        submit_call = self.machine.submit_actor_call
        actor_calls = self._cw.actor_submitter
        actor_calls.hold()  # the batch's actor calls are written at its end, at once
        self._draining = True
        try:
            for spec, deps, retries, rx, class_name, async_actor in batch:
                if spec.actor_id:  # submit's SubmitToActor, carried out at once
                    record = submit_call(spec, deps, retries, rx, class_name, async_actor)
                    actor_calls.submit(spec, record)
                    continue
                self._run(submit(spec, deps, retries, rx, class_name, async_actor))
        finally:
            self._draining = False
            actor_calls.flush()

    @any_thread
    def has_finished_here(self) -> bool:
        """Whether calls ended on user threads wait to be counted (tests)."""
        return bool(self._finished_here)

    @any_thread
    def has_incoming(self) -> bool:
        """Whether tasks were handed over that the IO thread has not taken yet."""
        return bool(self._incoming)

    @io_thread
    def drain_pending(self) -> bool:
        """Take the tasks handed over and not taken yet, now (a reply to a call a user
        thread sent itself can arrive before the IO thread's turn to take the call).
        False if a drain is under way up the stack: the caller must try again later."""
        if self._draining:
            return False
        if self._incoming or self._finished_here:
            self._drain()
        return True

    @io_thread
    def take_alone(self, spec: TaskSpec) -> _Incoming | None:
        """``drain_pending``, except when what was handed over is ``spec``'s call alone:
        that is returned instead, not submitted (its reply is at hand: ``finish_alone``).
        None if anything else was handed over (all of it is submitted now, as
        ``drain_pending`` does) or a drain is under way up the stack (nothing done)."""
        if self._draining:
            return None
        self._drain_scheduled = False
        self._cw.loop.behind = False  # as in _drain
        if self._finished_here:
            self._count_finished_here()
        with self._take_lock:
            batch, self._incoming = self._incoming, []
        if len(batch) == 1 and batch[0][0] is spec:
            return batch[0]
        if batch:
            self._submit_batch(batch)
        return None

    @io_thread
    def finish_alone(self, item: _Incoming, reply: TaskReply) -> None:
        """An actor call taken by ``take_alone`` was answered with values (inline, no
        borrows, not a stream): the task manager counts it through its states at once,
        and it ends as ``on_reply`` ends such a call (``Release``, then ``StoreReturns``),
        without a record, an instruction or its actor's queue."""
        spec = item[0]
        self._count_answered(item)
        cw = self._cw
        cw.actor_submitter.call_finished(spec.actor_id)
        store = cw.references.store_owned
        for rid, (entry, contained) in zip(spec.return_ids, reply.returns, strict=False):
            store(rid, entry, contained)

    @io_thread
    def record(self, task_id: bytes) -> tm.TaskRecord | None:
        return self.machine.record(task_id)

    @io_thread
    def pushed(self, task_id: bytes) -> None:
        """The task (or actor call) was sent to its worker."""
        self.machine.pushed(task_id)

    @io_thread
    def set_state(self, task_id: bytes, state: int) -> None:
        """Count the task in ``state`` (a task_metrics.ST_* index); SUBMITTED means pushed."""
        if state == ST_SUBMITTED:
            self.machine.pushed(task_id)
            return
        record = self.machine.record(task_id)
        if record is not None:
            self.machine.counts.move(record, state)

    @io_thread
    def on_reply(self, spec: TaskSpec, reply: TaskReply) -> None:
        """A worker answered ``spec``'s attempt."""
        if reply.borrowed:
            add = self._cw.references.add_borrower
            who = tuple(reply.worker_address)
            for oid in reply.borrowed:
                add(oid, who)  # type: ignore[arg-type]
        for r in reply.returns:
            if r[0][0] == "s":  # a value in a node's store: lineage may keep the task
                record = self.machine.record(spec.task_id)
                ins = self.machine.reply(spec, reply)
                self._run(self._cw.recovery.on_task_reply(record, spec, reply, ins))
                return
        self._run(self.machine.reply(spec, reply))

    @io_thread
    def resubmit(self, spec: TaskSpec, deps: list[bytes], retries: int, rx: Any) -> None:
        """Run a finished task again to rebuild its lost results (``cw.recovery``): its
        returns are owned and its arguments pinned already."""
        self._run(self.machine.submit(spec, deps, retries, rx))

    @io_thread
    def on_worker_died(self, spec: TaskSpec, err: BaseException, retry: bool = True) -> None:
        """``spec``'s attempt was lost with its worker or connection."""
        self._run(self.machine.worker_died(spec, err, retry))

    @io_thread
    def fail(
        self, spec: TaskSpec, error: BaseException | None = None, entry: Entry | None = None
    ) -> None:
        """The task ends with ``error`` (or the error ``entry``) without running (again)."""
        self._run(self.machine.fail(spec.task_id, error, entry))

    @io_thread
    def actor_call_resent(self, task_id: bytes) -> bool:
        """An actor call cut off by a lost connection goes again: spend a retry (False if
        it may not)."""
        return self.machine.actor_call_resent(task_id)

    @io_thread
    def cancel_children(self, parent_task_id: bytes, force: bool) -> None:
        """Worker side: a task running here was cancelled recursively; cancel what it
        submitted (this process owns those)."""
        self._run(self.machine.cancel_children(parent_task_id, force))

    @io_thread
    def resolve_owned_args(self, spec: TaskSpec, retry: Callable[[], None]) -> Any:
        """Inline our own ready arguments.

        Returns the updated spec; None if an argument we own is still pending (``retry``
        is called on the IO loop once all are ready); or ``("error", entry)`` when an
        argument holds an error, which the task then returns without running.
        """
        cw = self._cw
        me = cw.address
        ms = cw.memory_store
        pending = [a[1] for a in spec.args if a[0] == "r" and a[2] == me and not ms.contains(a[1])]
        if pending:
            remaining = [len(pending)]
            loop = cw.loop

            def one_ready(_oid: bytes, _e: Entry) -> None:
                remaining[0] -= 1
                if remaining[0] == 0:
                    loop.call_soon_threadsafe(retry)

            for oid in pending:
                ms.on_ready(oid, one_ready)
            return None
        args: list[tuple[Any, ...]] = []
        for a in spec.args:
            if a[0] == "r" and a[2] == me:
                entry = ms.get(a[1])
                assert entry is not None
                if entry[0] == "v":
                    if entry[1][0] == META_ERROR:
                        return ("error", entry)
                    args.append(("v", entry[1]))
                else:
                    args.append(("s", a[1], entry[1]))
            else:
                args.append(a)
        return spec._replace(args=tuple(args))

    # ---------------------------------------------------------- instructions
    def _run(self, instructions: list[tm.Instruction]) -> None:
        do = self._do
        for ins in instructions:
            do[type(ins)](ins)

    def _submit_to_scheduler(self, ins: tm.SubmitToScheduler) -> None:
        self._cw.submitter.submit(ins.spec)

    def _submit_to_actor(self, ins: tm.SubmitToActor) -> None:
        self._cw.actor_submitter.submit(ins.spec)

    def _resolve(self, ins: tm.ResolveArgs) -> None:
        spec = ins.spec
        resolved = self.resolve_owned_args(spec, lambda: self._resolve(ins))
        if resolved is None:
            self.machine.waiting_for_args(spec.task_id)
        elif isinstance(resolved, TaskSpec):
            self._run(self.machine.args_resolved(resolved))
        else:  # ("error", entry)
            self._run(self.machine.args_failed(spec.task_id, resolved[1]))

    def _store_returns(self, ins: tm.StoreReturns) -> None:
        store = self._cw.references.store_owned
        for rid, (entry, contained) in zip(ins.spec.return_ids, ins.reply.returns, strict=False):
            store(rid, entry, contained)

    def _finish_generator(self, ins: tm.FinishGenerator) -> None:
        self._cw.generators.on_finished(ins.spec, ins.num_items)

    def _fail_with(self, ins: tm.FailWith) -> None:
        spec = ins.spec
        entry = ins.entry
        if entry is None:
            assert ins.error is not None
            entry = error_entry(ins.error)
        if spec.num_returns == STREAMING:
            self._cw.generators.on_failed(spec, entry)
            return
        store = self._cw.references.store_owned
        for rid in spec.return_ids:
            store(rid, entry, ())

    def _drop_queued(self, ins: tm.DropQueued) -> None:
        spec = ins.spec
        if spec.actor_id:
            self._cw.actor_submitter.drop(spec.actor_id, spec.task_id)
        else:
            self._cw.submitter.cancel_queued(spec.task_id)

    def _send_cancel(self, ins: tm.SendCancel) -> None:
        cw = self._cw
        spec = ins.spec
        conn: Any
        if spec.actor_id:
            conn = cw.actor_submitter.connection_of(spec.actor_id)
        else:
            lease = cw.submitter.cancel_pushed(spec.task_id)  # no more tasks behind it
            conn = None if lease is None else lease.conn
        if conn is not None and not conn.closed:
            conn.notify(wm.CancelTask(spec.task_id, ins.force, ins.recursive))

    def _release(self, ins: tm.Release) -> None:
        cw = self._cw
        if ins.deps:
            cw.references.unpin_submitted(ins.deps)
        if ins.actor_id:
            cw.actor_submitter.call_finished(ins.actor_id)


def _log_retry(ins: tm.LogRetry) -> None:
    left = "infinite" if ins.retries_left < 0 else ins.retries_left
    logger.info(
        "retrying task %s (attempt %d) after %s; %s retries left",
        ins.spec.name,
        ins.spec.attempt,
        ins.reason,
        left,
    )
