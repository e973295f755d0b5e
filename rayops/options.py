"""Validation of ``@remote(...)``, ``.options(...)``, ``@method(...)`` and ``init()`` keywords.

Every keyword rayops accepts is listed here, in one table per entry point, and either does what
Ray 2.60 does or is refused at once (at decoration, ``.options()`` or ``init()`` time, before
anything starts), naming the option and saying when it will be supported. Nothing is accepted
and ignored; ``tests/unit/test_option_table.py`` walks these tables and points every keyword at
the test of its behaviour, so a new option cannot be added without one.

Which exception, as Ray 2.60 (``scripts/probe_option_errors.py`` compares the two;
``tests/unit/test_option_errors.py`` pins the result):

- a value of a type Ray does not take for the option: ``TypeError``;
- an unknown keyword, or a value of the right type that Ray refuses (a negative count, a
  ``.options()`` keyword Ray takes only at decoration): ``ValueError``;
- a value Ray accepts but rayops cannot honour yet (a ``runtime_env`` with ``pip``, a placement
  group, ...): ``NotImplementedError``, whose message names the option, the issue that
  brings it, and what to do meanwhile. Ray's "not used" values (``None``, ``{}``, ...) keep
  working, as Ray treats them.

``None`` means "not given" (the default applies), as in Ray; it is dropped from the validated
options, so ``.options(num_cpus=None)`` keeps a value given to ``@remote`` where Ray would go
back to the default. ``True``/``False`` count as 1/0 where Ray takes an int, as in Ray.

Decisions only: no I/O, nothing here starts or contacts a cluster.
"""

from __future__ import annotations

import difflib
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from rayops.envs import spec as runtime_env_spec
from rayops.scheduling.labels import parse_label_selector
from rayops.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
    is_scheduling_strategy,
)

STRATEGY_TYPES = (NodeAffinitySchedulingStrategy, PlacementGroupSchedulingStrategy)

__all__ = [
    "ACTOR_METHOD_OPTIONS",
    "ACTOR_OPTIONS",
    "INIT_NOT_YET",
    "TASK_OPTIONS",
    "NotYet",
    "Option",
    "check_init_options",
    "validate_actor_method_options",
    "validate_actor_options",
    "validate_task_options",
]


@dataclass(frozen=True)
class NotYet:
    """Values of an option that rayops cannot honour yet.

    ``honoured(value)`` is True for the values rayops does what Ray does with (Ray's "not used"
    values); any other value raises NotImplementedError with ``why`` (what is missing and which
    issue brings it) and ``meanwhile`` (what to do until then).
    """

    honoured: Callable[[Any], bool]
    why: str
    meanwhile: str


_NoneType = type(None)
_INT = (int,)  # bool is an int, as in Ray (True counts as 1)
_NUMBER = (int, float)


@dataclass(frozen=True)
class Option:
    """One accepted keyword.

    ``types``: the types Ray accepts for it (else TypeError); ``check(value)``: whether Ray
    accepts a value of such a type (else ValueError); both say ``expected``. ``not_yet``: the
    values rayops refuses for now (NotImplementedError). ``decoration_only``: Ray refuses it
    in ``.options()`` (ValueError), as for ``max_calls``.
    """

    types: tuple[type, ...]
    check: Callable[[Any], bool]
    expected: str
    not_yet: NotYet | None = None
    decoration_only: bool = False
    type_check: Callable[[Any], bool] | None = None  # instead of ``types``, where it is finer
    # the value checked in depth and normalized (raising its own errors), or None: not given
    normalize: Callable[[Any, str], Any] | None = None


def _any(v: Any) -> bool:
    return True


def _is_str(v: Any) -> bool:
    return isinstance(v, str)


def _nonneg(v: Any) -> bool:
    return v is None or v >= 0


def _retries(v: Any) -> bool:
    return v is None or v >= -1


def _num_returns(v: Any) -> bool:
    if isinstance(v, str):
        return v in ("streaming", "dynamic")
    return v is None or v >= 0


