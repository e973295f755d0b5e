"""The verbs that drive a running cluster: exec, attach, rsync-up/down, the addresses (submit:
``job_submit.py``).

Commands run with the cluster in their environment (``RAYOPS_ADDRESS``, ``RAYOPS_TOKEN_FILE``,
``RAYOPS_TEMP_DIR``, the node's virtualenv first on ``PATH``), in the login user's home, and
return the remote command's exit code; their output goes to ``cluster.events.output`` as it
arrives. An SSH failure is reported through ``cluster.events.message`` and returns 255, as
``ssh`` does. Files move over SFTP on the same connection (``transfer.py``).
"""

from __future__ import annotations

import posixpath
import shlex

from rayops.launcher.cluster import Cluster
from rayops.launcher.desired import expand_home
from rayops.launcher.errors import LauncherError
from rayops.launcher.record import shell_path
from rayops.launcher.ssh import SSH_ERROR_EXIT, SshError, Terminal
from rayops.launcher.transfer import pull, push


def cluster_env_prefix(cluster: Cluster) -> str:
    spec = cluster.spec
    d = shell_path(spec.install_dir)
    return (
        f"export RAYOPS_ADDRESS={shlex.quote(spec.head_address)} "
        f"RAYOPS_TOKEN_FILE={d}/cluster_token RAYOPS_TEMP_DIR={shell_path(spec.temp_dir)} "
        f'PATH={d}/venv/bin:"$PATH"; cd "$HOME" && '
    )


def run_exec(
    cluster: Cluster, command: str, node: str = "head", *, tty: bool = False,
    timeout: float | None = None,
) -> int:  # fmt: skip
    """Run ``command`` on the chosen hosts; with several, their output lines are prefixed
    with the host and the worst exit code is returned."""
    addresses = cluster.resolve(node)
    full = cluster_env_prefix(cluster) + command
    if len(addresses) == 1:
        address = addresses[0]
        res = cluster.pool.run(
            address, full, timeout=timeout, pty=tty,
            on_stdout=lambda b: cluster.events.output(address, "stdout", b),
            on_stderr=lambda b: cluster.events.output(address, "stderr", b),
        )  # fmt: skip
        if res.failure is not None:
            cluster.out(f"rayops exec: {res.failure.one_line()}")
            return SSH_ERROR_EXIT
        return res.exit_code
    results = cluster.pool.run_many(
        addresses, full, timeout=timeout,
        on_line=lambda a, line: cluster.out(f"[{a}] {line}"),
    )  # fmt: skip
    worst = 0
    for address in addresses:
        res = results[address]
        if res.failure is not None:
            cluster.out(f"[{address}] {res.failure.one_line()}")
            worst = worst or SSH_ERROR_EXIT
        elif res.exit_code != 0:
            cluster.out(f"[{address}] exit code {res.exit_code}")
            worst = worst or res.exit_code
    return worst


def _remote_abs(cluster: Cluster, address: str, path: str) -> str:
    """An absolute remote path: ``~`` is the remote ``$HOME``; a relative path is taken from
    it too (as ssh and rsync do). Raises SshError."""
    if path.startswith("~") or not path.startswith("/"):
        home = cluster.pool.home(address)
        return expand_home(path, home) if path.startswith("~") else posixpath.join(home, path)
    return path


def attach_command(cluster: Cluster) -> str:
    """The remote command of ``attach``: a login shell with the cluster's environment."""
    return cluster_env_prefix(cluster) + 'exec "${SHELL:-/bin/sh}" -l'


def run_attach(cluster: Cluster, terminal: Terminal) -> int:
    """An interactive login shell on the head, on ``terminal``; its exit code."""
    try:
        return cluster.pool.interactive(cluster.head, attach_command(cluster), terminal)
    except SshError as err:
        cluster.out(f"rayops attach: {err.failure.one_line()}")
        return SSH_ERROR_EXIT


def run_rsync(cluster: Cluster, source: str, target: str, up: bool, node: str = "head") -> int:
    """Copy files to (``up``) or from the chosen hosts over SFTP, with rsync's rules for
    trailing slashes and its quick check (same size and time: skipped). Nothing is deleted."""
    addresses = cluster.resolve(node)
    if not up and len(addresses) > 1:
        raise LauncherError("rsync-down copies from one host: give --node head or an address")
    worst = 0
    for address in addresses:
        try:
            sftp = cluster.pool.sftp(address)
            if up:
                stats = push(sftp, source, _remote_abs(cluster, address, target))
            else:
                stats = pull(sftp, _remote_abs(cluster, address, source), target)
        except SshError as err:
            cluster.out(f"rayops rsync: {address}: {err.failure.one_line()}")
            worst = worst or SSH_ERROR_EXIT
            continue
        except OSError as err:
            cluster.out(f"rayops rsync: {address}: {err}")
            worst = worst or 1
            continue
        cluster.out(f"{address}: {stats.summary()}")
    return worst


def rsync_up(cluster: Cluster, source: str, target: str, node: str = "head") -> int:
    return run_rsync(cluster, source, target, up=True, node=node)


def rsync_down(cluster: Cluster, source: str, target: str, node: str = "head") -> int:
    return run_rsync(cluster, source, target, up=False, node=node)


def head_ip(cluster: Cluster) -> str:
    return cluster.spec.provider.external_head_ip or cluster.spec.provider.head_ip


def worker_ips(cluster: Cluster) -> list[str]:
    return cluster.workers
