"""The shell around ``generator_state``: feeds it events, carries out its instructions, and
owns the waiting.

Owns: the generator state machine (IO thread only), a mirror of each generator's progress
(items reported, finished) that user threads read under one condition variable, and the
futures ``async for`` waits on. It must not decide anything: which item to pin, drop or
release is the state machine's call (the one rule the shell carries out by itself, on the
taking thread, is the machine's: an item's pin goes with the ref taken).

Threads: events from user threads (a generator submitted or dropped) are queued and fed to
the machine in one batch on the IO thread; the task side (``on_item``, ``on_finished``,
``on_failed``) runs on the IO thread already. Taking an item drops its pin on the taking
thread (see ``generator_state``).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayops import serialization
from rayops.core_worker import generator_state as gs
from rayops.core_worker.object_ref import DynamicObjectRefGenerator, ObjectRef, ObjectRefGenerator
from rayops.core_worker.threads import any_thread, io_thread, user_thread
from rayops.protocol.task_messages import TaskSpec

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

Address = tuple[str, int]
Entry = tuple[Any, ...]

_NONE_WIRE = serialization.serialize(None).to_wire()


class _Progress:
    """A generator's progress as user threads see it (written on the IO thread under the
    shell's condition)."""

    __slots__ = ("done", "items")

    def __init__(self) -> None:
        self.items = 0
        self.done = False


