"""The verbs that drive a running cluster: exec, submit, attach, rsync-up/down, the addresses.

Commands run with the cluster in their environment (``RAYOPS_ADDRESS``, ``RAYOPS_TOKEN_FILE``,
``RAYOPS_TEMP_DIR``, the node's virtualenv first on ``PATH``), in the login user's home, and
return the remote command's exit code. An SSH failure prints its cause and returns 255, as
``ssh`` does.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from rayops.launcher.cluster import Cluster
from rayops.launcher.errors import LauncherError
from rayops.launcher.record import shell_path
from rayops.launcher.ssh import SSH_ERROR_EXIT, classify_ssh_error


def cluster_env_prefix(cluster: Cluster) -> str:
    spec = cluster.spec
    d = shell_path(spec.install_dir)
    return (
        f"export RAYOPS_ADDRESS={shlex.quote(spec.head_address)} "
        f"RAYOPS_TOKEN_FILE={d}/cluster_token RAYOPS_TEMP_DIR={shell_path(spec.temp_dir)} "
        f'PATH={d}/venv/bin:"$PATH"; cd "$HOME" && '
    )


def run_exec(cluster: Cluster, command: str, node: str = "head") -> int:
    addresses = cluster.resolve(node)
    full = cluster_env_prefix(cluster) + command
    if len(addresses) == 1:
        tty = sys.stdin.isatty() and sys.stdout.isatty()
        rc, failure = cluster.runner.stream(addresses[0], full, tty=tty)
        if failure is not None:
            cluster.out(f"rayops exec: {failure.one_line()}")
            return SSH_ERROR_EXIT
        return rc
    results = cluster.runner.run_many(addresses, full, timeout=None)
    worst = 0
    for address in addresses:
        res = results[address]
        if res.failure is not None:
            cluster.out(f"[{address}] {res.failure.one_line()}")
            worst = worst or SSH_ERROR_EXIT
            continue
        for line in (res.stdout + res.stderr).splitlines():
            cluster.out(f"[{address}] {line}")
        if res.exit_code != 0:
            cluster.out(f"[{address}] exit code {res.exit_code}")
            worst = worst or res.exit_code
    return worst


def run_submit(cluster: Cluster, script: str, args: list[str]) -> int:
    """Upload ``script`` to the head and run it there as a driver, streaming its output."""
    path = Path(script)
    try:
        data = path.read_bytes()
    except OSError as err:
        raise LauncherError(f"cannot read the script to submit: {err}") from err
    jobs = shell_path(cluster.spec.install_dir) + "/jobs"
    target = f"{jobs}/{shlex.quote(path.name)}"
    up = cluster.runner.run(cluster.head, f"mkdir -p {jobs} && cat > {target}", input_bytes=data)
    if up.failure is not None:
        cluster.out(f"rayops submit: {up.failure.one_line()}")
        return SSH_ERROR_EXIT
    if up.exit_code != 0:
        raise LauncherError(f"uploading {script} to the head failed: {' '.join(up.tail())}")
    argv = " ".join(shlex.quote(a) for a in args)
    command = cluster_env_prefix(cluster) + f"exec python -u {target} {argv}".rstrip()
    rc, failure = cluster.runner.stream(cluster.head, command)
    if failure is not None:
        cluster.out(f"rayops submit: {failure.one_line()}")
        return SSH_ERROR_EXIT
    return rc


def attach_argv(cluster: Cluster) -> list[str]:
    """The ssh command line of an interactive login shell on the head."""
    return cluster.runner.interactive_argv(
        cluster.head, cluster_env_prefix(cluster) + 'exec "${SHELL:-/bin/sh}" -l'
    )


def run_attach(cluster: Cluster) -> int:
    argv = attach_argv(cluster)
    sys.stdout.flush()
    os.execvp(argv[0], argv)
    return 0  # not reached


def _remote_path(cluster: Cluster, address: str, path: str) -> str:
    """An absolute remote path: ``~`` is the remote ``$HOME``, which need not be the login
    directory that rsync would resolve a relative path against."""
    if not path.startswith("~"):
        return path
    res = cluster.runner.run(address, 'printf %s "$HOME"', timeout=30)
    if not res.ok or not res.stdout.startswith("/"):
        why = res.failure.one_line() if res.failure else f"exit code {res.exit_code}"
        raise LauncherError(f"cannot read $HOME on {address}: {why}")
    from rayops.launcher.desired import expand_home

    return expand_home(path, res.stdout)


def run_rsync(cluster: Cluster, source: str, target: str, up: bool, node: str = "head") -> int:
    if shutil.which("rsync") is None:
        raise LauncherError("rsync is not installed on this machine (apt-get install -y rsync)")
    worst = 0
    for address in cluster.resolve(node):
        host = f"[{address}]" if ":" in address else address
        remote = f"{cluster.ssh.user}@{host}:"
        if up:
            pair = [source, remote + _remote_path(cluster, address, target)]
        else:
            pair = [remote + _remote_path(cluster, address, source), target]
        argv = ["rsync", "-a", "-e", cluster.ssh.rsync_shell(), *pair]
        proc = subprocess.run(argv, capture_output=True, text=True, check=False)
        if proc.returncode != 0:
            cause = classify_ssh_error(cluster.ssh, address, 255, proc.stderr)
            lines = proc.stderr.strip().splitlines()
            why = cause.one_line() if cause else (lines[-1] if lines else "")
            cluster.out(f"rayops rsync: {address}: {why} (rsync exit code {proc.returncode})")
            worst = worst or proc.returncode
    return worst


def head_ip(cluster: Cluster) -> str:
    return cluster.spec.provider.external_head_ip or cluster.spec.provider.head_ip


def worker_ips(cluster: Cluster) -> list[str]:
    return cluster.workers
