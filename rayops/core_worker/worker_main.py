"""Entry point of a worker process: ``python -m rayops.core_worker.worker_main``.

Started by the raylet. Connects back to it, registers, then runs pushed tasks on
the main thread until the raylet goes away or tells it to stop.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from typing import Any

from rayops.core_worker import output, state
from rayops.core_worker.core_worker import CoreWorker
from rayops.core_worker.executor import Executor
from rayops.core_worker.metrics_reporter import parse_agent_address
from rayops.core_worker.recovery import LineageSettings
from rayops.core_worker.task_events import TaskEventSettings
from rayops.node.log_rotation import LogRotationConfig, setup_process_logging
from rayops.protocol import raylet_messages as rm
from rayops.rpc.framed_settings import FramedSettings


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rayops-worker")
    p.add_argument("--raylet-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--worker-id", required=True)
    p.add_argument("--node-ip", required=True)
    p.add_argument("--log-file", help="the log file fds 1/2 point at; rotated by size")
    p.add_argument("--runtime-env", default="", help="the runtime_env's wire form")
    p.add_argument("--working-dir", help="the runtime_env's unpacked working_dir")
    p.add_argument("--sys-path", action="append", default=[], help="a py_modules directory")
    args = p.parse_args(argv)
    # The env's files before any user code runs (its env vars are set by whoever started
    # this process): the working_dir is the cwd and first on sys.path, then py_modules.
    if args.working_dir:
        os.chdir(args.working_dir)
    sys.path[0:0] = [p for p in (args.working_dir, *args.sys_path) if p]
    logs = None
    if args.log_file:
        # No watchdog thread: the core worker's IO loop runs the check (attach below).
        logs = setup_process_logging(
            None,
            LogRotationConfig.from_env(),
            name="worker",
            stdio_path=args.log_file,
            level=logging.WARNING,
            thread=False,
        )
    else:
        logging.basicConfig(
            level=logging.WARNING,
            stream=sys.stderr,
            format="%(asctime)s %(levelname)s worker %(name)s: %(message)s",
        )
    with open(args.token_file) as f:
        token = f.read().strip().encode()
    host, port = args.raylet_address.rsplit(":", 1)
    cw = CoreWorker(
        mode="worker",
        raylet_address=(host, int(port)),
        token=token,
        node_ip=args.node_ip,
        worker_id=bytes.fromhex(args.worker_id),
        agent_address=parse_agent_address(os.environ.get("RAYOPS_AGENT_ADDRESS")),
        framed_settings=FramedSettings.from_env(),
        runtime_env=args.runtime_env,
        task_event_settings=TaskEventSettings.from_env(),
        lineage_settings=LineageSettings.from_env(),
    )
    executor = Executor(cw)
    cw.executor = executor
    cw.on_raylet_lost = lambda: os._exit(0)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    state.set_core_worker(cw)
    cw.start()

    def context() -> tuple[int, str]:
        ctx = cw.task_context()
        return ctx.job_id, ctx.task_name

    def sink(batch: list[Any]) -> None:
        def send() -> None:
            for job_id, rec in batch:
                cw.raylet.notify(rm.PublishLogs(job_id, [rec]))

        try:
            cw.loop.call_soon_threadsafe(send)
        except RuntimeError:
            pass

    if logs is not None:
        logs.attach(cw.loop)
    output.install(context, sink, args.node_ip, logs.files[0].write if logs else None)
    executor.run_forever()


if __name__ == "__main__":
    main()
