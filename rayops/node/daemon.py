"""Start-up plumbing shared by the node daemons (GCS, raylet, agent, API server).

Owns: logging to rotating files (the mechanics are in ``log_rotation.py``), the
ready pipe (a daemon writes its bound port to an inherited fd once it serves), and
the watch pipe (a daemon started by a driver exits when the driver's end closes, so
a SIGKILLed driver leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Awaitable, Callable

from rayops.node.log_rotation import (
    LogRotationConfig,
    ProcessLogs,
    same_file,
    setup_process_logging,
)


def setup_logging(
    log_file: str | None, name: str, config: LogRotationConfig | None = None
) -> ProcessLogs | None:
    """Log to ``log_file`` (rotated by size), or to stderr without one.

    The daemon's fds 1/2 are rotated too when its parent pointed them at the sibling
    ``<stem>.out`` (as ``node/processes.py`` does), so tracebacks and stray prints
    cannot grow without bound; stdout going anywhere else (a terminal, journald) is
    left alone. ``config`` defaults to the ``RAYOPS_ROTATION_*`` environment, read here,
    at the daemon's edge.
    """
    if not log_file:
        handler = logging.StreamHandler()
        handler.setFormatter(
            logging.Formatter(f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s")
        )
        root = logging.getLogger()
        root.handlers[:] = [handler]
        root.setLevel(logging.INFO)
        return None
    if config is None:
        config = LogRotationConfig.from_env()
    out_file = os.path.splitext(log_file)[0] + ".out"
    stdio = out_file if same_file(1, out_file) else None
    return setup_process_logging(log_file, config, name=name, stdio_path=stdio)


def signal_ready(ready_fd: int | None, payload: str) -> None:
    if ready_fd is None:
        return
    try:
        os.write(ready_fd, (payload + "\n").encode())
    finally:
        os.close(ready_fd)


def watch_parent(
    loop: asyncio.AbstractEventLoop, watch_fd: int | None, on_eof: Callable[[], None]
) -> None:
    """Call ``on_eof`` once the watched pipe closes (its writer, our parent, is gone)."""
    if watch_fd is None:
        return
    os.set_blocking(watch_fd, False)

    def readable() -> None:
        try:
            data = os.read(watch_fd, 4096)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(watch_fd)
            on_eof()

    loop.add_reader(watch_fd, readable)


def run_with_token(token_file: str, amain: Callable[[str], Awaitable[int]]) -> int:
    """Read the cluster token from ``token_file`` (exit status 2, logged, if it cannot be
    read), then run ``amain(token)`` on a new uvloop event loop; its exit status."""
    from rayops.rpc import framed
    from rayops.rpc.auth import TokenFileError, read_token_file

    try:
        token = read_token_file(token_file)
    except TokenFileError as err:
        logging.getLogger(__name__).error("%s", err)
        return 2
    loop = framed.new_event_loop()
    try:
        return loop.run_until_complete(amain(token))
    finally:
        loop.close()
