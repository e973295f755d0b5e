"""rayops: a Ray-compatible distributed runtime. ``import rayops as ray``.

The public surface mirrors Ray Core's top-level functions; each name here is a
thin re-export. The machinery lives in packages named for what they own:
``core_worker`` (inside every driver and worker), ``raylet`` (per node),
``gcs`` (control plane), ``objectstore`` (shared memory), ``rpc`` and
``protocol`` (wire), ``node`` (starting daemons), ``cli``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from rayops.version import __version__

if TYPE_CHECKING:
    from rayops import exceptions, job_config
    from rayops.actor import get_actor, kill, method
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
    from rayops.core_worker.object_ref import (
        DynamicObjectRefGenerator,
        ObjectID,
        ObjectRef,
        ObjectRefGenerator,
    )
    from rayops.runtime_context import get_runtime_context

# Daemons (GCS, raylet) import submodules of this package; loading the driver API
# lazily keeps their start-up free of the core worker's imports.
_LAZY = {
    "available_resources": "rayops.api",
    "cancel": "rayops.api",
    "cluster_resources": "rayops.api",
    "get": "rayops.api",
    "get_gpu_ids": "rayops.api",
    "init": "rayops.api",
    "is_initialized": "rayops.api",
    "nodes": "rayops.api",
    "put": "rayops.api",
    "shutdown": "rayops.api",
    "wait": "rayops.api",
    "DynamicObjectRefGenerator": "rayops.core_worker.object_ref",
    "ObjectID": "rayops.core_worker.object_ref",
    "ObjectRef": "rayops.core_worker.object_ref",
    "ObjectRefGenerator": "rayops.core_worker.object_ref",
    "get_runtime_context": "rayops.runtime_context",
    "get_actor": "rayops.actor",
    "kill": "rayops.actor",
    "method": "rayops.actor",
}


def __getattr__(name: str) -> Any:
    import importlib

    if name in ("exceptions", "actor", "util", "job_config"):
        return importlib.import_module(f"rayops.{name}")
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rayops' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "DynamicObjectRefGenerator",
    "ObjectID",
    "ObjectRef",
    "ObjectRefGenerator",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "job_config",
    "kill",
    "method",
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
        from rayops.actor import ActorClass

        return ActorClass(target, options)
    if not callable(target):
        raise TypeError(f"@remote expects a function, got {type(target).__name__}")
    from rayops.remote_function import RemoteFunction

    return RemoteFunction(target, options)
