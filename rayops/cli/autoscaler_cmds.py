"""The autoscaler's ``rayops`` subcommands and views: ``monitor CONFIG`` (tail the head's
``monitor.log`` over SSH, as Ray's ``ray monitor``) and the autoscaler section of
``rayops status`` (pending launches and failures with their cause and retry time).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from rayops.protocol.autoscaler_messages import AUTOSCALER_NAMESPACE as NAMESPACE
from rayops.protocol.autoscaler_messages import STATUS_KEY, AutoscalerStatus

__all__ = ["HANDLERS", "NAMESPACE", "STATUS_KEY", "AutoscalerStatus", "register", "render_status"]

Handler = Callable[[argparse.Namespace], int]


def _shape(shape: dict[str, float]) -> str:
    return "{" + ", ".join(f"{k}: {v:g}" for k, v in sorted(shape.items())) + "}"


def _ago(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 120 else f"{seconds / 60:.0f} min"


def render_status(st: AutoscalerStatus, now: float | None = None) -> str:
    """The autoscaler's part of ``rayops status``."""
    now = time.time() if now is None else now
    lines = [
        "Autoscaler",
        "-" * 60,
        f"Provider: {st.provider or '?'}; last round {_ago(max(0.0, now - st.time))} ago; "
        f"{st.running} worker(s) it launched are running",
        f"Launched {st.started_nodes}, stopped {st.stopped_nodes}, "
        f"failed to create {st.failed_create_nodes} (since the cluster started)",
        "Pending launches:",
    ]
    if not st.pending:
        lines.append("  (none)")
    for p in st.pending:
        where = f" at {p.address}" if p.address else ""
        lines.append(
            f"  {p.instance_id}  {p.node_type}{where}: {p.state} for {_ago(now - p.since)}"
        )
    if st.failures:
        lines.append("Recent failures:")
    for f in st.failures[:10]:
        where = f" ({f.address})" if f.address else ""
        if f.retry_at is None:
            retry = "not retried"
        elif f.retry_at > now:
            retry = f"retry in {_ago(f.retry_at - now)}"
        else:
            retry = "retried"
        lines.append(
            f"  {_ago(now - f.time)} ago  {f.instance_id} {f.node_type}{where}: {f.cause} [{retry}]"
        )
    if st.infeasible:
        lines.append("Infeasible (no node type can hold these):")
        lines += [f"  {_shape(dict(s))}" for s in st.infeasible]
    return "\n".join(lines)


def cmd_monitor(args: argparse.Namespace) -> int:
    """Tail the autoscaler's log on the head (``<temp_dir>/session_latest/logs``)."""
    from rayops.cli.launcher_cmds import _cluster, _user_errors
    from rayops.launcher.operate import run_exec
    from rayops.launcher.record import shell_path

    @_user_errors
    def run(args: argparse.Namespace) -> int:
        with _cluster(args) as cluster:
            log = f"{shell_path(cluster.spec.temp_dir)}/session_latest/logs/monitor.log"
            return run_exec(cluster, f"tail -n {int(args.lines)} -F {log}", "head")

    code: int = run(args)
    return code


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser("monitor", help="follow the autoscaler's log on the head (monitor.log)")
    p.add_argument("config", metavar="CONFIG", help="the cluster YAML")
    p.add_argument(
        "--lines", type=int, default=100, help="lines of the log to show first (default 100)"
    )


HANDLERS: dict[str, Handler] = {"monitor": cmd_monitor}
