"""``python -m rayops.agent``: run one node's agent (started by the raylet, see
``rayops/raylet/agent_process.py``).

Exits on SIGTERM/SIGINT, when the --watch-fd pipe reads EOF (the raylet that holds its write
end is gone), or when its connection to the raylet closes. Exit status 2 for an unusable
token file, 1 when it cannot listen.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys

from rayops.node.daemon import run_with_token, setup_logging, watch_parent

logger = logging.getLogger("rayops.agent")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rayops.agent", description="rayops node agent")
    p.add_argument("--node-id", required=True)
    p.add_argument("--node-ip", required=True)
    p.add_argument("--raylet-port", type=int, required=True)
    p.add_argument("--metrics-export-port", type=int, required=True)
    p.add_argument("--agent-port", type=int, required=True)
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--session-dir", required=True)
    p.add_argument("--session-name", required=True)
    p.add_argument("--temp-dir", required=True, help="the service discovery file goes here")
    p.add_argument("--head", action="store_true")
    p.add_argument("--log-file")
    p.add_argument("--watch-fd", type=int)
    args = p.parse_args(argv)
    for name in ("metrics_export_port", "agent_port", "raylet_port"):
        if not 0 < getattr(args, name) < 65536:
            p.error(f"--{name.replace('_', '-')} must be in 1..65535, found {getattr(args, name)}")
    return args


async def amain(args: argparse.Namespace, token: str) -> int:
    from rayops.agent.node_agent import AgentConfig, NodeAgent
    from rayops.rpc.framed_settings import FramedSettings

    agent = NodeAgent(
        AgentConfig(
            node_id=args.node_id,
            node_ip=args.node_ip,
            raylet_port=args.raylet_port,
            metrics_export_port=args.metrics_export_port,
            agent_port=args.agent_port,
            gcs_address=args.gcs_address,
            token=token,
            session_dir=args.session_dir,
            session_name=args.session_name,
            temp_dir=args.temp_dir,
            is_head=args.head,
            framed=FramedSettings.from_env(),
        )
    )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, agent.request_stop, f"received {signal.Signals(sig).name}")
    watch_parent(loop, args.watch_fd, lambda: agent.request_stop("the raylet is gone"))
    try:
        await agent.start()
    except OSError as err:
        logger.error("the agent could not start: %s", err)
        await agent.shutdown()
        return 1
    await agent.wait_stopped()
    await agent.shutdown()
    logger.info("agent stopped")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    setup_logging(args.log_file, f"agent[{os.getpid()}]")
    return run_with_token(args.token_file, lambda token: amain(args, token))


if __name__ == "__main__":
    sys.exit(main())
