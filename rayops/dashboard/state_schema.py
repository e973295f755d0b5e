"""The state API's resources and their columns (Ray's ``ray.util.state.common`` schemas).

For each resource: its columns in Ray's order, which are shown only with ``detail``, which
may be filtered on, and each column's type (filter values are converted to it, as Ray
does). Pure data and two small functions; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["RESOURCES", "Column", "Resource", "resource"]


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    type: type = str
    detail: bool = False  # shown only with detail=True
    filterable: bool = False


@dataclass(frozen=True, slots=True)
class Resource:
    name: str  # the path segment: /api/v0/<name>
    id_column: str  # what `rayops get <resource> <id>` matches
    columns: tuple[Column, ...]

    @property
    def filterable(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns if c.filterable)

    def column(self, name: str) -> Column | None:
        return next((c for c in self.columns if c.name == name), None)

    def project(self, row: dict[str, Any], detail: bool) -> dict[str, Any]:
        """The row with the columns shown at this detail level, in schema order."""
        return {c.name: row.get(c.name) for c in self.columns if detail or not c.detail}


def _c(name: str, typ: type = str, *, d: bool = False, f: bool = False) -> Column:
    return Column(name, typ, d, f)


RESOURCES: dict[str, Resource] = {
    r.name: r
    for r in (
        Resource(
            "nodes",
            "node_id",
            (
                _c("node_id", f=True),
                _c("node_ip", f=True),
                _c("is_head_node", bool, f=True),
                _c("state", f=True),
                _c("state_message", f=True),
                _c("node_name", f=True),
                _c("resources_total", dict),
                _c("labels", dict),
                _c("start_time_ms", int, d=True, f=True),
                _c("end_time_ms", int, d=True, f=True),
            ),
        ),
        Resource(
            "actors",
            "actor_id",
            (
                _c("actor_id", f=True),
                _c("class_name", f=True),
                _c("state", f=True),
                _c("job_id", f=True),
                _c("name", f=True),
                _c("node_id", f=True),
                _c("pid", int, f=True),
                _c("ray_namespace", f=True),
                _c("serialized_runtime_env", d=True),
                _c("required_resources", dict, d=True),
                _c("death_cause", dict, d=True),
                _c("is_detached", bool, d=True),
                _c("placement_group_id", f=True),
                _c("repr_name", f=True),
                _c("num_restarts", int, d=True, f=True),
                _c("address", dict, d=True),
            ),
        ),
        Resource(
            "tasks",
            "task_id",
            (
                _c("task_id", f=True),
                _c("attempt_number", int, f=True),
                _c("name", f=True),
                _c("state", f=True),
                _c("job_id", f=True),
                _c("actor_id", f=True),
                _c("type", f=True),
                _c("func_or_class_name", f=True),
                _c("parent_task_id", f=True),
                _c("node_id", f=True),
                _c("worker_id", f=True),
                _c("worker_pid", int, f=True),
                _c("error_type", f=True),
                _c("language", d=True),
                _c("required_resources", dict, d=True),
                _c("placement_group_id", d=True),
                _c("events", list, d=True),
                _c("creation_time_ms", int, d=True),
                _c("start_time_ms", int, d=True),
                _c("end_time_ms", int, d=True),
                _c("error_message", d=True),
            ),
        ),
        Resource(
            "objects",
            "object_id",
            (
                _c("object_id", f=True),
                _c("object_size", int, f=True),
                _c("task_status", f=True),
                _c("attempt_number", int, f=True),
                _c("reference_type", f=True),
                _c("call_site", f=True),
                _c("type", f=True),
                _c("pid", int, f=True),
                _c("ip", f=True),
                _c("node_id", d=True, f=True),
                _c("worker_id", d=True, f=True),
                _c("in_memory", bool, d=True),
                _c("spilled", bool, d=True),
            ),
        ),
        Resource(
            "jobs",
            "job_id",
            (
                _c("job_id", f=True),
                _c("submission_id", f=True),
                _c("type", f=True),
                _c("status", f=True),
                _c("entrypoint", f=True),
                _c("message", f=True),
                _c("error_type", f=True),
                _c("start_time", int, f=True),
                _c("end_time", int, f=True),
                _c("metadata", dict),
                _c("runtime_env", dict),
                _c("driver_info", dict),
                _c("driver_node_id", f=True),
                _c("driver_exit_code", int),
            ),
        ),
        Resource(
            "placement_groups",
            "placement_group_id",
            (
                _c("placement_group_id", f=True),
                _c("name", f=True),
                _c("creator_job_id", f=True),
                _c("state", f=True),
                _c("bundles", list, d=True),
                _c("is_detached", bool, d=True, f=True),
                _c("stats", dict, d=True),
            ),
        ),
        Resource(
            "workers",
            "worker_id",
            (
                _c("worker_id", f=True),
                _c("is_alive", bool, f=True),
                _c("worker_type", f=True),
                _c("exit_type", f=True),
                _c("node_id", f=True),
                _c("ip", f=True),
                _c("pid", int, f=True),
                _c("exit_detail", d=True),
                _c("job_id", d=True, f=True),
                _c("port", int, d=True),
                _c("log_path", d=True),
            ),
        ),
    )
}


def resource(name: str) -> Resource:
    """The resource called ``name`` (``placement-groups`` is accepted for the CLI's form)."""
    key = name.replace("-", "_")
    found = RESOURCES.get(key)
    if found is None:
        raise ValueError(
            f"unknown resource {name!r}; expected one of: "
            + ", ".join(n.replace("_", "-") for n in RESOURCES)
        )
    return found
