"""Start-up plumbing shared by the node daemons (raylet, and the worker entry point).

Owns: logging to a file, the ready pipe (a daemon writes its bound port to an
inherited fd once it serves), and the watch pipe (a daemon started by a driver
exits when the driver's end closes, so a SIGKILLed driver leaves nothing behind).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable


def setup_logging(log_file: str | None, name: str) -> None:
    handler: logging.Handler = (
        logging.FileHandler(log_file) if log_file else logging.StreamHandler()
    )
    handler.setFormatter(
        logging.Formatter(f"%(asctime)s %(levelname)s {name} %(name)s: %(message)s")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


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
