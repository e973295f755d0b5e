"""``@rayops.remote`` functions: options, validation, and submission.

A RemoteFunction travels by value (cloudpickle) so tasks can submit tasks; its
pickled form is computed once per process and shipped to each worker once.
"""

from __future__ import annotations

import hashlib
import inspect
from collections.abc import Callable
from typing import Any

from rayops import call_signature, serialization
from rayops.core_worker import state
from rayops.options import merged_options, validate_task_options
from rayops.protocol.task_messages import DYNAMIC, STREAMING
from rayops.scheduling.labels import parse_label_selector
from rayops.scheduling.strategy import scoped_strategy


class RemoteFunction:
    def __init__(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        self._setup(function, options)

    def _setup(self, function: Callable[..., Any], options: dict[str, Any]) -> None:
        self._function = function
        self._options = validate_task_options(options, where=f"@remote of {_name(function)}")
        # As in Ray: a GPU function's worker exits after each call unless max_calls says more.
        gpu = (self._options.get("num_gpus") or 0) > 0
        self._max_calls: int = self._options.get("max_calls", 1 if gpu else 0)
        self._is_generator = inspect.isgeneratorfunction(function)
        params = call_signature.params_of(function, bound=False)
        self._checker = None if params is None else call_signature.checker(params)
        self._pickled: bytes | None = None
        self._function_id = b""
        self._registered_with: Any = None
        self._plans: dict[int, tuple[dict[str, Any], Any]] = {}
        self.__name__ = getattr(function, "__name__", "remote_function")
        self.__qualname__ = getattr(function, "__qualname__", self.__name__)
        self.__doc__ = function.__doc__
        self.__module__ = getattr(function, "__module__", __name__)

    def __reduce__(self) -> tuple[Any, ...]:
        # Memoized before its state is pickled, so a function that calls itself
        # through this object does not recurse forever.
        return (
            RemoteFunction.__new__,
            (RemoteFunction,),
            {"f": self._function, "o": self._options},
        )

    def __setstate__(self, state: dict[str, Any]) -> None:
        self._setup(state["f"], state["o"])

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError(
            f"Remote function {self.__name__} cannot be called directly: use "
            f"{self.__name__}.remote(...) instead."
        )

    def __repr__(self) -> str:
        return f"<RemoteFunction {self.__qualname__}>"

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._submit(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundOptions:
        checked = validate_task_options(options, where=f"{self.__name__}.options()")
        return _BoundOptions(self, merged_options(self._options, options, checked))

    def bind(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError("Ray DAGs (.bind) are not supported by rayops yet.")

    def _ensure_pickled(self) -> None:
        if self._pickled is None:
            self._pickled = serialization.dumps_function(self._function)
            self._function_id = hashlib.blake2b(self._pickled, digest_size=16).digest()

    def _remote(
        self,
        args: tuple[Any, ...] | list[Any] | None = None,
        kwargs: dict[str, Any] | None = None,
        **task_options: Any,
    ) -> Any:
        """Ray's ``RemoteFunction._remote(args, kwargs, **task_options)``: the same as
        ``.options(**task_options).remote(*args, **kwargs)``."""
        return self.options(**task_options).remote(*(args or ()), **(kwargs or {}))

    def _submit(self, args: tuple[Any, ...], kwargs: dict[str, Any], opts: dict[str, Any]) -> Any:
        if self._checker is not None:
            self._checker.check(args, kwargs, self.__name__)
        plan = self._plans.get(id(opts))
        if plan is None or plan[0] is not opts:
            plan = (opts, self._plan(opts))
            self._plans[id(opts)] = plan
        name, n, resources, max_retries, retry_exceptions, strategy = plan[1]
        cw = state.current() or _auto_init()
        if (
            strategy in (None, "DEFAULT")
            and cw.mode == "worker"
            and cw.task_context().placement is not None  # the caller runs in a group
        ):
            from rayops.util.placement_group_handle import captured, shape_in_group

            where = captured(cw)  # a parent scheduled with capture_child_tasks: its group
            if where is not None:
                resources, strategy = shape_in_group(resources, where), where
        if self._pickled is None:
            self._ensure_pickled()
            assert self._pickled is not None
        if cw is not self._registered_with:
            cw.register_function(self._function_id, self._pickled)
            self._registered_with = cw
        result = cw.submit_task(
            function_id=self._function_id,
            name=name,
            args=args,
            kwargs=kwargs,
            num_returns=n,
            resources=resources,
            max_retries=max_retries,
            retry_exceptions=retry_exceptions,
            strategy=strategy,
            max_calls=self._max_calls,
            runtime_env=cw.runtime_envs.wire_for(opts.get("runtime_env")),
        )
        if n == STREAMING:
            return result
        assert isinstance(result, list)
        if n == 1 or n == DYNAMIC:
            return result[0]
        if n == 0:
            return None
        return result

    def _plan(self, opts: dict[str, Any]) -> tuple[str, int, dict[str, float], int, Any, Any]:
        """What a call with these options submits; computed once per options dict."""
        num_returns = opts.get("num_returns")
        if num_returns == "dynamic":
            n = DYNAMIC
        elif num_returns == "streaming" or (num_returns is None and self._is_generator):
            n = STREAMING
        else:
            n = 1 if num_returns is None else int(num_returns)
        if n in (STREAMING, DYNAMIC) and not self._is_generator:
            raise TypeError(
                f"{self.__name__} has num_returns={num_returns!r} but is not a generator function."
            )
        from rayops.util.placement_group_handle import placement_of, shape_in_group

        resources = task_resources(opts)
        strategy = opts.get("scheduling_strategy")
        where = placement_of(opts)  # in a placement group: its bundle's resources instead
        if where is not None:
            resources, strategy = shape_in_group(resources, where), where
        return (
            opts.get("name") or self.__name__,
            n,
            resources,
            opts.get("max_retries", 3),
            opts.get("retry_exceptions", False),
            scoped_strategy(strategy, parse_label_selector(opts.get("label_selector"))),
        )


def _auto_init() -> Any:
    from rayops import api

    return api._auto_init()


class _BoundOptions:
    def __init__(self, fn: RemoteFunction, options: dict[str, Any]) -> None:
        self._fn = fn
        self._options = options

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._fn._submit(args, kwargs, self._options)

    def options(self, **options: Any) -> _BoundOptions:
        checked = validate_task_options(options, where="options()")
        return _BoundOptions(self._fn, merged_options(self._options, options, checked))


# Ray's form of an accelerator_type requirement: a sliver of a resource that only nodes with
# that accelerator advertise, so the work stays pending (infeasible) anywhere else.
ACCELERATOR_TYPE_PREFIX = "accelerator_type:"
ACCELERATOR_TYPE_QUANTITY = 0.001


def accelerator_resource(accelerator_type: str | None) -> dict[str, float]:
    """The resource an ``accelerator_type`` option requires ({} for None)."""
    if not accelerator_type:
        return {}
    return {f"{ACCELERATOR_TYPE_PREFIX}{accelerator_type}": ACCELERATOR_TYPE_QUANTITY}


def task_resources(opts: dict[str, Any]) -> dict[str, float]:
    """The resource shape a task with these (validated) options requests."""
    shape: dict[str, float] = {}
    cpus = opts.get("num_cpus", 1)
    if cpus:
        shape["CPU"] = float(cpus)
    gpus = opts.get("num_gpus", 0)
    if gpus:
        shape["GPU"] = float(gpus)
    mem = opts.get("memory")
    if mem:
        shape["memory"] = float(mem)
    for k, v in (opts.get("resources") or {}).items():
        if v:
            shape[k] = float(v)
    shape.update(accelerator_resource(opts.get("accelerator_type")))
    return shape


def _name(fn: Any) -> str:
    return getattr(fn, "__qualname__", repr(fn))
