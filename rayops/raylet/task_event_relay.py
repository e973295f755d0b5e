"""Forwards the task events this node's core workers report to the GCS.

Core workers do not speak gRPC: each sends ``ReportTaskEvents`` about once a second over
the framed connection it already has to its raylet. The relay converts them to protobuf and
sends them on with ``AddTaskEventData``, one call in flight at a time: what arrives
meanwhile waits and goes in the next call, so a node sends at most as many calls as the GCS
can answer. Bounded: past ``max_pending`` events waiting (a slow or absent GCS), new ones
are dropped and counted per job, and the counts travel with the next call that succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rayops.gcs import task_calls
from rayops.gcs.task_codec import event_to_proto
from rayops.protocol.state_messages import ReportTaskEvents

__all__ = ["MAX_PENDING_EVENTS", "TaskEventRelay"]

logger = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 100_000
CALL_TIMEOUT_S = 10.0


class TaskEventRelay:
    def __init__(
        self,
        gcs: Callable[[], Any],
        spawn: Callable[[Any], None],
        max_pending: int = MAX_PENDING_EVENTS,
    ) -> None:
        self._gcs = gcs
        self._spawn = spawn
        self._max = max_pending
        self._pending: list[Any] = []
        self._jobs: list[int] = []  # the job of each pending event (for drop counts)
        self._dropped: dict[int, int] = {}
        self._sending = False
        self.forwarded = 0

    def h_report(self, conn: Any, msg: ReportTaskEvents) -> None:
        job = msg.job_id
        if msg.dropped:
            self._dropped[job] = self._dropped.get(job, 0) + msg.dropped
        events = msg.events
        room = self._max - len(self._pending)
        if len(events) > room:
            self._dropped[job] = self._dropped.get(job, 0) + len(events) - max(room, 0)
            events = events[: max(room, 0)]
        for e in events:
            self._pending.append(event_to_proto(e))
            self._jobs.append(e.info.job_id if e.info is not None else job)
        if not self._sending and (self._pending or self._dropped):
            self._sending = True
            self._spawn(self._send())

    async def _send(self) -> None:
        try:
            while self._pending or self._dropped:
                batch, self._pending = self._pending, []
                jobs, self._jobs = self._jobs, []
                dropped, self._dropped = self._dropped, {}
                gcs = self._gcs()
                try:
                    if gcs is None:
                        raise ConnectionError("not connected to the GCS yet")
                    await gcs.call(task_calls.add_task_event_data(batch, dropped), CALL_TIMEOUT_S)
                    self.forwarded += len(batch)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    logger.debug("task events not forwarded (%d dropped): %r", len(batch), err)
                    for job in jobs:
                        dropped[job] = dropped.get(job, 0) + 1
                    for job, n in dropped.items():
                        self._dropped[job] = self._dropped.get(job, 0) + n
                    await asyncio.sleep(1.0)
        finally:
            self._sending = False
