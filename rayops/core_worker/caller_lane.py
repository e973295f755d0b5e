"""The caller's end of a sync lane, read by the user thread that waits for the reply.

A sync lane (``actor_submitter``, ``sync_lane``) carries one call at a time from this
process to a plain sync actor, whose main thread reads it and writes the reply itself. On
this side the loop read the reply, ended the call and woke the user thread blocked in
``get``: a second wake-up and a hand-over of the GIL per call, with the IO thread's
bookkeeping on the way. Here the loop does not read the lane at all (``detach_reading``):

- ``get(ref)`` of the call in flight on a lane (``wait_reply``) reads the lane itself: the
  thread that waits is the one the reply wakes. A plain reply with values (status ok, no
  borrows, inline values) is ended on this thread: the call is claimed from the hand-over
  if the IO thread has not taken it (``tasks.claim``), its values stored
  (``references.store_owned``, any thread), its pending count dropped; the IO thread counts
  it through the task manager at its next turn (``tasks.finished_here``). Anything else
  (an error, a refusal, borrows, values in a store, a call the IO thread took already) is
  handed to the loop as if it had read it (``Connection.deliver``), and the thread waits
  for the memory store as before.
- Any other wait for a lane's call (``get`` of several refs, ``wait``, ``await``, a
  future: ``object_access.fetch_missing``), a ``get`` that gave up (timeout, Ctrl-C), and
  a call in flight longer than ``STALE_S`` with nobody waiting (the lane's tick) have the
  loop read the lane (``loop_read``) until no call is in flight on it.

One lock per lane says who reads it (a user thread, or the loop), so a reply is read once;
the lane's socket is shut down, and its descriptor closed only by the holder of that lock,
so a number the process reuses is never read.

Threads: ``sent``, ``wait_reply``, ``need_loop`` run on user threads (``sent`` under the
submitter's lane lock); ``adopt``, ``loop_read``, ``forget``, ``drop``, ``close_all`` and
the tick on the IO thread.
"""

from __future__ import annotations

import logging
import os
import select
import socket
import threading
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from rayops.core_worker.threads import any_thread, io_thread, user_thread
from rayops.protocol.task_messages import STREAMING, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

logger = logging.getLogger(__name__)

_READ = 65536
# A call in flight on a lane this long with no thread reading it: the loop reads it.
STALE_S = 0.02
TICK_S = 0.02


class CallerLane:
    """One lane: its connection (writes, reply slots), our duplicate of its socket (reads),
    the calls in flight on it (request id -> spec: one at most), what is read of a frame."""

    __slots__ = (
        "actor_id",
        "buf",
        "calls",
        "closed",
        "conn",
        "fd",
        "fd_open",
        "lock",
        "loop_reading",
        "poll",
        "sent_at",
        "spin_ok",
    )

    def __init__(self, actor_id: bytes, conn: framed.Connection, fd: int) -> None:
        self.actor_id = actor_id
        self.conn = conn
        self.fd = fd
        self.fd_open = True
        self.lock = threading.Lock()  # held by whoever reads fd
        self.buf = bytearray()
        self.calls: dict[int, TaskSpec] = {}
        self.closed = False
        self.loop_reading = False
        self.sent_at = 0.0
        self.spin_ok = True  # the last reply came within the spin: the next may too
        self.poll = select.poll()
        self.poll.register(fd, select.POLLIN)

    def read(self, timeout_s: float, max_frame: int) -> list[tuple[Any, ...]] | None:
        """(Lock held.) The frame elements that arrive within ``timeout_s`` (none: []);
        None if the lane is closed or broken."""
        if self.closed:
            return None
        if not self.poll.poll(max(0, int(timeout_s * 1000))):
            return []
        try:
            data = os.read(self.fd, _READ)
        except BlockingIOError:
            return []
        except OSError:
            return None
        if not data or self.closed:
            return None
        buf = self.buf
        buf += data
        try:
            return [el for p in framed.take_frames(buf, max_frame) for el in framed.elements_in(p)]
        except Exception as err:  # over the limit, or undecodable
            logger.warning("a bad reply frame on a sync lane: %r", err)
            return None

    def close_fd(self) -> None:
        """(Lock held.) Close our duplicate of the socket, once."""
        if self.fd_open:
            self.fd_open = False
            self.poll.unregister(self.fd)
            os.close(self.fd)


