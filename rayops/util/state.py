"""Ray's ``ray.util.state``: list, get and summarize what a cluster holds.

Each call asks the head's API server (``/api/v0/...``; address and token found as for
``rayops.job_submission``). ``filters`` are Ray's ``[("key", "=" or "!=", value)]``; an
unknown key or predicate is refused naming it. Rows are ``StateRecord``s (dicts whose keys
read as attributes too) with Ray's column names; ``detail=True`` adds the detail columns.
``_explain=True`` prints the request and how long it took.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from rayops.dashboard import state_client as _client
from rayops.dashboard.state_client import RayStateApiException, StateRecord
from rayops.dashboard.state_query import DEFAULT_LIMIT, DEFAULT_TIMEOUT_S
from rayops.util.state_logs import get_log, list_logs

__all__ = [
    "RayStateApiException",
    "StateRecord",
    "get_actor",
    "get_job",
    "get_log",
    "get_node",
    "get_objects",
    "get_placement_group",
    "get_task",
    "get_worker",
    "list_actors",
    "list_jobs",
    "list_logs",
    "list_nodes",
    "list_objects",
    "list_placement_groups",
    "list_tasks",
    "list_workers",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
]

R = TypeVar("R")
Filters = list[tuple[str, str, Any]] | None


def _explained(what: str, explain: bool, call: Callable[[], R]) -> R:
    start = time.monotonic()
    out = call()
    if explain:
        print(f"rayops.util.state: {what} took {(time.monotonic() - start) * 1000:.1f} ms")
    return out


def _list(
    resource: str,
    address: str | None,
    filters: Filters,
    limit: int,
    timeout: int,
    detail: bool,
    raise_on_missing_output: bool,
    explain: bool,
    exclude_driver: bool = True,
) -> list[StateRecord]:
    client = _client.StateApiClient(address)
    return _explained(
        f"GET {client.address}/api/v0/{resource}",
        explain,
        lambda: client.list(
            resource,
            filters=filters,
            limit=limit,
            timeout=timeout,
            detail=detail,
            exclude_driver=exclude_driver,
            raise_on_missing_output=raise_on_missing_output,
        ),
    )


def list_actors(
    address: str | None = None,
    filters: Filters = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_TIMEOUT_S,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[StateRecord]:
    """Actors of the cluster, alive and dead."""
    return _list(
        "actors", address, filters, limit, timeout, detail, raise_on_missing_output, _explain
    )


def list_tasks(
    address: str | None = None,
    filters: Filters = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_TIMEOUT_S,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[StateRecord]:
    """Task attempts (newest first), from the GCS's task events; drivers excluded."""
    return _list(
        "tasks", address, filters, limit, timeout, detail, raise_on_missing_output, _explain
    )


