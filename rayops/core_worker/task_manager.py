"""The owner's task records as a state machine: retries, cancellation, completion.

Owns, for every task (or actor call) this process submitted and that has not ended: its
record (spec, pinned argument ids, retries left, the ``retry_exceptions`` rule, attempt
number, where it is: waiting for its own arguments, queued for a lease or an actor, or
pushed to a worker), the cancelled/force flags, and its ``ray_tasks`` state counts
(``task_metrics.OwnerTaskCounts``, in memory only).

It must not do I/O: no connections, no timers, no threads, no memory store. Its methods are
events; each returns the instructions the shell (``tasks.Tasks``) carries out, in order.
Only the core worker's IO thread calls it.

Stages of a record, and the events that move it (one table; ``-`` = the record ends):

==========  =======================  ==========  =========================================
stage       event                    next        why
==========  =======================  ==========  =========================================
(new)       submit, normal, no args  QUEUED      nothing to wait for: straight to a lease
(new)       submit, normal, args     ARGS        the shell inlines our own ready arguments
(new)       submit, actor call       QUEUED      the actor queue waits for arguments itself
ARGS        args_resolved            QUEUED      queued under its resource shape
ARGS        args_failed              ``-``       an argument is an error: the task returns it
QUEUED      pushed                   PUSHED      a worker (or the actor) has it now
PUSHED      reply ok / error         ``-``       returns stored (or the generator finished)
PUSHED      reply error, retryable   QUEUED/ARGS ``retry_exceptions`` matched, retries left
PUSHED      worker died, retries     QUEUED/ARGS the attempt is lost; the next one starts over
PUSHED      worker died, none left   ``-``       WorkerCrashedError (OutOfMemoryError when
                                                 the memory monitor killed it)
ARGS/QUEUED cancel                   ``-``       never ran: dropped, TaskCancelledError now
PUSHED      cancel, normal task      PUSHED      TaskCancelledError now (the bound a user
                                                 relies on); the worker is told, and the
                                                 record waits for its answer (``resolved``)
PUSHED      cancel, actor call       ``-``       TaskCancelledError now; the actor is told,
                                                 its queue forgets the call
PUSHED      reply/died, resolved     ``-``       only the bookkeeping ends; never retried
==========  =======================  ==========  =========================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rayops import exceptions as rex
from rayops import serialization
from rayops.core_worker.task_metrics import (
    ST_ARGS,
    ST_FAILED,
    ST_FINISHED,
    ST_NODE,
    ST_SUBMITTED,
    UNCOUNTED,
    OwnerTaskCounts,
)
from rayops.protocol.task_messages import STREAMING, TaskReply, TaskSpec

Entry = tuple[Any, ...]


# Stages (plain ints: read on every event of the hot path)
ARGS = 0  # waiting at the owner for arguments it owns
QUEUED = 1  # queued at the owner for a lease (normal) or in its actor's queue
PUSHED = 2  # sent to a worker / the actor


class TaskRecord:
    """One submitted task that has not ended. ``m*`` fields belong to OwnerTaskCounts,
    ``erow`` to task_events.RecordingOwnerCounts."""

    __slots__ = (
        "async_actor",
        "cancelled",
        "class_name",
        "deps",
        "erow",
        "force_cancelled",
        "is_retry",
        "mname",
        "mrow",
        "mstate",
        "resolved",
        "retries_left",
        "retry_exceptions",
        "spec",
        "stage",
    )

    def __init__(
        self,
        spec: TaskSpec,
        retries_left: int,
        retry_exceptions: Any,
        deps: list[bytes],
        class_name: str = "",
        async_actor: bool = False,
    ) -> None:
        self.spec = spec
        self.retries_left = retries_left  # < 0: unlimited
        self.retry_exceptions = retry_exceptions  # False, True, or a tuple of classes
        self.deps = deps
        self.class_name = class_name
        self.async_actor = async_actor
        self.stage = QUEUED
        self.cancelled = False
        self.force_cancelled = False
        self.resolved = False  # returns already stored (cancelled while pushed)
        self.mstate = UNCOUNTED
        self.mname = ""
        self.is_retry = False
        self.mrow: list[int] | None = None
        self.erow = -1  # task_events: the number of this attempt's row of events


# ------------------------------------------------------------------ instructions
@dataclass(frozen=True, slots=True)
class ResolveArgs:
    """Inline the task's arguments this process owns; report with ``args_resolved`` /
    ``args_failed`` / ``waiting_for_args``."""

    spec: TaskSpec


@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class SubmitToScheduler:
    """Queue a normal task (arguments inlined) for a worker lease of its shape."""

    spec: TaskSpec


@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class SubmitToActor:
    """Queue an actor call behind the caller's other calls to that actor."""

    spec: TaskSpec
    class_name: str


