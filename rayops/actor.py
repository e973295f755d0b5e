"""Actors: ``@rayops.remote`` classes, their handles and methods, ``@rayops.method``,
and ``exit_actor()``.

Creating an actor registers it with the GCS, which places it on a worker; calls on
the handle go from the caller straight to that worker (``core_worker.actor_submitter``).
A handle carries a *handle token*, an object owned by the actor's creator whose
reference count is the number of live handles anywhere: when it reaches zero the
creator tells the GCS and a non-detached actor exits.
"""

from __future__ import annotations

import functools
import inspect
import pickle
import types
from typing import Any

from rayops import call_signature, serialization
from rayops.core_worker import actor_caller, state
from rayops.core_worker.actor_caller import HandleParts
from rayops.core_worker.object_ref import ObjectRef
from rayops.options import (
    merged_options,
    validate_actor_method_options,
    validate_actor_options,
)
from rayops.protocol.task_messages import DYNAMIC, STREAMING

__all__ = ["ActorClass", "ActorHandle", "ActorMethod", "exit_actor", "method"]

_METHOD_ATTR = "__rayops_method_options__"


def method(*args: Any, **options: Any) -> Any:
    """Per-method options of an actor class.

    ``@rayops.method(num_returns=2, concurrency_group="io")``; the options are those of
    ``handle.method.options()`` (``rayops.options.ACTOR_METHOD_OPTIONS``).
    """
    if args:
        raise ValueError("@method takes only keyword options, e.g. @method(num_returns=2)")
    options = validate_actor_method_options(options, where="@method")

    def decorate(fn: Any) -> Any:
        setattr(fn, _METHOD_ATTR, dict(options))
        return fn

    return decorate


def exit_actor() -> None:
    """Exit the current actor on purpose after this call: it is not restarted, and calls
    still queued for it fail with ActorDiedError."""
    from rayops.core_worker.actor_runtime import ActorExitRequest

    cw = state.require()
    if cw.executor is None or not cw.executor.is_actor:
        raise TypeError("exit_actor() can only be called inside an actor method.")
    raise ActorExitRequest()


def _method_table(cls: type) -> dict[str, dict[str, Any]]:
    table: dict[str, dict[str, Any]] = {}
    for name, fn in inspect.getmembers(cls, predicate=inspect.isfunction):
        if name.startswith("__") and name not in ("__call__",):
            continue
        opts = getattr(fn, _METHOD_ATTR, {})
        is_gen = inspect.isgeneratorfunction(fn) or inspect.isasyncgenfunction(fn)
        num_returns = opts.get("num_returns")
        if num_returns == "dynamic":
            n = DYNAMIC
        elif num_returns == "streaming" or (num_returns is None and is_gen):
            n = STREAMING
        else:
            n = 1 if num_returns is None else int(num_returns)
        table[name] = {
            "num_returns": n,
            "concurrency_group": opts.get("concurrency_group", ""),
            "is_async": inspect.iscoroutinefunction(fn) or inspect.isasyncgenfunction(fn),
            "max_task_retries": opts.get("max_task_retries"),
            "retry_exceptions": opts.get("retry_exceptions"),
            "params": call_signature.params_of(
                fn, bound=not isinstance(inspect.getattr_static(cls, name), staticmethod)
            ),
        }
    # Ray's methods on every actor handle (run by core_worker.actor_runtime).
    for name in ("__ray_terminate__", "__ray_ready__", "__ray_call__"):
        table[name] = {
            "num_returns": 1,
            "concurrency_group": "",
            "is_async": False,
            "max_task_retries": 0,
            "retry_exceptions": None,
            "params": None,
        }
    return table


