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


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(prog="rayops-worker")
    p.add_argument("--raylet-address", required=True)
    p.add_argument("--token-file", required=True)
    p.add_argument("--worker-id", required=True)
    p.add_argument("--node-ip", required=True)
    args = p.parse_args(argv)
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
                cw.raylet.notify("publish_logs", job_id, [rec])

        try:
            cw.loop.call_soon_threadsafe(send)
        except RuntimeError:
            pass

    output.install(context, sink, args.node_ip)
    executor.run_forever()


if __name__ == "__main__":
    main()
