"""rayops: a Ray-compatible distributed runtime. ``import rayops as ray``.

The public surface mirrors Ray Core's top-level functions; each name here is a
thin re-export. The machinery lives in packages named for what they own:
``core_worker`` (inside every driver and worker), ``raylet`` (per node),
``gcs`` (control plane), ``objectstore`` (shared memory), ``rpc`` and
``protocol`` (wire), ``node`` (starting daemons), ``cli``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rayops import exceptions
from rayops.api import (
    available_resources,
    cancel,
    cluster_resources,
    get,
    get_gpu_ids,
    init,
    is_initialized,
    nodes,
    put,
    shutdown,
    wait,
)
from rayops.core_worker.object_ref import ObjectRef, ObjectRefGenerator
from rayops.remote_function import RemoteFunction
from rayops.runtime_context import get_runtime_context
from rayops.version import __version__

__all__ = [
    "ObjectRef",
    "ObjectRefGenerator",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "wait",
]


def remote(*args: Any, **options: Any) -> Any:
    """Make a function a remote task: ``@remote`` or ``@remote(num_cpus=2, ...)``."""
    if len(args) == 1 and not options and callable(args[0]):
        return _make_remote(args[0], {})
    if args:
        raise TypeError(
            "@remote takes either no arguments or only keyword options, e.g. @remote(num_cpus=2)."
        )

    def decorator(fn: Callable[..., Any]) -> Any:
        return _make_remote(fn, options)

    return decorator


def _make_remote(target: Any, options: dict[str, Any]) -> Any:
    if isinstance(target, type):
        raise NotImplementedError("remote classes (actors) are not supported by rayops yet.")
    if not callable(target):
        raise TypeError(f"@remote expects a function, got {type(target).__name__}")
    return RemoteFunction(target, options)
