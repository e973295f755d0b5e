"""``rayops list|get|summary|memory|timeline``: Ray's state CLI against the head's API server.

The address is ``--address http://HOST:PORT``, else ``RAYOPS_API_SERVER_ADDRESS`` (or
``RAYOPS_ADDRESS`` when it is an http URL), else the head running on this machine; the token
is ``RAYOPS_TOKEN_FILE``, else that head's token file (as ``rayops job``). Output follows
``ray list``/``ray summary``/``ray memory``: ``--format default`` (a header, stats, a table),
``table``, ``json`` or ``yaml``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["HANDLERS", "StateCommandError", "register"]

Handler = Callable[[argparse.Namespace], int]
LIST_RESOURCES = ("actors", "jobs", "placement-groups", "nodes", "workers", "tasks", "objects")
FORMATS = ("default", "json", "yaml", "table")


class StateCommandError(ValueError):
    """A state command failed: one line for the user, no traceback."""


def _filter(text: str) -> tuple[str, str, str]:
    """``key=value`` or ``key!=value`` (Ray's --filter)."""
    for pred in ("!=", "="):
        key, sep, value = text.partition(pred)
        if sep and key.strip():
            return (key.strip(), pred, value.strip())
    raise argparse.ArgumentTypeError(
        f"--filter must look like key=value or key!=value, got {text!r}"
    )


def _positive(text: str) -> int:
    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {n}")
    return n


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the state commands to the main parser's subparsers."""

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--address",
            help="the head's API server, http://HOST:PORT (default: RAYOPS_API_SERVER_ADDRESS, "
            "else the head running on this machine)",
        )
        p.add_argument("--timeout", type=_positive, default=30, help="seconds (default 30)")

    p = sub.add_parser("list", help="list actors, jobs, nodes, tasks, objects, ... (Ray's)")
    p.add_argument("resource", choices=LIST_RESOURCES)
    common(p)
    p.add_argument(
        "-f",
        "--filter",
        action="append",
        type=_filter,
        default=[],
        help='"key=value" or "key!=value"; repeat to AND them',
    )
    p.add_argument("--limit", type=_positive, default=100, help="at most this many (default 100)")
    p.add_argument("--detail", action="store_true", help="every column")
    p.add_argument("--format", choices=FORMATS, default="default")

    g = sub.add_parser("get", help="one resource by id (Ray's `ray get`)")
    g.add_argument("resource", choices=LIST_RESOURCES)
    g.add_argument("id")
    common(g)

    s = sub.add_parser("summary", help="tasks, actors or objects, summarized")
    s.add_argument("resource", choices=("tasks", "actors", "objects"))
    common(s)
    s.add_argument("--format", choices=FORMATS, default="default")

    m = sub.add_parser("memory", help="object references across the cluster (Ray's `ray memory`)")
    common(m)
    m.add_argument("--group-by", choices=("NODE_ADDRESS", "STACK_TRACE"), default="NODE_ADDRESS")
    m.add_argument(
        "--sort-by", choices=("PID", "OBJECT_SIZE", "REFERENCE_TYPE"), default="OBJECT_SIZE"
    )
    m.add_argument("--units", choices=("B", "KB", "MB", "GB"), default="B")
    m.add_argument("--stats-only", action="store_true", help="only the aggregate stats")
    m.add_argument("--num-entries", type=_positive, help="at most this many rows per group")

    t = sub.add_parser("timeline", help="a Chrome trace (chrome://tracing) of tasks")
    t.add_argument("--address", help="the head's API server, http://HOST:PORT")
    t.add_argument("--output", help="the file to write (default /tmp/rayops-timeline-<t>.json)")
    t.add_argument("--job-id", help="only this job's tasks (hex, e.g. 01000000)")


def _client(args: argparse.Namespace) -> Any:
    from rayops.dashboard.state_client import StateApiClient

    return StateApiClient(args.address)


def _resource(name: str) -> str:
    return name.replace("-", "_")


# ------------------------------------------------------------------ rendering
def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, dict):
        return ", ".join(f"{k}: {v}" for k, v in value.items())
    if isinstance(value, list):
        return json.dumps(value)
    return str(value)


