"""The ``rayops`` command: parse, call, render. Nothing imports this module.

Every failure the user can cause prints one line naming what was wrong and
exits non-zero; tracebacks are for bugs only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from rayops.cli import (
    autoscaler_cmds,
    job_cmds,
    launcher_cmds,
    log_cmds,
    metrics_cmds,
    state_cmds,
    tls_flags,
)
from rayops.cli.arg_types import nonneg
from rayops.exceptions import AuthenticationError, RpcError
from rayops.node import session as sess


class CLIError(Exception):
    """A user-facing failure: printed as one message, exit code 1."""


def _json_resources(text: str) -> dict[str, float]:
    from rayops.node.node_args import check_resources

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(
            f"expected a JSON object such as '{{\"accel\": 2}}', got {text!r}: {err}"
        ) from err
    try:
        return check_resources(f"the JSON {text}", value)
    except (TypeError, ValueError) as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _labels(text: str) -> dict[str, str]:
    from rayops.node.node_args import parse_labels

    try:
        return parse_labels(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from err


def _port(text: str) -> int:
    try:
        v = int(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from err
    if not 0 <= v < 65536:
        raise argparse.ArgumentTypeError(f"expected a port in 0..65535, got {text!r}")
    return v


def _bool_flag(text: str) -> bool:
    if text.lower() in ("true", "1", "yes"):
        return True
    if text.lower() in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rayops", description="Run and operate rayops clusters.")
    sub = p.add_subparsers(dest="command", required=True)

    s = sub.add_parser("start", help="start the daemons of a node (the head with --head)")
    s.add_argument("--head", action="store_true", help="start the head node (GCS + raylet)")
    s.add_argument("--address", help="HEAD:PORT of the GCS to join (worker nodes)")
    s.add_argument("--port", type=_port, default=6379, help="GCS port on the head (default 6379)")
    s.add_argument("--num-cpus", type=nonneg(float))
    s.add_argument("--num-gpus", type=nonneg(float))
    s.add_argument(
        "--resources", type=_json_resources, default={}, help="JSON, e.g. '{\"accel\": 2}'"
    )
    s.add_argument(
        "--object-store-memory", type=nonneg(int), help="bytes of shared memory for objects"
    )
    s.add_argument(
        "--temp-dir",
        default=None,
        help=f"root of this node's files (default {sess.DEFAULT_TEMP_DIR})",
    )
    s.add_argument("--node-ip-address", help="address the daemons bind to (default: detected)")
    s.add_argument(
        "--token-file", help="cluster token file (joining nodes; default RAYOPS_TOKEN_FILE)"
    )
    s.add_argument(
        "--labels",
        type=_labels,
        default={},
        help="node labels as key=value pairs separated by commas, e.g. 'region=us,tier=gold' "
        "(a JSON object of strings is also accepted)",
    )
    s.add_argument(
        "--metrics-export-port",
        type=_port,
        default=0,
        help="port of the node agent's Prometheus /metrics (default: a free port)",
    )

    s.add_argument(
        "--include-dashboard",
        type=_bool_flag,
        default=True,
        help="start the head's API server (Jobs REST API; default true)",
    )
    s.add_argument(
        "--dashboard-host",
        default="127.0.0.1",
        help="address the head's API server binds to (default 127.0.0.1: this machine only)",
    )
    s.add_argument(
        "--autoscaling-config",
        help="head: run the autoscaler with this cluster spec (what `rayops up` leaves on the "
        "head); it logs to the session's logs/monitor.log",
    )
    s.add_argument(
        "--dashboard-port",
        type=_port,
        default=None,
        help="port of the head's API server (default 8265, or the next free one after it)",
    )
    tls_flags.add_flags(s)

    s.add_argument(
        "--gcs-storage",
        help="head: where the GCS persists its tables (sqlite:PATH, memory, or "
        "redis[s]://HOST:PORT[/DB]; default $RAY_REDIS_ADDRESS if set, else the session "
        "directory's gcs_store.sqlite)",
    )
    s.add_argument(
        "--redis-password",
        default=None,
        help="head: the password of the Redis the GCS persists to (RAY_REDIS_ADDRESS or "
        "--gcs-storage redis://...)",
    )
    s.add_argument(
        "--redis-username", default=None, help="head: the Redis user (ACL); default 'default'"
    )

    st = sub.add_parser("stop", help="stop the daemons started from this temp dir")
    st.add_argument("--temp-dir", default=None)
    st.add_argument("-f", "--force", action="store_true", help="SIGKILL at once")

    ss = sub.add_parser("status", help="nodes and resources of the cluster")
    ss.add_argument("--address", help="GCS address (default: the cluster of --temp-dir)")
    ss.add_argument("--temp-dir", default=None)
    ss.add_argument("--json", action="store_true", help="machine-readable output")
    launcher_cmds.register(sub)
    autoscaler_cmds.register(sub)
    launcher_cmds.add_status_config(ss)
    metrics_cmds.register(sub)
    job_cmds.register(sub)
    log_cmds.register(sub)
    state_cmds.register(sub)
    return p


def _temp_dir(args: argparse.Namespace) -> str:
    return args.temp_dir or os.environ.get("RAYOPS_TEMP_DIR") or sess.DEFAULT_TEMP_DIR


def detect_node_ip() -> str:
    """The address of the interface with the default route; 127.0.0.1 without one.

    Connecting a UDP socket sends no packet; it only asks the kernel for a route.
    """
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: never routed anywhere real
            ip: str = s.getsockname()[0]
            return ip
        except OSError:
            return "127.0.0.1"


def _check_gcs_storage(args: argparse.Namespace) -> None:
    """`--gcs-storage`, `RAY_REDIS_ADDRESS` and the Redis credentials, checked before any
    daemon starts: each names what is wrong."""
    from rayops.gcs.persistence import resolve_storage
    from rayops.gcs.redis_store import RedisTarget

    redis_flags = [
        flag
        for flag, value in (
            ("--redis-password", args.redis_password),
            ("--redis-username", args.redis_username),
        )
        if value is not None
    ]
    if not args.head:
        given = redis_flags + (["--gcs-storage"] if args.gcs_storage is not None else [])
        if given:
            raise CLIError(f"{', '.join(given)} is for the head (--head): the GCS runs there")
        return
    try:
        target = resolve_storage(args.gcs_storage, None, os.environ)
    except ValueError as err:
        raise CLIError(str(err)) from err
    if redis_flags and not isinstance(target, RedisTarget):
        raise CLIError(
            f"{', '.join(redis_flags)} given, but the GCS does not persist to Redis: set "
            "RAY_REDIS_ADDRESS=HOST:PORT or --gcs-storage redis://HOST:PORT"
        )


def cmd_start(args: argparse.Namespace) -> int:
    from rayops.node.processes import NodeOptions, NodeStartError, start_node

    if args.head == bool(args.address):
        raise CLIError(
            "give exactly one of --head (start a head node) or --address HEAD:PORT (join one)"
        )
    _check_gcs_storage(args)
    temp_dir = _temp_dir(args)
    running = _running_record(temp_dir)
    if running is not None:
        raise CLIError(
            f"a rayops node is already running from {temp_dir} (session {running.session_dir}); "
            f"stop it with `rayops stop --temp-dir {temp_dir}` or use another --temp-dir"
        )
    tls_files = tls_flags.files_from(args)  # checked before anything starts
    token = None
    if args.head and args.token_file:
        from rayops.rpc.auth import read_token_file

        token = read_token_file(args.token_file)  # a cluster token chosen by the operator
    if args.address:
        from rayops.gcs import probe

        probe.split_address(args.address, "--address")
        token_file = args.token_file or os.environ.get("RAYOPS_TOKEN_FILE")
        if not token_file:
            raise CLIError(
                "joining a cluster needs the cluster token: "
                "pass --token-file PATH or set RAYOPS_TOKEN_FILE"
            )
        from rayops.rpc.auth import read_token_file

        # Reachability first, then the token, before any daemon starts.
        probe.check_reachable(args.address)
        token = read_token_file(token_file)
        probe.check_token(args.address, token, token_file)
    _reclaim(temp_dir)
    opts = NodeOptions(
        node_ip=args.node_ip_address or detect_node_ip(),
        head=args.head,
        gcs_address=args.address,
        gcs_port=args.port,
        num_cpus=args.num_cpus,
        num_gpus=args.num_gpus,
        resources=args.resources,
        object_store_memory=args.object_store_memory,
        temp_dir=temp_dir,
        labels=args.labels,
        token=token,
        detached=True,
        metrics_export_port=args.metrics_export_port,
        include_dashboard=args.head and args.include_dashboard,
        dashboard_host=args.dashboard_host,
        dashboard_port=args.dashboard_port,
        wait_dashboard=True,
        gcs_storage=args.gcs_storage,
        redis_password=args.redis_password,
        redis_username=args.redis_username,
        tls=tls_files,
        autoscaling_config=_autoscaling_config(args),
    )
    try:
        node = start_node(opts)
    except NodeStartError as err:
        raise CLIError(str(err)) from err
    rec = node.record
    token_path = os.path.join(rec.session_dir, sess.TOKEN_FILE)
    print(f"rayops runtime started (session {rec.session_dir}).")
    if args.head:
        print(f"  GCS address: {rec.gcs_address}")
        print("  To connect a driver on this machine: rayops.init('auto')")
        if rec.dashboard_url:
            scheme = "https" if tls_files else "http"
            print(f"  Dashboard (Jobs API): {scheme}://{rec.dashboard_url}")
            print(
                f"  To submit a job: rayops job submit --address {scheme}://{rec.dashboard_url} "
                "-- python script.py"
            )
        print("  To add a node: copy the token file (mode 0600) to it, then run")
        print(
            f"    RAYOPS_TOKEN_FILE=<copy of {token_path}> rayops start --address {rec.gcs_address}"
        )
    print(
        "  To stop: rayops stop"
        + ("" if temp_dir == sess.DEFAULT_TEMP_DIR else f" --temp-dir {temp_dir}")
    )
    return 0


def _autoscaling_config(args: argparse.Namespace) -> str | None:
    path = args.autoscaling_config
    if path is None:
        return None
    if not args.head:
        raise CLIError("--autoscaling-config runs the autoscaler on the head: add --head")
    if not os.path.isfile(path):
        raise CLIError(
            f"--autoscaling-config: expected a cluster spec file, found nothing at {path}"
        )
    return os.path.abspath(path)


def _reclaim(temp_dir: str) -> None:
    """Remove what dead sessions under ``temp_dir`` left in /dev/shm and spill dirs; say so."""
    from rayops.node.reclaim import reclaim_dead_sessions

    done = reclaim_dead_sessions(temp_dir)
    if done:
        total = sum(r.nbytes for r in done) / 1e6
        sessions = len({r.session_name for r in done})
        print(f"reclaimed {total:.1f} MB left by {sessions} dead session(s) under {temp_dir}")


def _running_record(temp_dir: str) -> sess.NodeRecord | None:
    from rayops.node.processes import pid_belongs_to

    session_dir = sess.latest_session(temp_dir)
    if session_dir is None:
        return None
    try:
        rec = sess.NodeRecord.load(session_dir)
    except (OSError, ValueError, TypeError):
        return None
    if any(pid_belongs_to(pid, rec.session_dir) for pid in rec.pids.values()):
        return rec
    return None


def cmd_stop(args: argparse.Namespace) -> int:
    from rayops.node.processes import pid_belongs_to, stop_node

    temp_dir = _temp_dir(args)
    stopped = 0
    if os.path.isdir(temp_dir):
        for name in sorted(os.listdir(temp_dir)):
            path = os.path.join(temp_dir, name)
            if (
                not name.startswith("session_")
                or name == "session_latest"
                or not os.path.isdir(path)
            ):
                continue
            try:
                rec = sess.NodeRecord.load(path)
            except (OSError, ValueError, TypeError):
                continue
            if not any(pid_belongs_to(p, rec.session_dir) for p in rec.pids.values()):
                continue
            pids = stop_node(rec, timeout=0.0 if args.force else 10.0)
            stopped += len(pids)
            print(f"stopped {len(pids)} process(es) of {path}")
    if not stopped:
        print(f"no running rayops processes started from {temp_dir}")
    return 0


def _gcs_for_status(args: argparse.Namespace) -> tuple[str, str, str]:
    """The GCS address, the token file and its token for ``rayops status``."""
    from rayops.rpc.auth import read_token_file

    temp_dir = _temp_dir(args)
    session_dir = sess.latest_session(temp_dir)
    token_file = os.environ.get("RAYOPS_TOKEN_FILE") or (
        os.path.join(session_dir, sess.TOKEN_FILE) if session_dir else None
    )
    tls_flags.tls.adopt_beside_token(token_file)  # TLS found where the token is (rpc/tls.py)
    if args.address:
        address = args.address
    else:
        rec = _running_record(temp_dir)
        if rec is None:
            raise CLIError(
                f"no running rayops cluster found under {temp_dir}; "
                "start one with `rayops start --head`"
            )
        address = rec.gcs_address
    from rayops.gcs import probe

    # Reachability first, then the token: each failure names what is wrong.
    probe.split_address(address, "--address")
    probe.check_reachable(address)
    if not token_file or not os.path.exists(token_file):
        raise CLIError(
            f"the GCS at {address} is reachable, but no cluster token was found: set "
            "RAYOPS_TOKEN_FILE to a copy of the head's cluster_token"
        )
    return address, token_file, read_token_file(token_file)


def _fmt_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f}{unit}" if unit != "B" else f"{int(n)}B"
        n /= 1024
    return f"{n}"


def cmd_status(args: argparse.Namespace) -> int:
    if getattr(args, "config", None):
        code: int = launcher_cmds.handle_status_config(args)
        return code
    from rayops.gcs import probe
    from rayops.gcs.client import GcsClient

    address, token_file, token = _gcs_for_status(args)
    client = GcsClient(address, token, timeout=5.0)
    try:
        nodes = client.get_all_nodes()
        scaler = client.kv_get(autoscaler_cmds.STATUS_KEY, namespace=autoscaler_cmds.NAMESPACE)
    except AuthenticationError as err:
        raise CLIError(str(probe.refused_token(address, token_file))) from err
    except ConnectionError as err:
        raise CLIError(str(err)) from err
    finally:
        client.close()
    if args.json:
        print(json.dumps([_node_json(n) for n in nodes], indent=2))
        return 0
    alive = [n for n in nodes if n.state == "ALIVE"]
    dead = [n for n in nodes if n.state != "ALIVE"]
    print(f"======== rayops cluster status ({address}) ========")
    print("Node status")
    print("-" * 60)
    print(f"Active: {len(alive)}")
    for n in alive:
        head = " (head)" if n.is_head_node else ""
        print(f"  {n.node_id[:16]}  {n.node_ip}{head}")
    if dead:
        print(f"Dead: {len(dead)}")
        for n in dead:
            print(f"  {n.node_id[:16]}  {n.node_ip}  {n.death_reason}")
    total: dict[str, float] = {}
    avail: dict[str, float] = {}
    for n in alive:
        for k, v in n.resources_total.items():
            total[k] = total.get(k, 0) + v
        for k, v in n.resources_available.items():
            avail[k] = avail.get(k, 0) + v
    print()
    print("Resources")
    print("-" * 60)
    print("Usage:")
    for k in sorted(total):
        if k.startswith("node:"):
            continue
        used = total[k] - avail.get(k, 0)
        if k in ("memory", "object_store_memory"):
            print(f"  {_fmt_bytes(used)}/{_fmt_bytes(total[k])} {k}")
        else:
            print(f"  {used:g}/{total[k]:g} {k}")
    demand: dict[tuple[tuple[str, float], ...], list[Any]] = {}
    for n in alive:
        for shape, count, infeasible in n.pending_demand:
            entry = demand.setdefault(tuple(sorted(shape.items())), [0, False])
            entry[0] += count
            entry[1] = entry[1] or infeasible
    print()
    print("Pending demand:")
    if not demand:
        print("  (no resource demands)")
    for key, (count, infeasible) in sorted(demand.items()):
        text = "{" + ", ".join(f"{k}: {v:g}" for k, v in key) + "}"
        note = "  (no node can run this)" if infeasible else ""
        print(f"  {text}: {count} pending{note}")
    if scaler:
        print()
        print(autoscaler_cmds.render_status(autoscaler_cmds.AutoscalerStatus.from_json(scaler)))
    return 0


def _node_json(n: Any) -> dict[str, Any]:
    return {
        "node_id": n.node_id,
        "node_ip": n.node_ip,
        "state": n.state,
        "is_head": n.is_head_node,
        "metrics_export_port": n.metrics_export_port,
        "resources_total": dict(n.resources_total),
        "resources_available": dict(n.resources_available),
        "pending_demand": [
            {"shape": dict(shape), "count": count, "infeasible": infeasible}
            for shape, count, infeasible in n.pending_demand
        ],
    }


COMMANDS = {
    "start": cmd_start,
    "stop": cmd_stop,
    "status": cmd_status,
    **launcher_cmds.HANDLERS,
    **autoscaler_cmds.HANDLERS,
    **metrics_cmds.HANDLERS,
    **job_cmds.HANDLERS,
    **log_cmds.HANDLERS,
    **state_cmds.HANDLERS,
}


def main(argv: list[str] | None = None) -> None:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code = COMMANDS[args.command](args)
    except CLIError as err:
        print(f"rayops {args.command}: error: {err}", file=sys.stderr)
        sys.exit(1)
    except (
        job_cmds.JobCommandError,
        ConnectionError,
        PermissionError,
        FileNotFoundError,
        ValueError,
        AuthenticationError,
        RpcError,
    ) as err:
        print(f"rayops {args.command}: error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(code)


if __name__ == "__main__":
    main()
