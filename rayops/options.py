"""Validation of ``@remote(...)`` and ``.options(...)`` arguments.

Bad options fail at decoration or ``.options()`` time with the option's name,
what was expected and what was found, never later inside the runtime.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from typing import Any

from rayops.util.scheduling_strategies import is_scheduling_strategy


def _nonneg_number(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, (int, float)) and v >= 0


def _retries(v: Any) -> bool:
    return not isinstance(v, bool) and isinstance(v, int) and v >= -1


def _num_returns(v: Any) -> bool:
    return (not isinstance(v, bool) and isinstance(v, int) and v >= 0) or v in (
        "streaming",
        "dynamic",
    )


def _retry_exceptions(v: Any) -> bool:
    if isinstance(v, bool):
        return True
    return isinstance(v, (list, tuple)) and all(
        isinstance(c, type) and issubclass(c, BaseException) for c in v
    )


def _resources(v: Any) -> bool:
    if not isinstance(v, dict):
        return False
    for k, q in v.items():
        if not isinstance(k, str) or not _nonneg_number(q):
            return False
        if k in ("CPU", "GPU"):
            return False
    return True


_TASK_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_cpus": (_nonneg_number, "a number >= 0"),
    "num_gpus": (_nonneg_number, "a number >= 0"),
    "resources": (
        _resources,
        "a dict of custom resource name -> number >= 0 (use num_cpus/num_gpus for CPU/GPU)",
    ),
    "memory": (_nonneg_number, "a number of bytes >= 0"),
    "num_returns": (_num_returns, "an int >= 0, 'streaming' or 'dynamic'"),
    "max_retries": (_retries, "an int >= -1 (-1 retries forever)"),
    "retry_exceptions": (_retry_exceptions, "a bool or a list of exception classes"),
    "name": (lambda v: isinstance(v, str), "a string"),
    "scheduling_strategy": (
        is_scheduling_strategy,
        "'DEFAULT', 'SPREAD' or a scheduling strategy object",
    ),
    "runtime_env": (lambda v: v is None or isinstance(v, dict), "a dict"),
    "max_calls": (lambda v: isinstance(v, int) and v >= 0, "an int >= 0"),
    "accelerator_type": (lambda v: v is None or isinstance(v, str), "a string"),
    "label_selector": (lambda v: v is None or isinstance(v, dict), "a dict"),
    "enable_task_events": (lambda v: isinstance(v, bool), "a bool"),
    "_metadata": (lambda v: v is None or isinstance(v, dict), "a dict"),
}


def validate_task_options(options: dict[str, Any], *, where: str) -> dict[str, Any]:
    return _validate(options, _TASK_OPTIONS, where, "task")


def _validate(
    options: dict[str, Any],
    table: dict[str, tuple[Callable[[Any], bool], str]],
    where: str,
    kind: str,
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in options.items():
        spec = table.get(key)
        if spec is None:
            close = difflib.get_close_matches(key, list(table), n=1)
            hint = f" Did you mean {close[0]!r}?" if close else ""
            raise ValueError(
                f"{where}: unknown option {key!r}.{hint} Valid {kind} options: "
                f"{', '.join(sorted(table))}."
            )
        check, expected = spec
        if not check(value):
            raise ValueError(f"{where}: option {key!r} must be {expected}, got {value!r}.")
        out[key] = value
    return out


def _lifetime(v: Any) -> bool:
    return v in (None, "detached", "non_detached")


def _concurrency_groups(v: Any) -> bool:
    return isinstance(v, dict) and all(
        isinstance(k, str) and isinstance(n, int) and not isinstance(n, bool) and n > 0
        for k, n in v.items()
    )


def _positive_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v > 0


_ACTOR_OPTIONS: dict[str, tuple[Callable[[Any], bool], str]] = {
    "num_cpus": _TASK_OPTIONS["num_cpus"],
    "num_gpus": _TASK_OPTIONS["num_gpus"],
    "resources": _TASK_OPTIONS["resources"],
    "memory": _TASK_OPTIONS["memory"],
    "name": (lambda v: v is None or isinstance(v, str), "a string"),
    "namespace": (lambda v: v is None or isinstance(v, str), "a string"),
    "get_if_exists": (lambda v: isinstance(v, bool), "a bool"),
    "lifetime": (_lifetime, "None, 'detached' or 'non_detached'"),
    "max_restarts": (_retries, "an int >= -1 (-1 restarts forever)"),
    "max_task_retries": (_retries, "an int >= -1 (-1 retries forever)"),
    "max_concurrency": (_positive_int, "an int >= 1"),
    "max_pending_calls": (lambda v: isinstance(v, int) and (v == -1 or v > 0), "-1 or an int >= 1"),
    "scheduling_strategy": _TASK_OPTIONS["scheduling_strategy"],
    "concurrency_groups": (_concurrency_groups, "a dict of group name -> int >= 1"),
    "runtime_env": _TASK_OPTIONS["runtime_env"],
    "accelerator_type": _TASK_OPTIONS["accelerator_type"],
    "label_selector": _TASK_OPTIONS["label_selector"],
    "enable_task_events": _TASK_OPTIONS["enable_task_events"],
    "_metadata": _TASK_OPTIONS["_metadata"],
}


def validate_actor_options(options: dict[str, Any], *, where: str) -> dict[str, Any]:
    return _validate(options, _ACTOR_OPTIONS, where, "actor")