class CallerLanes:
    """This process's caller ends of sync lanes (``cw.actor_submitter.caller_lanes``)."""

    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self._lanes: dict[int, CallerLane] = {}  # id(conn) -> its lane
        # Return id of a call in flight on a lane -> (the lane, its request id): read by
        # any thread (a dict lookup), written by the sender and whoever ends the call.
        self.by_oid: dict[bytes, tuple[CallerLane, int]] = {}
        # The tick runs while a lane has a call in flight or calls ended here wait to be
        # counted; whoever finds it stopped starts it (the flag under the lock).
        self._ticking = False
        self._tick_lock = threading.Lock()
        # How long wait_reply polls a lane before it sleeps: only with a CPU for the actor
        # beside this thread's (else polling takes the CPU the reply needs).
        spin_us = cw.framed_settings.sync_lane_spin_us
        self._spin_s = spin_us / 1e6 if len(os.sched_getaffinity(0)) >= 2 else 0.0
        self.ended_here = 0  # replies ended on the user thread that read them (tests)

    def __len__(self) -> int:
        return len(self._lanes)

    # ------------------------------------------------------------- IO thread
    @io_thread
    def adopt(self, actor_id: bytes, conn: framed.Connection) -> bool:
        """Stop the loop reading ``conn`` (a sync lane just opened: the actor sends nothing
        until it gets a call) and read its replies here. False if that failed (the lane
        is then read by the loop as before)."""
        try:
            fd = conn.detach_reading()
        except framed.ConnectionLost:
            return False
        lane = CallerLane(actor_id, conn, fd)
        self._lanes[id(conn)] = lane
        conn.context["caller_lane"] = lane
        return True

    @io_thread
    def forget(self, spec: TaskSpec) -> None:
        """``spec``'s call ended on the IO thread (its reply or its failure)."""
        lane = None
        for rid in spec.return_ids:
            hit = self.by_oid.pop(rid, None)
            if hit is not None:
                lane = hit[0]
                lane.calls.pop(hit[1], None)
        if lane is not None and lane.loop_reading and not lane.calls:
            self._stop_loop_reading(lane)

    @io_thread
    def drop(self, conn: framed.Connection) -> None:
        """A lane's connection closed: nobody reads it any more."""
        lane = self._lanes.pop(id(conn), None)
        if lane is None:
            return
        lane.closed = True
        if lane.loop_reading:
            self._stop_loop_reading(lane)
        for rid in [rid for rid, hit in self.by_oid.items() if hit[0] is lane]:
            del self.by_oid[rid]
        self._shut(lane)

    @io_thread
    def close_all(self) -> None:
        for lane in list(self._lanes.values()):
            lane.conn.close()
            self.drop(lane.conn)

    @io_thread
    def loop_read(self, lane: CallerLane) -> None:
        """Have the loop read ``lane`` until no call is in flight on it (unless a user
        thread is reading it now: that one ends what it reads)."""
        if lane.closed or lane.loop_reading or not lane.lock.acquire(blocking=False):
            return
        try:
            self._pump_locked(lane)
            if lane.calls and not lane.closed:
                lane.loop_reading = True
                self._cw.loop.add_reader(lane.fd, self._pump, lane)
        finally:
            lane.lock.release()

    def _pump(self, lane: CallerLane) -> None:
        if not lane.lock.acquire(blocking=False):
            return  # a user thread that looked just before the loop took over: it lets go
        try:
            self._pump_locked(lane)
            if (not lane.calls or lane.closed) and lane.loop_reading:
                self._stop_loop_reading(lane)
        finally:
            lane.lock.release()

    def _pump_locked(self, lane: CallerLane) -> None:
        elements = lane.read(0, self._cw.framed_settings.max_frame_bytes)
        if elements is None:
            self._lost(lane)
            return
        for el in elements:
            hit = framed.reply_value(el)
            if hit is not None:
                lane.calls.pop(hit[0], None)
            lane.conn.deliver(el)

    def _stop_loop_reading(self, lane: CallerLane) -> None:
        lane.loop_reading = False
        if lane.fd_open:
            self._cw.loop.remove_reader(lane.fd)

    def _lost(self, lane: CallerLane) -> None:
        """The lane broke (closed by the actor, unreadable): close its connection, whose
        reply slots then fail (the call in flight is lost with its epoch, as before)."""
        conn = lane.conn
        self.drop(conn)
        conn.close()

    def _shut(self, lane: CallerLane) -> None:
        """Wake a user thread polling the lane (the socket shut down), and close our
        descriptor once nobody reads it."""
        if not lane.fd_open:
            return
        if lane.lock.acquire(blocking=False):
            try:
                lane.close_fd()
            finally:
                lane.lock.release()
            return
        try:
            with socket.socket(fileno=os.dup(lane.fd)) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._cw.loop.call_later(0.01, self._shut, lane)

    def _tick(self) -> None:
        """Count the calls user threads ended; have the loop read lanes whose call has
        been in flight a while with nobody reading it. Stops when there is nothing to do."""
        cw = self._cw
        if cw.is_shut_down:
            return
        cw.tasks.drain_pending()
        now = time.monotonic()
        for lane in list(self._lanes.values()):
            if lane.calls and not lane.loop_reading and now - lane.sent_at > STALE_S:
                self.loop_read(lane)
        with self._tick_lock:
            if not self._busy():
                self._ticking = False
                return
        cw.loop.call_later(TICK_S, self._tick)

    def _busy(self) -> bool:
        if self._cw.tasks.has_finished_here():
            return True
        return any(lane.calls for lane in self._lanes.values())

    @any_thread
    def _ensure_tick(self) -> None:
        if self._ticking:
            return
        with self._tick_lock:
            if self._ticking:
                return
            self._ticking = True
        self._to_loop(self._cw.loop.call_later, TICK_S, self._tick)

    def _to_loop(self, fn: Any, *args: Any) -> None:
        """Run ``fn(*args)`` on the IO thread (nothing once the loop is closed: shutdown)."""
        try:
            self._cw.loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass

    # ------------------------------------------------------------ user threads
    @any_thread
    def lane_of(self, conn: framed.Connection) -> CallerLane | None:
        lane: CallerLane | None = conn.context.get("caller_lane") if conn.context else None
        return lane

    @any_thread
    def sent(self, lane: CallerLane, req_id: int, spec: TaskSpec) -> None:
        """``spec``'s call is about to be written on ``lane`` as request ``req_id`` (under
        the submitter's lane lock, before the write: its reply finds it)."""
        lane.calls[req_id] = spec
        lane.sent_at = time.monotonic()
        by_oid = self.by_oid
        for rid in spec.return_ids:
            by_oid[rid] = (lane, req_id)
        if not self._ticking:
            self._ensure_tick()

    @any_thread
    def need_loop(self, oids: Iterable[bytes]) -> None:
        """Something other than ``wait_reply`` waits for these objects: the loop reads the
        lanes their calls are in flight on."""
        by_oid = self.by_oid
        lanes = {id(hit[0]): hit[0] for hit in map(by_oid.get, oids) if hit is not None}
        for lane in lanes.values():
            if lane.calls and not lane.loop_reading:
                self._to_loop(self.loop_read, lane)

    @user_thread
    def wait_reply(self, oid: bytes, deadline: float | None) -> None:
        """``get`` of ``oid``, the return of a call in flight on a lane: read the lane here
        until the call is answered (or handed to the loop), the deadline passes or the
        lane breaks; the caller then looks in the memory store as usual."""
        hit = self.by_oid.get(oid)
        if hit is None:
            return
        lane, req_id = hit
        if lane.loop_reading or not lane.lock.acquire(blocking=False):
            return  # the loop, or another thread, reads it and stores the value
        max_frame = self._cw.framed_settings.max_frame_bytes
        spin = self._spin_s if lane.spin_ok else 0.0
        started = time.perf_counter()
        try:
            while req_id in lane.calls and not lane.loop_reading:
                if deadline is None:
                    slice_s = 1.0  # wake once a second so a signal reaches the thread
                else:
                    slice_s = min(deadline - time.monotonic(), 1.0)
                    if slice_s <= 0:
                        break
                if spin:
                    elements = _read_spinning(lane, spin, slice_s, max_frame)
                    spin = 0.0
                else:
                    elements = lane.read(slice_s, max_frame)
                if elements is None:
                    self._to_loop(self._lost, lane)
                    break
                for el in elements:
                    self._on_element(lane, el)
            # A reply slower than twice the spin (a long method): the next wait sleeps at
            # once; a fast one turns polling back on.
            lane.spin_ok = time.perf_counter() - started <= 2 * self._spin_s
        finally:
            lane.lock.release()
            if req_id in lane.calls and not lane.closed:  # gave up: the loop reads it
                self._to_loop(self.loop_read, lane)

    def _on_element(self, lane: CallerLane, el: tuple[Any, ...]) -> None:
        """A frame element a user thread read from ``lane``: end a plain reply here, hand
        anything else to the loop."""
        cw = self._cw
        hit = framed.reply_value(el)
        spec = None if hit is None else lane.calls.pop(hit[0], None)
        if hit is None or spec is None:
            self._to_loop(lane.conn.deliver, el)
            return
        req_id, reply = hit
        if not (
            reply.status == "ok"
            and not reply.borrowed
            and spec.num_returns != STREAMING
            and all(r[0][0] == "v" for r in reply.returns)
        ):
            self._to_loop(lane.conn.deliver, el)
            return
        slot = lane.conn.take_reply_slot(req_id)
        if slot is None:
            return  # the connection closed meanwhile: its slots were answered
        tasks = cw.tasks
        item = tasks.claim(spec)
        if item is None:  # the IO thread took the call: it ends it
            self._to_loop(slot.set_result, reply)
            return
        submitter = cw.actor_submitter
        submitter.took_direct(spec.task_id)
        store = cw.references.store_owned
        by_oid = self.by_oid
        for rid, (entry, contained) in zip(spec.return_ids, reply.returns, strict=False):
            store(rid, entry, contained)
        for rid in spec.return_ids:
            by_oid.pop(rid, None)
        submitter.call_finished(spec.actor_id)
        tasks.finished_here(item)
        self.ended_here += 1
        if not self._ticking:
            self._ensure_tick()


def _read_spinning(
    lane: CallerLane, spin_s: float, slice_s: float, max_frame: int
) -> list[tuple[Any, ...]] | None:
    """``lane.read``, polling without sleeping for up to ``spin_s`` first: a short call's
    reply then finds this thread running, and the actor's write wakes no one (on this VM a
    sleep and its wake-up cost more than the ~100 us a short call takes)."""
    end = time.perf_counter() + spin_s
    while True:
        elements = lane.read(0, max_frame)
        if elements != [] or time.perf_counter() >= end:
            break
    if elements == []:
        elements = lane.read(slice_s, max_frame)
    return elements


__all__ = ["STALE_S", "CallerLane", "CallerLanes"]
