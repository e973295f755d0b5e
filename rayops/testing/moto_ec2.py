"""A real local EC2 endpoint for tests: moto's server as a child process on 127.0.0.1.

``MotoEc2`` starts ``moto_server`` on a free loopback port with moto's AMI and instance-type
validation switched on (so a bad ImageId or InstanceType is refused as EC2 refuses it), and
stops it on exit. ``credentials_env`` is what a test puts in the environment so boto3 finds
fake credentials at once and never asks an instance-metadata address: no traffic leaves
loopback. Needs the ``test`` extra (``moto[server]``, ``boto3``).
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from types import TracebackType
from typing import Any

from rayops.testing.waiting import stop_process

__all__ = ["MotoEc2", "credentials_env"]


def credentials_env(home: str) -> dict[str, str]:
    """Environment for boto3 in a test: fake keys, no config files of the user's, no IMDS."""
    return {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_CONFIG_FILE": os.path.join(home, "aws-config-none"),
        "AWS_SHARED_CREDENTIALS_FILE": os.path.join(home, "aws-credentials-none"),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class MotoEc2:
    """``with MotoEc2() as moto: moto.endpoint_url`` -- a moto server on 127.0.0.1."""

    def __init__(self, startup_timeout_s: float = 30.0) -> None:
        self._timeout = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None
        self.endpoint_url = ""

    def __enter__(self) -> MotoEc2:
        exe = shutil.which("moto_server", path=os.path.dirname(sys.executable)) or shutil.which(
            "moto_server"
        )
        if exe is None:
            raise RuntimeError("moto_server not found: install the test extra (moto[server])")
        env = dict(
            os.environ,
            MOTO_ENABLE_AMI_VALIDATION="true",
            MOTO_EC2_ENABLE_INSTANCE_TYPE_VALIDATION="true",
        )
        for _ in range(3):  # the free port may be taken between probe and bind
            port = _free_port()
            self._proc = subprocess.Popen(
                [exe, "-H", "127.0.0.1", "-p", str(port)],
                env=env,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
            )
            self.endpoint_url = f"http://127.0.0.1:{port}"
            if self._wait_ready(port):
                return self
            self._stop()
        raise RuntimeError(f"moto_server did not start within {self._timeout:g} s")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + self._timeout
        while time.monotonic() < deadline:
            assert self._proc is not None
            if self._proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                    return True
            except OSError:
                time.sleep(0.05)
        return False

    def client(self, region: str = "us-west-2") -> Any:
        """A boto3 EC2 client of this server (credentials come from the environment)."""
        import boto3

        return boto3.session.Session().client(
            "ec2", region_name=region, endpoint_url=self.endpoint_url
        )

    def _stop(self) -> None:
        # moto keeps its state in memory only: nothing to lose by not waiting long.
        stop_process(self._proc, grace=1)
        self._proc = None

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop()
