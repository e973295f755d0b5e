"""The state API's decisions: options, filters, truncation, summaries and the timeline.

Pure functions over rows (dicts with Ray's column names): what a list request asked for
(``ListOptions.from_query``, Ray's query parameters), which rows it gets (``apply``: filter,
then truncate, then project), the response body (Ray's ``ListApiResponse``), the summaries
(Ray's ``TaskSummaries``, ``ActorSummaries``, ``ObjectSummaries``) and the Chrome trace of
tasks. Bad input raises ``ValueError`` naming the parameter; no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from rayops.dashboard.state_schema import Resource

__all__ = [
    "DEFAULT_LIMIT",
    "DEFAULT_TIMEOUT_S",
    "MAX_LIMIT",
    "ListOptions",
    "apply",
    "list_response",
    "parse_bool",
    "summarize_actors",
    "summarize_objects",
    "summarize_tasks",
    "timeline",
]

DEFAULT_LIMIT = 100  # Ray's DEFAULT_LIMIT
DEFAULT_TIMEOUT_S = 30  # Ray's DEFAULT_RPC_TIMEOUT
MAX_LIMIT = 10_000  # Ray's RAY_MAX_LIMIT_FROM_API_SERVER default
PREDICATES = ("=", "!=")

Filter = tuple[str, str, Any]


def parse_bool(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in ("true", "1", "yes"):
        return True
    if text in ("false", "0", "no"):
        return False
    raise ValueError(f"{name} must be true or false, got {value!r}")


def _parse_int(name: str, value: Any, minimum: int) -> int:
    try:
        n = int(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an integer, got {value!r}") from None
    if n < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {n}")
    return n


@dataclass(frozen=True)
class ListOptions:
    limit: int = DEFAULT_LIMIT
    timeout: int = DEFAULT_TIMEOUT_S
    detail: bool = False
    filters: tuple[Filter, ...] = ()
    exclude_driver: bool = True

    @classmethod
    def from_query(cls, query: Mapping[str, Any], getall: Any = None) -> ListOptions:
        """Ray's query parameters; ``getall(name, default)`` returns every value of a
        repeated one (aiohttp's ``MultiDict.getall``)."""
        known = {
            "limit", "timeout", "detail", "exclude_driver", "filter_keys", "filter_predicates",
            "filter_values", "summary_by",
        }  # fmt: skip
        unknown = sorted(k for k in query if k not in known)
        if unknown:
            raise ValueError(
                f"unknown query parameter {unknown[0]!r}; expected: {', '.join(sorted(known))}"
            )
        limit = _parse_int("limit", query.get("limit", DEFAULT_LIMIT), 1)
        if limit > MAX_LIMIT:
            raise ValueError(f"limit {limit} exceeds the supported limit {MAX_LIMIT}")
        getall = getall or (lambda k, default: [query[k]] if k in query else default)
        keys = list(getall("filter_keys", []))
        preds = list(getall("filter_predicates", []))
        values = list(getall("filter_values", []))
        if not len(keys) == len(preds) == len(values):
            raise ValueError(
                "filter_keys, filter_predicates and filter_values must be given the same number "
                f"of times (got {len(keys)}, {len(preds)}, {len(values)})"
            )
        return cls(
            limit=limit,
            timeout=_parse_int("timeout", query.get("timeout", DEFAULT_TIMEOUT_S), 1),
            detail=parse_bool("detail", query.get("detail", False)),
            filters=tuple(zip(keys, preds, values, strict=True)),
            exclude_driver=parse_bool("exclude_driver", query.get("exclude_driver", True)),
        )

    def to_query(self) -> list[tuple[str, str]]:
        """The same options as query parameters (clients send these)."""
        out = [
            ("limit", str(self.limit)),
            ("timeout", str(self.timeout)),
            ("detail", "true" if self.detail else "false"),
            ("exclude_driver", "true" if self.exclude_driver else "false"),
        ]
        for k, p, v in self.filters:
            out += [("filter_keys", k), ("filter_predicates", p), ("filter_values", str(v))]
        return out


def check_filters(resource: Resource, filters: Iterable[Filter]) -> list[Filter]:
    """Filters with keys known, predicates known and values of the column's type."""
    out: list[Filter] = []
    for key, pred, value in filters:
        col = resource.column(str(key).lower())
        if col is None or not col.filterable:
            raise ValueError(
                f"the filter key {key!r} is not supported for {resource.name}; "
                f"supported filter keys: {', '.join(resource.filterable)}"
            )
        if pred not in PREDICATES:
            raise ValueError(
                f"the filter predicate {pred!r} is not supported; supported predicates: "
                + ", ".join(PREDICATES)
            )
        if isinstance(value, str) and col.type is int:
            try:
                value = int(value)
            except ValueError:
                raise ValueError(f"the filter {key}{pred}{value} needs an integer value") from None
        elif isinstance(value, str) and col.type is bool:
            value = parse_bool(f"the filter {key}{pred}{value}", value)
        out.append((col.name, pred, value))
    return out


def _matches(row: Mapping[str, Any], filters: Sequence[Filter]) -> bool:
    for key, pred, value in filters:
        have = row.get(key)
        if isinstance(have, str) and isinstance(value, str):
            equal = have.lower() == value.lower()  # Ray: strings match case-insensitively
        else:
            equal = have == value
        if equal != (pred == "="):
            return False
    return True


@dataclass
class Listed:
    """Ray's ListApiResponse."""

    total: int
    num_after_truncation: int
    num_filtered: int
    result: list[dict[str, Any]]
    partial_failure_warning: str = ""
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "num_after_truncation": self.num_after_truncation,
            "num_filtered": self.num_filtered,
            "result": self.result,
            "partial_failure_warning": self.partial_failure_warning or None,
            "warnings": self.warnings or None,
        }