class Generators:
    """The owner's generators: submitted here, fed by the task's reports, read by users."""

    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._states = gs.GeneratorStates()
        self._cond = threading.Condition()
        self._progress: dict[bytes, _Progress] = {}  # under _cond
        self._sleepers = 0  # threads blocked in take(), under _cond
        self._futures: dict[bytes, list[tuple[int, concurrent.futures.Future[None]]]] = {}
        self._posted: list[gs.Event] = []  # under _post_lock
        # Reentrant: a generator's __del__ (run by the garbage collector wherever a thread
        # allocates, including inside this lock) posts its release through _post.
        self._post_lock = threading.RLock()
        self._flush_scheduled = False
        # How each instruction of the state machine is carried out.
        self._do: dict[type, Callable[[Any], None]] = {
            gs.PinItem: self._pin_item,
            gs.WakeWaiters: self._wake,
            gs.ReleaseNested: self._release_nested,
            gs.DeleteStoreCopy: self._delete_store_copy,
            gs.StoreCompleted: self._store_completed,
            gs.UnpinCompleted: self._unpin_completed,
            gs.StoreEndMarker: self._store_end_marker,
            gs.DeleteEndMarker: self._delete_end_marker,
            gs.StoreDynamicResult: self._store_dynamic,
            gs.StoreFailure: self._store_failure,
        }

    # ------------------------------------------------------------------ queries
    @any_thread
    def __len__(self) -> int:
        """How many generators this process tracks (for tests: nothing left behind)."""
        return len(self._states)

    # ----------------------------------------------------------------- submitting
    @any_thread
    def submitted(
        self, spec: TaskSpec, dynamic: bool, enqueue: Callable[[TaskSpec], None]
    ) -> list[ObjectRef] | ObjectRefGenerator:
        """Own what a generator task returns and hand the task to ``enqueue``.

        Streaming: an ObjectRefGenerator; its return index 1 is the completion object, pinned
        by the generator. Dynamic: a one-element list, the ref whose value becomes a
        DynamicObjectRefGenerator when the task ends.
        """
        cw = self._cw
        task_id = spec.task_id
        rid = spec.return_ids[0]
        if not dynamic:
            with self._cond:
                self._progress[task_id] = _Progress()
        # Applied with the task's first report or its end, whichever comes first.
        self._post(gs.Started(task_id, dynamic), wake=False)
        if dynamic:
            cw.references.add_owned(rid, cw.address, local=1)
            ref = ObjectRef(rid, cw.address, cw, counted=True)
            enqueue(spec)
            return [ref]
        cw.references.add_owned(rid, cw.address, local=0)
        cw.references.pin_submitted([rid])
        enqueue(spec)
        return ObjectRefGenerator(task_id, cw.address, self)

    # ------------------------------------------------------------------ task side
    @io_thread
    def on_item(
        self,
        task_id: bytes,
        index: int,
        entry: Entry,
        contained: list[tuple[bytes, Address]] | tuple[tuple[bytes, Address], ...] = (),
    ) -> None:
        """The task yielded item ``index``."""
        if self._posted:  # a generator started or dropped since the last report
            self._flush()
        self._run(self._states.on_item(task_id, index, entry, tuple(contained)))

    @io_thread
    def on_item_message(
        self,
        conn: Any,
        task_id: bytes,
        index: int,
        entry: Entry,
        contained: list[tuple[bytes, Address]],
    ) -> None:
        """The ``generator_item`` framed handler (a worker reports an item)."""
        self.on_item(task_id, index, entry, contained)

    @io_thread
    def on_finished(self, spec: TaskSpec, num_items: int) -> None:
        """The task ended normally (or with an application error, its last item)."""
        self._flush()  # items taken or generators dropped just before: apply them first
        self._run(self._states.handle(gs.Finished(spec.task_id, num_items)))

    @io_thread
    def on_failed(self, spec: TaskSpec, entry: Entry) -> None:
        """The task ends with the error ``entry`` without (further) running: a streaming
        generator yields it as its last item; a dynamic one's ref raises it at get()."""
        self._flush()
        self._run(self._states.handle(gs.Failed(spec.task_id, entry)))

    # ------------------------------------------------------------------ user side
    @user_thread
    def take(self, task_id: bytes, index: int, timeout: float | None) -> ObjectRef | None:
        """The ref of item ``index`` once reported; None when the generator ended before it.

        Raises TimeoutError when ``timeout`` passes first (0: do not wait).
        """
        with self._cond:
            p = self._progress.get(task_id)
            if p is None:
                return None
            if index >= p.items and not p.done:
                if timeout is not None and timeout <= 0:
                    raise TimeoutError
                self._sleepers += 1
                try:
                    arrived = self._cond.wait_for(lambda: index < p.items or p.done, timeout)
                finally:
                    self._sleepers -= 1
                if not arrived:
                    raise TimeoutError
            if index >= p.items:
                return None
        cw = self._cw
        oid = gs.item_id(task_id, index)
        ref = ObjectRef(oid, cw.address, cw, counted=False)
        # The item's pin goes with the ref taken (generator_state's rule): dropped here, on
        # this thread; ``release(taken=...)`` tells the machine how many were taken.
        cw.references.release_nested(oid)
        return ref

    @any_thread
    def ready(self, task_id: bytes, index: int) -> tuple[bool, bool]:
        """(item ``index`` is reported, the generator finished) as of now."""
        with self._cond:
            p = self._progress.get(task_id)
            if p is None:
                return False, True
            return index < p.items, p.done

    @any_thread
    def wait_id(self, task_id: bytes, index: int) -> bytes:
        """The object id that becomes ready when item ``index`` is reported or the stream
        ends before it (the end marker): what ``wait()`` waits on for a generator."""
        return gs.item_id(task_id, index)

    @any_thread
    def when_ready(self, task_id: bytes, index: int) -> concurrent.futures.Future[None]:
        """A future resolved once item ``index`` is reported or the generator finished."""
        fut: concurrent.futures.Future[None] = concurrent.futures.Future()
        try:
            self._cw.loop.call_soon_threadsafe(self._add_future, task_id, index, fut)
        except RuntimeError:  # loop closed at shutdown
            fut.set_result(None)
        return fut

    @any_thread
    def completed_ref(self, task_id: bytes) -> ObjectRef:
        cw = self._cw
        return ObjectRef(gs.completion_id(task_id), cw.address, cw, counted=False)

    @any_thread
    def release(self, task_id: bytes, taken: int) -> None:
        """The user dropped the ObjectRefGenerator after taking ``taken`` items (from
        ``__del__``: any thread)."""
        with self._cond:
            self._progress.pop(task_id, None)
        self._post(gs.Released(task_id, taken))

    # ------------------------------------------------------------------ the IO side
    def _post(self, event: gs.Event, *, wake: bool = True) -> None:
        """Queue ``event`` for the IO thread and wake it (unless ``wake`` is False: then the
        task's first report or its end applies the queue)."""
        with self._post_lock:
            self._posted.append(event)
            if self._flush_scheduled or not wake:
                return
            self._flush_scheduled = True
        try:
            self._cw.loop.call_soon_threadsafe(self._flush)
        except RuntimeError:  # loop closed at shutdown: nothing is tracked any more
            pass

    @io_thread
    def _flush(self) -> None:
        with self._post_lock:
            events, self._posted = self._posted, []
            self._flush_scheduled = False
        handle = self._states.handle
        for event in events:
            self._run(handle(event))

    @io_thread
    def _add_future(self, task_id: bytes, index: int, fut: concurrent.futures.Future[None]) -> None:
        self._flush()
        record = self._states.record(task_id)
        if record is None or index < record.items or record.done or record.released:
            _resolve(fut)
            return
        self._futures.setdefault(task_id, []).append((index, fut))

    def _run(self, instructions: list[gs.Instruction]) -> None:
        do = self._do
        for ins in instructions:
            do[type(ins)](ins)

    def _pin_item(self, ins: gs.PinItem) -> None:
        cw = self._cw
        cw.references.add_owned_pinned(ins.object_id, cw.address)
        # Records a shared-memory copy too, so freeing the item deletes it.
        cw.references.store_owned(ins.object_id, ins.entry, ins.contained)
        self._progressed(ins.task_id, ins.items, False)

    def _release_nested(self, ins: gs.ReleaseNested) -> None:
        release = self._cw.references.release_nested
        for oid in ins.object_ids:
            release(oid)

    def _delete_store_copy(self, ins: gs.DeleteStoreCopy) -> None:
        self._cw.references.queue_delete(ins.object_id)

    def _store_completed(self, ins: gs.StoreCompleted) -> None:
        rid = gs.completion_id(ins.task_id)
        if rid in self._cw.references:  # else the generator was dropped: nobody reads it
            self._cw.memory_store.put(rid, ins.error or ("v", _NONE_WIRE))

    def _unpin_completed(self, ins: gs.UnpinCompleted) -> None:
        self._cw.references.unpin_submitted([gs.completion_id(ins.task_id)])

    def _store_end_marker(self, ins: gs.StoreEndMarker) -> None:
        self._cw.memory_store.put(ins.object_id, ("v", _NONE_WIRE))

    def _delete_end_marker(self, ins: gs.DeleteEndMarker) -> None:
        self._cw.memory_store.delete(ins.object_id)

    def _store_failure(self, ins: gs.StoreFailure) -> None:
        rid = gs.completion_id(ins.task_id)
        if rid in self._cw.references:
            self._cw.memory_store.put(rid, ins.entry)

    def _wake(self, ins: gs.WakeWaiters) -> None:
        self._progressed(ins.task_id, ins.items, ins.done)

    def _progressed(self, task_id: bytes, items: int, done: bool) -> None:
        """Show user threads the generator's progress; wake its takers and futures."""
        with self._cond:
            p = self._progress.get(task_id)
            if p is not None:
                p.items = items
                p.done = done
            if self._sleepers:
                self._cond.notify_all()
        waiting = self._futures.get(task_id)
        if waiting:
            still = []
            for index, fut in waiting:
                if index < items or done:
                    _resolve(fut)
                else:
                    still.append((index, fut))
            if still:
                self._futures[task_id] = still
            else:
                del self._futures[task_id]
        elif done:
            self._futures.pop(task_id, None)

    def _store_dynamic(self, ins: gs.StoreDynamicResult) -> None:
        """The one return value of a dynamic generator: a DynamicObjectRefGenerator holding
        the items; each item's pin moves from the generator to that value."""
        cw = self._cw
        rid = gs.completion_id(ins.task_id)
        if rid in cw.references:
            # Handles that do not count: the value's containment keeps the items alive.
            refs = [ObjectRef(oid, cw.address, None, counted=True) for oid in ins.item_ids]
            sv = serialization.serialize(DynamicObjectRefGenerator(refs))
            cw.references.set_contains(rid, [(oid, cw.address) for oid in ins.item_ids])
            # Inline whatever its size: this runs on the IO thread, which must not block on
            # the store (a ref pickles to ~60 bytes, so it stays small).
            cw.memory_store.put(rid, ("v", sv.to_wire()))
        for oid in ins.item_ids:
            cw.references.release_nested(oid)


def _resolve(fut: concurrent.futures.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)
