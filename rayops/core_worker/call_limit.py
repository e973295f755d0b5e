"""``max_calls`` on the worker side: count the calls of each function this process ran, and
end the process once one reaches its limit (Ray's semantics: the next call gets a fresh worker
process, e.g. to give back memory a library leaks or a GPU context it keeps).

The reply of the last allowed call says ``worker_exiting``, so the owner pushes nothing more to
this worker and returns its lease with ``worker_ok=False``; the process exits shortly after the
reply went out, and the raylet drops it when its connection closes.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rayops.core_worker.threads import any_thread, user_thread

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker
    from rayops.protocol.task_messages import TaskSpec

# Time for the last reply (and the output flushed before it) to leave the IO loop.
EXIT_DELAY_S = 0.05


class CallLimit:
    """Calls run per function id, against each task's ``max_calls``."""

    def __init__(self) -> None:
        self._calls: dict[bytes, int] = {}

    @user_thread
    def ran(self, spec: TaskSpec) -> bool:
        """Count one call of ``spec``'s function; True if this worker must now exit."""
        if not spec.max_calls:
            return False
        n = self._calls.get(spec.function_id, 0) + 1
        self._calls[spec.function_id] = n
        return n >= spec.max_calls

    @any_thread
    def exit_after_reply(self, cw: CoreWorker) -> None:
        """End the process once the replies queued so far have been sent."""
        cw.loop.call_soon_threadsafe(cw.loop.call_later, EXIT_DELAY_S, os._exit, 0)
