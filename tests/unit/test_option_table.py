"""Every keyword that ``init``, ``@remote`` (functions, classes), ``.options()`` and
``@method`` / ``handle.method.options()`` accept has a row here: the test that shows what it does
(as Ray 2.60 does), and, for values rayops cannot honour yet, one such value, which must raise
NotImplementedError at once naming the option and when it comes.

The accepted keywords are read from the code (the tables in rayops/options.py and init's
signature), so adding an option without a row here, or a row without its test, fails.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

import rayops
from rayops import api, options
from rayops.job_config import JobConfig

ROOT = Path(__file__).resolve().parents[2]
_NONE = object()


@dataclass(frozen=True)
class Row:
    """``test``: pytest node id of the test showing the option's behaviour (None if every value
    is refused); ``refused``: a value Ray accepts and rayops refuses for now (``_NONE``: none)."""

    test: str | None
    refused: Any = _NONE


OPT = "tests/integration/test_options.py::"
TASKS = "tests/integration/test_tasks.py::"
ACTORS = "tests/integration/test_actors.py::"
MULTI = "tests/integration/test_multinode.py::"
PLACE = "tests/integration/test_placement_semantics.py::"
REFUSED = "tests/unit/test_options_refused.py::"
GENERATORS = "tests/integration/test_generators.py::"
MAX_CALLS = "tests/integration/test_max_calls.py::"
RENV = "tests/integration/test_runtime_env.py::"
RENV_PIP = "tests/integration/test_runtime_env_pip.py::"

_NOT_USED_TASK = OPT + "test_task_not_used_values_run"
_NOT_USED_ACTOR = OPT + "test_actor_not_used_values_run"
PGS = "tests/integration/test_placement_groups.py::test_tasks_and_actors_run_on_their_bundles_node"

TASK_ROWS: dict[str, Row] = {
    "num_cpus": Row(OPT + "test_task_resource_options_are_assigned"),
    "num_gpus": Row(OPT + "test_task_resource_options_are_assigned"),
    "memory": Row(OPT + "test_task_resource_options_are_assigned"),
    "resources": Row(OPT + "test_task_resource_options_are_assigned"),
    "name": Row(OPT + "test_task_resource_options_are_assigned"),
    "num_returns": Row(GENERATORS + "test_dynamic_returns_a_ref_to_a_dynamic_generator"),
    "max_retries": Row(TASKS + "test_worker_killed_mid_task_is_retried"),
    "retry_exceptions": Row(TASKS + "test_retry_exceptions"),
    "scheduling_strategy": Row(MULTI + "test_node_affinity"),
    "accelerator_type": Row(OPT + "test_task_accelerator_type_runs_only_where_advertised"),
    "runtime_env": Row(
        RENV_PIP + "test_pip_env_from_a_local_wheelhouse_on_another_node", refused={"conda": "x"}
    ),
    "max_calls": Row(MAX_CALLS + "test_max_calls_one_gives_a_new_process_each_call"),
    "label_selector": Row(PLACE + "test_task_label_selector_restricts_placement"),
    "enable_task_events": Row(REFUSED + "test_unknown_and_bad_options_are_value_errors"),
    "placement_group": Row(PGS),
    "placement_group_bundle_index": Row(PGS),
    "placement_group_capture_child_tasks": Row(PGS),
    "fallback_strategy": Row(_NOT_USED_TASK, refused=[{"label_selector": {"a": "b"}}]),
    # Ray refuses it for tasks (ValueError; an actor option): only None runs.
    "object_store_memory": Row(_NOT_USED_TASK),
}

ACTOR_ROWS: dict[str, Row] = {
    "num_cpus": Row(OPT + "test_actor_resource_options_hold_resources"),
    "num_gpus": Row(OPT + "test_actor_resource_options_hold_resources"),
    "memory": Row(OPT + "test_actor_resource_options_hold_resources"),
    "resources": Row(OPT + "test_actor_resource_options_hold_resources"),
    "name": Row(ACTORS + "test_named_actors_and_namespaces"),
    "namespace": Row(ACTORS + "test_named_actors_and_namespaces"),
    "get_if_exists": Row(ACTORS + "test_named_actors_and_namespaces"),
    "lifetime": Row(ACTORS + "test_detached_named_actor_outlives_its_driver"),
    "max_restarts": Row(ACTORS + "test_restart_after_sigkill"),
    "max_task_retries": Row(ACTORS + "test_restart_after_sigkill"),
    "max_concurrency": Row(ACTORS + "test_max_concurrency_really_overlaps"),
    "max_pending_calls": Row(ACTORS + "test_max_pending_calls"),
    "concurrency_groups": Row(ACTORS + "test_concurrency_groups"),
    "scheduling_strategy": Row(PLACE + "test_actor_node_affinity_hard_and_soft"),
    "accelerator_type": Row(OPT + "test_actor_accelerator_type_is_placed_only_where_advertised"),
    "runtime_env": Row(RENV + "test_seed_counter_actor_reads_its_env_var", refused={"conda": "x"}),
    "label_selector": Row(PLACE + "test_actor_label_selector_restricts_placement"),
    "enable_task_events": Row(_NOT_USED_ACTOR),
    "placement_group": Row(PGS),
    "placement_group_bundle_index": Row(PGS),
    "placement_group_capture_child_tasks": Row(PGS),
    "fallback_strategy": Row(_NOT_USED_ACTOR, refused=[{"label_selector": {"a": "b"}}]),
    "object_store_memory": Row(_NOT_USED_ACTOR, refused=2**20),
    "allow_out_of_order_execution": Row(_NOT_USED_ACTOR, refused=True),
}

_METHODS = OPT + "test_actor_method_max_task_retries_and_num_returns"
ACTOR_METHOD_ROWS: dict[str, Row] = {
    "num_returns": Row(GENERATORS + "test_actor_method_dynamic_returns"),
    "max_task_retries": Row(_METHODS),
    "concurrency_group": Row(ACTORS + "test_concurrency_groups"),
    "retry_exceptions": Row(ACTORS + "test_actor_call_retried_after_an_application_error"),
    "name": Row(_METHODS, refused="call"),
}

_INIT = OPT + "test_init_keywords_take_effect"
JOBS = "tests/integration/test_jobs_api.py::"
INIT_ROWS: dict[str, Row] = {
    "address": Row(ACTORS + "test_detached_named_actor_outlives_its_driver"),
    "num_cpus": Row(_INIT),
    "num_gpus": Row(_INIT),
    "resources": Row(_INIT),
    "object_store_memory": Row(_INIT),
    "labels": Row("tests/integration/test_bad_input.py::test_init_labels_reach_the_node"),
    "namespace": Row(_INIT),
    "ignore_reinit_error": Row(OPT + "test_init_twice"),
    "log_to_driver": Row("tests/integration/test_processes.py::test_log_to_driver_false"),
    "include_dashboard": Row(JOBS + "test_init_dashboard_options"),
    "dashboard_host": Row(JOBS + "test_init_dashboard_options"),
    "dashboard_port": Row(JOBS + "test_init_dashboard_options"),
    "runtime_env": Row(RENV + "test_env_vars_on_tasks_merge_over_the_job", refused={"conda": "x"}),
    "logging_level": Row(_INIT),
    "_temp_dir": Row(_INIT),
    "_node_ip_address": Row(_INIT),
    "_metrics_export_port": Row(
        "tests/integration/test_agent.py::test_init_starts_an_agent_registered_with_the_gcs"
    ),
    "job_config": Row(
        "tests/integration/test_api_semantics.py::test_job_config_sets_the_namespace",
        refused=JobConfig(metadata={"team": "a"}),
    ),
    **{key: Row(None, refused=object()) for key in options.INIT_NOT_YET},
}

TABLES: list[tuple[str, Mapping[str, options.Option], dict[str, Row]]] = [
    ("task", options.TASK_OPTIONS, TASK_ROWS),
    ("actor", options.ACTOR_OPTIONS, ACTOR_ROWS),
    ("actor method", options.ACTOR_METHOD_OPTIONS, ACTOR_METHOD_ROWS),
]


def _init_keywords() -> set[str]:
    params = inspect.signature(api.init).parameters.values()
    named = {p.name for p in params if p.kind is not inspect.Parameter.VAR_KEYWORD}
    return named | set(options.INIT_NOT_YET)


def test_every_accepted_keyword_has_a_row() -> None:
    for kind, accepted, rows in TABLES:
        assert set(rows) == set(accepted), (
            f"{kind} options without a row here: {sorted(set(accepted) - set(rows))}; rows for "
            f"options that are not accepted: {sorted(set(rows) - set(accepted))}"
        )
    assert set(INIT_ROWS) == _init_keywords(), (
        f"init() keywords without a row: {sorted(_init_keywords() - set(INIT_ROWS))}; rows for "
        f"keywords init() does not take: {sorted(set(INIT_ROWS) - _init_keywords())}"
    )


def _test_functions(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    return {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}


def _all_rows() -> list[Any]:
    out = [(kind, key, row) for kind, _, rows in TABLES for key, row in rows.items()]
    out += [("init", key, row) for key, row in INIT_ROWS.items()]
    return [pytest.param(*r, id=f"{r[0]}:{r[1]}") for r in out]


@pytest.mark.parametrize(("kind", "key", "row"), _all_rows())
def test_each_row_names_a_test_that_exists(kind: str, key: str, row: Row) -> None:
    if row.test is None:
        assert row.refused is not _NONE, f"{kind} {key}: a row needs a test or a refused value"
        return
    path, _, name = row.test.partition("::")
    assert name and (ROOT / path).is_file(), f"{kind} {key}: no test file {path}"
    assert name.split("[")[0] in _test_functions(ROOT / path), f"{kind} {key}: no {row.test}"


def _refuse(kind: str, key: str, value: Any) -> Callable[[], Any]:
    def f() -> None: ...

    class C: ...

    if kind == "task":
        return lambda: rayops.remote(**{key: value})(f)
    if kind == "actor":
        return lambda: rayops.remote(**{key: value})(C)
    if kind == "actor method":
        return lambda: rayops.method(**{key: value})
    return lambda: rayops.init(**{key: value}, _temp_dir="/nonexistent/rayops-option-table")


@pytest.mark.parametrize(("kind", "key", "row"), _all_rows())
def test_refused_values_raise_at_once_saying_when(kind: str, key: str, row: Row) -> None:
    spec = dict(TABLES_BY_KIND.get(kind, {})).get(key)
    if row.refused is _NONE:
        assert spec is None or spec.not_yet is None, (
            f"{kind} {key} refuses some values: give its row one (refused=...)"
        )
        return
    with pytest.raises(NotImplementedError) as info:
        _refuse(kind, key, row.refused)()
    message = str(info.value)
    assert key in message, f"the refusal does not name {key}: {message}"
    assert "rayops issue" in message or "not planned" in message or "out of scope" in message, (
        f"the refusal of {kind} {key} does not say when it comes: {message}"
    )
    assert not rayops.is_initialized()


TABLES_BY_KIND = {kind: accepted for kind, accepted, _ in TABLES}