class ActorClass:
    """What ``@remote`` makes of a class: ``C.remote(...)`` creates an actor."""

    def __init__(self, cls: type, options: dict[str, Any]) -> None:
        self._cls = cls
        self._options = validate_actor_options(options, where=f"@remote of class {cls.__name__}")
        self._methods = _method_table(cls)
        self._init_params = call_signature.params_of(getattr(cls, "__init__", None), bound=True)
        self._pickled: bytes | None = None
        self.__name__ = cls.__name__
        self.__qualname__ = cls.__qualname__
        self.__doc__ = cls.__doc__
        self.__module__ = cls.__module__

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor class {self.__name__} cannot be instantiated directly: use "
            f"{self.__name__}.remote(...) instead."
        )

    def __reduce__(self) -> tuple[Any, ...]:
        return (ActorClass, (self._cls, self._options))

    def __getattr__(self, name: str) -> Any:
        # Class attributes (constants, static methods) read through the ActorClass, as Ray
        # allows; only called for names the ActorClass itself does not have.
        cls = self.__dict__.get("_cls")
        if cls is None or name.startswith("__"):
            raise AttributeError(name)
        try:
            value = getattr(cls, name)
        except AttributeError:
            raise AttributeError(f"actor class {cls.__name__} has no attribute {name!r}") from None
        if inspect.isfunction(value):
            # Never the class's own function object: cloudpickle would then find it at
            # ``module.Class.name`` and pickle the class's methods by reference.
            if isinstance(inspect.getattr_static(cls, name), staticmethod):
                return functools.wraps(value)(functools.partial(value))
            return types.MethodType(value, self)
        return value

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._create(args, kwargs, self._options)

    def _remote(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **options: Any,
    ) -> ActorHandle:
        """Ray's ``ActorClass._remote(args, kwargs, **options)``: ``.options(**options)``
        then ``.remote(*args, **kwargs)``."""
        return self.options(**options).remote(*(args or ()), **(kwargs or {}))

    def options(self, **options: Any) -> _BoundActorClass:
        checked = validate_actor_options(options, where=f"{self.__name__}.options()")
        return _BoundActorClass(self, merged_options(self._options, options, checked))

    def _create(
        self, args: tuple[Any, ...], kwargs: dict[str, Any], opts: dict[str, Any]
    ) -> ActorHandle:
        from rayops.api import _auto_init
        from rayops.remote_function import accelerator_resource

        if self._init_params is not None:
            call_signature.checker(self._init_params).check(
                args, kwargs, f"{self.__name__}.__init__"
            )
        cw = _auto_init()
        if self._pickled is None:
            self._pickled = serialization.dumps_function(self._cls)
        # An ``async def __init__`` makes an async actor too: it is awaited on the actor's loop.
        is_async = any(m["is_async"] for m in self._methods.values()) or (
            inspect.iscoroutinefunction(getattr(self._cls, "__init__", None))
        )
        accelerator = accelerator_resource(opts.get("accelerator_type"))
        if accelerator:
            opts = {**opts, "resources": {**(opts.get("resources") or {}), **accelerator}}
        from rayops.util.placement_group_handle import captured, placement_of

        where = placement_of(opts)
        if where is None and opts.get("scheduling_strategy") in (None, "DEFAULT"):
            where = captured(cw)  # created by a task of a group that captures its children
        parts = actor_caller.create_actor(
            cw,
            class_bytes=self._pickled,
            class_name=self.__name__,
            methods=self._methods,
            is_async=is_async,
            args=args,
            kwargs=kwargs,
            options=opts,
            placement=where,
        )
        return ActorHandle._from_parts(parts)


