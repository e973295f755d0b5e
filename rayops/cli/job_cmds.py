"""``rayops job submit|status|logs|stop|list|delete``: Ray's ``ray job`` against the head's
API server, through ``rayops.job_submission.JobSubmissionClient``. Parse, call, render.

The address is ``--address http://HOST:PORT``, else ``RAYOPS_API_SERVER_ADDRESS`` (or
``RAYOPS_ADDRESS`` when it is an http URL), else the head running on this machine; the token
comes from ``RAYOPS_TOKEN_FILE`` or the local session. ``submit`` without ``--no-wait``
follows the job's logs and exits 1 if it failed. The entrypoint's words are joined with
``shlex.join`` (Ray joins them with ``list2cmdline``, which does not quote for the shell,
so ``-- python -c "print(1)"`` works here and not there).

``register(subparsers)`` adds the command; ``HANDLERS`` maps it to its handler.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pprint
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

from rayops.cli.arg_types import nonneg

Handler = Callable[[argparse.Namespace], int]
_LINE = "-" * 55


class JobCommandError(Exception):
    """A user-facing failure of ``rayops job``: one message, exit code 1."""


def _json_object(what: str) -> Callable[[str], dict[str, Any]]:
    def parse(text: str) -> dict[str, Any]:
        try:
            value = json.loads(text)
        except json.JSONDecodeError as err:
            raise argparse.ArgumentTypeError(f"{what} is not valid JSON ({err}): {text!r}") from err
        if not isinstance(value, dict):
            raise argparse.ArgumentTypeError(f"{what} must be a JSON object, got {text!r}")
        return value

    return parse


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``rayops job ...`` to the main parser's subparsers."""
    j = sub.add_parser("job", help="submit and manage jobs through the head's Jobs API")
    jsub = j.add_subparsers(dest="job_command", required=True)

    def with_address(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--address",
            help="the head's API server, http://HOST:PORT (default: RAYOPS_API_SERVER_ADDRESS, "
            "else the head running on this machine)",
        )

    s = jsub.add_parser("submit", help="submit a job: rayops job submit [options] -- CMD ...")
    with_address(s)
    s.add_argument("--no-wait", action="store_true", help="do not follow the job's logs")
    s.add_argument("--submission-id", help="the job's id (default: raysubmit_<random>)")
    s.add_argument("--job-id", help=argparse.SUPPRESS)
    s.add_argument(
        "--runtime-env-json", type=_json_object("--runtime-env-json"), help="runtime_env as JSON"
    )
    s.add_argument("--working-dir", help="a local directory uploaded as the job's working_dir")
    s.add_argument("--metadata-json", type=_json_object("--metadata-json"), help="JSON metadata")
    s.add_argument("--entrypoint-num-cpus", type=nonneg(float))
    s.add_argument("--entrypoint-num-gpus", type=nonneg(float))
    s.add_argument("--entrypoint-memory", type=nonneg(int), help="bytes")
    s.add_argument(
        "--entrypoint-resources",
        type=_json_object("--entrypoint-resources"),
        help="custom resources as JSON, e.g. '{\"accel\": 1}'",
    )
    s.add_argument("entrypoint", nargs=argparse.REMAINDER, help="-- the command to run")

    for name, text in (
        ("status", "a job's status"),
        ("delete", "delete a finished job, its record and its logs"),
    ):
        p = jsub.add_parser(name, help=text)
        with_address(p)
        p.add_argument("job_id")
    p = jsub.add_parser("logs", help="a job's logs")
    with_address(p)
    p.add_argument("-f", "--follow", action="store_true", help="follow until the job ends")
    p.add_argument("job_id")
    p = jsub.add_parser("stop", help="stop a job (SIGTERM, SIGKILL after 3 s)")
    with_address(p)
    p.add_argument("--no-wait", action="store_true", help="do not wait for the job to end")
    p.add_argument("job_id")
    p = jsub.add_parser("list", help="all submitted jobs")
    with_address(p)


def _client(args: argparse.Namespace) -> Any:
    from rayops.job_submission import JobSubmissionClient

    return JobSubmissionClient(args.address)


def _entrypoint(words: list[str]) -> str:
    if words and words[0] == "--":
        words = words[1:]
    if not words:
        raise JobCommandError("no entrypoint given: rayops job submit [options] -- CMD ...")
    return words[0] if len(words) == 1 else shlex.join(words)