def _retry_exceptions(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    return all(isinstance(c, type) and issubclass(c, BaseException) for c in v)


def _resources_typed(v: Any) -> bool:
    """Ray's TypeError cases for ``resources``: not a dict, or a non-number quantity."""
    return v is None or (isinstance(v, dict) and all(isinstance(q, _NUMBER) for q in v.values()))


def _resources(v: Any) -> bool:
    if v is None:
        return True
    return all(isinstance(k, str) and q >= 0 and k not in ("CPU", "GPU") for k, q in v.items())


def _label_selector(v: Any) -> bool:
    """Ray's selector syntax; a bad one raises TypeError/ValueError naming the key or value."""
    parse_label_selector(v)
    return True


_OPT_NUMBER = (*_NUMBER, _NoneType)
_OPT_INT = (*_INT, _NoneType)
_OPT_STR = (str, _NoneType)
_NUM_CPUS = Option(_OPT_NUMBER, _nonneg, "a number >= 0")
_NUM_GPUS = Option(_OPT_NUMBER, _nonneg, "a number >= 0")
_RESOURCES = Option(
    (dict, _NoneType),
    _resources,
    "a dict of custom resource name -> number >= 0 (use num_cpus/num_gpus for CPU/GPU)",
    type_check=_resources_typed,
)
_MEMORY = Option(_OPT_NUMBER, _nonneg, "a number of bytes >= 0")
_STRATEGY = Option(
    (str, _NoneType, *STRATEGY_TYPES),
    lambda v: v is None or is_scheduling_strategy(v),
    "'DEFAULT', 'SPREAD' or a scheduling strategy object",
)
_ACCELERATOR_TYPE = Option(_OPT_STR, _any, "a string")
_LABEL_SELECTOR = Option(
    (dict, _NoneType), _label_selector, "a dict of label keys to selector strings"
)
_ENABLE_TASK_EVENTS = Option((bool,), _any, "a bool")
_RUNTIME_ENV_OPTION = Option(
    (dict, _NoneType),
    _any,
    "a dict with string keys",
    type_check=lambda v: v is None or (isinstance(v, dict) and all(map(_is_str, v))),
    # Each field checked (envs/spec.py): a missing path or an unsupported field raises here.
    normalize=lambda v, where: runtime_env_spec.validate(v, where=where) or None,
)
# Ray takes any value here and fails at submission: so does rayops (placement_of).
_PG = Option((object,), _any, "a PlacementGroup, 'default' or None")
_PG_INDEX = Option(_INT, lambda v: v >= -1, "an int >= -1 (-1: any bundle)")
_PG_CAPTURE = Option((bool, _NoneType), _any, "a bool")
_FALLBACK = Option(
    (list, _NoneType),
    _any,
    "a list of fallback scheduling options",
    NotYet(
        lambda v: v is None,
        "fallback scheduling strategies come with the one scheduler (rayops issue 10)",
        "remove it",
    ),
)
_NOT_PLANNED_STORE_QUOTA = NotYet(
    lambda v: v is None,
    "per-actor object store quotas are not planned by any rayops issue yet",
    "remove it",
)

# Options tasks and actors share, with the same meaning and the same checks.
_PLACEMENT_OPTIONS: dict[str, Option] = {
    "accelerator_type": _ACCELERATOR_TYPE,
    "label_selector": _LABEL_SELECTOR,
    "enable_task_events": _ENABLE_TASK_EVENTS,
    "placement_group": _PG,
    "placement_group_bundle_index": _PG_INDEX,
    "placement_group_capture_child_tasks": _PG_CAPTURE,
    "fallback_strategy": _FALLBACK,
}

_TASK_TABLE: dict[str, Option] = {
    "num_cpus": _NUM_CPUS,
    "num_gpus": _NUM_GPUS,
    "resources": _RESOURCES,
    "memory": _MEMORY,
    "num_returns": Option(
        (*_OPT_INT, str),
        _num_returns,
        "an int >= 0, 'streaming' or 'dynamic'",
        type_check=lambda v: isinstance(v, _OPT_INT) or v in ("streaming", "dynamic"),
    ),
    "max_retries": Option(_OPT_INT, _retries, "an int >= -1 (-1 retries forever)"),
    "retry_exceptions": Option(
        (bool, list, tuple), _retry_exceptions, "a bool or a list of exception classes"
    ),
    "name": Option(_OPT_STR, _any, "a string"),
    "scheduling_strategy": _STRATEGY,
    "runtime_env": _RUNTIME_ENV_OPTION,
    "max_calls": Option(
        _OPT_INT,
        _nonneg,
        "an int >= 0 (0: no limit)",
        decoration_only=True,
    ),
    **_PLACEMENT_OPTIONS,
    # Ray takes only None for tasks (the quota is an actor option).
    "object_store_memory": Option(
        _OPT_INT, lambda v: v is None, "None for a task (an actor option)"
    ),
}


def _lifetime(v: Any) -> bool:
    return v in (None, "detached", "non_detached")


def _concurrency_groups(v: Any) -> bool:
    return v is None or (
        isinstance(v, dict)
        and all(
            isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) and n > 0
            for k, n in v.items()
        )
    )


