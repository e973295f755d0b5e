"""Sync lanes on the actor's side: calls read and run by the thread that executes them.

A plain sync actor (one call at a time, not async, no concurrency groups) runs its calls on
the worker's main thread. Through the actor's ordinary connection a call costs two thread
wake-ups in this process: the IO thread's (epoll) to read it, then the main thread's (its
queue) to run it. A caller that makes one call at a time asks for a *sync lane*: a second
connection to this worker, authenticated like every framed connection (token first, on the
IO thread), which then says ``OpenSyncLane``. From its reply on, the IO thread no longer
reads that socket (reading is paused); the main thread waits on the lanes' sockets and on
its queue's wake-up fd together, reads a call from a lane, runs it and writes the reply
itself: one wake-up, the thread that runs the call.

Order: a caller uses its lane only for a call alone in flight (nothing else of its pending
at the actor), and a call it sends the usual way after one on the lane was written after
that one was whole in this socket (a local socket: a write that returned is in the
receiver's buffer). So the main thread reads every lane, and completes a frame it has only
part of, before it takes the next item of its queue; each caller's calls run in the order it
made them, whichever way they came.

Threads: ``add`` runs on the main thread (the IO thread enqueues it after answering
``OpenSyncLane``), like everything else here but ``wake`` (any thread: the queue was given
an item). A lane that closes or sends anything but ``ActorCall`` requests is closed here
and its connection closed on the IO thread; the caller sees a lost connection, as when the
actor's ordinary connection breaks.
"""

from __future__ import annotations

import logging
import os
import select
import time
from collections.abc import Callable

from rayops.protocol import worker_messages as wm
from rayops.rpc import framed

logger = logging.getLogger(__name__)

_READ = 65536


class Lane:
    """One lane: its connection (for replies and closing), our own duplicate of its socket
    (for reading), what was read of a frame not yet whole."""

    __slots__ = ("buf", "conn", "fd")

    def __init__(self, conn: framed.Connection, fd: int) -> None:
        self.conn = conn
        self.fd = fd
        self.buf = bytearray()


