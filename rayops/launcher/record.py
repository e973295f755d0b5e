"""The cluster record: hosts, roles, config hash and state, kept on the head only.

``<install_dir>/cluster.json`` on the head is the one place that says what the cluster is; the
launching machine keeps nothing that could disagree with it. The facts probe reads it; ``up``
and ``down`` rewrite it when something changed (over SFTP on the command's connection, to a
temporary file renamed into place). Building the record is a pure function of the plan and the
results.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from rayops.launcher.desired import expand_home
from rayops.launcher.errors import HostFailure
from rayops.launcher.ssh import SshError, SshPool
from rayops.launcher.transfer import read_remote_file, write_remote_file
from rayops.version import __version__

RECORD_FILE = "cluster.json"


def host_entry(
    role: str,
    state: str,
    install_dir: str,
    temp_dir: str,
    failure: HostFailure | None = None,
) -> dict[str, Any]:
    return {
        "role": role,
        "state": state,  # "up", "failed", "stopped"
        "error": failure.one_line() if failure is not None else None,
        "install_dir": install_dir,
        "temp_dir": temp_dir,
    }


def build_record(
    cluster_name: str,
    config_hash: str,
    head: str,
    gcs_address: str,
    hosts: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    return {
        "cluster_name": cluster_name,
        "config_hash": config_hash,
        "head": head,
        "gcs_address": gcs_address,
        "launcher_version": __version__,
        "hosts": {a: dict(e) for a, e in hosts.items()},
    }


def same_record(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Equal apart from the time stamp (an unchanged cluster rewrites nothing)."""
    if not old:
        return False
    strip = {k: v for k, v in old.items() if k != "updated_at"}
    return strip == {k: v for k, v in new.items() if k != "updated_at"}


def record_path(pool: SshPool, head: str, install_dir: str) -> str:
    """The record's absolute path on the head (``~`` is the head's ``$HOME``)."""
    d = expand_home(install_dir, pool.home(head)) if install_dir.startswith("~") else install_dir
    return f"{d.rstrip('/')}/{RECORD_FILE}"


def write_record(
    pool: SshPool, head: str, install_dir: str, record: Mapping[str, Any]
) -> HostFailure | None:
    """Replace the head's record atomically; the failure, if it could not."""
    data = dict(record)
    data["updated_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    payload = (json.dumps(data, indent=2) + "\n").encode()
    try:
        write_remote_file(pool.sftp(head), record_path(pool, head, install_dir), payload)
    except SshError as err:
        return err.failure
    except OSError as err:
        return HostFailure("command-failed", f"writing the cluster record on {head}: {err}")
    return None


def read_record(pool: SshPool, head: str, install_dir: str) -> dict[str, Any] | None:
    """The head's record, or None when there is none (or it is not JSON). Raises SshError."""
    try:
        raw = read_remote_file(pool.sftp(head), record_path(pool, head, install_dir))
    except OSError:
        return None
    if not raw:
        return None
    try:
        data = json.loads(raw)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def shell_path(path: str) -> str:
    """Quote a remote path for the shell, keeping a leading ``~`` expandable."""
    import shlex

    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)
