"""``rayops logs``: any node's logs, in the shape of Ray 2.60's ``ray logs``.

    rayops logs [GLOB]                        list the head's logs (or --node-id/--node-ip's);
                                              one matching file: print it
    rayops logs cluster [GLOB] [--node-id X]  the same
    rayops logs actor --id ACTOR_ID           the actor's worker log
    rayops logs worker --pid PID [--node-id]  a worker's log
    rayops logs job --id SUBMISSION_ID        a submitted job's driver log
    rayops logs task --id TASK_ID             the log of the worker that ran the task

``--tail N`` (default 1000, -1 all), ``--follow/-f``, ``--interval S``, ``--timeout S``,
``--err`` (a rayops worker writes stdout and stderr to one file), ``--encoding``,
``--encoding-errors``, ``--address`` (the API server, as ``rayops job``). Goes through
``rayops.util.state_logs``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator
from typing import Any

__all__ = ["HANDLERS", "register"]

KINDS = ("cluster", "actor", "worker", "task", "job")


class LogCommandError(Exception):
    """A bad ``rayops logs`` invocation or a refused request: one message, exit 1."""


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    p = sub.add_parser(
        "logs",
        help="list or print any node's logs (cluster|actor|worker|job [GLOB] ...)",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("words", nargs="*", metavar="[KIND] [GLOB]", help=f"KIND: {', '.join(KINDS)}")
    p.add_argument("--address", help="the API server, http://HOST:PORT")
    p.add_argument("--node-id", help="the node (default: the head)")
    p.add_argument("--node-ip", help="the node, by address")
    p.add_argument("--id", dest="log_id", help="actor id, job submission id or task id")
    p.add_argument("--pid", type=int, help="a worker's process id (with worker)")
    p.add_argument("--tail", type=int, default=1000, help="last N lines (-1: all)")
    p.add_argument("-f", "--follow", action="store_true", help="keep printing what is appended")
    p.add_argument("--interval", type=float, help="how often to look for more, seconds")
    p.add_argument("--timeout", type=int, default=30, help="seconds")
    p.add_argument("--err", action="store_true", help="stderr (same file as stdout in rayops)")
    p.add_argument("--attempt-number", type=int, default=0, help="task attempt (tasks only)")
    p.add_argument("--encoding", default="utf-8")
    p.add_argument("--encoding-errors", default="strict")


def _print(chunks: Iterator[str]) -> None:
    for chunk in chunks:
        sys.stdout.write(chunk)
        sys.stdout.flush()


def _common(args: argparse.Namespace) -> dict[str, Any]:
    if args.tail < -1:
        raise LogCommandError(f"--tail must be -1 (all) or a number of lines, got {args.tail}")
    return {
        "address": args.address,
        "node_id": args.node_id,
        "node_ip": args.node_ip,
        "follow": args.follow,
        "tail": args.tail,
        "timeout": args.timeout,
        "encoding": args.encoding,
        "errors": args.encoding_errors,
        "_interval": args.interval,
    }


def _cluster(args: argparse.Namespace, glob: str | None) -> int:
    from rayops.util import state_logs

    if glob and not any(c in glob for c in "*?["):
        # One file named: print it (as ray logs does when exactly one file matches).
        return _file(args, filename=glob)
    logs = state_logs.list_logs(
        args.address, args.node_id, args.node_ip, glob or "*", timeout=args.timeout
    )
    names = [n for files in logs.values() for n in files]
    if glob and len(names) == 1:
        return _file(args, filename=names[0])
    where = args.node_id or args.node_ip or "the head node"
    if not names:
        print(f"No log file on {where} matches {glob or '*'}")
        return 1 if glob else 0
    print(f"Logs of {where}:")
    for category in sorted(logs):
        print(f"[{category}]")
        for name in logs[category]:
            print(f"  {name}")
    return 0


def _file(args: argparse.Namespace, **what: Any) -> int:
    from rayops.util import state_logs

    suffix = "err" if args.err else "out"
    _print(state_logs.get_log(**_common(args), suffix=suffix, **what))
    return 0


def _need(args: argparse.Namespace, name: str, kind: str) -> Any:
    value = getattr(args, name)
    if value is None:
        flag = "--id" if name == "log_id" else f"--{name}"
        raise LogCommandError(f"'rayops logs {kind}' needs {flag}")
    return value


# Options that only some kinds use: given with another kind they are refused, not ignored.
_ONLY_FOR = {
    "log_id": ("--id", ("actor", "job", "task")),
    "pid": ("--pid", ("worker",)),
    "err": ("--err", ("actor", "worker")),
    "attempt_number": ("--attempt-number", ("task",)),
}


def _check_flags(args: argparse.Namespace, kind: str) -> None:
    for name, (flag, kinds) in _ONLY_FOR.items():
        if getattr(args, name) not in (None, False, 0) and kind not in kinds:
            raise LogCommandError(
                f"{flag} goes with 'rayops logs {' | '.join(kinds)}', not with {kind!r}"
            )
    if kind in ("actor", "job") and (args.node_id or args.node_ip):
        where = "the GCS actor table says where it runs" if kind == "actor" else "it is the head"
        raise LogCommandError(f"--node-id/--node-ip do not go with {kind!r}: {where}")


def cmd_logs(args: argparse.Namespace) -> int:
    from rayops.util.state_logs import RayStateApiException

    words = list(args.words)
    kind = words.pop(0) if words and words[0] in KINDS else "cluster"
    if len(words) > (1 if kind == "cluster" else 0):
        raise LogCommandError(f"unexpected argument(s) {' '.join(words)} for 'rayops logs {kind}'")
    _check_flags(args, kind)
    try:
        if kind == "cluster":
            return _cluster(args, words[0] if words else None)
        if kind == "actor":
            return _file(args, actor_id=_need(args, "log_id", kind))
        if kind == "worker":
            return _file(args, pid=_need(args, "pid", kind))
        if kind == "job":
            return _file(args, submission_id=_need(args, "log_id", kind))
        return _file(args, task_id=_need(args, "log_id", kind), attempt_number=args.attempt_number)
    except RayStateApiException as err:
        raise LogCommandError(str(err)) from err


def _handle(args: argparse.Namespace) -> int:
    try:
        return cmd_logs(args)
    except LogCommandError as err:
        print(f"rayops logs: error: {err}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


HANDLERS: dict[str, Callable[[argparse.Namespace], int]] = {"logs": _handle}