class LaneSet:
    """The main thread's lanes and the wake-up fd of its queue.

    ``run_call(conn, req_id, msg)`` runs one call read from a lane (on this thread);
    ``close_conn(conn)`` closes a lane's connection (it is called on this thread, and hands
    the close to the IO thread); ``max_frame`` bounds a frame as the framed transport does;
    ``spin_s``: how long to poll without sleeping after a lane call (0: never).
    """

    def __init__(
        self,
        run_call: Callable[[framed.Connection, int, wm.ActorCall], None],
        close_conn: Callable[[framed.Connection], None],
        max_frame: int,
        spin_s: float = 0.0,
    ) -> None:
        self._run_call = run_call
        self._close_conn = close_conn
        self._max_frame = max_frame
        self._lanes: dict[int, Lane] = {}
        self._wake_fd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        self._poll = select.poll()  # the lanes and the wake-up fd: to sleep on
        self._poll.register(self._wake_fd, select.POLLIN)
        self._lane_poll = select.poll()  # the lanes alone: which have data, now
        # After a lane call, wait by polling (no sleep) for up to spin_s: a caller in a loop
        # of get(a.f.remote()) sends its next call within that, and finds this thread
        # running (its write then wakes no one). Only with a CPU for the caller beside ours.
        self._spin_s = spin_s if len(os.sched_getaffinity(0)) >= 2 else 0.0
        self._last_call = 0.0
        self.active = False  # read by enqueue: wake() only once there is a lane
        # Set while the main thread may be about to sleep in poll: only then does an
        # enqueue write the wake-up fd (a batch of queued calls costs no syscall each).
        self.sleeping = False

    def __len__(self) -> int:
        return len(self._lanes)

    def add(self, conn: framed.Connection, fd: int) -> None:
        """Start reading a lane (main thread)."""
        self._lanes[fd] = Lane(conn, fd)
        self._poll.register(fd, select.POLLIN)
        self._lane_poll.register(fd, select.POLLIN)
        self.active = True

    def wake(self) -> None:
        """The queue was given an item (any thread): wake the main thread if it sleeps."""
        if not self.sleeping:
            return
        try:
            os.eventfd_write(self._wake_fd, 1)
        except OSError:  # the counter is saturated or closed: the main thread is awake
            pass

    def wait(self, queue_ready: Callable[[], bool]) -> None:
        """Run what the lanes hold, then block until the queue may have an item
        (``queue_ready`` says whether it has) or a lane has data; runs lane calls as they
        come. Returns with every lane read and no lane frame half read.

        Per lane call: one ``poll`` that wakes (or, within ``spin_s`` of the last call, a
        few that do not sleep), the ``read``, the reply's ``write``. The
        lanes are polled again (``drain``) only before returning to the queue: a call on a
        lane written before one its caller then sent the usual way must run first.
        """
        lanes = self._lanes
        wake_fd = self._wake_fd
        for part in [lane for lane in lanes.values() if lane.buf]:
            self._read(part)
        while True:
            # Sleeping is announced before the queue is looked at: an item put after the
            # look finds the flag set and writes the wake-up fd.
            self.sleeping = True
            if queue_ready():
                self.sleeping = False
                self.drain()
                return
            try:
                ready = self._poll.poll(0) if self._spin_s else []
                if not ready and self._spin_s:
                    end = self._last_call + self._spin_s
                    while not ready and time.perf_counter() < end:
                        ready = self._poll.poll(0)
                if not ready:
                    ready = self._poll.poll()
            finally:
                self.sleeping = False
            for fd, _ev in ready:
                if fd == wake_fd:
                    try:
                        os.eventfd_read(wake_fd)
                    except BlockingIOError:
                        pass
                    continue
                lane = lanes.get(fd)
                if lane is not None:
                    self._read(lane)

    def drain(self) -> None:
        """Read every lane now and run the calls that are whole; a frame read in part is
        waited for (its writer finished it before sending anything else)."""
        lanes = self._lanes
        for part in [lane for lane in lanes.values() if lane.buf]:
            self._read(part)
        for fd, _ev in self._lane_poll.poll(0):
            ready = lanes.get(fd)
            if ready is not None:
                self._read(ready)

    def _read(self, lane: Lane) -> None:
        while lane.fd in self._lanes:
            try:
                data = os.read(lane.fd, _READ)
            except BlockingIOError:
                if not lane.buf:
                    return
                self._wait_readable(lane)  # the rest of a frame is on its way
                continue
            except OSError as err:
                self._drop(lane, f"read failed: {err}")
                return
            if not data:
                self._drop(lane, None)
                return
            lane.buf += data
            self._frames(lane)
            if len(data) < _READ and not lane.buf:
                return  # all read, as far as we know: more makes the lane's poll ready

    def _wait_readable(self, lane: Lane) -> None:
        p = select.poll()
        p.register(lane.fd, select.POLLIN)
        p.poll(1000)

    def _frames(self, lane: Lane) -> None:
        try:
            payloads = framed.take_frames(lane.buf, self._max_frame)
        except ValueError as err:
            self._drop(lane, str(err))
            return
        for payload in payloads:
            try:
                calls = framed.requests_in(payload)
            except Exception as err:
                self._drop(lane, f"undecodable frame: {err!r}")
                return
            for req_id, msg in calls:
                if not isinstance(msg, wm.ActorCall):
                    self._drop(lane, f"{type(msg).__name__} on a sync lane")
                    return
                self._run_call(lane.conn, req_id, msg)
                self._last_call = time.perf_counter()
                if lane.fd not in self._lanes:
                    return

    def _drop(self, lane: Lane, why: str | None) -> None:
        if why is not None:
            logger.warning("closing a sync lane: %s", why)
        self._lanes.pop(lane.fd, None)
        for p in (self._poll, self._lane_poll):
            try:
                p.unregister(lane.fd)
            except (KeyError, ValueError):
                pass
        os.close(lane.fd)
        self._close_conn(lane.conn)

    def close(self) -> None:
        for lane in list(self._lanes.values()):
            self._drop(lane, None)
        os.close(self._wake_fd)


def take_over(conn: framed.Connection) -> int:
    """On the IO thread, right after answering ``OpenSyncLane``: stop the loop reading the
    connection and return a duplicate of its socket for the main thread to read."""
    return conn.detach_reading()


__all__ = ["Lane", "LaneSet", "take_over"]