def apply(
    resource: Resource,
    rows: Sequence[dict[str, Any]],
    options: ListOptions,
    *,
    total: int | None = None,
    partial_failure_warning: str = "",
    warnings: Sequence[str] = (),
) -> Listed:
    """Filter, truncate to ``limit`` and project ``rows``. ``total`` is how many exist at
    the source (more than ``rows`` when the source truncated already)."""
    filters = check_filters(resource, options.filters)
    if resource.name == "tasks" and options.exclude_driver:
        filters.append(("type", "!=", "DRIVER_TASK"))
    matched = [r for r in rows if _matches(r, filters)] if filters else list(rows)
    kept = matched[: options.limit]
    out_warnings = list(warnings)
    if len(matched) > len(kept):
        out_warnings.append(
            f"{len(matched)} {resource.name} match, {len(kept)} are returned (limit "
            f"{options.limit}); use --limit (at most {MAX_LIMIT}) or filters to see others"
        )
    n_total = max(total if total is not None else len(rows), len(rows))
    return Listed(
        total=n_total,
        num_after_truncation=len(rows),
        num_filtered=len(matched),
        result=[resource.project(r, options.detail) for r in kept],
        partial_failure_warning=partial_failure_warning,
        warnings=out_warnings,
    )


def list_response(result: Any, msg: str = "", ok: bool = True) -> dict[str, Any]:
    """Ray's REST envelope (``rest_response``)."""
    return {"result": ok, "msg": msg, "data": {"result": result}}


