"""``rayops submit CONFIG script.py`` and ``rayops dashboard CONFIG``: the head's Jobs API from
the launcher machine, through the launcher's SSH connection to the head.

The head's API server listens on the head's 127.0.0.1 (``node.json``'s ``dashboard_url``);
``head_api`` reads that address and the cluster token (``<install_dir>/cluster_token``, where
the launcher keeps it) over SFTP and forwards a local port to it (``tunnel.LocalForward``).

``run_submit`` uploads the script as the job's ``working_dir`` (a package through the same
API: no separate copy), submits ``python -u script.py ARGS`` as a job, prints its log as it
grows (``events.output``, stdout) and returns what the old SSH session returned: the script's
exit code (0 when the job SUCCEEDED, the driver's exit code when it FAILED, 1 when it failed
without one, 130 when stopped). Ctrl-C stops the job (``ray submit``'s session runs the script
on a remote terminal, where Ctrl-C reaches it) and waits for it to end; ``no_wait`` returns
once the job is submitted. The submission id goes to stderr, so the script's output is all
that stdout shows. An SSH failure returns 255 with its cause, as ``ssh`` does.
"""

from __future__ import annotations

import asyncio
import json
import os
import posixpath
import shlex
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rayops.launcher import tls_certs
from rayops.launcher.cluster import Cluster
from rayops.launcher.errors import LauncherError
from rayops.launcher.operate import _remote_abs
from rayops.launcher.ssh import SSH_ERROR_EXIT, SshError
from rayops.launcher.tunnel import LocalForward
from rayops.rpc import tls
from rayops.rpc.tls import SESSION_FILE as SESSION_TLS_FILE

__all__ = ["HeadApi", "head_api", "read_head_api", "run_submit", "save_token"]

STOPPED_EXIT = 130  # as a shell reports a command ended by Ctrl-C
_STOP_WAIT_S = 30.0


@dataclass(frozen=True)
class HeadApi:
    """Where the head's API server listens (as the head sees it) and the cluster token."""

    host: str
    port: int
    token: str


def _read_remote(cluster: Cluster, path: str) -> str:
    sftp = cluster.pool.sftp(cluster.head)
    try:
        with sftp.open(path, "r") as f:
            return bytes(f.read()).decode()
    except OSError as err:
        raise LauncherError(
            f"cannot read {path} on the head {cluster.head}: {err} (is the cluster up? "
            "rayops up CONFIG)"
        ) from err


def read_head_api(cluster: Cluster) -> HeadApi:
    """The API server's address and the token, read on the head. Raises SshError or
    LauncherError."""
    head = cluster.head
    install = _remote_abs(cluster, head, cluster.spec.install_dir.rstrip("/"))
    temp = _remote_abs(cluster, head, cluster.spec.temp_dir.rstrip("/"))
    token = _read_remote(cluster, posixpath.join(install, "cluster_token")).strip()
    record_path = posixpath.join(temp, "session_latest", "node.json")
    try:
        url = str(json.loads(_read_remote(cluster, record_path)).get("dashboard_url") or "")
    except ValueError as err:
        raise LauncherError(f"{record_path} on the head is not valid JSON: {err}") from err
    host, _, port = url.rpartition(":")
    if not host or not port.isdigit():
        raise LauncherError(
            f"the head runs no API server ({record_path} has dashboard_url {url!r}); start "
            "the head with its dashboard (the default)"
        )
    if not token:
        raise LauncherError(f"the cluster token on the head ({install}/cluster_token) is empty")
    return HeadApi("127.0.0.1" if host in ("0.0.0.0", "") else host, int(port), token)


@contextmanager
def head_api(
    cluster: Cluster, *, local_port: int = 0, remote_port: int | None = None
) -> Iterator[tuple[LocalForward, HeadApi]]:
    """A local forward to the head's API server for the duration of the block."""
    api = read_head_api(cluster)
    conn = cluster.pool.connection(cluster.head)
    assert conn.transport is not None
    remote = (api.host, remote_port or api.port)
    with LocalForward(conn.transport, remote, local_port=local_port) as forward:
        yield forward, api


