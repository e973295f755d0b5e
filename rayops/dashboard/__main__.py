"""``python -m rayops.dashboard``: the head's API server (started by ``rayops.node.processes``).

Writes its port to --ready-fd once it listens. Exits on SIGTERM/SIGINT or when the --watch-fd
pipe reads EOF (the embedded cluster's driver is gone). Exit status 2 for an unusable token
file, 1 when it cannot listen (the message names host and port).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from rayops.node.daemon import run_with_token, setup_logging, watch_parent

logger = logging.getLogger("rayops.dashboard")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rayops.dashboard")
    p.add_argument("--host", required=True)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--session-dir", required=True)
    p.add_argument("--node-ip", required=True)
    p.add_argument("--temp-dir", required=True)
    p.add_argument("--log-file")
    p.add_argument("--ready-fd", type=int)
    p.add_argument("--watch-fd", type=int)
    return p.parse_args(argv)


async def amain(args: argparse.Namespace, token: str) -> int:
    from rayops.dashboard.auth import HttpTokenCheck
    from rayops.dashboard.jobs import JobManager, ServerConfig
    from rayops.dashboard.overview import ClusterOverview
    from rayops.dashboard.server import ApiServer
    from rayops.gcs.client import AsyncGcsClient

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    watch_parent(loop, args.watch_fd, stop.set)
    gcs = AsyncGcsClient(args.gcs_address, token, timeout=10.0)
    config = ServerConfig(
        gcs_address=args.gcs_address,
        token_file=args.token_file,
        session_dir=args.session_dir,
        session_name=os.path.basename(args.session_dir.rstrip("/")),
        node_ip=args.node_ip,
        temp_dir=args.temp_dir,
    )
    jobs = JobManager(gcs, config)
    overview = ClusterOverview(gcs)
    server = ApiServer(jobs, HttpTokenCheck(token), config.session_name, overview)
    try:
        await server.start(args.host, args.port)
    except OSError as err:
        logger.error("the API server could not listen on %s:%d: %s", args.host, args.port, err)
        await gcs.close()
        return 1
    logger.info("API server on http://%s:%d", args.host, server.port)
    overview.start()
    if args.ready_fd is not None:
        os.write(args.ready_fd, f"{server.port}\n".encode())
        os.close(args.ready_fd)
    await stop.wait()
    await server.stop()
    await overview.stop()
    await jobs.shutdown()
    await gcs.close()
    logger.info("API server stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # The server forks job supervisors (under uvloop, a plain fork) while its GCS streams
    # (the dashboard's followed channels) are open on gRPC's threads; gRPC's fork handlers
    # then crash the child before its exec (SIGSEGV). The child execs at once and never uses
    # the parent's gRPC, so the handlers are not needed: off, before gRPC is first imported.
    os.environ["GRPC_ENABLE_FORK_SUPPORT"] = "false"
    setup_logging(args.log_file, f"dashboard[{os.getpid()}]")
    return run_with_token(args.token_file, lambda token: amain(args, token))


if __name__ == "__main__":
    sys.exit(main())