@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class StoreReturns:
    """The task's values arrived: store each return (an error value counts as a value)."""

    spec: TaskSpec
    reply: TaskReply


@dataclass(frozen=True, slots=True)
class FinishGenerator:
    """A streaming task ended after ``num_items`` items: the generator component ends it."""

    spec: TaskSpec
    num_items: int


@dataclass(frozen=True, slots=True)
class FailWith:
    """Every return of ``spec`` becomes ``error`` (or the ready-made error ``entry``); for a
    streaming task, the generator ends with it."""

    spec: TaskSpec
    error: BaseException | None = None
    entry: Entry | None = None


@dataclass(frozen=True, slots=True)
class DropQueued:
    """Take ``spec`` out of the lease queue or its actor's queue: it must not be sent."""

    spec: TaskSpec


@dataclass(frozen=True, slots=True)
class SendCancel:
    """Tell the worker running (or holding) ``spec`` to cancel it."""

    spec: TaskSpec
    force: bool
    recursive: bool


@dataclass(slots=True)  # not frozen: made per call (a frozen one's __init__ costs ~3x)
class Release:
    """The task ended: release the pins on its arguments and, for an actor call, its slot
    among the actor's pending calls (max_pending_calls). Only sent when there is either."""

    deps: list[bytes]
    actor_id: bytes = b""


@dataclass(frozen=True, slots=True)
class LogRetry:
    """Say that a task is retried, and why (the shell logs it)."""

    spec: TaskSpec
    reason: str
    retries_left: int


Instruction = (
    ResolveArgs
    | SubmitToScheduler
    | SubmitToActor
    | StoreReturns
    | FinishGenerator
    | FailWith
    | DropQueued
    | SendCancel
    | Release
    | LogRetry
)

_NOTHING: list[Instruction] = []  # returned read-only: callers only iterate


