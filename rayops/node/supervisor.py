"""`python -m rayops.node.supervisor -- CMD...`: run a daemon and start it again when it dies.

Plain-process mode's answer to systemd's `Restart=on-failure` (the head's GCS under
`rayops start --head` and `rayops.init()`): the child is started with the same command line
(the same port), after a backoff, whenever it exits abnormally (killed by a signal, or a
status other than 0 and 2: 0 is a graceful stop, 2 bad arguments or configuration, which a
restart cannot fix). Restarts stop after `MAX_FAST_FAILURES` children in a row that each lived
less than `STABLE_AFTER_S`.

The fds the child is given: `--ready-fd N` only on its first start (the parent waits for the
port once), `--watch-fd N` on every start, and the supervisor watches that fd too: once it
hits EOF (the driver that started the node is gone) nothing is restarted. SIGTERM and SIGINT
are passed on to the child, and the supervisor exits with the child's status. The child gets
SIGTERM if the supervisor dies (Linux `PR_SET_PDEATHSIG`): a SIGKILLed supervisor leaves no
daemon behind.

The decision is `decide` (no I/O, tested as a table); `main` is the shell.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

__all__ = [
    "BACKOFF_MAX_S",
    "BACKOFF_MIN_S",
    "MAX_FAST_FAILURES",
    "Decision",
    "decide",
    "main",
    "supervised_pid",
]

BACKOFF_MIN_S = 0.1
BACKOFF_MAX_S = 5.0
STABLE_AFTER_S = 30.0  # a child that lived this long resets the backoff
MAX_FAST_FAILURES = 20
_NO_RESTART_CODES = (0, 2)
_PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Decision:
    restart: bool
    delay_s: float
    fast_failures: int  # the count to carry to the next decision
    reason: str


def decide(returncode: int, lived_s: float, fast_failures: int, stopping: bool) -> Decision:
    """Restart the child that exited with `returncode` (negative: killed by that signal)?"""
    how = f"killed by signal {-returncode}" if returncode < 0 else f"exited with {returncode}"
    if stopping:
        return Decision(False, 0.0, fast_failures, f"{how} while stopping")
    if returncode in _NO_RESTART_CODES:
        return Decision(False, 0.0, fast_failures, f"{how}: not restarted")
    failures = 0 if lived_s >= STABLE_AFTER_S else fast_failures + 1
    if failures > MAX_FAST_FAILURES:
        return Decision(
            False, 0.0, failures, f"{how}; {MAX_FAST_FAILURES} fast failures in a row: giving up"
        )
    delay = 0.0 if failures <= 1 else min(BACKOFF_MAX_S, BACKOFF_MIN_S * 2 ** (failures - 2))
    return Decision(True, delay, failures, f"{how}; restarting in {delay:g} s")


def supervised_pid(supervisor_pid: int, timeout: float = 10.0) -> int:
    """The pid of the daemon a supervisor runs now (waits up to `timeout` for a restart)."""
    import psutil

    deadline = time.monotonic() + timeout
    while True:
        try:
            children = psutil.Process(supervisor_pid).children()
        except psutil.NoSuchProcess:
            children = []
        live = [c for c in children if c.status() != psutil.STATUS_ZOMBIE]
        if live:
            return int(live[0].pid)
        if time.monotonic() > deadline:
            raise TimeoutError(f"supervisor pid {supervisor_pid} runs no daemon")
        time.sleep(0.02)


def _fd_arg(argv: list[str], flag: str) -> int | None:
    for i, arg in enumerate(argv[:-1]):
        if arg == flag:
            return int(argv[i + 1])
    return None


def _without(argv: list[str], flag: str) -> list[str]:
    out, skip = [], False
    for arg in argv:
        if skip:
            skip = False
        elif arg == flag:
            skip = True
        else:
            out.append(arg)
    return out


def _log(msg: str) -> None:
    stamp = time.strftime("%Y-%m-%d %H:%M:%S")
    print(f"{stamp} supervisor[{os.getpid()}]: {msg}", file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if "--" not in args or args.index("--") == len(args) - 1:
        print("usage: python -m rayops.node.supervisor -- CMD [ARGS...]", file=sys.stderr)
        return 2
    cmd = args[args.index("--") + 1 :]
    ready_fd = _fd_arg(cmd, "--ready-fd")
    watch_fd = _fd_arg(cmd, "--watch-fd")
    stopping = False
    child: subprocess.Popen[bytes] | None = None

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if child is not None and child.poll() is None:
            child.send_signal(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    fast_failures = 0
    first = True
    while True:
        fds = [fd for fd in (ready_fd if first else None, watch_fd) if fd is not None]
        started = time.monotonic()
        child = subprocess.Popen(
            cmd, pass_fds=fds, close_fds=True, preexec_fn=_die_with_parent(os.getpid())
        )
        if first and ready_fd is not None:
            os.close(ready_fd)  # the child holds it: the parent sees its EOF if it dies
            cmd = _without(cmd, "--ready-fd")
        first = False
        watch_gone = _wait(child, watch_fd)
        if watch_gone:
            stopping = True
        returncode = child.wait()
        decision = decide(returncode, time.monotonic() - started, fast_failures, stopping)
        fast_failures = decision.fast_failures
        _log(f"{os.path.basename(cmd[0])} {' '.join(cmd[1:3])} pid {child.pid} {decision.reason}")
        if not decision.restart:
            return returncode if returncode >= 0 else 128 - returncode
        deadline = time.monotonic() + decision.delay_s
        while time.monotonic() < deadline and not stopping:
            time.sleep(min(0.05, decision.delay_s))
        if stopping:
            return 0


def _die_with_parent(parent: int) -> Callable[[], None]:
    """Run in the child between fork and exec: SIGTERM when the supervisor dies."""
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)

    def arm() -> None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # it died before the line above
            os._exit(1)

    return arm


def _wait(child: subprocess.Popen[bytes], watch_fd: int | None) -> bool:
    """Wait for the child to exit; True if the watch fd hit EOF meanwhile."""
    watch_gone = False
    while child.poll() is None:
        if watch_fd is None or watch_gone:
            try:
                child.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            continue
        try:
            readable, _, _ = select.select([watch_fd], [], [], 0.5)
        except InterruptedError:
            continue
        if readable:
            try:
                data = os.read(watch_fd, 4096)
            except OSError:
                data = b""
            if not data:
                watch_gone = True  # the child sees the same EOF and stops
    return watch_gone


if __name__ == "__main__":
    sys.exit(main())
