"""Which option values raise, and which exception type, as in Ray 2.60 (issue 9 item 4).

Each row: entry point kind (task or actor), where (``remote``: ``@remote(...)``, ``options``:
``.options(...)``, ``both``), option, value, and what Ray 2.60 does with it at decoration /
``.options()`` time: ``TypeError``, ``ValueError``, or ``None`` (accepted; rayops then either
honours the value or refuses it with NotImplementedError, saying when it comes). The rows were
taken from ``scripts/probe_option_errors.py`` run against Ray 2.60 (``--runtime ray``) and
rayops, then ``--compare``. No cluster: validation happens before anything starts.

Where rayops knowingly refuses more than Ray (Ray accepts the value, then fails later or
ignores it), ``STRICTER`` lists the case and why.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

import rayops
from rayops import options


def f() -> int:
    return 1


class C:
    def m(self) -> int:
        return 1


ROWS: list[tuple[str, str, str, Any, type[Exception] | None]] = [
    ("task", "both", "accelerator_type", "x", None),
    ("task", "both", "accelerator_type", -1, TypeError),
    ("task", "both", "enable_task_events", "x", TypeError),
    ("task", "both", "enable_task_events", True, None),
    ("task", "both", "fallback_strategy", "x", TypeError),
    ("task", "both", "fallback_strategy", None, None),
    ("task", "both", "label_selector", "x", TypeError),
    ("task", "both", "label_selector", None, None),
    ("task", "both", "max_calls", "x", TypeError),
    ("task", "both", "max_calls", -1, ValueError),
    ("task", "options", "max_calls", None, ValueError),
    ("task", "remote", "max_calls", None, None),
    ("task", "both", "max_retries", "x", TypeError),
    ("task", "both", "max_retries", -1, None),
    ("task", "both", "max_retries", -2, ValueError),
    ("task", "both", "memory", "x", TypeError),
    ("task", "both", "memory", -1, ValueError),
    ("task", "both", "memory", 1.5, None),
    ("task", "both", "name", "x", None),
    ("task", "both", "name", -1, TypeError),
    ("task", "both", "num_cpus", "x", TypeError),
    ("task", "both", "num_cpus", -1, ValueError),
    ("task", "both", "num_cpus", 1.5, None),
    ("task", "both", "num_gpus", "x", TypeError),
    ("task", "both", "num_gpus", -1, ValueError),
    ("task", "both", "num_gpus", 1.5, None),
    ("task", "both", "num_returns", "x", TypeError),
    ("task", "both", "num_returns", -1, ValueError),
    ("task", "both", "num_returns", None, None),
    ("task", "both", "object_store_memory", "x", TypeError),
    ("task", "both", "object_store_memory", -1, ValueError),
    ("task", "both", "object_store_memory", None, None),
    ("task", "both", "placement_group", "x", None),
    ("task", "both", "placement_group_bundle_index", "x", TypeError),
    ("task", "both", "placement_group_bundle_index", -1, None),
    ("task", "both", "placement_group_capture_child_tasks", "x", TypeError),
    ("task", "both", "placement_group_capture_child_tasks", None, None),
    ("task", "both", "resources", "x", TypeError),
    ("task", "both", "resources", None, None),
    ("task", "both", "resources", {"a": -1}, ValueError),
    ("task", "both", "retry_exceptions", "x", TypeError),
    ("task", "both", "retry_exceptions", True, None),
    ("task", "both", "runtime_env", "x", TypeError),
    ("task", "both", "runtime_env", None, None),
    ("task", "both", "scheduling_strategy", -1, TypeError),
    ("task", "both", "scheduling_strategy", None, None),
    ("actor", "both", "accelerator_type", "x", None),
    ("actor", "both", "accelerator_type", -1, TypeError),
    ("actor", "both", "allow_out_of_order_execution", "x", TypeError),
    ("actor", "both", "allow_out_of_order_execution", None, None),
    ("actor", "both", "concurrency_groups", "x", TypeError),
    ("actor", "options", "concurrency_groups", None, ValueError),
    ("actor", "remote", "concurrency_groups", None, None),
    ("actor", "both", "enable_task_events", "x", TypeError),
    ("actor", "both", "enable_task_events", True, None),
    ("actor", "both", "fallback_strategy", "x", TypeError),
    ("actor", "both", "fallback_strategy", None, None),
    ("actor", "both", "get_if_exists", "x", TypeError),
    ("actor", "both", "get_if_exists", True, ValueError),
    ("actor", "both", "get_if_exists", False, None),
    ("actor", "both", "label_selector", "x", TypeError),
    ("actor", "both", "label_selector", None, None),
    ("actor", "both", "lifetime", "x", ValueError),
    ("actor", "both", "lifetime", -1, TypeError),
    ("actor", "both", "lifetime", None, None),
    ("actor", "both", "max_concurrency", "x", TypeError),
    ("actor", "both", "max_concurrency", -1, ValueError),
    ("actor", "both", "max_concurrency", None, None),
    ("actor", "both", "max_pending_calls", "x", TypeError),
    ("actor", "both", "max_pending_calls", -1, None),
    ("actor", "both", "max_pending_calls", -2, ValueError),
    ("actor", "both", "max_restarts", "x", TypeError),
    ("actor", "both", "max_restarts", -1, None),
    ("actor", "both", "max_restarts", -2, ValueError),
    ("actor", "options", "max_restarts", None, None),
    ("actor", "both", "max_task_retries", "x", TypeError),
    ("actor", "both", "max_task_retries", -1, None),
    ("actor", "both", "max_task_retries", -2, ValueError),
    ("actor", "both", "memory", "x", TypeError),
    ("actor", "both", "memory", -1, ValueError),
    ("actor", "both", "memory", 1.5, None),
    ("actor", "both", "name", "x", None),
    ("actor", "both", "name", -1, TypeError),
    ("actor", "both", "namespace", "x", None),
    ("actor", "both", "namespace", -1, TypeError),
    ("actor", "both", "num_cpus", "x", TypeError),
    ("actor", "both", "num_cpus", -1, ValueError),
    ("actor", "both", "num_cpus", 1.5, None),
    ("actor", "both", "num_gpus", "x", TypeError),
    ("actor", "both", "num_gpus", -1, ValueError),
    ("actor", "both", "num_gpus", 1.5, None),
    ("actor", "both", "object_store_memory", "x", TypeError),
    ("actor", "both", "object_store_memory", -1, ValueError),
    ("actor", "both", "object_store_memory", None, None),
    ("actor", "both", "placement_group", "x", None),
    ("actor", "both", "placement_group_bundle_index", "x", TypeError),
    ("actor", "both", "placement_group_bundle_index", -1, None),
    ("actor", "both", "placement_group_capture_child_tasks", "x", TypeError),
    ("actor", "both", "placement_group_capture_child_tasks", None, None),
    ("actor", "both", "resources", "x", TypeError),
    ("actor", "both", "resources", None, None),
    ("actor", "both", "resources", {"a": -1}, ValueError),
    ("actor", "both", "runtime_env", "x", TypeError),
    ("actor", "both", "runtime_env", None, None),
    ("actor", "both", "scheduling_strategy", -1, TypeError),
    ("actor", "both", "scheduling_strategy", None, None),
    # bools count as ints, as in Ray
    ("task", "both", "max_retries", True, None),
    ("task", "both", "num_cpus", False, None),
    ("actor", "both", "max_restarts", True, None),
    # cross-option and decoration-only checks
    ("actor", "both", "get_if_exists", True, ValueError),  # needs name=
    ("actor", "options", "concurrency_groups", {"g": 1}, ValueError),
    ("actor", "remote", "concurrency_groups", {"g": 1}, None),
    ("task", "both", "num_returns", "dynamic", None),
    ("task", "both", "num_returns", "streaming", None),
    ("task", "both", "resources", {"CPU": 1}, ValueError),
    ("task", "both", "resources", {"a": "x"}, TypeError),
    ("task", "both", "runtime_env", {1: 1}, TypeError),
]

# Values Ray takes at decoration / .options() time that rayops refuses at once, and why.
STRICTER: list[tuple[str, str, Any, type[Exception], str]] = [
    ("task", "scheduling_strategy", "x", ValueError, "Ray fails at submission"),
    ("task", "resources", {1: 1}, ValueError, "resource names are strings"),
    ("actor", "max_concurrency", 0, ValueError, "an actor runs at least one call at a time"),
    ("actor", "concurrency_groups", {"g": -1}, ValueError, "Ray fails at creation"),
]


def _call(kind: str, where: str, key: str, value: Any) -> Callable[[], Any]:
    target: Any = f if kind == "task" else C
    if where == "remote":
        return lambda: rayops.remote(**{key: value})(target)
    return lambda: rayops.remote(target).options(**{key: value})


def _params() -> list[Any]:
    out = []
    for kind, where, key, value, expected in ROWS:
        for w in ("remote", "options") if where == "both" else (where,):
            name = getattr(expected, "__name__", "ok")
            out.append(
                pytest.param(kind, w, key, value, expected, id=f"{kind}.{w}:{key}={value!r}:{name}")
            )
    return out


@pytest.mark.parametrize(("kind", "where", "key", "value", "expected"), _params())
def test_option_error_types_match_ray(
    kind: str, where: str, key: str, value: Any, expected: type[Exception] | None
) -> None:
    call = _call(kind, where, key, value)
    if expected is None:
        try:
            call()
        except NotImplementedError as err:  # accepted by Ray, not honoured by rayops yet
            assert key in str(err)
        return
    with pytest.raises(expected) as info:
        call()
    assert type(info.value) is expected, f"{type(info.value).__name__} is not {expected.__name__}"
    assert key in str(info.value), f"the message does not name {key!r}: {info.value}"


@pytest.mark.parametrize(("kind", "key", "value", "expected", "why"), STRICTER)
def test_stricter_than_ray(kind: str, key: str, value: Any, expected: type, why: str) -> None:
    with pytest.raises(expected, match=key):
        _call(kind, "remote", key, value)()


def test_every_task_and_actor_option_has_rows() -> None:
    covered = {(kind, key) for kind, _, key, _, _ in ROWS}
    for kind, table in (("task", options.TASK_OPTIONS), ("actor", options.ACTOR_OPTIONS)):
        missing = sorted(k for k in table if (kind, k) not in covered)
        assert not missing, f"{kind} options without an error-type row: {missing}"


def test_unknown_keywords_are_value_errors_and_method_ones_assertion_errors_too() -> None:
    with pytest.raises(ValueError, match="unknown option 'bogus'"):
        rayops.remote(bogus=1)(f)
    with pytest.raises(ValueError, match="unknown option 'bogus'"):
        rayops.remote(C).options(bogus=1)
    # Ray's @method asserts on an unknown keyword: catchable as either.
    with pytest.raises(AssertionError):
        rayops.method(bogus=1)
    with pytest.raises(ValueError):
        rayops.method(bogus=1)


# init(): what Ray 2.60 raises for each (probed with a real Ray, one cluster start per value).
# Where Ray fails inside with an internal AssertionError or AttributeError (num_cpus="x",
# resources="x" or {"CPU": 1} or {"a": "x"}, labels="x"), rayops raises the TypeError or
# ValueError that names the argument.
INIT_ROWS: list[tuple[str, Any, type[Exception]]] = [
    ("num_cpus", -1, ValueError),
    ("num_cpus", 1.5, ValueError),  # Ray: a node's resources are whole numbers
    ("num_cpus", "x", TypeError),  # Ray: AssertionError
    ("num_gpus", -1, ValueError),
    ("num_gpus", "x", TypeError),
    ("resources", "x", TypeError),  # Ray: AttributeError
    ("resources", {"CPU": 1}, ValueError),  # Ray: AssertionError
    ("resources", {"a": -1}, ValueError),
    ("resources", {"a": 0.5}, ValueError),
    ("resources", {"a": "x"}, TypeError),  # Ray: AssertionError
    ("object_store_memory", -1, ValueError),
    ("object_store_memory", "x", TypeError),
    ("namespace", 1, TypeError),
    ("labels", "x", TypeError),  # Ray: AttributeError
    ("logging_level", "loud", ValueError),
    ("runtime_env", "x", TypeError),
    ("address", 1, TypeError),
    ("_temp_dir", 1, TypeError),
]


@pytest.mark.parametrize(("key", "value", "expected"), INIT_ROWS, ids=lambda v: repr(v))
def test_init_error_types(key: str, value: Any, expected: type[Exception]) -> None:
    kwargs: dict[str, Any] = {"_temp_dir": "/nonexistent/rayops-option-errors", key: value}
    with pytest.raises(expected) as info:
        rayops.init(**kwargs)
    assert type(info.value) is expected
    assert f"init({key}=" in str(info.value), str(info.value)
    assert not rayops.is_initialized()


def test_none_means_not_given() -> None:
    assert options.validate_task_options({"num_cpus": None, "max_retries": None}, where="x") == {}
    assert options.validate_actor_options({"max_restarts": None}, where="x") == {}
