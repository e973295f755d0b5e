"""`python -m rayops.gcs`: run the GCS as a process.

    python -m rayops.gcs --token-file PATH [--host 127.0.0.1] [--port 0] [--log-file PATH]
                         [--log-level INFO] [--ready-fd N] [--watch-fd N]
                         [--session-dir DIR] [--gcs-storage sqlite:PATH|memory|redis://H:P]

Binds exactly --host (never a wildcard unless given one) on --port (0 picks a free port).
Once serving, writes the bound port and "\\n" to --ready-fd (an inherited pipe) and closes it.
Exits gracefully on SIGTERM or SIGINT, and, with --watch-fd, when reading that inherited fd
returns EOF (the process holding its write end, usually the driver that started us, died).
With --session-dir (or --gcs-storage) the tables persist to SQLite (`rayops.gcs.persistence`),
or to Redis with RAY_REDIS_ADDRESS / --gcs-storage redis://... (`rayops.gcs.redis_store`),
and a restart on the same store reads them back before serving.
Exit status: 0 after a graceful stop, 2 for bad arguments or an unusable token file, 1 when
it cannot listen.

This module owns the process: arguments, the event loop, signals. The pipe and logging
plumbing shared with the other daemons is `rayops.node.daemon`; the services themselves are
`rayops.gcs.server`.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from collections.abc import Coroutine
from typing import Any

from rayops.node.daemon import setup_logging, signal_ready, watch_parent
from rayops.version import __version__

logger = logging.getLogger("rayops.gcs")

# How long in-flight calls may run once a stop is asked for: well inside the 1 s the parent
# allows between closing the watch pipe and expecting us gone.
_STOP_GRACE_S = 0.5


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rayops.gcs", description="Run the rayops GCS.")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one")
    p.add_argument("--token-file", required=True, help="file holding the cluster token (0600)")
    p.add_argument("--log-file", help="append logs here (default: stderr)")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    p.add_argument("--ready-fd", type=int, help="inherited fd: write the port + newline, close")
    p.add_argument("--watch-fd", type=int, help="inherited fd: exit when reading it hits EOF")
    p.add_argument("--session-dir", help="the head's session directory (default store location)")
    p.add_argument(
        "--gcs-storage",
        help="where the tables persist: sqlite:PATH, PATH, memory, or redis[s]://[USER:PW@]"
        "HOST:PORT[/DB] (default: $RAY_REDIS_ADDRESS if set, else "
        "SESSION_DIR/gcs_store.sqlite)",
    )
    args = p.parse_args(argv)
    if not 0 <= args.port < 65536:
        p.error(f"--port must be in 0..65535, found {args.port}")
    return args


async def _serve(args: argparse.Namespace, token: str) -> int:
    from rayops.gcs.server import GcsServer, GcsState

    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()

    def stop(reason: str) -> None:
        if not stopping.is_set():
            logger.info("stopping: %s", reason)
            stopping.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop, f"received {signal.Signals(sig).name}")
    watch_parent(
        loop, args.watch_fd, lambda: stop(f"watch fd {args.watch_fd} closed: the parent is gone")
    )

    from rayops.gcs.health import HealthSettings
    from rayops.gcs.package_refs import PackageStoreSettings

    try:
        health = HealthSettings.from_env()
        packages = PackageStoreSettings.from_env()
    except ValueError as err:
        print(f"rayops gcs: {err}", file=sys.stderr)
        return 2
    state = GcsState(rayops_version=__version__)
    failed: list[str] = []

    def store_failed(reason: str) -> None:
        # Exit 1, not 0: the supervisor restarts the GCS (and it reads the store back).
        failed.append(reason)
        stop(reason)

    try:
        persistence = _open_store(args, token, state, store_failed)
    except (ValueError, OSError) as err:
        logger.error("%s", err)
        print(f"rayops gcs: {err}", file=sys.stderr)
        return 2
    server = GcsServer(state, token, health, packages, persistence)
    try:
        port = await server.start(args.host, args.port)
    except OSError as err:
        logger.error("%s", err)
        print(f"rayops gcs: {err}", file=sys.stderr)
        return 1
    try:
        signal_ready(args.ready_fd, str(port))
    except OSError as err:
        stop(f"could not report readiness on fd {args.ready_fd}: {err}")
    await stopping.wait()
    await server.stop(_STOP_GRACE_S)
    logger.info("GCS stopped")
    return 1 if failed else 0


def _open_store(args: argparse.Namespace, token: str, state: Any, on_fatal: Any) -> Any:
    """The persistence of `state` (None: memory only), its tables read back from the store:
    SQLite (a file) or Redis (records checked with a key derived from the cluster token)."""
    from rayops.gcs.persist_log import PersistLog, RecordStore, StoreError
    from rayops.gcs.persistence import GcsPersistence, resolve_storage
    from rayops.gcs.redis_store import RedisPersistLog, RedisTarget

    target = resolve_storage(args.gcs_storage, args.session_dir, os.environ)
    if target is None:
        logger.info("GCS tables in memory only (no session directory or store given)")
        return None
    try:
        log: RecordStore
        if isinstance(target, RedisTarget):
            log = RedisPersistLog(target, token)
        else:
            os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o600))
            log = PersistLog(target)
        persistence = GcsPersistence(state, log, on_fatal=on_fatal)
        summary = persistence.restore()
    except StoreError as err:
        raise ValueError(str(err)) from err
    logger.info("GCS store %s: restored %s", log.path, summary)
    return persistence


def _run(main: Coroutine[Any, Any, int]) -> int:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(main)
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(main)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    setup_logging(args.log_file, f"gcs[{os.getpid()}]")
    logging.getLogger().setLevel(args.log_level)
    from rayops.rpc.auth import TokenFileError, read_token_file

    try:
        token = read_token_file(args.token_file)
    except TokenFileError as err:
        logger.error("%s", err)
        print(f"rayops gcs: {err}", file=sys.stderr)
        return 2
    logger.info("GCS %s starting (pid %d)", __version__, os.getpid())
    return _run(_serve(args, token))


if __name__ == "__main__":
    sys.exit(main())
