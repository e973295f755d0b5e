"""A fork server for worker processes: ``python -m rayops.raylet.zygote``.

Starting a worker the plain way costs a Python interpreter start plus the core
worker's imports (~150 ms of CPU here), which bounds actor creation and adds to
cold start. The raylet instead starts one zygote that imports the worker code once
and then forks a child per request; a fork costs a few milliseconds and the child
shares the imported pages.

Protocol on the zygote's stdin/stdout (a private pipe from the raylet): one JSON
line per request ``{"argv": [...], "log": PATH, "env": {...}}``, answered with one
line holding the child's pid (or ``0 <error>``). The zygote has no threads, so
forking it is safe; it reaps its children and exits when the raylet closes the pipe.

Its own stderr (``--log-file``, the raylet points fd 2 there) rotates by size like
every log (``node/log_rotation.py``), checked in the select loop rather than by a
watchdog thread, which would make forking unsafe.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys

from rayops.node.log_rotation import LogRotationConfig, RotatingFile


def _child(argv: list[str], log: str, env: dict[str, str], own_log_fd: int | None) -> None:
    try:
        if own_log_fd is not None:
            os.close(own_log_fd)  # the zygote's log; the worker writes its own
        fd = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        os.close(fd)
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        os.close(null)
        os.environ.update(env)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # closefd=False: these objects are replaced later; collecting them must not
        # close fds 1 and 2 (the numbers would be reused by sockets).
        sys.stdout = os.fdopen(1, "w", buffering=1, closefd=False)
        sys.stderr = os.fdopen(2, "w", buffering=1, closefd=False)
        from rayops.core_worker import worker_main

        worker_main.main(argv)
    except SystemExit as err:
        os._exit(err.code if isinstance(err.code, int) else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
        os._exit(1)
    os._exit(0)


def _rotating_stderr(argv: list[str]) -> RotatingFile | None:
    if len(argv) != 2 or argv[0] != "--log-file":
        return None
    return RotatingFile(argv[1], LogRotationConfig.from_env(), bind_fds=(2,))


def main(argv: list[str] | None = None) -> None:
    argv = sys.argv[1:] if argv is None else argv
    # Import what every worker needs, once, before any fork: each module left out is
    # imported again by every forked worker (actor_submitter + actor_queue alone cost
    # ~20 ms of each actor's creation).
    import uvloop  # noqa: F401

    from rayops.core_worker import (  # noqa: F401
        actor_runtime,
        actor_submitter,
        executor,
        worker_main,
    )

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    own_log = _rotating_stderr(argv)
    stdin = sys.stdin.buffer
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    buf = b""
    while True:
        readable, _, _ = select.select([stdin.fileno()], [], [], 0.5)
        _reap()
        if own_log is not None:
            own_log.check()
        if not readable:
            continue
        chunk = os.read(stdin.fileno(), 65536)
        if not chunk:
            return  # the raylet is gone
        buf += chunk
        while b"\n" in buf:
            line, buf = buf.split(b"\n", 1)
            try:
                req = json.loads(line)
                pid = os.fork()
            except Exception as err:
                out.write(f"0 {err!r}\n")
                out.flush()
                continue
            if pid == 0:
                os.close(stdin.fileno())
                _child(
                    req["argv"],
                    req["log"],
                    req.get("env", {}),
                    own_log.fd if own_log is not None else None,
                )
            out.write(f"{pid}\n")
            out.flush()


def _reap() -> None:
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return


if __name__ == "__main__":
    main()
