"""The launcher's ``rayops`` subcommands: up, down, exec, submit, attach, rsync-up, rsync-down,
get-head-ip, get-worker-ips, and ``status CONFIG``. Parse, call, render.

``register(subparsers)`` adds them to the main parser; ``HANDLERS`` maps each command name
to its handler. ``status`` stays the runtime's command: ``add_status_config`` gives it an
optional CONFIG argument and ``handle_status_config`` serves it when CONFIG is given.
Environment variables are read here and nowhere deeper: ``XDG_CACHE_HOME`` (wheelhouse
cache) and ``RAYOPS_SSH_CONTROL_DIR`` (SSH connection sockets).

The launcher itself (``rayops.launcher``) is a library that prints nothing: this module
renders its events (messages to stdout, remote output to our stdout/stderr as it arrives) and
hands ``attach`` this process's terminal. A user error (bad spec, unreachable head, missing
tool) prints one message and exits 1.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from rayops.launcher.errors import ClusterSpecError, LauncherError

if TYPE_CHECKING:
    from rayops.launcher.cluster import Cluster

Handler = Callable[[argparse.Namespace], int]


def _out(text: str) -> None:
    print(text, flush=True)


def _output(host: str, stream: str, data: bytes) -> None:
    target = sys.stderr if stream == "stderr" else sys.stdout
    target.buffer.write(data)
    target.flush()


def _confirm(question: str) -> bool:
    if not sys.stdin.isatty():
        raise LauncherError(f"{question} Standard input is not a terminal: pass -y to proceed")
    answer = input(f"{question} [y/N] ").strip().lower()
    return answer in ("y", "yes")


def _cluster(args: argparse.Namespace) -> Cluster:
    from rayops.launcher.cluster import Events, open_cluster
    from rayops.launcher.wheelhouse import default_cache_dir

    control_dir = os.environ.get("RAYOPS_SSH_CONTROL_DIR") or None
    return open_cluster(args.config, default_cache_dir(), control_dir, Events(_out, _output))


def _user_errors(fn: Handler) -> Handler:
    def wrapped(args: argparse.Namespace) -> int:
        try:
            # Before any launcher module loads: they import paramiko (and up, ansible).
            from rayops.launcher.extras import require_launcher_extras

            require_launcher_extras(args.command)
            return fn(args)
        except (ClusterSpecError, LauncherError) as err:
            print(f"rayops {args.command}: error: {err}", file=sys.stderr, flush=True)
            return 1

    wrapped.__name__ = fn.__name__
    wrapped.__doc__ = fn.__doc__
    return wrapped


@_user_errors
def cmd_up(args: argparse.Namespace) -> int:
    from rayops.launcher.up import UpOptions, run_up

    opts = UpOptions(yes=args.yes, dry=args.dry, no_restart=args.no_restart,
                     restart_only=args.restart_only)  # fmt: skip
    with _cluster(args) as cluster:
        return run_up(cluster, opts, _confirm)


@_user_errors
def cmd_down(args: argparse.Namespace) -> int:
    from rayops.launcher.down_status import run_down

    with _cluster(args) as cluster:
        return run_down(cluster, args.yes, args.workers_only, _confirm)


@_user_errors
def cmd_exec(args: argparse.Namespace) -> int:
    from rayops.launcher.operate import run_exec

    tty = sys.stdin.isatty() and sys.stdout.isatty()
    with _cluster(args) as cluster:
        return run_exec(cluster, args.cmd, args.node, tty=tty)


# ``ray submit``'s options rayops does not have, each refused by name.
_SUBMIT_REFUSED = {
    "stop": "run rayops down CONFIG afterwards",
    "start": "run rayops up CONFIG first",
    "screen": "use --no-wait: the job runs on without this command",
    "tmux": "use --no-wait: the job runs on without this command",
    "port_forward": "use rayops dashboard CONFIG --port PORT",
    "no_config_cache": "",
    "cluster_name": "the cluster is CONFIG's cluster_name",
    "extra_screen_args": "",
    "disable_usage_stats": "rayops collects no usage stats",
}


@_user_errors
def cmd_submit(args: argparse.Namespace) -> int:
    from rayops.launcher.job_submit import run_submit

    for name, hint in _SUBMIT_REFUSED.items():
        if getattr(args, f"refused_{name}", None) not in (None, False):
            flag = "--" + name.replace("_", "-")
            raise LauncherError(
                f"ray submit's option {flag} is not supported" + (f"; {hint}" if hint else "")
            )
    script_args = list(args.script_args)
    if script_args[:1] == ["--"]:
        script_args = script_args[1:]
    with _cluster(args) as cluster:
        return run_submit(cluster, args.script, script_args, no_wait=args.no_wait)


@_user_errors
def cmd_dashboard(args: argparse.Namespace) -> int:
    """Forward a local port to the head's API server until interrupted (``ray dashboard``)."""
    from rayops.launcher.job_submit import api_url, head_api, save_token

    with (
        _cluster(args) as cluster,
        head_api(cluster, local_port=args.port, remote_port=args.remote_port) as (forward, api),
    ):
        token_file = save_token(cluster, api)  # with tls.json beside it when TLS is on
        url = api_url(cluster, forward)
        _out(f"The head's API server is at {url} (Ctrl-C to stop forwarding); try:")
        _out(f"  export RAYOPS_API_SERVER_ADDRESS={url} RAYOPS_TOKEN_FILE={token_file}")
        _out("  rayops job list")
        try:
            while True:
                time.sleep(3600)
        except KeyboardInterrupt:
            return 0


