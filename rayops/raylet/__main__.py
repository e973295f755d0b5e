"""``python -m rayops.raylet``: run one node's raylet."""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import logging
import os

from rayops.gcs.reconnect import reconnect_timeout_s
from rayops.node.daemon import setup_logging, signal_ready, watch_parent
from rayops.node.log_rotation import LogRotationConfig
from rayops.objectstore.store_settings import StoreSettings
from rayops.raylet.memory_monitor import MemoryConfig
from rayops.raylet.raylet import Raylet, RayletConfig, RayletStartError, install_signal_handlers
from rayops.raylet.resources import visible_device_ids
from rayops.raylet.spilling import SpillSettings
from rayops.rpc import framed
from rayops.rpc.framed_settings import FramedSettings

logger = logging.getLogger("rayops.raylet")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m rayops.raylet")
    p.add_argument("--node-id", required=True)
    p.add_argument("--node-ip", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--gcs-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--session-dir", required=True)
    p.add_argument("--shm-dir", required=True)
    p.add_argument("--spill-dir", required=True)
    p.add_argument("--resources", required=True, help="JSON object of resource totals")
    p.add_argument("--object-store-memory", type=int, required=True)
    p.add_argument("--labels", default="{}")
    p.add_argument("--gpu-ids", help="the node's CUDA_VISIBLE_DEVICES (GPU i is the i-th id)")
    p.add_argument("--head", action="store_true")
    p.add_argument("--prestart-workers", type=int, default=None)
    p.add_argument("--metrics-export-port", type=int, default=0, help="agent /metrics; 0: free")
    p.add_argument("--agent-port", type=int, default=0, help="agent report port; 0: free")
    p.add_argument("--log-file")
    p.add_argument("--ready-fd", type=int)
    # init(_system_config=...) as RAY_<key> variables, over the environment's.
    p.add_argument("--system-config-env", default="{}")
    p.add_argument("--watch-fd", type=int)
    return p.parse_args(argv)


async def amain(args: argparse.Namespace, log_rotation: LogRotationConfig) -> None:
    from rayops.envs.install_settings import InstallSettings
    from rayops.rpc.auth import read_token_file

    token = read_token_file(args.token_file)
    config = RayletConfig(
        node_id=args.node_id,
        node_ip=args.node_ip,
        port=args.port,
        gcs_address=args.gcs_address,
        token=token.encode(),
        token_file=args.token_file,
        session_dir=args.session_dir,
        shm_dir=args.shm_dir,
        spill_dir=args.spill_dir,
        resources=json.loads(args.resources),
        object_store_memory=args.object_store_memory,
        is_head=args.head,
        labels=json.loads(args.labels),
        gpu_ids=visible_device_ids(args.gpu_ids),
        prestart_workers=args.prestart_workers,
        metrics_export_port=args.metrics_export_port,
        agent_port=args.agent_port,
        log_rotation=log_rotation,
        framed=FramedSettings.from_env(),
        runtime_env_install=InstallSettings.from_env(),
        memory=MemoryConfig.from_env(),
        gcs_reconnect_timeout_s=reconnect_timeout_s(os.environ),
        spill=SpillSettings.from_env({**os.environ, **json.loads(args.system_config_env)}),
        store=StoreSettings.from_env(),
    )
    raylet = Raylet(config)
    try:
        port = await raylet.start()
    except RayletStartError as err:
        logger.error("%s", err)  # one line: the cause is in the message
        await raylet.shutdown()
        raise SystemExit(1) from None
    install_signal_handlers(raylet)
    # Everything made while starting (modules, settings, handlers) lives as long as the
    # raylet: out of the collector's sight, a full collection walks only what came after.
    # Before, one took 30-60 ms of the event loop here (profiled: such a pause in the middle
    # of a 100 MB pull, ~40% of it), every few seconds under load.
    gc.freeze()
    watch_parent(asyncio.get_running_loop(), args.watch_fd, raylet.request_stop)
    signal_ready(args.ready_fd, str(port))
    logger.info("raylet %s serving on %s:%d", args.node_id[:12], args.node_ip, port)
    await raylet.wait_stopped()
    logger.info("raylet stopping")
    await raylet.shutdown()
    if raylet.gcs_lost:
        raise SystemExit(1)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    log_rotation = LogRotationConfig.from_env()
    setup_logging(args.log_file, "raylet", log_rotation)
    loop = framed.new_event_loop()
    try:
        loop.run_until_complete(amain(args, log_rotation))
    finally:
        loop.close()


if __name__ == "__main__":
    main()