class TaskManager:
    """Records of the tasks this process submitted (IO thread only; see module doc)."""

    def __init__(self, counts: OwnerTaskCounts | None = None) -> None:
        self._records: dict[bytes, TaskRecord] = {}
        self.counts = counts if counts is not None else OwnerTaskCounts()

    # ---------------------------------------------------------------- queries
    def record(self, task_id: bytes) -> TaskRecord | None:
        return self._records.get(task_id)

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._records

    def __len__(self) -> int:
        return len(self._records)

    # ---------------------------------------------------------------- submitting
    def submit(
        self,
        spec: TaskSpec,
        deps: list[bytes],
        retries: int,
        retry_exceptions: Any,
        class_name: str = "",
        async_actor: bool = False,
    ) -> list[Instruction]:
        """A new task (its returns are owned and its arguments pinned already)."""
        record = TaskRecord(spec, retries, retry_exceptions, deps, class_name, async_actor)
        self._records[spec.task_id] = record
        if not spec.args and not spec.actor_id:  # the common case, inline
            self.counts.move(record, ST_NODE)
            return [SubmitToScheduler(spec)]
        return self._start_attempt(record)

    def submit_actor_call(
        self,
        spec: TaskSpec,
        deps: list[bytes],
        retries: int,
        retry_exceptions: Any,
        class_name: str = "",
        async_actor: bool = False,
    ) -> TaskRecord:
        """``submit`` of an actor call (``spec.actor_id`` set), whose one instruction would
        be ``SubmitToActor``: the shell queues it with its actor itself, given the record
        (the hot path of actor calls: no instruction made, no lookup of the record)."""
        record = _actor_call_record(spec, deps, retries, retry_exceptions, class_name, async_actor)
        self._records[spec.task_id] = record
        self.counts.move(record, ST_ARGS)
        return record

    def answered_at_once(
        self,
        spec: TaskSpec,
        deps: list[bytes],
        retries: int,
        retry_exceptions: Any,
        class_name: str = "",
        async_actor: bool = False,
    ) -> None:
        """An actor call whose reply (values, status "ok") came before the shell submitted
        it here (a call its user thread sent itself): ``submit_actor_call``, ``pushed``
        and ``reply`` in one step. Nothing can have happened to it in between (a cancel
        or a lost connection reaches this thread after the call is taken), so it ends as
        ``reply`` ends it, with no record kept; the shell releases its pins and stores
        its values (``Release``, then ``StoreReturns``)."""
        record = _actor_call_record(spec, deps, retries, retry_exceptions, class_name, async_actor)
        record.stage = PUSHED
        self.counts.answered(record)  # moves through ST_ARGS and ST_SUBMITTED to ST_FINISHED

    def _start_attempt(self, record: TaskRecord) -> list[Instruction]:
        spec = record.spec
        if spec.actor_id:
            record.stage = QUEUED
            if record.class_name and not record.mname:
                record.mname = f"{record.class_name}.{spec.name}"  # ray_tasks: Class.method
            self.counts.move(record, ST_ARGS)
            return [SubmitToActor(spec, record.class_name)]
        if not spec.args:
            record.stage = QUEUED
            self.counts.move(record, ST_NODE)
            return [SubmitToScheduler(spec)]
        record.stage = ARGS
        return [ResolveArgs(spec)]

    def waiting_for_args(self, task_id: bytes) -> None:
        """The shell found an owned argument still pending (counted as PENDING_ARGS_AVAIL)."""
        record = self._records.get(task_id)
        if record is not None:
            self.counts.move(record, ST_ARGS)

    def args_resolved(self, spec: TaskSpec) -> list[Instruction]:
        """``spec`` (with our arguments inlined) may go to the scheduler."""
        record = self._records.get(spec.task_id)
        if record is None or record.stage is not ARGS:
            return _NOTHING  # cancelled (or failed) while its arguments were pending
        record.stage = QUEUED
        self.counts.move(record, ST_NODE)
        return [SubmitToScheduler(spec)]

    def args_failed(self, task_id: bytes, entry: Entry) -> list[Instruction]:
        """An argument of the task holds an error: the task returns that error unrun."""
        return self.fail(task_id, entry=entry)

    def pushed(self, task_id: bytes) -> None:
        """The task was sent to a worker (or to its actor)."""
        record = self._records.get(task_id)
        if record is not None:
            record.stage = PUSHED
            self.counts.move(record, ST_SUBMITTED)

    def pushed_record(self, record: TaskRecord) -> None:
        """``pushed``, given the record (which has not ended)."""
        record.stage = PUSHED
        self.counts.move(record, ST_SUBMITTED)

    def actor_call_resent(self, task_id: bytes) -> bool:
        """The actor queue re-sends a call cut off by a lost connection: spend a retry.
        False if the call may not be retried (none left, or cancelled)."""
        record = self._records.get(task_id)
        if record is None or record.cancelled or record.retries_left == 0:
            return False
        if record.retries_left > 0:
            record.retries_left -= 1
        record.stage = QUEUED
        self.counts.retry(record)
        return True

    # ---------------------------------------------------------------- completion
    def reply(self, spec: TaskSpec, reply: TaskReply) -> list[Instruction]:
        """The worker answered ``spec``'s attempt."""
        record = self._records.get(spec.task_id)
        if record is None or spec.attempt != record.spec.attempt:
            return _NOTHING  # ended, or an answer for an attempt already given up on
        if record.resolved:
            return self._end(record, failed=True)
        if reply.status == "cancelled" or record.cancelled:
            return self._fail_record(record, self._cancelled_error(record))
        failed = reply.status == "error"
        if failed and record.retries_left != 0 and _should_retry(record, reply):
            return self._retry(record, "an application error")
        done: Instruction = (
            FinishGenerator(spec, reply.num_items)
            if spec.num_returns == STREAMING
            else StoreReturns(spec, reply)
        )
        del self._records[spec.task_id]
        self.counts.move(record, ST_FAILED if failed else ST_FINISHED)
        if record.deps or spec.actor_id:
            # Released before the value is stored: storing wakes the caller, whose next call
            # must not find this one still pending (max_pending_calls, the direct lane).
            return [Release(record.deps, spec.actor_id), done]
        return [done]

    def worker_died(
        self, spec: TaskSpec, error: BaseException, retry: bool = True
    ) -> list[Instruction]:
        """The attempt was lost with its worker (or its connection)."""
        record = self._records.get(spec.task_id)
        if record is None or spec.attempt != record.spec.attempt:
            return _NOTHING  # ended, or an attempt already given up on
        if record.resolved:
            return self._end(record, failed=True)
        if record.cancelled:
            return self._fail_record(record, self._cancelled_error(record))
        oom = isinstance(error, rex.OutOfMemoryError)
        if retry and record.retries_left != 0:
            why = "the node's memory monitor killed its worker" if oom else str(error)
            return self._retry(record, f"its worker died ({why})")
        if oom:
            return self._fail_record(record, error)
        return self._fail_record(
            record,
            rex.WorkerCrashedError(
                f"The worker running task {spec.name} died unexpectedly ({error}). "
                "It was retried the maximum number of times (max_retries); check the "
                "worker logs in the session directory for the cause."
            ),
        )

    def fail(
        self, task_id: bytes, error: BaseException | None = None, entry: Entry | None = None
    ) -> list[Instruction]:
        """The task ends with ``error`` (or ``entry``) without running (again)."""
        record = self._records.get(task_id)
        if record is None:
            return _NOTHING
        if record.resolved:
            return self._end(record, failed=True)
        self.counts.failed(record, error)
        return [FailWith(record.spec, error, entry), *self._end(record, failed=True)]

    def _retry(self, record: TaskRecord, reason: str) -> list[Instruction]:
        if record.retries_left > 0:
            record.retries_left -= 1
        record.spec = record.spec._replace(attempt=record.spec.attempt + 1)
        self.counts.retry(record)
        return [LogRetry(record.spec, reason, record.retries_left), *self._start_attempt(record)]

    def _fail_record(self, record: TaskRecord, error: BaseException) -> list[Instruction]:
        self.counts.failed(record, error)
        return [FailWith(record.spec, error), *self._end(record, failed=True)]

    def _end(self, record: TaskRecord, failed: bool) -> list[Instruction]:
        spec = record.spec
        del self._records[spec.task_id]
        self.counts.move(record, ST_FAILED if failed else ST_FINISHED)
        if record.deps or spec.actor_id:
            return [Release(record.deps, spec.actor_id)]
        return []

    # ---------------------------------------------------------------- cancel
    def cancel(self, task_id: bytes, force: bool, recursive: bool) -> list[Instruction]:
        """``cancel(ref)`` of a task this process owns: it resolves now, wherever it is.

        Raises ValueError for ``force=True`` on an actor call, as Ray does (an actor's
        state would be lost with its process).
        """
        record = self._records.get(task_id)
        if record is None:
            return _NOTHING  # finished already (or not ours): nothing happens
        spec = record.spec
        if force and spec.actor_id:
            raise ValueError(
                "force=True is not supported for actor tasks: cancel(ref) without force "
                "interrupts an async actor's call and sets is_canceled() for a sync or "
                "threaded one; use kill(actor) to end the actor."
            )
        if record.cancelled:
            if force and not record.force_cancelled and record.stage is PUSHED:
                record.force_cancelled = True
                return [SendCancel(spec, True, recursive)]
            return _NOTHING
        record.cancelled = True
        record.force_cancelled = force
        error = self._cancelled_error(record)
        if record.stage is PUSHED:
            if spec.actor_id:
                # The actor queue forgets the call (it is never re-sent after a restart);
                # the actor sets is_canceled() or cancels the coroutine.
                return [
                    SendCancel(spec, False, recursive),
                    DropQueued(spec),
                    *self._fail_record(record, error),
                ]
            record.resolved = True
            return [SendCancel(spec, force, recursive), FailWith(spec, error)]
        out: list[Instruction] = []
        if record.stage is QUEUED:
            out.append(DropQueued(spec))
        out.extend(self._fail_record(record, error))
        return out

    def cancel_children(self, parent_task_id: bytes, force: bool) -> list[Instruction]:
        """A task this worker runs was cancelled recursively: cancel what it submitted.

        A scan, not an index: cancels are rare, and an index would cost every submission
        a set insert and removal. ``force`` does not apply to actor calls (as in Ray).
        """
        out: list[Instruction] = []
        children = [r for r in self._records.values() if r.spec.parent_task_id == parent_task_id]
        for child in children:
            out.extend(self.cancel(child.spec.task_id, force and not child.spec.actor_id, True))
        return out

    @staticmethod
    def _cancelled_error(record: TaskRecord) -> BaseException:
        spec = record.spec
        if record.async_actor:
            return cancelled_in_async_actor(spec.task_id, f"{record.class_name}.{spec.name}")
        return rex.TaskCancelledError(spec.task_id.hex())