def save_token(cluster: Cluster, api: HeadApi) -> Path:
    """A local copy of the cluster token for ``rayops job ...`` through the forward:
    ``<cache>/clusters/<cluster_name>/cluster_token``, mode 0600 in a 0700 directory."""
    folder = cluster.cache_dir / "clusters" / cluster.spec.cluster_name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    folder.chmod(0o700)
    path = folder / "cluster_token"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(api.token + "\n")
    path.chmod(0o600)
    # TLS: this machine's client certificate, beside the token where clients look for it.
    files = tls_certs.client_files(cluster.spec, cluster.cache_dir)
    if files is not None:
        files.save(str(folder))
    else:
        (folder / SESSION_TLS_FILE).unlink(missing_ok=True)
    return path


def api_url(cluster: Cluster, forward: LocalForward) -> str:
    """The forward's URL: https when the cluster has TLS on."""
    if tls_certs.client_files(cluster.spec, cluster.cache_dir) is None:
        return forward.url
    return forward.url.replace("http://", "https://", 1)


def _client(cluster: Cluster, forward: LocalForward, api: HeadApi) -> Any:
    # The Jobs SDK is plain HTTP (stdlib) plus aiohttp's websocket for the log tail.
    from rayops.job_submission import JobSubmissionClient

    headers = {"Authorization": f"Bearer {api.token}"}
    files = tls_certs.client_files(cluster.spec, cluster.cache_dir)
    if files is None:
        return JobSubmissionClient(forward.url, headers=headers)
    tls.configure(files)  # this process talks to one cluster: its client certificate
    return JobSubmissionClient(api_url(cluster, forward), headers=headers)


def _exit_code(info: Any) -> int:
    status = info.status.value
    if status == "SUCCEEDED":
        return 0
    if status == "STOPPED":
        return STOPPED_EXIT
    code = info.driver_exit_code
    return code if isinstance(code, int) and code != 0 else 1


def _follow(cluster: Cluster, client: Any, sid: str) -> None:
    head = cluster.head

    async def tail() -> None:
        async for chunk in client.tail_job_logs(sid):
            cluster.events.output(head, "stdout", chunk.encode())

    asyncio.run(tail())


def _stop(cluster: Cluster, client: Any, sid: str) -> None:
    err = cluster.events.output
    err(cluster.head, "stderr", f"\nrayops submit: stopping job {sid}\n".encode())
    client.stop_job(sid)
    deadline = time.monotonic() + _STOP_WAIT_S
    while not client.get_job_status(sid).is_terminal() and time.monotonic() < deadline:
        time.sleep(0.1)


def run_submit(cluster: Cluster, script: str, args: list[str], *, no_wait: bool = False) -> int:
    """Submit ``script`` (with ``args``) as a job on the head; follow it unless ``no_wait``."""
    path = Path(script)
    if not path.is_file():
        raise LauncherError(f"cannot read the script to submit: no file at {script}")
    head = cluster.head
    try:
        with head_api(cluster) as (forward, api), tempfile.TemporaryDirectory() as pkg:
            shutil.copy2(path, Path(pkg) / path.name)
            client = _client(cluster, forward, api)
            entrypoint = shlex.join(["python", "-u", path.name, *args])
            try:
                sid = client.submit_job(entrypoint=entrypoint, runtime_env={"working_dir": pkg})
            except RuntimeError as err:
                raise LauncherError(f"the head's Jobs API refused the job: {err}") from err
            note = (
                f"rayops submit: job {sid} on {head} (rayops job status/logs/stop {sid} "
                "through: rayops dashboard CONFIG)\n"
            )
            cluster.events.output(head, "stderr", note.encode())
            if no_wait:
                return 0
            try:
                _follow(cluster, client, sid)
                info = client.get_job_info(sid)
            except KeyboardInterrupt:
                try:
                    _stop(cluster, client, sid)
                except OSError as err:
                    # The forward's SSH connection broke (seen once in CI: the head's sshd
                    # reset it as Ctrl-C landed): stop through a new connection.
                    note = f"rayops submit: the stop request failed ({err}); retrying\n"
                    cluster.events.output(head, "stderr", note.encode())
                    with head_api(cluster) as (retry, api):
                        _stop(cluster, _client(cluster, retry, api), sid)
                return STOPPED_EXIT
            return _exit_code(info)
    except SshError as err:
        cluster.out(f"rayops submit: {err.failure.one_line()}")
        return SSH_ERROR_EXIT
