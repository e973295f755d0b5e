"""The raylet's worker processes: start, register, hand out, reap.

Owns the OS processes of workers on this node. Decides nothing about leases:
the raylet asks for an idle worker and tells the pool when one is leased,
returned or gone.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rayops import ids

logger = logging.getLogger(__name__)


@dataclass
class WorkerHandle:
    worker_id: bytes
    proc: subprocess.Popen[bytes] | None
    pid: int
    conn: Any = None  # framed Connection once registered
    address: tuple[str, int] | None = None
    lease_id: int | None = None
    log_path: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


class WorkerPool:
    """Starts worker processes and tracks which are idle."""

    def __init__(
        self,
        *,
        node_ip: str,
        raylet_port: int,
        token_file: str,
        session_dir: str,
        node_id: str,
        log_dir: str,
    ) -> None:
        self._node_ip = node_ip
        self._raylet_port = raylet_port
        self._token_file = token_file
        self._session_dir = session_dir
        self._node_id = node_id
        self._log_dir = log_dir
        self.starting: dict[bytes, WorkerHandle] = {}
        self.workers: dict[bytes, WorkerHandle] = {}
        self.idle: deque[bytes] = deque()

    @property
    def num_starting(self) -> int:
        return len(self.starting)

    def start_worker(self) -> WorkerHandle:
        worker_id = ids.random_id(16)
        log_path = os.path.join(self._log_dir, f"worker-{worker_id.hex()[:12]}.log")
        env = dict(os.environ)
        env["PYTHONUNBUFFERED"] = "1"
        cmd = [
            sys.executable,
            "-m",
            "rayops.core_worker.worker_main",
            "--raylet-address",
            f"{self._node_ip}:{self._raylet_port}",
            "--token-file",
            self._token_file,
            "--worker-id",
            worker_id.hex(),
            "--node-ip",
            self._node_ip,
        ]
        with open(log_path, "ab") as log:
            proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                close_fds=True,
            )
        handle = WorkerHandle(worker_id, proc, proc.pid, log_path=log_path)
        self.starting[worker_id] = handle
        logger.info("started worker %s pid=%d", worker_id.hex()[:12], proc.pid)
        return handle

    def on_registered(
        self, worker_id: bytes, conn: Any, address: tuple[str, int], pid: int
    ) -> WorkerHandle:
        handle = self.starting.pop(worker_id, None)
        if handle is None:
            # A worker we did not start (e.g. started by hand for debugging): adopt it.
            handle = WorkerHandle(worker_id, None, pid)
        handle.conn = conn
        handle.address = address
        self.workers[worker_id] = handle
        self.idle.append(worker_id)
        return handle

    def pop_idle(self) -> WorkerHandle | None:
        while self.idle:
            wid = self.idle.popleft()
            handle = self.workers.get(wid)
            if handle is not None and handle.lease_id is None:
                return handle
        return None

    def push_idle(self, handle: WorkerHandle) -> None:
        handle.lease_id = None
        if handle.worker_id in self.workers:
            self.idle.append(handle.worker_id)

    def remove(self, worker_id: bytes) -> WorkerHandle | None:
        handle = self.workers.pop(worker_id, None) or self.starting.pop(worker_id, None)
        if handle is not None:
            try:
                self.idle.remove(worker_id)
            except ValueError:
                pass
            self._reap(handle)
        return handle

    def kill(self, handle: WorkerHandle, sig: int = signal.SIGKILL) -> None:
        try:
            os.kill(handle.pid, sig)
        except ProcessLookupError:
            pass

    def _reap(self, handle: WorkerHandle) -> None:
        if handle.proc is not None:
            try:
                handle.proc.wait(timeout=0)
            except subprocess.TimeoutExpired:
                pass

    def reap_exited(self) -> list[WorkerHandle]:
        """Workers whose process exited before registering (a crash on start-up)."""
        dead = []
        for wid, handle in list(self.starting.items()):
            if handle.proc is not None and handle.proc.poll() is not None:
                del self.starting[wid]
                dead.append(handle)
        return dead

    def all_handles(self) -> list[WorkerHandle]:
        return [*self.workers.values(), *self.starting.values()]

    def shutdown(self, timeout: float = 2.0) -> None:
        """Terminate every worker: SIGTERM, then SIGKILL after ``timeout``."""
        handles = self.all_handles()
        for h in handles:
            self.kill(h, signal.SIGTERM)
        for h in handles:
            if h.proc is None:
                continue
            try:
                h.proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill(h, signal.SIGKILL)
                try:
                    h.proc.wait(timeout=timeout)
                except subprocess.TimeoutExpired:
                    logger.error("worker pid %d did not exit", h.pid)
        self.workers.clear()
        self.starting.clear()
        self.idle.clear()