def render_table(rows: Sequence[dict[str, Any]]) -> str:
    """Rows as an aligned table with upper-case headers and an index column (as Ray's)."""
    if not rows:
        return ""
    cols = list(rows[0])
    cells = [[str(i)] + [_cell(r.get(c)) for c in cols] for i, r in enumerate(rows)]
    head = [""] + [c.upper() for c in cols]
    widths = [max(len(x) for x in col) for col in zip(head, *cells, strict=True)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(head, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
    return "\n".join(lines)


def _yaml(data: Any) -> str:
    import yaml

    return yaml.safe_dump(data, sort_keys=False, default_flow_style=False).rstrip()


def _render(rows: list[dict[str, Any]], fmt: str, title: str) -> str:
    rows = [dict(r) for r in rows]  # plain dicts (yaml refuses subclasses)
    if fmt == "json":
        return json.dumps(rows, indent=4)
    if fmt == "yaml":
        return _yaml(rows)
    if fmt == "table":
        return render_table(rows)
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    rule = "-" * 30
    return (
        f"\n======== {title}: {stamp} ========\nStats:\n{rule}\nTotal: {len(rows)}\n\n"
        f"Table:\n{rule}\n{render_table(rows)}\n"
    )


# ------------------------------------------------------------------ commands
def cmd_list(args: argparse.Namespace) -> int:
    import warnings

    client = _client(args)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        rows = client.list(
            _resource(args.resource),
            filters=args.filter,
            limit=args.limit,
            timeout=args.timeout,
            detail=args.detail,
        )
    print(_render(rows, args.format, f"List: {args.resource}"))
    for w in caught:
        print(f"rayops list: warning: {w.message}", file=sys.stderr)
    return 0


_GET = {
    "actors": "get_actor",
    "tasks": "get_task",
    "nodes": "get_node",
    "jobs": "get_job",
    "placement-groups": "get_placement_group",
    "workers": "get_worker",
    "objects": "get_objects",
}


def cmd_get(args: argparse.Namespace) -> int:
    from rayops.util import state

    found = getattr(state, _GET[args.resource])(args.id, address=args.address, timeout=args.timeout)
    if not found:
        raise StateCommandError(f"no {args.resource[:-1]} with id {args.id!r}")
    print(_yaml([dict(r) for r in found] if isinstance(found, list) else dict(found)))
    return 0


def cmd_summary(args: argparse.Namespace) -> int:
    summary = _client(args).summary(args.resource, timeout=args.timeout)["cluster"]
    if args.format == "json":
        print(json.dumps(summary, indent=4))
        return 0
    if args.format == "yaml":
        print(_yaml(summary))
        return 0
    groups = summary["summary"]
    stats = {k: v for k, v in summary.items() if k != "summary"}
    rows = []
    for g in groups.values():
        row = {}
        for k, v in g.items():
            row[k] = "\n".join(f"{a}: {b}" for a, b in v.items()) if isinstance(v, dict) else v
        rows.append(
            {k: (v.replace("\n", ", ") if isinstance(v, str) else v) for k, v in row.items()}
        )
    if args.format == "table":
        print(render_table(rows))
        return 0
    rule = "-" * 36
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    title = args.resource.capitalize()
    print(f"\n======== {title} Summary: {stamp} ========\nStats:\n{rule}")
    for k, v in stats.items():
        print(f"{k}: {v}")
    by = stats.get("summary_by", "")
    print(f"\n\nTable{f' (group by {by})' if by else ''}:\n{rule}\n{render_table(rows)}\n")
    return 0


_UNITS = {"B": 1, "KB": 1024, "MB": 1024**2, "GB": 1024**3}


def cmd_memory(args: argparse.Namespace) -> int:
    rows = _client(args).list("objects", limit=10_000, timeout=args.timeout, detail=True)
    unit = _UNITS[args.units]

    def size(r: dict[str, Any]) -> str:
        s = r.get("object_size")
        return "?" if s is None else f"{s / unit:g} {args.units}"

    key: Callable[[dict[str, Any]], Any] = {
        "PID": lambda r: r.get("pid") or 0,
        "OBJECT_SIZE": lambda r: -(r.get("object_size") or -1),
        "REFERENCE_TYPE": lambda r: r.get("reference_type") or "",
    }[args.sort_by]
    groups: dict[str, list[dict[str, Any]]] = {}
    for r in rows:
        g = r.get("ip") if args.group_by == "NODE_ADDRESS" else r.get("call_site")
        groups.setdefault(str(g), []).append(r)
    out = []
    if not args.stats_only:
        out.append("=" * 20 + " Object references " + "=" * 20)
        for name, members in groups.items():
            members.sort(key=key)
            if args.num_entries:
                members = members[: args.num_entries]
            out.append(f"--- Summary for {args.group_by.lower()}: {name} ---")
            out.append(
                render_table(
                    [
                        {
                            "ip_address": r.get("ip"),
                            "pid": r.get("pid"),
                            "type": r.get("type"),
                            "call_site": r.get("call_site"),
                            "status": r.get("task_status"),
                            "size": size(r),
                            "reference_type": r.get("reference_type"),
                            "object_ref": r.get("object_id"),
                        }
                        for r in members
                    ]
                )
            )
            out.append("")
    objects = {r["object_id"]: r for r in rows}
    total = sum((r.get("object_size") or 0) for r in objects.values())
    in_mem = sum((r.get("object_size") or 0) for r in objects.values() if r.get("in_memory"))
    spilled = sum((r.get("object_size") or 0) for r in objects.values() if r.get("spilled"))
    out.append("--- Aggregate object store stats across all nodes ---")
    out.append(f"Objects referenced: {len(objects)} ({len(rows)} references)")
    out.append(f"Known size of referenced objects: {total / unit:g} {args.units}")
    out.append(
        f"In shared memory: {in_mem / unit:g} {args.units}; spilled: {spilled / unit:g} "
        f"{args.units}"
    )
    print("\n".join(out))
    return 0


def cmd_timeline(args: argparse.Namespace) -> int:
    events = _client(args).timeline(args.job_id)
    path = args.output or f"/tmp/rayops-timeline-{time.strftime('%Y-%m-%d_%H-%M-%S')}.json"
    try:
        with open(path, "w") as f:
            json.dump(events, f)
    except OSError as err:
        raise StateCommandError(f"could not write the timeline to {path}: {err}") from err
    print(
        f"Trace file written to {path} ({len(events)} events); open it in chrome://tracing "
        "or https://ui.perfetto.dev"
    )
    return 0


def _wrap(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        from rayops.dashboard.state_client import RayStateApiException

        try:
            return handler(args)
        except RayStateApiException as err:
            raise StateCommandError(str(err)) from err

    return run


HANDLERS: dict[str, Handler] = {
    "list": _wrap(cmd_list),
    "get": _wrap(cmd_get),
    "summary": _wrap(cmd_summary),
    "memory": _wrap(cmd_memory),
    "timeline": _wrap(cmd_timeline),
}