_ACTOR_TABLE: dict[str, Option] = {
    "num_cpus": _NUM_CPUS,
    "num_gpus": _NUM_GPUS,
    "resources": _RESOURCES,
    "memory": _MEMORY,
    "name": Option(_OPT_STR, _any, "a string"),
    "namespace": Option(_OPT_STR, _any, "a string"),
    "get_if_exists": Option((bool,), _any, "a bool"),
    "lifetime": Option(_OPT_STR, _lifetime, "None, 'detached' or 'non_detached'"),
    "max_restarts": Option(_OPT_INT, _retries, "an int >= -1 (-1 restarts forever)"),
    "max_task_retries": Option(_OPT_INT, _retries, "an int >= -1 (-1 retries forever)"),
    # Ray takes 0 here and fails later; rayops refuses it at once.
    "max_concurrency": Option(_OPT_INT, lambda v: v is None or v > 0, "an int >= 1"),
    "max_pending_calls": Option(_OPT_INT, _retries, "-1 (no limit) or an int >= 0"),
    "scheduling_strategy": _STRATEGY,
    "concurrency_groups": Option(
        (dict, list, _NoneType),
        _concurrency_groups,
        "a dict of group name -> int >= 1",
        decoration_only=True,
    ),
    "runtime_env": _RUNTIME_ENV_OPTION,
    **_PLACEMENT_OPTIONS,
    "object_store_memory": Option(
        _OPT_INT, _nonneg, "a number of bytes >= 0", _NOT_PLANNED_STORE_QUOTA
    ),
    "allow_out_of_order_execution": Option(
        (bool, _NoneType),
        _any,
        "a bool",
        NotYet(
            lambda v: not v,
            "out-of-order actor execution is not planned by any rayops issue yet",
            "remove it (calls from one caller run in submission order)",
        ),
    ),
}

_ACTOR_METHOD_TABLE: dict[str, Option] = {
    "num_returns": Option(
        (*_OPT_INT, str),
        _num_returns,
        "an int >= 0, 'streaming' or 'dynamic'",
        type_check=lambda v: isinstance(v, _OPT_INT) or v in ("streaming", "dynamic"),
    ),
    "concurrency_group": Option((str,), _any, "a concurrency group name"),
    "max_task_retries": Option(_OPT_INT, _retries, "an int >= -1 (-1 retries forever)"),
    "retry_exceptions": Option(
        (bool, list, tuple, _NoneType),
        lambda v: v is None or _retry_exceptions(v),
        "a bool or a list of exception classes",
    ),
    "name": Option(
        _OPT_STR,
        _any,
        "a string",
        NotYet(
            lambda v: not v,
            "a display name for one actor call comes with the task events of rayops issue 12",
            "remove it (the call is named after its method)",
        ),
    ),
}

# Read-only views: the table test walks these; the validators below read them.
TASK_OPTIONS: Mapping[str, Option] = MappingProxyType(_TASK_TABLE)
ACTOR_OPTIONS: Mapping[str, Option] = MappingProxyType(_ACTOR_TABLE)
ACTOR_METHOD_OPTIONS: Mapping[str, Option] = MappingProxyType(_ACTOR_METHOD_TABLE)


def validate_task_options(options: dict[str, Any], *, where: str) -> dict[str, Any]:
    """``options`` of ``@remote`` / ``.options()`` on a function, checked (see module doc)."""
    return _validate(options, TASK_OPTIONS, where, "task")


def validate_actor_options(options: dict[str, Any], *, where: str) -> dict[str, Any]:
    """``options`` of ``@remote`` / ``.options()`` on a class, checked (see module doc)."""
    return _validate(options, ACTOR_OPTIONS, where, "actor")


def validate_actor_method_options(options: dict[str, Any], *, where: str) -> dict[str, Any]:
    """``options`` of ``@method`` / ``handle.method.options()``, checked (see module doc)."""
    return _validate(options, ACTOR_METHOD_OPTIONS, where, "actor method")


def merged_options(
    base: Mapping[str, Any], given: Mapping[str, Any], checked: Mapping[str, Any]
) -> dict[str, Any]:
    """``.options(**given)`` over ``base`` (the decorator's, or an earlier ``.options``):
    what ``checked`` (``given``, validated) sets wins, and an option given as None goes
    back to its default, as in Ray (``f.options(num_cpus=None)`` needs 1 CPU again)."""
    out = {**base, **checked}
    for key, value in given.items():
        if value is None:
            out.pop(key, None)
    return out


class UnknownMethodOption(ValueError, AssertionError):
    """An unknown ``@method`` keyword (Ray raises AssertionError there, rayops ValueError
    everywhere else: this is both)."""


