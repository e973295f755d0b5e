"""The cluster record: hosts, roles, config hash and state, kept on the head only.

``<install_dir>/cluster.json`` on the head is the one place that says what the cluster is; the
launching machine keeps nothing that could disagree with it. The facts probe reads it; ``up``
and ``down`` rewrite it (atomically, over SSH) when something changed. Building the record is
a pure function of the plan and the results.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Mapping
from typing import Any

from rayops.launcher.errors import HostFailure
from rayops.launcher.ssh import CommandResult, SshRunner
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


def write_record(
    runner: SshRunner, head: str, install_dir: str, record: Mapping[str, Any]
) -> CommandResult:
    """Replace the head's record atomically (write a temp file, then rename)."""
    data = dict(record)
    data["updated_at"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    d = shell_path(install_dir)
    cmd = (
        f"mkdir -p {d} && cat > {d}/.{RECORD_FILE}.tmp && "
        f"mv -f {d}/.{RECORD_FILE}.tmp {d}/{RECORD_FILE}"
    )
    return runner.run(head, cmd, input_bytes=(json.dumps(data, indent=2) + "\n").encode())


def shell_path(path: str) -> str:
    """Quote a remote path for the shell, keeping a leading ``~`` expandable."""
    import shlex

    if path == "~":
        return '"$HOME"'
    if path.startswith("~/"):
        return '"$HOME"/' + shlex.quote(path[2:])
    return shlex.quote(path)
