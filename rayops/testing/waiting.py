"""Waiting in tests for something another process does, with a bound and a message.

Every integration test that polls (a process to exit, a store to empty, a metric to move)
uses ``wait_for``: a bounded loop that fails with what it waited for and for how long.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable

import psutil


def wait_for(
    what: str, check: Callable[[], object], timeout: float = 30.0, interval: float = 0.05
) -> None:
    """Return once ``check()`` is true; AssertionError naming ``what`` after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


def process_alive(pid: int) -> bool:
    """Whether ``pid`` is a running process (a zombie, exited but not reaped, is not)."""
    try:
        return bool(psutil.Process(pid).status() != psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def stop_process(
    proc: subprocess.Popen[bytes] | subprocess.Popen[str] | None, grace: float
) -> None:
    """SIGTERM ``proc`` if it still runs, SIGKILL it after ``grace`` s, and reap it."""
    if proc is None or proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout=grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=10)