def cancelled_in_async_actor(task_id: bytes, function_name: str) -> rex.RayTaskError:
    """What ``get()`` raises for a cancelled async actor call: like Ray, an error that both
    ``except RayTaskError`` and ``except TaskCancelledError`` catch (the coroutine got
    asyncio.CancelledError)."""
    cause = rex.TaskCancelledError(task_id.hex())
    plain = rex.RayTaskError(function_name, f"TaskCancelledError: {cause}\n", cause)
    dual_cls = rex._dual_class(rex.TaskCancelledError)
    if dual_cls is None:
        return plain
    err = rex._build_dual(dual_cls, cause.args, plain._fields())
    return err if err is not None else plain


def _should_retry(record: TaskRecord, reply: TaskReply) -> bool:
    """``retry_exceptions``: True retries any application error; a tuple only those."""
    rx = record.retry_exceptions
    if not rx:
        return False
    if rx is True:
        return True
    entry = reply.returns[0][0] if reply.returns else None
    if entry is None or entry[0] != "v":
        return False
    try:
        err = serialization.deserialize(entry[1][1], entry[1][2])
    except Exception:
        return False
    cause = getattr(err, "cause", err)
    return isinstance(cause, tuple(rx))


def _actor_call_record(
    spec: TaskSpec,
    deps: list[bytes],
    retries: int,
    retry_exceptions: Any,
    class_name: str,
    async_actor: bool,
) -> TaskRecord:
    """A record for an actor call, counted in ``ray_tasks`` as ``Class.method``."""
    record = TaskRecord(spec, retries, retry_exceptions, deps, class_name, async_actor)
    if class_name:
        record.mname = f"{class_name}.{spec.name}"
    return record
