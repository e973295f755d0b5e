"""Why a leased worker died, when a raylet's memory monitor killed it (owner side).

Before it kills a leased task worker, the raylet's memory monitor sends the lease's owner a
``WorkerKillNotice`` (``rayops/raylet/memory_monitor.py``) and waits for the reply. When the
owner then sees the worker's connection break, the submitter asks here first: a worker named
in a notice failed its tasks with ``OutOfMemoryError`` (retried only when the notice says the
owner keeps another worker on that node), not with a bare crash.

Notices are kept by worker id (every task in flight on the worker reads the same one), the
newest ``LIMIT``; the IO thread alone reads and writes them.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Any

from rayops import exceptions as rex
from rayops.core_worker.threads import io_thread
from rayops.protocol import raylet_messages as rm
from rayops.protocol.task_messages import TaskSpec

LIMIT = 256
GIB = 1024**3


class KillNotices:
    def __init__(self) -> None:
        self._by_worker: OrderedDict[bytes, rm.WorkerKillNotice] = OrderedDict()

    @io_thread
    def on_notice(self, conn: Any, msg: rm.WorkerKillNotice) -> bool:
        self._by_worker[msg.worker_id] = msg
        while len(self._by_worker) > LIMIT:
            self._by_worker.popitem(last=False)
        return True

    @io_thread
    def error_for(
        self, worker_id: bytes, spec: TaskSpec
    ) -> tuple[rex.OutOfMemoryError, bool] | None:
        """The error of ``spec``'s attempt lost with ``worker_id``, and whether to retry it;
        None when no memory monitor killed that worker."""
        notice = self._by_worker.get(worker_id)
        if notice is None:
            return None
        text = oom_message(
            task=f"name={spec.name}",
            task_id=spec.task_id.hex(),
            node_ip=notice.node_ip,
            node_id=notice.node_id,
            pid=notice.pid,
            worker_id=worker_id.hex(),
            worker_rss=notice.worker_rss,
            used=notice.used,
            total=notice.total,
            threshold=notice.threshold,
            top=notice.top_consumers,
            last_of_caller=not notice.retriable,
        )
        return rex.OutOfMemoryError(text), notice.retriable


def oom_message(
    *,
    task: str,
    task_id: str,
    node_ip: str,
    node_id: str,
    pid: int,
    worker_id: str,
    worker_rss: int,
    used: int,
    total: int,
    threshold: float,
    top: str,
    last_of_caller: bool,
) -> str:
    """The text of the ``OutOfMemoryError`` a killed task's owner raises (after its last
    attempt: a task that is retried only logs the kill)."""
    then = (
        "The task was not retried: it was its caller's last worker on the node (so that a "
        "task too big for the node fails instead of being killed again and again)."
        if last_of_caller
        else "The task was not retried: it had no retries left (max_retries)."
    )
    return (
        f"Task was killed due to the node running low on memory.\n"
        f"Memory on the node (IP: {node_ip}, ID: {node_id}) where the task ({task}, task ID: "
        f"{task_id}, pid={pid}, memory used={worker_rss / GIB:.2f}GB) was running was "
        f"{used / GIB:.2f}GB / {total / GIB:.2f}GB ({used / total if total else 0:.6f}), which "
        f"exceeds the memory usage threshold of {threshold}. rayops killed this worker (ID: "
        f"{worker_id}) because it was the most recently started of its caller's workers on "
        f"the node. {then}\n"
        f"Top 10 memory users:\n{top}\n"
        "Request more memory for the task (memory=...) or run fewer at once (more CPUs per "
        "task). A task killed while its caller runs others on the node is retried within its "
        "max_retries. The threshold is "
        "RAY_memory_usage_threshold (or RAYOPS_MEMORY_USAGE_THRESHOLD); "
        "RAY_memory_monitor_refresh_ms=0 turns the memory monitor off."
    )
