"""Forwards the task events this node's core workers report to the GCS.

Core workers do not speak gRPC: each sends ``ReportTaskEvents`` about once a second over the
framed connection it already has to its raylet. The relay converts them to protobuf and
sends them on with ``AddTaskEventData`` (batches stay columns: a few list copies each), one
call in flight at a time: what arrives meanwhile waits and goes in the next call, so a node
sends at most as many calls as the GCS can answer. Bounded: past ``max_pending`` rows (one
per task attempt and batch) waiting (a slow or absent GCS), new batches are dropped whole
and counted per job (a row as one event), and the counts travel with the next call that
succeeds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rayops.gcs import task_calls
from rayops.gcs.task_codec import batch_to_proto
from rayops.protocol.state_messages import ReportTaskEvents

__all__ = ["MAX_PENDING_EVENTS", "TaskEventRelay"]

logger = logging.getLogger(__name__)

MAX_PENDING_EVENTS = 100_000  # rows waiting for the GCS
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
        self._pending: list[Any] = []  # TaskEventBatch messages
        self._waiting = 0  # records in them
        self._dropped: dict[int, int] = {}
        self._sending = False
        self.forwarded = 0

    def h_report(self, conn: Any, msg: ReportTaskEvents) -> None:
        n = len(msg)
        if self._waiting + n > self._max:
            # Full: the whole batch is dropped (and counted with the rest of its drops).
            job = msg.job_id
            self._dropped[job] = self._dropped.get(job, 0) + n + msg.dropped
        else:
            self._pending.append(batch_to_proto(msg))
            self._waiting += n
        if not self._sending and (self._pending or self._dropped):
            self._sending = True
            self._spawn(self._send())

    async def _send(self) -> None:
        try:
            while self._pending or self._dropped:
                batches, self._pending = self._pending, []
                self._waiting = 0
                dropped, self._dropped = self._dropped, {}
                gcs = self._gcs()
                try:
                    if gcs is None:
                        raise ConnectionError("not connected to the GCS yet")
                    await gcs.call(task_calls.add_task_event_data(batches, dropped), CALL_TIMEOUT_S)
                    self.forwarded += sum(len(b.states) for b in batches)
                except asyncio.CancelledError:
                    raise
                except Exception as err:
                    logger.debug("task events not forwarded (%d batches): %r", len(batches), err)
                    for b in batches:
                        dropped[b.job_id] = dropped.get(b.job_id, 0) + len(b.states) + b.dropped
                    for job, k in dropped.items():
                        self._dropped[job] = self._dropped.get(job, 0) + k
                    await asyncio.sleep(1.0)
        finally:
            self._sending = False