@_user_errors
def cmd_attach(args: argparse.Namespace) -> int:
    from rayops.launcher.operate import run_attach
    from rayops.launcher.ssh import Terminal

    sys.stdout.flush()
    terminal = Terminal(sys.stdin.fileno(), sys.stdout.fileno(),
                        os.environ.get("TERM") or "xterm")  # fmt: skip
    with _cluster(args) as cluster:
        return run_attach(cluster, terminal)


@_user_errors
def cmd_rsync_up(args: argparse.Namespace) -> int:
    from rayops.launcher.operate import run_rsync

    with _cluster(args) as cluster:
        return run_rsync(cluster, args.source, args.target, up=True,
                         node="all" if args.all_nodes else args.node)  # fmt: skip


@_user_errors
def cmd_rsync_down(args: argparse.Namespace) -> int:
    from rayops.launcher.operate import run_rsync

    with _cluster(args) as cluster:
        return run_rsync(cluster, args.source, args.target, up=False, node=args.node)


@_user_errors
def cmd_get_head_ip(args: argparse.Namespace) -> int:
    # From the spec alone: no SSH, so no need for the launcher's SSH packages.
    from rayops.launcher.spec import load_spec

    provider = load_spec(args.config)[0].provider
    _out(provider.external_head_ip or provider.head_ip)
    return 0


@_user_errors
def cmd_get_worker_ips(args: argparse.Namespace) -> int:
    from rayops.launcher.spec import load_spec

    for ip in load_spec(args.config)[0].provider.worker_ips:
        _out(ip)
    return 0


@_user_errors
def handle_status_config(args: argparse.Namespace) -> int:
    """``rayops status CONFIG [--json]``: per host provisioning state and runtime status."""
    from rayops.launcher.down_status import run_status

    with _cluster(args) as cluster:
        return run_status(cluster, args.json)