def _follow(client: Any, job_id: str) -> None:
    async def run() -> None:
        async for chunk in client.tail_job_logs(job_id):
            sys.stdout.write(chunk)
            sys.stdout.flush()

    asyncio.run(run())


def cmd_submit(args: argparse.Namespace) -> int:
    entrypoint = _entrypoint(args.entrypoint)
    runtime_env = dict(args.runtime_env_json or {})
    if args.working_dir:
        runtime_env["working_dir"] = args.working_dir
    client = _client(args)
    print(f"Job submission server address: {client.get_address()}")
    job_id = client.submit_job(
        entrypoint=entrypoint,
        submission_id=args.submission_id or args.job_id,
        runtime_env=runtime_env or None,
        metadata=args.metadata_json,
        entrypoint_num_cpus=args.entrypoint_num_cpus,
        entrypoint_num_gpus=args.entrypoint_num_gpus,
        entrypoint_memory=args.entrypoint_memory,
        entrypoint_resources=args.entrypoint_resources,
    )
    print()
    print(_LINE)
    print(f"Job '{job_id}' submitted successfully")
    print(_LINE)
    print()
    print("Next steps")
    print("  Query the logs of the job:")
    print(f"    rayops job logs {job_id}")
    print("  Query the status of the job:")
    print(f"    rayops job status {job_id}")
    print("  Request the job to be stopped:")
    print(f"    rayops job stop {job_id}")
    print()
    if args.no_wait:
        return 0
    print("Tailing logs until the job exits (disable with --no-wait):")
    sys.stdout.flush()
    _follow(client, job_id)
    info = client.get_job_info(job_id)
    print()
    print(_LINE)
    status = info.status.value
    if status == "SUCCEEDED":
        print(f"Job '{job_id}' succeeded")
    elif status == "STOPPED":
        print(f"Job '{job_id}' was stopped")
    else:
        print(f"Job '{job_id}' failed")
    print(_LINE)
    if status == "FAILED":
        print(f"Status message: {info.message}", file=sys.stderr)
        return 1
    return 0


def cmd_status(args: argparse.Namespace) -> int:
    info = _client(args).get_job_info(args.job_id)
    print(f"Status for job '{args.job_id}': {info.status.value}")
    if info.message:
        print(f"Status message: {info.message}")
    return 0


def cmd_logs(args: argparse.Namespace) -> int:
    client = _client(args)
    if args.follow:
        _follow(client, args.job_id)
    else:
        sys.stdout.write(client.get_job_logs(args.job_id))
    return 0


def cmd_stop(args: argparse.Namespace) -> int:
    client = _client(args)
    print(f"Attempting to stop job '{args.job_id}'")
    if not client.stop_job(args.job_id):
        status = client.get_job_status(args.job_id).value
        print(f"Job '{args.job_id}' has already ended ({status})")
        return 0
    if args.no_wait:
        return 0
    print(f"Waiting for job '{args.job_id}' to exit (disable with --no-wait):")
    while True:
        status = client.get_job_status(args.job_id)
        if status.is_terminal():
            break
        time.sleep(0.2)
    print(
        f"Job '{args.job_id}' was stopped"
        if status.value == "STOPPED"
        else f"Job '{args.job_id}' ended: {status.value}"
    )
    return 0


def cmd_list(args: argparse.Namespace) -> int:
    jobs = _client(args).list_jobs()
    print("Jobs:")
    pprint.pprint([j.dict() for j in jobs], sort_dicts=False)
    return 0


def cmd_delete(args: argparse.Namespace) -> int:
    _client(args).delete_job(args.job_id)
    print(f"Job '{args.job_id}' deleted successfully")
    return 0


JOB_HANDLERS: dict[str, Handler] = {
    "submit": cmd_submit,
    "status": cmd_status,
    "logs": cmd_logs,
    "stop": cmd_stop,
    "list": cmd_list,
    "delete": cmd_delete,
}


def cmd_job(args: argparse.Namespace) -> int:
    try:
        return JOB_HANDLERS[args.job_command](args)
    except (RuntimeError, NotImplementedError, TypeError) as err:
        raise JobCommandError(str(err)) from err


HANDLERS: dict[str, Handler] = {"job": cmd_job}
