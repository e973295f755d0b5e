"""The raylet's handle on its node agent process (``python -m rayops.agent``).

Owns that one child process: start it, notice that it exited, start it again after a
backoff, stop it on shutdown. The ports are chosen by the raylet once and passed on every
start, so a restarted agent is found where the old one was. The agent gets the read end of a
*watch pipe* whose write end only the raylet holds: when the raylet goes away for any reason,
SIGKILL included, the agent reads EOF and exits.

The restart policy is a pure function (`restart_delay`) so it is tested without processes.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from rayops.node.log_rotation import LogRotationConfig, rotate_if_due

logger = logging.getLogger(__name__)

# An agent that ran at least this long before dying starts again without delay build-up.
STABLE_RUN_S = 30.0
MAX_RESTART_DELAY_S = 30.0


def restart_delay(consecutive_failures: int) -> float:
    """Seconds to wait before the next start after ``consecutive_failures`` quick deaths."""
    if consecutive_failures <= 0:
        return 0.0
    return float(min(MAX_RESTART_DELAY_S, 0.5 * 2 ** (consecutive_failures - 1)))


@dataclass(frozen=True)
class AgentSettings:
    """Everything the agent's command line carries."""

    node_id: str
    node_ip: str
    raylet_port: int
    metrics_export_port: int
    agent_port: int
    gcs_address: str
    token_file: str
    session_dir: str
    session_name: str
    temp_dir: str
    is_head: bool
    log_dir: str
    log_rotation: LogRotationConfig = field(default_factory=LogRotationConfig)

    def argv(self, watch_fd: int) -> list[str]:
        cmd = [
            sys.executable,
            "-m",
            "rayops.agent",
            "--node-id",
            self.node_id,
            "--node-ip",
            self.node_ip,
            "--raylet-port",
            str(self.raylet_port),
            "--metrics-export-port",
            str(self.metrics_export_port),
            "--agent-port",
            str(self.agent_port),
            "--gcs-address",
            self.gcs_address,
            "--token-file",
            self.token_file,
            "--session-dir",
            self.session_dir,
            "--session-name",
            self.session_name,
            "--temp-dir",
            self.temp_dir,
            "--log-file",
            os.path.join(self.log_dir, "agent.log"),
            "--watch-fd",
            str(watch_fd),
        ]
        if self.is_head:
            cmd.append("--head")
        return cmd


class AgentProcess:
    """Keeps one agent running beside the raylet. Not thread-safe: call from one thread."""

    def __init__(
        self, settings: AgentSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.settings = settings
        self._clock = clock
        self._proc: subprocess.Popen[bytes] | None = None
        self._watch_w: int | None = None
        self._started_at = 0.0
        self._failures = 0
        self._next_start: float | None = None
        self.restarts = 0
        self._stopped = False

    @property
    def pid(self) -> int:
        return self._proc.pid if self._proc is not None and self._proc.poll() is None else 0

    def start(self) -> None:
        if self._stopped:
            return
        watch_r, watch_w = os.pipe()
        out = os.path.join(self.settings.log_dir, "agent.out")
        # An agent that dies before it set up its own rotation must not grow agent.out
        # by a traceback per restart forever.
        rotate_if_due(out, self.settings.log_rotation)
        try:
            with open(out, "ab") as log:
                self._proc = subprocess.Popen(
                    self.settings.argv(watch_r),
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    pass_fds=[watch_r],
                    close_fds=True,
                )
        except OSError:
            os.close(watch_w)
            raise
        finally:
            os.close(watch_r)
        self._watch_w = watch_w
        self._started_at = self._clock()
        self._next_start = None
        logger.info(
            "started the node agent pid=%d (metrics :%d, reports :%d)",
            self._proc.pid,
            self.settings.metrics_export_port,
            self.settings.agent_port,
        )

    def poll(self) -> None:
        """Called periodically: notice a dead agent, start it again when its backoff ends."""
        if self._stopped:
            return
        now = self._clock()
        if self._proc is not None and self._proc.poll() is not None:
            code = self._proc.returncode
            ran = now - self._started_at
            self._failures = 1 if ran >= STABLE_RUN_S else self._failures + 1
            delay = restart_delay(self._failures)
            logger.warning(
                "the node agent pid=%d exited with code %s after %.1f s; restarting it in "
                "%.1f s (see %s)",
                self._proc.pid,
                code,
                ran,
                delay,
                os.path.join(self.settings.log_dir, "agent.log"),
            )
            self._proc = None
            self._close_pipe()
            self._next_start = now + delay
        if self._proc is None and self._next_start is not None and now >= self._next_start:
            self.restarts += 1
            try:
                self.start()
            except OSError as err:
                self._failures += 1
                self._next_start = now + restart_delay(self._failures)
                logger.error("could not start the node agent: %s", err)

    def stop(self, timeout: float = 2.0) -> None:
        """SIGTERM the agent, SIGKILL it after ``timeout``; no restart afterwards."""
        self._stopped = True
        proc, self._proc = self._proc, None
        self._close_pipe()  # EOF on the watch pipe also tells the agent to go
        if proc is None or proc.poll() is not None:
            return
        try:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=timeout)
        except ProcessLookupError:
            pass

    def _close_pipe(self) -> None:
        if self._watch_w is not None:
            try:
                os.close(self._watch_w)
            except OSError:
                pass
            self._watch_w = None
