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
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys


def _child(argv: list[str], log: str, env: dict[str, str]) -> None:
    try:
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


def main() -> None:
    # Import what every worker needs, once, before any fork.
    from rayops.core_worker import (  # noqa: F401
        actor_runtime,
        executor,
        worker_main,
    )

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    stdin = sys.stdin.buffer
    out = sys.stdout
    out.write("ready\n")
    out.flush()
    buf = b""
    while True:
        readable, _, _ = select.select([stdin.fileno()], [], [], 0.5)
        _reap()
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
                _child(req["argv"], req["log"], req.get("env", {}))
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
