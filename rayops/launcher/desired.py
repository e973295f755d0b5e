"""The desired state of every host: what each step should have applied, as short digests.

Each provisioning step has a key (a digest of everything that step depends on). A host keeps
the key of every step it applied (``<install_dir>/state/<step>.key``, written by the
playbooks after the step succeeds); a step re-runs exactly when its key changed. The keys of
local inputs (the runtime source tree, file mounts) are computed once by ``local_inputs``
(local file reads only); ``host_target`` combines them with a host's facts, without I/O.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayops.launcher.facts import HostFacts
from rayops.launcher.spec import ClusterSpec
from rayops.launcher.tls_certs import tls_enabled

STEPS = ("init", "install", "mounts", "setup", "config", "start")
_BIG_FILE = 16 * 2**20  # larger files are keyed by size and mtime, not content


def digest(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


@dataclass(frozen=True)
class LocalInputs:
    """Digests of the launching machine's inputs (computed once per command)."""

    runtime_source: str  # the rayops source tree or wheel, the node pins and extra packages
    mounts: str  # the contents of every file mount


@dataclass(frozen=True)
class MountTarget:
    src: str  # local path (a directory ends with "/", as rsync wants)
    dst: str  # absolute remote path


@dataclass(frozen=True)
class HostTarget:
    """What one host should look like after ``up``."""

    address: str
    role: str  # "head" or "worker"
    keys: Mapping[str, str]  # step -> digest; a step with nothing to apply has no key
    node_config: Mapping[str, Any]
    install_dir: str  # absolute, on the host
    temp_dir: str
    init_commands: tuple[str, ...] = ()
    setup_commands: tuple[str, ...] = ()
    mounts: tuple[MountTarget, ...] = field(default_factory=tuple)
    process_manager: str = "plain"

    @property
    def venv(self) -> str:
        return f"{self.install_dir}/venv"


def expand_home(path: str, home: str) -> str:
    if path == "~":
        return home
    if path.startswith("~/"):
        return f"{home.rstrip('/')}/{path[2:]}"
    return path


def _resolve_node_ip(address: str, facts: HostFacts) -> str:
    import ipaddress

    try:
        ipaddress.ip_address(address)
        return address
    except ValueError:
        return facts.node_ip or address


def node_config(
    spec: ClusterSpec, role: str, facts: HostFacts, process_manager: str
) -> dict[str, Any]:
    """The settings one node's daemons start with (what ``rayops-node`` is rendered from)."""
    resources = spec.resources_for(role)
    install_dir = expand_home(spec.install_dir, facts.home)
    return {
        "cluster_name": spec.cluster_name,
        "role": role,
        "node_ip": _resolve_node_ip(facts.address, facts),
        "head_address": spec.head_address,
        "gcs_port": spec.gcs_port,
        "metrics_export_port": spec.metrics_export_port,
        "install_dir": install_dir,
        "temp_dir": expand_home(spec.temp_dir, facts.home),
        "num_cpus": resources.pop("CPU", None),
        "num_gpus": resources.pop("GPU", None),
        "resources": resources,
        "labels": spec.labels_for(role),
        "object_store_memory": spec.rayops.object_store_memory,
        "process_manager": process_manager,
        **_runtime_env_index(spec, install_dir),
        # TLS (launcher/tls_certs.py): the playbook puts the files in <install_dir>/tls/.
        "tls": tls_enabled(spec.rayops.tls, 1 + len(spec.provider.worker_ips)),
        **_autoscaling(spec, role, install_dir),
    }


def _autoscaling(spec: ClusterSpec, role: str, install_dir: str) -> dict[str, Any]:
    """The head runs the autoscaler when the spec lets the worker count move; the key is
    absent otherwise, so a cluster without autoscaling keeps its config key."""
    from rayops.providers.local import autoscaling_enabled

    if role != "head" or not autoscaling_enabled(spec):
        return {}
    return {"autoscaling_config": f"{install_dir.rstrip('/')}/autoscaler/cluster.yaml"}


def _runtime_env_index(spec: ClusterSpec, install_dir: str) -> dict[str, Any]:
    """Where the node's pip/uv runtime_envs install from: the spec's index and links, else
    the cluster's own wheelhouse on the host with no index (hosts have no package index)."""
    r = spec.rayops
    links = r.runtime_env_find_links
    if links is None and r.runtime_env_index_url is None:
        links = [f"{install_dir.rstrip('/')}/wheelhouse"]
    return {
        "runtime_env_index_url": r.runtime_env_index_url,
        "runtime_env_find_links": list(links or []),
        "runtime_env_cache_mb": r.runtime_env_cache_mb,
    }


def process_manager_for(spec: ClusterSpec, facts: HostFacts) -> str:
    """systemd units when systemd runs the host and we log in as root; else plain processes."""
    wanted = spec.rayops.process_manager
    if wanted == "auto":
        return "systemd" if facts.systemd and facts.user == "root" else "plain"
    return wanted


def host_target(spec: ClusterSpec, inputs: LocalInputs, facts: HostFacts, role: str) -> HostTarget:
    """Combine the spec, local digests and a reachable host's facts (no I/O)."""
    home = facts.home
    install_dir = expand_home(spec.install_dir, home)
    pm = process_manager_for(spec, facts)
    config = node_config(spec, role, facts, pm)
    init = tuple(spec.initialization_commands)
    setup = tuple(
        spec.setup_commands
        + (spec.head_setup_commands if role == "head" else spec.worker_setup_commands)
    )
    mounts = tuple(
        MountTarget(src=_rsync_src(spec.local_path(local)), dst=expand_home(remote, home))
        for remote, local in sorted(spec.file_mounts.items())
    )
    keys: dict[str, str] = {
        "install": digest([inputs.runtime_source, facts.python_tag, install_dir]),
        "config": digest(config),
    }
    if init:
        keys["init"] = digest(list(init))
    if setup:
        keys["setup"] = digest(list(setup))
    if mounts:
        keys["mounts"] = digest([inputs.mounts, [(m.src, m.dst) for m in mounts]])
    return HostTarget(
        address=facts.address,
        role=role,
        keys=keys,
        node_config=config,
        install_dir=install_dir,
        temp_dir=str(config["temp_dir"]),
        init_commands=init,
        setup_commands=setup,
        mounts=mounts,
        process_manager=pm,
    )


def _rsync_src(p: Path) -> str:
    return str(p) + "/" if p.is_dir() else str(p)


# ---- local inputs (reads local files) ---------------------------------------------------
def tree_digest(root: Path, skip_dirs: tuple[str, ...] = ("__pycache__", ".git")) -> str:
    """Digest of every file under ``root`` (relative path, mode and content)."""
    h = hashlib.sha256()
    if root.is_file():
        _hash_file(h, root, root.name)
        return h.hexdigest()[:16]
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d not in skip_dirs)
        for name in sorted(filenames):
            if name.endswith((".pyc", ".pyo")):
                continue
            path = Path(dirpath) / name
            _hash_file(h, path, str(path.relative_to(root)))
    return h.hexdigest()[:16]


def _hash_file(h: Any, path: Path, rel: str) -> None:
    try:
        st = path.stat()
    except OSError:
        return
    h.update(f"{rel}\0{st.st_mode & 0o777}\0{st.st_size}\0".encode())
    if st.st_size > _BIG_FILE:
        h.update(str(st.st_mtime_ns).encode())
        return
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def mounts_digest(spec: ClusterSpec) -> str:
    parts = [
        (remote, tree_digest(spec.local_path(local)))
        for remote, local in sorted(spec.file_mounts.items())
    ]
    return digest(parts)