def _validate(
    options: dict[str, Any],
    table: Mapping[str, Option],
    where: str,
    kind: str,
) -> dict[str, Any]:
    in_options = "options()" in where
    out: dict[str, Any] = {}
    for key, value in options.items():
        spec = table.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(table), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            # Ray's @method asserts on an unknown keyword; this is both error types.
            raise (UnknownMethodOption if where == "@method" else ValueError)(
                f"{where}: unknown option {key!r}.{hint} Valid {kind} options: "
                f"{', '.join(sorted(table))}."
            )
        if not (
            spec.type_check(value) if spec.type_check is not None else isinstance(value, spec.types)
        ):
            raise TypeError(
                f"{where}: option {key!r} must be {spec.expected}, got {value!r} "
                f"(a {type(value).__name__})."
            )
        if spec.decoration_only and in_options:
            raise ValueError(
                f"{where}: option {key!r} can only be given to @remote, not to .options()."
            )
        if not spec.check(value):
            raise ValueError(f"{where}: option {key!r} must be {spec.expected}, got {value!r}.")
        if spec.not_yet is not None and not spec.not_yet.honoured(value):
            raise NotImplementedError(
                f"{where}: option {key}={value!r} is not supported yet: {spec.not_yet.why}; "
                f"{spec.not_yet.meanwhile}."
            )
        if spec.normalize is not None and value is not None:
            value = spec.normalize(value, f"{where}: option {key!r}")
        if value is not None:  # Ray's None: not given (the default applies)
            out[key] = value
    if kind == "actor" and options.get("get_if_exists") and not options.get("name"):
        raise ValueError(f"{where}: get_if_exists=True needs the actor's name (name=...).")
    return out


# ---------------------------------------------------------------------------------- init()
# Ray's init() keywords that rayops's init() does not take, and why (each raises
# NotImplementedError naming it); any other unknown keyword is a TypeError.
INIT_NOT_YET: Mapping[str, str] = MappingProxyType(
    {
        "local_mode": "local mode is deprecated in Ray and not planned; run init() without it",
        "configure_logging": "driver logging configuration is not planned by any rayops issue "
        "yet; configure the 'rayops' logger with the logging module",
        "logging_format": "driver logging configuration is not planned by any rayops issue "
        "yet; configure the 'rayops' logger with the logging module",
        "logging_config": "LoggingConfig is not planned by any rayops issue yet; configure the "
        "'rayops' logger with the logging module",
        "enable_resource_isolation": "resource isolation (cgroups) is not planned by any "
        "rayops issue yet",
        "cgroup_path": "resource isolation (cgroups) is not planned by any rayops issue yet",
        "system_reserved_cpu": "resource isolation (cgroups) is not planned by any rayops "
        "issue yet",
        "system_reserved_memory": "resource isolation (cgroups) is not planned by any rayops "
        "issue yet",
        "proxy_server_url": "Ray Client proxies are out of scope: a rayops driver joins a "
        "cluster directly with init('HOST:PORT')",
    }
)


def check_init_options(
    *,
    include_dashboard: object,
    runtime_env: object,
    logging_level: object,
    kwargs: Mapping[str, Any],
    strings: Mapping[str, object] | None = None,
) -> int:
    """Check the ``init()`` keywords that are not node settings (those are
    ``rayops.node.node_args``); returns ``logging_level`` as a ``logging`` level number.

    ``strings``: keywords that must be a string or None (``address``, ``namespace``, ...), by
    name. Raises before anything starts: TypeError for a keyword init() does not take or a
    value of the wrong type (as Ray), NotImplementedError for one Ray takes that rayops cannot
    honour yet, ValueError for a bad value.
    """
    known = sorted(k for k in kwargs if k in INIT_NOT_YET)
    if known:
        raise NotImplementedError(
            "; ".join(f"init({k}=...) is not supported yet: {INIT_NOT_YET[k]}" for k in known)
        )
    if kwargs:
        raise TypeError(f"init() got unexpected keyword argument(s): {', '.join(sorted(kwargs))}")
    for name, value in (strings or {}).items():
        if value is not None and not isinstance(value, str):
            raise TypeError(
                f"init({name}=...) must be a string or None, got {type(value).__name__} {value!r}"
            )
    if include_dashboard not in (None, False, True):
        raise ValueError(
            f"init(include_dashboard=...) must be a bool or None, got {include_dashboard!r}"
        )
    if runtime_env is not None and not isinstance(runtime_env, dict):
        # A wrong type: TypeError, as the runtime_env option of @remote (and Ray).
        raise TypeError(f"init(runtime_env=...) must be a dict, got {runtime_env!r}")
    runtime_env_spec.validate(runtime_env, where="init(runtime_env=...)")
    return logging_level_number(logging_level)


def logging_level_number(level: object) -> int:
    """``level`` (a ``logging`` number or a name in any case, e.g. "info") as a number."""
    if isinstance(level, int) and not isinstance(level, bool) and level >= 0:
        return level
    if isinstance(level, str):
        number = logging.getLevelName(level.upper())
        if isinstance(number, int):
            return number
    raise ValueError(
        "init(logging_level=...) must be a logging level such as logging.INFO or 'info', "
        f"got {level!r}"
    )