HANDLERS: dict[str, Handler] = {
    "up": cmd_up,
    "down": cmd_down,
    "exec": cmd_exec,
    "submit": cmd_submit,
    "dashboard": cmd_dashboard,
    "attach": cmd_attach,
    "rsync-up": cmd_rsync_up,
    "rsync-down": cmd_rsync_down,
    "get-head-ip": cmd_get_head_ip,
    "get-worker-ips": cmd_get_worker_ips,
}


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add the launcher's subcommands to the main parser's subparsers."""

    def config(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "config", metavar="CONFIG", help="the cluster YAML (see cluster.yaml.example)"
        )

    p = sub.add_parser("up", help="create or update a cluster from a cluster YAML")
    config(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask before applying")
    p.add_argument("--dry", action="store_true", help="print the plan and stop")
    p.add_argument(
        "--no-restart",
        action="store_true",
        help="do not restart running daemons (new or stopped ones still start)",
    )
    p.add_argument(
        "--restart-only",
        action="store_true",
        help="skip installation and setup; only (re)start the daemons",
    )

    p = sub.add_parser("down", help="stop the daemons on every host of a cluster")
    config(p)
    p.add_argument("-y", "--yes", action="store_true", help="do not ask")
    p.add_argument("--workers-only", action="store_true", help="leave the head running")

    p = sub.add_parser("exec", help="run a shell command on the cluster (the head by default)")
    config(p)
    p.add_argument("cmd", metavar="CMD", help="the shell command")
    p.add_argument("--node", default="head", help="head (default), workers, all, or a host address")

    p = sub.add_parser(
        "submit", help="run a driver script on the head as a job (Jobs API over SSH)"
    )
    config(p)
    p.add_argument(
        "--no-wait", action="store_true", help="return once submitted; do not follow the job"
    )
    for name in _SUBMIT_REFUSED:
        flag = "--" + name.replace("_", "-")
        takes_value = name in ("port_forward", "cluster_name", "extra_screen_args")
        p.add_argument(
            flag,
            dest=f"refused_{name}",
            action="store" if takes_value else "store_true",
            help=argparse.SUPPRESS,
        )
    p.add_argument("script", metavar="SCRIPT")
    p.add_argument(
        "script_args", nargs=argparse.REMAINDER, metavar="-- ARGS", help="arguments for the script"
    )

    p = sub.add_parser(
        "dashboard", help="forward a local port to the head's API server (Jobs API, logs)"
    )
    config(p)
    p.add_argument("-p", "--port", type=int, default=8265, help="local port (default 8265)")
    p.add_argument(
        "--remote-port", type=int, default=None, help="the head's port (default: its record)"
    )

    p = sub.add_parser("attach", help="open an interactive shell on the head")
    config(p)

    p = sub.add_parser("rsync-up", help="copy local files to the head (or other hosts)")
    config(p)
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="DST")
    p.add_argument("--node", default="head", help="head (default), workers, all, or an address")
    p.add_argument("-A", "--all-nodes", action="store_true", help="every host")

    p = sub.add_parser("rsync-down", help="copy files from the head (or another host) here")
    config(p)
    p.add_argument("source", metavar="SRC")
    p.add_argument("target", metavar="DST")
    p.add_argument("--node", default="head", help="head (default) or a host address")

    p = sub.add_parser("get-head-ip", help="print the head's address")
    config(p)
    p = sub.add_parser("get-worker-ips", help="print the workers' addresses, one per line")
    config(p)


def add_status_config(status_parser: argparse.ArgumentParser) -> None:
    """Give the runtime's ``status`` subcommand an optional CONFIG argument."""
    status_parser.add_argument(
        "config",
        nargs="?",
        metavar="CONFIG",
        help="a cluster YAML: show each host's provisioning state and runtime status",
    )


def main(argv: list[str] | None = None) -> None:
    """Stand-alone entry (``python -m rayops.cli.launcher_cmds``) until wired into the CLI."""
    parser = argparse.ArgumentParser(prog="rayops", description="Operate rayops clusters.")
    sub = parser.add_subparsers(dest="command", required=True)
    register(sub)
    st = sub.add_parser("status", help="per-host status of a cluster")
    add_status_config(st)
    st.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)
    handler = handle_status_config if args.command == "status" else HANDLERS[args.command]
    try:
        code = handler(args)
    except KeyboardInterrupt:
        code = 130
    sys.exit(code)


if __name__ == "__main__":
    main()
