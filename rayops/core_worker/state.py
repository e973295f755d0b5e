"""The process's core worker, for the Ray API functions that take none.

Ray's API is process-global (``ray.get(ref)`` takes no handle), so one slot holds
the CoreWorker of this process: set by ``init()`` in a driver and by the worker
entry point in a worker, cleared by ``shutdown()``. Everything below the public
API receives the CoreWorker explicitly.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

_current: CoreWorker | None = None


def set_core_worker(cw: CoreWorker | None) -> None:
    global _current
    _current = cw


def current() -> CoreWorker | None:
    return _current


def require() -> CoreWorker:
    if _current is None:
        from rayops.exceptions import RaySystemError

        raise RaySystemError(
            "rayops is not initialized: call rayops.init() first (or rayops.init('auto') "
            "to join a running cluster)."
        )
    return _current