# ------------------------------------------------------------------- summaries
def summarize_tasks(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Ray's TaskSummaries by func_or_class_name (drivers excluded)."""
    summary: dict[str, dict[str, Any]] = {}
    total = total_actor = total_scheduled = 0
    for r in rows:
        typ = r.get("type") or "NORMAL_TASK"
        if typ == "DRIVER_TASK":
            continue
        key = r.get("func_or_class_name") or r.get("name") or ""
        s = summary.get(key)
        if s is None:
            s = summary[key] = {"func_or_class_name": key, "type": typ, "state_counts": {}}
        counts = s["state_counts"]
        state = r.get("state") or "NIL"
        counts[state] = counts.get(state, 0) + 1
        if typ == "ACTOR_TASK":
            total_actor += 1
        elif typ == "ACTOR_CREATION_TASK":
            total_scheduled += 1
        else:
            total += 1
    return {
        "summary": summary,
        "total_tasks": total,
        "total_actor_tasks": total_actor,
        "total_actor_scheduled": total_scheduled,
        "summary_by": "func_name",
    }


def summarize_actors(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Ray's ActorSummaries by class_name."""
    summary: dict[str, dict[str, Any]] = {}
    n = 0
    for r in rows:
        key = r.get("class_name") or ""
        s = summary.setdefault(key, {"class_name": key, "state_counts": {}})
        state = r.get("state") or ""
        s["state_counts"][state] = s["state_counts"].get(state, 0) + 1
        n += 1
    return {"summary": summary, "total_actors": n, "summary_by": "class"}


def summarize_objects(rows: Iterable[Mapping[str, Any]]) -> dict[str, Any]:
    """Ray's ObjectSummaries, grouped by call site (``disabled``: call sites are not
    recorded, as in Ray without RAY_record_ref_creation_sites=1)."""
    groups: dict[str, dict[str, Any]] = {}
    ids: set[Any] = set()
    total_bytes = 0
    for r in rows:
        site = r.get("call_site") or "disabled"
        g = groups.get(site)
        if g is None:
            g = groups[site] = {
                "total_objects": 0, "total_size_mb": 0.0, "total_num_workers": 0,
                "total_num_nodes": 0, "task_state_counts": {}, "ref_type_counts": {},
                "_workers": set(), "_nodes": set(), "_ids": set(),
            }  # fmt: skip
        oid = r.get("object_id")
        size = r.get("object_size") or 0
        if oid not in g["_ids"]:
            g["_ids"].add(oid)
            g["total_objects"] += 1
            if size > 0:
                g["total_size_mb"] += size / 1024**2
        if oid not in ids:
            ids.add(oid)
            total_bytes += max(size, 0)
        g["_workers"].add(r.get("pid"))
        g["_nodes"].add(r.get("ip"))
        status = r.get("task_status") or "NIL"
        g["task_state_counts"][status] = g["task_state_counts"].get(status, 0) + 1
        ref = r.get("reference_type") or ""
        g["ref_type_counts"][ref] = g["ref_type_counts"].get(ref, 0) + 1
    for g in groups.values():
        g["total_num_workers"] = len(g.pop("_workers"))
        g["total_num_nodes"] = len(g.pop("_nodes"))
        g.pop("_ids")
    return {
        "summary": groups,
        "total_objects": len(ids),
        "total_size_mb": total_bytes / 1024**2,
        "callsite_enabled": False,
    }


# ------------------------------------------------------------------- timeline
def timeline(rows: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Chrome trace events (``chrome://tracing``, Perfetto): one complete event ("X") per
    task attempt that ran, on a row per node and worker, from RUNNING to its end."""
    out: list[dict[str, Any]] = []
    pids: dict[str, int] = {}
    for r in rows:
        start, end = r.get("start_time_ms"), r.get("end_time_ms")
        if not start or not end or r.get("type") == "DRIVER_TASK":
            continue
        node = r.get("node_id") or ""
        if node not in pids:
            pids[node] = len(pids)
            out.append(
                {"ph": "M", "name": "process_name", "pid": pids[node],
                 "args": {"name": f"Node {node[:12]}"}}
            )  # fmt: skip
        out.append(
            {
                "cat": "task::" + (r.get("func_or_class_name") or r.get("name") or ""),
                "name": r.get("name") or "",
                "ph": "X",
                "pid": pids[node],
                "tid": r.get("worker_pid") or 0,
                "ts": start * 1000,  # microseconds
                "dur": max(end - start, 0) * 1000,
                "args": {
                    "task_id": r.get("task_id"),
                    "attempt_number": r.get("attempt_number"),
                    "job_id": r.get("job_id"),
                    "state": r.get("state"),
                    "worker_id": r.get("worker_id"),
                    "actor_id": r.get("actor_id"),
                },
            }
        )
    return out