def list_nodes(
    address: str | None = None,
    filters: Filters = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_TIMEOUT_S,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[StateRecord]:
    """Nodes, alive and dead."""
    return _list(
        "nodes", address, filters, limit, timeout, detail, raise_on_missing_output, _explain
    )


def list_objects(
    address: str | None = None,
    filters: Filters = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_TIMEOUT_S,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[StateRecord]:
    """Object references held by the cluster's drivers and workers (one row per holder)."""
    return _list(
        "objects", address, filters, limit, timeout, detail, raise_on_missing_output, _explain
    )


def list_jobs(
    address: str | None = None,
    filters: Filters = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_TIMEOUT_S,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[StateRecord]:
    """Jobs: submitted ones (the Jobs API) and drivers."""
    return _list(
        "jobs", address, filters, limit, timeout, detail, raise_on_missing_output, _explain
    )


def list_placement_groups(
    address: str | None = None,
    filters: Filters = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_TIMEOUT_S,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[StateRecord]:
    """Placement groups."""
    return _list(
        "placement_groups",
        address,
        filters,
        limit,
        timeout,
        detail,
        raise_on_missing_output,
        _explain,
    )


def list_workers(
    address: str | None = None,
    filters: Filters = None,
    limit: int = DEFAULT_LIMIT,
    timeout: int = DEFAULT_TIMEOUT_S,
    detail: bool = False,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> list[StateRecord]:
    """Worker processes and drivers of every alive node."""
    return _list(
        "workers", address, filters, limit, timeout, detail, raise_on_missing_output, _explain
    )


# ------------------------------------------------------------------------ get
def _get_rows(
    resource: str,
    key: str,
    id: str,
    address: str | None,
    timeout: int,
    explain: bool,
    exclude_driver: bool = True,
) -> list[StateRecord]:
    return _list(
        resource,
        address,
        [(key, "=", id)],
        DEFAULT_LIMIT,
        timeout,
        True,
        True,
        explain,
        exclude_driver,
    )


def _one(rows: list[StateRecord]) -> StateRecord | None:
    return rows[0] if rows else None


def get_actor(
    id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT_S, _explain: bool = False
) -> StateRecord | None:
    """The actor with this id (hex), or None."""
    return _one(_get_rows("actors", "actor_id", id, address, timeout, _explain))


def get_task(
    id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT_S, _explain: bool = False
) -> StateRecord | None:
    """The task with this id (hex): its latest attempt, or None."""
    rows = _get_rows("tasks", "task_id", id, address, timeout, _explain, exclude_driver=False)
    return max(rows, key=lambda r: r["attempt_number"]) if rows else None


def get_node(
    id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT_S, _explain: bool = False
) -> StateRecord | None:
    """The node with this id, or None."""
    return _one(_get_rows("nodes", "node_id", id, address, timeout, _explain))


def get_job(
    id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT_S, _explain: bool = False
) -> StateRecord | None:
    """The job with this job id or submission id, or None."""
    rows = _get_rows("jobs", "job_id", id, address, timeout, _explain)
    return _one(rows or _get_rows("jobs", "submission_id", id, address, timeout, _explain))


def get_placement_group(
    id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT_S, _explain: bool = False
) -> StateRecord | None:
    """The placement group with this id (hex), or None."""
    return _one(_get_rows("placement_groups", "placement_group_id", id, address, timeout, _explain))


def get_worker(
    id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT_S, _explain: bool = False
) -> StateRecord | None:
    """The worker (or driver) with this id (hex), or None."""
    return _one(_get_rows("workers", "worker_id", id, address, timeout, _explain))


def get_objects(
    id: str, address: str | None = None, timeout: int = DEFAULT_TIMEOUT_S, _explain: bool = False
) -> list[StateRecord]:
    """Every reference to the object with this id (hex): one per process holding it."""
    return _get_rows("objects", "object_id", id, address, timeout, _explain)


# ------------------------------------------------------------------ summaries
def _summary(
    resource: str, address: str | None, timeout: int, raise_on_missing_output: bool, explain: bool
) -> dict[str, Any]:
    client = _client.StateApiClient(address)
    return _explained(
        f"GET {client.address}/api/v0/{resource}/summarize",
        explain,
        lambda: client.summary(
            resource, timeout=timeout, raise_on_missing_output=raise_on_missing_output
        ),
    )


def summarize_tasks(
    address: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_S,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """``{"cluster": TaskSummaries}``: tasks by function or class name and state."""
    return _summary("tasks", address, timeout, raise_on_missing_output, _explain)


def summarize_actors(
    address: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_S,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """``{"cluster": ActorSummaries}``: actors by class and state."""
    return _summary("actors", address, timeout, raise_on_missing_output, _explain)


def summarize_objects(
    address: str | None = None,
    timeout: int = DEFAULT_TIMEOUT_S,
    raise_on_missing_output: bool = True,
    _explain: bool = False,
) -> dict[str, Any]:
    """``{"cluster": ObjectSummaries}``: references by call site, state and type."""
    return _summary("objects", address, timeout, raise_on_missing_output, _explain)