class _BoundActorClass:
    def __init__(self, actor_class: ActorClass, options: dict[str, Any]) -> None:
        self._actor_class = actor_class
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> ActorHandle:
        return self._actor_class._create(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundActorClass:
        checked = validate_actor_options(options, where="options()")
        return _BoundActorClass(self._actor_class, merged_options(self._options, options, checked))


class ActorHandle:
    """A reference to an actor. Pass it to tasks and other actors; call its methods with
    ``handle.method.remote(...)``."""

    def __init__(
        self, actor_id: bytes, class_name: str, meta: dict[str, Any], token: ObjectRef | None
    ) -> None:
        self._actor_id = actor_id
        self._class_name = class_name
        self._meta = meta
        self._token = token  # keeps the actor alive while this handle is
        self._parts = HandleParts(actor_id, class_name, meta, token)
        # Signature checkers of the methods called through this handle, made on first call.
        self._checkers: dict[str, call_signature.Checker] = {}

    @classmethod
    def _from_parts(cls, parts: HandleParts) -> ActorHandle:
        return cls(parts.actor_id, parts.class_name, parts.meta, parts.token)

    @property
    def _actor_id_hex(self) -> str:
        return self._actor_id.hex()

    def __getattr__(self, name: str) -> ActorMethod:
        meta = self.__dict__.get("_meta")
        if meta is None or name not in meta["methods"]:
            raise AttributeError(
                f"actor {self.__dict__.get('_class_name', '?')} has no method {name!r}"
            )
        return ActorMethod(self, name, meta["methods"][name])

    def __repr__(self) -> str:
        return f"Actor({self._class_name}, {self._actor_id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ActorHandle) and other._actor_id == self._actor_id

    def __hash__(self) -> int:
        return hash(self._actor_id)

    def __reduce__(self) -> tuple[Any, ...]:
        return (
            _rebuild_handle,
            (self._actor_id, self._class_name, pickle.dumps(self._meta), self._token),
        )


def _rebuild_handle(
    actor_id: bytes, class_name: str, meta: bytes, token: ObjectRef | None
) -> ActorHandle:
    return ActorHandle(actor_id, class_name, pickle.loads(meta), token)


class ActorMethod:
    def __init__(
        self,
        handle: ActorHandle,
        name: str,
        meta: dict[str, Any],
        options: dict[str, Any] | None = None,
    ) -> None:
        self._handle = handle
        self._name = name
        self._meta = meta
        self._options = options or {}

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        checker = self._handle._checkers.get(self._name)
        if checker is None:
            params = self._meta.get("params")
            if params is not None:
                checker = self._handle._checkers[self._name] = call_signature.checker(params)
        if checker is not None:
            checker.check(args, kwargs, self._name)
        cw = state.current()
        if cw is None:
            from rayops.api import _auto_init

            cw = _auto_init()
        return actor_caller.submit_call(
            cw, self._handle._parts, self._name, self._meta, self._options, args, kwargs
        )

    def options(self, **options: Any) -> ActorMethod:
        checked = validate_actor_method_options(options, where=f"{self._name}.options()")
        merged = merged_options(self._options, options, checked)
        return ActorMethod(self._handle, self._name, self._meta, merged)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Actor methods cannot be called directly: use .{self._name}.remote(...) instead."
        )


# get_actor and kill live here, not in api.py: api.py (init, put, get, ...) must not reach the
# actor machinery, which itself calls api's auto-init, or the two would import each other.
def get_actor(name: str, namespace: str | None = None) -> ActorHandle:
    """The handle of the live actor named ``name`` (in this job's namespace by default)."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"get_actor() expects a non-empty actor name, got {name!r}")
    return ActorHandle._from_parts(actor_caller.get_actor(state.require(), name, namespace))


def handle_by_id(actor_id: bytes) -> ActorHandle:
    """A handle to the actor with this id, as the GCS knows it."""
    return ActorHandle._from_parts(actor_caller.handle_by_id(state.require(), actor_id))


def kill(actor: Any, *, no_restart: bool = True) -> None:
    """Kill an actor at once (pending calls fail with ActorDiedError)."""
    if not isinstance(actor, ActorHandle):
        raise ValueError(
            f"kill() expects an actor handle, got {type(actor).__name__} (use cancel() for tasks)."
        )
    actor_caller.kill(state.require(), actor._actor_id, actor._class_name, no_restart)
