"""The cluster launcher as a library: ``rayops up/down/exec/submit/attach/rsync-*/status CONFIG``.

Facts, then a plan, then apply (pyinfra's shape): ``spec`` parses cluster.yaml once;
``facts`` reads every host over SSH in parallel; ``plan`` decides per host which steps run
(pure, no I/O); ``apply`` pushes file mounts and runs the Ansible playbooks for exactly those
steps; ``record`` keeps the cluster's record on the head only. ``ssh`` owns the launcher's own
SSH (paramiko through fabric: one connection per host for the whole command, host keys always
checked); ``transfer`` moves files over SFTP with rsync's rules. The launcher never imports the
runtime's daemons; it drives them through ``rayops start/stop/status`` on the hosts. See
docs/launcher.md.

The public API (what the CLI, and later the autoscaler, call)::

    from rayops.launcher import Events, UpOptions, create_or_update_cluster, open_cluster
    with open_cluster("cluster.yaml", cache_dir, events=Events(message=log.info)) as cluster:
        code = create_or_update_cluster(cluster, UpOptions(yes=True), confirm=lambda q: True)

The verbs carry the names of Ray's ``ray.autoscaler.sdk`` where Ray has one. Every verb takes
an open ``Cluster`` (its SSH connections close when the ``with`` ends) and returns an exit
code; nothing here prints: messages and remote output go to the cluster's ``Events``
callbacks.

Nothing is imported eagerly: ``rayops`` (the CLI) imports ``rayops.cli.launcher_cmds`` on every
command, and the spec's parser (pydantic) and paramiko must only load when a launcher verb
runs, so the names below resolve on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = [
    "Cluster",
    "ClusterSpecError",
    "Events",
    "HostFailure",
    "LauncherError",
    "Terminal",
    "UpOptions",
    "attach",
    "cluster_status",
    "create_or_update_cluster",
    "get_head_node_ip",
    "get_worker_node_ips",
    "open_cluster",
    "rsync_down",
    "rsync_up",
    "run_on_cluster",
    "submit",
    "teardown_cluster",
]

# public name -> (module, attribute). No public name equals a submodule's name: importing
# ``rayops.launcher.up`` would otherwise replace it with the module.
_EXPORTS = {
    "Cluster": ("rayops.launcher.cluster", "Cluster"),
    "Events": ("rayops.launcher.cluster", "Events"),
    "open_cluster": ("rayops.launcher.cluster", "open_cluster"),
    "ClusterSpecError": ("rayops.launcher.errors", "ClusterSpecError"),
    "HostFailure": ("rayops.launcher.errors", "HostFailure"),
    "LauncherError": ("rayops.launcher.errors", "LauncherError"),
    "Terminal": ("rayops.launcher.ssh", "Terminal"),
    "UpOptions": ("rayops.launcher.up", "UpOptions"),
    "create_or_update_cluster": ("rayops.launcher.up", "run_up"),
    "teardown_cluster": ("rayops.launcher.down_status", "run_down"),
    "cluster_status": ("rayops.launcher.down_status", "run_status"),
    "run_on_cluster": ("rayops.launcher.operate", "run_exec"),
    "submit": ("rayops.launcher.job_submit", "run_submit"),
    "attach": ("rayops.launcher.operate", "run_attach"),
    "rsync_up": ("rayops.launcher.operate", "rsync_up"),
    "rsync_down": ("rayops.launcher.operate", "rsync_down"),
    "get_head_node_ip": ("rayops.launcher.operate", "head_ip"),
    "get_worker_node_ips": ("rayops.launcher.operate", "worker_ips"),
}


def __getattr__(name: str) -> Any:
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'rayops.launcher' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), attr)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
