"""A real Redis server for tests of the GCS's external store: start, stop, restart.

    redis = RedisServer(base_dir, password="pw")
    redis.start()          # a free 127.0.0.1 port, AOF on, waits until it answers PING
    redis.address          # "127.0.0.1:PORT" (RAY_REDIS_ADDRESS)
    redis.stop()           # stops the process, removes its files

The binary is Debian's ``redis-server`` (``scripts/bootstrap-hosts.sh`` installs it). It
binds loopback only, asks for the password, keeps an append-only file in `base_dir` (as Ray
asks of an HA Redis), and dies with the process that started it (setpriv's parent-death
signal), so a crashed test run leaves no server behind.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time

from rayops.node.processes import free_port
from rayops.testing.waiting import stop_process

__all__ = ["RedisServer", "RedisServerError", "redis_server_binary"]


class RedisServerError(RuntimeError):
    pass


def redis_server_binary() -> str | None:
    return shutil.which("redis-server")


class RedisServer:
    def __init__(self, base_dir: str, password: str) -> None:
        self.base_dir = base_dir
        self.password = password
        self.binary = redis_server_binary()
        self.port = free_port("127.0.0.1")
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = os.path.join(base_dir, "redis.log")

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self, timeout: float = 15.0) -> None:
        if self.binary is None:
            raise RedisServerError("redis-server is not installed (scripts/bootstrap-hosts.sh)")
        os.makedirs(self.base_dir, exist_ok=True)
        setpriv = shutil.which("setpriv")
        wrapper = [setpriv, "--pdeathsig", "TERM", "--"] if setpriv else []
        # The password on argv is fine here: a test-only server on loopback.
        cmd = [
            *wrapper,
            self.binary,
            "--bind",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--requirepass",
            self.password,
            "--dir",
            self.base_dir,
            "--appendonly",
            "yes",
            "--save",
            "",
            "--daemonize",
            "no",
            "--logfile",
            self.log_path,
        ]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + timeout
        while not self._answers():
            if self.proc.poll() is not None:
                raise RedisServerError(f"redis-server exited at start: {self.log_tail()}")
            if time.monotonic() > deadline:
                raise RedisServerError(f"redis-server not ready after {timeout} s")
            time.sleep(0.02)

    def _answers(self) -> bool:
        """PING with the password answers +PONG."""
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as s:
                pw = self.password.encode()
                s.sendall(b"*2\r\n$4\r\nAUTH\r\n$%d\r\n%s\r\n*1\r\n$4\r\nPING\r\n" % (len(pw), pw))
                got = b""
                while b"PONG" not in got and len(got) < 200:
                    chunk = s.recv(200)
                    if not chunk:
                        return False
                    got += chunk
                return True
        except OSError:
            return False

    def log_tail(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, encoding="utf-8", errors="replace") as f:
                return "".join(f.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def kill(self) -> None:
        """SIGKILL the server (its append-only file stays for a restart)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        stop_process(self.proc, grace=10)
        shutil.rmtree(self.base_dir, ignore_errors=True)
