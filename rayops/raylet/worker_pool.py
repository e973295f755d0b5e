"""The raylet's worker processes: start, register, hand out, reap.

Owns the OS processes of workers on this node. Decides nothing about leases:
the raylet asks for an idle worker and tells the pool when one is leased,
returned or gone. Workers are pooled per runtime_env (by its hash, "" for
none): a worker is started in one env (its env vars set, its cwd and
``sys.path`` prepared before any task runs) and only ever serves that env.
The zygote never imports user code; each forked child applies its env itself,
so no env's modules or variables reach another's workers. Also keeps the node's
``logs/`` directory under its total cap (``enforce_log_cap``): the pool knows which
worker logs are still being written.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from rayops import ids
from rayops.envs.node_cache import PreparedEnv
from rayops.envs.spec import env_hash as hash_of_wire
from rayops.node import log_rotation
from rayops.node.log_rotation import LogRotationConfig
from rayops.node.session import worker_log_name

logger = logging.getLogger(__name__)

LOG_CAP_PERIOD_S = 1.0
# A worker of a runtime_env idle this long is stopped while the node has more workers than
# CPUs (Ray kills idle workers past its soft limit after 1 s; longer here, so a program that
# alternates envs keeps its workers warm). Workers without an env are never stopped so.
IDLE_ENV_WORKER_S = 10.0


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
    env_hash: str = ""  # the runtime_env it runs in ("" for none)
    idle_since: float = 0.0  # time.monotonic() when it last became idle


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
        log_rotation: LogRotationConfig | None = None,
    ) -> None:
        self._node_ip = node_ip
        self._raylet_port = raylet_port
        self._token_file = token_file
        self._session_dir = session_dir
        self._node_id = node_id
        self._log_dir = log_dir
        self._log_rotation = log_rotation or LogRotationConfig()
        self.starting: dict[bytes, WorkerHandle] = {}
        self.workers: dict[bytes, WorkerHandle] = {}
        self.idle: dict[str, deque[bytes]] = {}  # env hash -> idle workers of that env
        self._zygote: Zygote | None = None

    @property
    def num_starting(self) -> int:
        return len(self.starting)

    def num_starting_for(self, env_hash: str) -> int:
        return sum(1 for h in self.starting.values() if h.env_hash == env_hash)

    def start_zygote(self, loop: Any) -> None:
        """Start the fork server; workers started from now on are forked from it."""
        try:
            self._zygote = Zygote(
                os.path.join(self._log_dir, "zygote.log"), self._on_forked, self._log_rotation
            )
            self._zygote.attach(loop)
        except OSError as err:
            logger.warning("could not start the worker zygote (%s); spawning workers directly", err)
            self._zygote = None

    def _on_forked(self, worker_id: bytes, pid: int) -> None:
        handle = self.starting.get(worker_id)
        if handle is None:
            return
        if pid <= 0:
            logger.warning(
                "the zygote could not fork worker %s; spawning it directly", worker_id.hex()[:12]
            )
            del self.starting[worker_id]
            self._spawn_direct(worker_id, handle.log_path, handle.extra.get("env"))
            return
        handle.pid = pid
        logger.info("forked worker %s pid=%d", worker_id.hex()[:12], pid)

    def _argv(self, worker_id: bytes, log_path: str, env: PreparedEnv | None) -> list[str]:
        extra: list[str] = []
        if env is not None:
            extra += ["--runtime-env", env.wire]
            if env.working_dir:
                extra += ["--working-dir", env.working_dir]
            for path in env.sys_paths:
                extra += ["--sys-path", path]
        return [
            *extra,
            "--raylet-address",
            f"{self._node_ip}:{self._raylet_port}",
            "--token-file",
            self._token_file,
            "--worker-id",
            worker_id.hex(),
            "--node-ip",
            self._node_ip,
            "--log-file",
            log_path,
        ]

    def start_worker(self, env_hash: str = "", env: PreparedEnv | None = None) -> WorkerHandle:
        """A new worker for the env ``env_hash`` (``env`` prepared on this node)."""
        worker_id = ids.random_id(16)
        log_path = os.path.join(self._log_dir, worker_log_name(worker_id))
        # A pip/uv env's worker runs its venv's python: the zygote's imports are the node's.
        if self._zygote is not None and self._zygote.alive and (env is None or not env.venv):
            handle = WorkerHandle(worker_id, None, 0, log_path=log_path, env_hash=env_hash)
            handle.extra["env"] = env
            self.starting[worker_id] = handle
            env_vars = env.env_vars if env is not None else {}
            self._zygote.request(
                worker_id, self._argv(worker_id, log_path, env), log_path, env_vars
            )
            return handle
        return self._spawn_direct(worker_id, log_path, env, env_hash)

    def _spawn_direct(
        self,
        worker_id: bytes,
        log_path: str,
        runtime_env: PreparedEnv | None,
        env_hash: str = "",
    ) -> WorkerHandle:
        env = dict(os.environ)
        if runtime_env is not None:
            env.update(runtime_env.env_vars)
            env_hash = env_hash or hash_of_wire(runtime_env.wire)
        env["PYTHONUNBUFFERED"] = "1"
        python = runtime_env.python if runtime_env is not None else None
        cmd = [
            python or sys.executable,
            "-m",
            "rayops.core_worker.worker_main",
            *self._argv(worker_id, log_path, runtime_env),
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
        handle = WorkerHandle(worker_id, proc, proc.pid, log_path=log_path, env_hash=env_hash)
        handle.extra["env"] = runtime_env
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
        handle.idle_since = time.monotonic()
        self.workers[worker_id] = handle
        self.idle.setdefault(handle.env_hash, deque()).append(worker_id)
        return handle

    def pop_idle(self, env_hash: str = "") -> WorkerHandle | None:
        """An idle worker of the env ``env_hash``, never one of another env."""
        idle = self.idle.get(env_hash)
        while idle:
            wid = idle.popleft()
            handle = self.workers.get(wid)
            if handle is not None and handle.lease_id is None:
                return handle
        return None

    def push_idle(self, handle: WorkerHandle) -> None:
        handle.lease_id = None
        handle.idle_since = time.monotonic()
        if handle.worker_id in self.workers:
            self.idle.setdefault(handle.env_hash, deque()).append(handle.worker_id)

    def idle_count(self) -> int:
        return sum(len(q) for q in self.idle.values())

    def stop_idle_env_workers(self, soft_limit: int, now: float) -> list[WorkerHandle]:
        """Stop (SIGTERM) idle workers of runtime_envs that have been idle for
        ``IDLE_ENV_WORKER_S`` while the node has more than ``soft_limit`` workers; they are
        taken out of the idle pool at once, and their connection's close cleans up."""
        candidates = [
            (h.idle_since, h.worker_id)
            for env_hash, queue in self.idle.items()
            if env_hash
            for wid in queue
            if (h := self.workers.get(wid)) is not None and h.lease_id is None
        ]
        doomed = plan_idle_stops(
            candidates, len(self.workers) + len(self.starting), soft_limit, now
        )
        stopped = []
        for wid in doomed:
            handle = self.workers[wid]
            queue = self.idle.get(handle.env_hash)
            if queue is not None:
                queue.remove(wid)
                if not queue:
                    del self.idle[handle.env_hash]
            self.kill(handle, signal.SIGTERM)
            stopped.append(handle)
        return stopped

    def stop_idle_of_env(self, env_hash: str) -> list[WorkerHandle]:
        """Stop (SIGTERM) every idle worker of ``env_hash`` (its env is being deleted)."""
        stopped = []
        for wid in self.idle.pop(env_hash, deque()):
            handle = self.workers.get(wid)
            if handle is not None and handle.lease_id is None:
                self.kill(handle, signal.SIGTERM)
                stopped.append(handle)
        return stopped

    def remove(self, worker_id: bytes) -> WorkerHandle | None:
        handle = self.workers.pop(worker_id, None) or self.starting.pop(worker_id, None)
        if handle is not None:
            idle = self.idle.get(handle.env_hash)
            if idle is not None:
                try:
                    idle.remove(worker_id)
                except ValueError:
                    pass
                if not idle and handle.env_hash:
                    del self.idle[handle.env_hash]
            self._reap(handle)
        return handle

    def kill(self, handle: WorkerHandle, sig: int = signal.SIGKILL) -> None:
        if handle.pid <= 0:
            return
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
            gone = (
                handle.proc.poll() is not None
                if handle.proc is not None
                else handle.pid > 0 and not _running(handle.pid)
            )
            if gone:
                del self.starting[wid]
                dead.append(handle)
        return dead

    def all_handles(self) -> list[WorkerHandle]:
        return [*self.workers.values(), *self.starting.values()]

    async def enforce_log_cap(self, stopping: asyncio.Event) -> None:
        """Every ``LOG_CAP_PERIOD_S``, delete the oldest rotated logs and logs of exited
        workers while ``logs/`` is over ``RAYOPS_LOGS_MAX_TOTAL_BYTES``."""
        cap = self._log_rotation.max_total_bytes
        while cap > 0 and not stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), LOG_CAP_PERIOD_S)
            entries = await asyncio.to_thread(log_rotation.scan_log_dir, self._log_dir)
            # The live set is taken after the scan: a worker's handle exists before its
            # log file does, so no file in the scan can belong to a worker missing here.
            doomed = log_rotation.plan_cap_deletions(entries, cap, self._live_log_names(entries))
            if doomed:
                n = await asyncio.to_thread(log_rotation.delete_log_files, self._log_dir, doomed)
                logger.info("logs over the %d-byte cap: deleted %d old file(s)", cap, n)

    def _live_log_names(self, entries: list[log_rotation.LogFileEntry]) -> set[str]:
        """Files being written: every daemon's, and the logs of workers still alive."""
        live = {os.path.basename(h.log_path) for h in self.all_handles() if h.log_path}
        live.update(e.name for e in entries if not e.name.startswith("worker-"))
        return live

    def shutdown(self, timeout: float = 2.0) -> None:
        """Terminate every worker: SIGTERM, then SIGKILL after ``timeout``."""
        handles = self.all_handles()
        for h in handles:
            self.kill(h, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        forked = [h for h in handles if h.proc is None and h.pid > 0]
        while forked and time.monotonic() < deadline:
            forked = [h for h in forked if _running(h.pid)]
            time.sleep(0.02)
        for h in forked:
            self.kill(h, signal.SIGKILL)
        if self._zygote is not None:
            self._zygote.close()
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


def plan_idle_stops(
    candidates: list[tuple[float, bytes]], workers: int, soft_limit: int, now: float
) -> list[bytes]:
    """Which idle env workers ``(idle_since, worker_id)`` to stop: the longest idle first,
    only those idle for ``IDLE_ENV_WORKER_S``, and no more than the node is over its limit."""
    over = workers - soft_limit
    out = []
    for since, wid in sorted(candidates):
        if over <= 0 or now - since < IDLE_ENV_WORKER_S:
            break
        out.append(wid)
        over -= 1
    return out


def _running(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


class Zygote:
    """The raylet's handle on its fork server (see rayops/raylet/zygote.py)."""

    def __init__(self, log_path: str, on_pid: Any, log_rotation: LogRotationConfig) -> None:
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rayops.raylet.zygote", "--log-file", log_path],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                close_fds=True,
                env={**os.environ, **log_rotation.to_env(), "PYTHONUNBUFFERED": "1"},
            )
        self._on_pid = on_pid
        self._pending: deque[bytes] = deque()
        self._buf = b""
        self.alive = True
        self._loop: Any = None

    def attach(self, loop: Any) -> None:
        assert self.proc.stdout is not None
        self._loop = loop
        loop.add_reader(self.proc.stdout.fileno(), self._readable)

    def request(
        self, worker_id: bytes, argv: list[str], log: str, env_vars: dict[str, str]
    ) -> None:
        """Fork a worker; the child sets ``env_vars`` before the worker code runs."""
        assert self.proc.stdin is not None
        env = {**env_vars, "PYTHONUNBUFFERED": "1"}
        line = json.dumps({"argv": argv, "log": log, "env": env})
        try:
            self.proc.stdin.write(line.encode() + b"\n")
            self.proc.stdin.flush()
        except OSError:
            self._died()
            self._on_pid(worker_id, 0)
            return
        self._pending.append(worker_id)

    def _readable(self) -> None:
        assert self.proc.stdout is not None
        try:
            data = os.read(self.proc.stdout.fileno(), 65536)
        except OSError:
            data = b""
        if not data:
            self._died()
            return
        self._buf += data
        while b"\n" in self._buf:
            line, self._buf = self._buf.split(b"\n", 1)
            text = line.decode().strip()
            if text == "ready" or not self._pending:
                continue
            worker_id = self._pending.popleft()
            pid = int(text.split()[0]) if text[:1].isdigit() else 0
            self._on_pid(worker_id, pid)

    def _died(self) -> None:
        if not self.alive:
            return
        self.alive = False
        logger.warning("the worker zygote exited; spawning workers directly from now on")
        if self._loop is not None and self.proc.stdout is not None:
            try:
                self._loop.remove_reader(self.proc.stdout.fileno())
            except Exception:
                pass
        pending, self._pending = self._pending, deque()
        for worker_id in pending:
            self._on_pid(worker_id, 0)

    def close(self) -> None:
        self.alive = False
        try:
            if self.proc.stdin is not None:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout=2)
