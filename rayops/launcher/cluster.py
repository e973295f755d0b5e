"""One cluster as every launcher verb sees it: the spec, its hosts and roles, SSH access, events.

``open_cluster`` loads the spec (raising ClusterSpecError before any network use) and makes
the command's ``SshPool``; it opens no connection itself. A ``Cluster`` is a context manager:
leaving it closes every SSH connection the command opened. Whatever the launcher has to say
goes to ``events`` (the caller renders it: the CLI prints; an autoscaler would log).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from rayops.launcher.errors import LauncherError
from rayops.launcher.spec import ClusterSpec, load_spec
from rayops.launcher.ssh import SshConfig, SshPool
from rayops.providers.local import static_worker_count

Printer = Callable[[str], None]
#: ``(host, stream, data)``: a remote command's output as it arrives; stream is "stdout" or
#: "stderr".
OutputSink = Callable[[str, str, bytes], None]


def _discard_output(host: str, stream: str, data: bytes) -> None:
    return None


def _discard_message(text: str) -> None:
    return None


@dataclass
class Events:
    """Where a launcher command reports: ``message`` gets progress, plans, summaries and
    per-host causes as lines of text; ``output`` gets remote commands' output bytes
    (``exec``, ``submit``) as they arrive."""

    message: Printer = _discard_message
    output: OutputSink = _discard_output


@dataclass
class Cluster:
    spec: ClusterSpec
    ssh: SshConfig
    pool: SshPool
    cache_dir: Path
    events: Events
    notes: list[str] = field(default_factory=list)

    def __enter__(self) -> Cluster:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close every SSH connection this command opened."""
        self.pool.close()

    def out(self, text: str) -> None:
        self.events.message(text)

    @property
    def head(self) -> str:
        return self.spec.provider.head_ip

    @property
    def workers(self) -> list[str]:
        return list(self.spec.provider.worker_ips)

    @property
    def roles(self) -> dict[str, str]:
        """The hosts ``up`` brings up, head first, mapped to their role: every host of the
        spec, or with autoscaling the head and the ``min_workers`` static workers (the other
        ``worker_ips`` are the autoscaler's pool)."""
        static = self.workers[: static_worker_count(self.spec)]
        return {self.head: "head", **{w: "worker" for w in static}}

    def resolve(self, node: str) -> list[str]:
        """``head``, ``all``, ``workers`` or one host's address -> addresses."""
        if node == "head":
            return [self.head]
        if node == "all":
            return list(self.roles)
        if node == "workers":
            return self.workers
        if node in self.roles:
            return [node]
        raise LauncherError(
            f"--node expects head, workers, all or one of {', '.join(self.roles)}; got {node!r}"
        )


def ssh_config_for(spec: ClusterSpec, control_dir: str) -> SshConfig:
    auth = spec.auth
    known_hosts = spec.local_path(auth.known_hosts_file)
    if auth.host_key_policy == "accept-new":
        known_hosts.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    return SshConfig(
        user=auth.ssh_user,
        port=auth.ssh_port,
        key_file=str(spec.local_path(auth.ssh_private_key)) if auth.ssh_private_key else None,
        known_hosts=str(known_hosts),
        host_key_policy=auth.host_key_policy,
        connect_timeout=auth.connect_timeout,
        control_dir=control_dir,
    )


def default_control_dir() -> str:
    """A short per-user directory for Ansible's ControlMaster sockets (unix socket paths are
    short)."""
    return f"/tmp/rayops-ssh-{os.getuid()}"


def check_control_dir(path: str) -> None:
    os.makedirs(path, mode=0o700, exist_ok=True)
    st = os.stat(path)
    if st.st_uid != os.getuid() or st.st_mode & 0o077:
        raise LauncherError(
            f"the SSH control directory {path} must belong to you with mode 0700 "
            f"(found uid {st.st_uid}, mode {st.st_mode & 0o777:04o}); "
            "set RAYOPS_SSH_CONTROL_DIR to another directory"
        )


def open_cluster(
    config: str,
    cache_dir: Path,
    control_dir: str | None = None,
    events: Events | None = None,
) -> Cluster:
    """Load ``config`` and prepare SSH access (no connection yet). Use it as a context manager
    so the command's connections close when it ends."""
    spec, notes = load_spec(config)
    if spec.provider.type != "local":
        raise LauncherError(
            f"{config}: not supported yet: launching the head through provider type "
            f"{spec.provider.type!r} (the launcher commands need provider type 'local'); the "
            "autoscaler uses this provider to launch and terminate workers"
        )
    control_dir = control_dir or default_control_dir()
    check_control_dir(control_dir)
    ssh = ssh_config_for(spec, control_dir)
    return Cluster(spec, ssh, SshPool(ssh), cache_dir, events or Events(), notes)
