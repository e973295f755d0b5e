"""``rayops up`` with autoscaling: what the head needs to add and remove workers by itself.

When the spec lets the worker count move (``providers.local.autoscaling_enabled``), ``up``
brings up the head and the static workers only (``min_workers``; the rest of ``worker_ips``
is the pool), and before the head starts writes to ``<install_dir>/autoscaler/`` on the head
(``pool_provisioner.HeadBundle``):

* ``cluster.yaml``: the spec as the head must read it: the SSH key and known_hosts point at
  the copies beside it, file mounts at copies pushed under ``mounts/``, the runtime comes
  from the wheelhouse ``up`` installed (never rebuilt on the head);
* ``ssh_key`` (mode 0600, written 0600 from the first byte) and ``known_hosts``;
* ``runtime.json``: the runtime digest, so the head's plans give a node the install key
  ``up`` would.

After the playbook installed the head, ``place_wheelhouse`` copies the head's own
``wheelhouse.tar`` into the head-side wheelhouse cache under that digest. The head's node
config names the spec (``autoscaling_config``), and its ``rayops start --head`` runs the
autoscaler with it.
"""

from __future__ import annotations

import json
import posixpath
from dataclasses import dataclass
from typing import Any

import yaml

from rayops.launcher import tls_certs
from rayops.launcher.cluster import Cluster
from rayops.launcher.desired import expand_home
from rayops.launcher.errors import HostFailure, LauncherError
from rayops.launcher.ssh import SshError
from rayops.launcher.transfer import push, write_remote_file
from rayops.launcher.wheelhouse import ARCHIVE, wheelhouse_key
from rayops.launcher.yaml_source import load_yaml_with_lines

__all__ = ["HeadBundle", "head_bundle", "head_spec", "place_wheelhouse", "write_head_bundle"]

BUNDLE_DIR = "autoscaler"  # under the head's install dir
SPEC_FILE = "cluster.yaml"
KEY_FILE = "ssh_key"
KNOWN_HOSTS_FILE = "known_hosts"
RUNTIME_FILE = "runtime.json"


@dataclass(frozen=True)
class HeadBundle:
    """The files ``rayops up`` leaves on the head for the autoscaler (all under ``root``)."""

    root: str  # <install_dir>/autoscaler, absolute on the head

    @property
    def spec_file(self) -> str:
        return f"{self.root}/{SPEC_FILE}"

    @property
    def key_file(self) -> str:
        return f"{self.root}/{KEY_FILE}"

    @property
    def known_hosts(self) -> str:
        return f"{self.root}/{KNOWN_HOSTS_FILE}"

    @property
    def runtime_file(self) -> str:
        return f"{self.root}/{RUNTIME_FILE}"

    @property
    def cache_dir(self) -> str:
        return f"{self.root}/cache"


def head_bundle(cluster: Cluster, head_home: str) -> HeadBundle:
    d = expand_home(cluster.spec.install_dir, head_home).rstrip("/")
    return HeadBundle(f"{d}/autoscaler")


def head_spec(cluster: Cluster, bundle: HeadBundle) -> dict[str, Any]:
    """The spec rewritten for the head (see the module docstring); raises LauncherError when
    the head could not use it."""
    spec = cluster.spec
    if spec.auth.ssh_private_key is None:
        raise LauncherError(
            f"{spec.source_file}: autoscaling needs auth.ssh_private_key: the head logs in to "
            "the pool hosts with a copy of that key (ssh's default keys are not copied)"
        )
    text = spec.local_path(spec.source_file).read_text() if spec.source_file else ""
    data, _lines = load_yaml_with_lines(text, spec.source_file)
    data = dict(data)
    auth = dict(data.get("auth") or {})
    auth["ssh_private_key"] = bundle.key_file
    auth["known_hosts_file"] = bundle.known_hosts
    data["auth"] = auth
    rayops = dict(data.get("rayops") or {})
    install = dict(rayops.get("install") or {})
    install.pop("path", None)
    install["source"] = "project"
    rayops["install"] = install
    data["rayops"] = rayops
    if spec.file_mounts:
        data["file_mounts"] = {
            remote: f"{bundle.root}/mounts/{i}" + ("/" if spec.local_path(local).is_dir() else "")
            for i, (remote, local) in enumerate(sorted(spec.file_mounts.items()))
        }
    return data


def write_head_bundle(cluster: Cluster, source_digest: str) -> HostFailure | None:
    """Write the head's bundle; the failure if it could not (the head is then not started)."""
    spec, head = cluster.spec, cluster.head
    try:
        bundle = head_bundle(cluster, cluster.pool.home(head))
        data = head_spec(cluster, bundle)
        sftp = cluster.pool.sftp(head)
        assert spec.auth.ssh_private_key is not None  # head_spec checked it
        _write_private(sftp, bundle.key_file, spec.local_path(spec.auth.ssh_private_key))
        kh = spec.local_path(spec.auth.known_hosts_file)
        write_remote_file(sftp, bundle.known_hosts, kh.read_bytes() if kh.is_file() else b"")
        for i, (_remote, local) in enumerate(sorted(spec.file_mounts.items())):
            src = spec.local_path(local)
            push(sftp, str(src) + ("/" if src.is_dir() else ""), f"{bundle.root}/mounts/{i}")
        write_remote_file(
            sftp, bundle.runtime_file, json.dumps({"source_digest": source_digest}).encode()
        )
        _write_tls_copy(cluster, sftp, bundle)
        write_remote_file(sftp, bundle.spec_file, yaml.safe_dump(data, sort_keys=False).encode())
    except SshError as err:
        return HostFailure(err.failure.kind, err.failure.message, step="autoscaler")
    except OSError as err:
        return HostFailure(
            "command-failed",
            f"writing the autoscaler's files on the head: {err}",
            step="autoscaler",
        )
    cluster.out(f"{head}: autoscaler files in {bundle.root} (spec, SSH key 0600, known_hosts)")
    return None


def _write_tls_copy(cluster: Cluster, sftp: Any, bundle: HeadBundle) -> None:
    """With TLS on: every worker host's certificate (made here, by the cluster CA) goes to
    the head's cache, so the autoscaler can give a pool host its files; the CA key stays
    here (launcher/tls_certs.py)."""
    spec = cluster.spec
    if not tls_certs.tls_enabled(spec.rayops.tls, 1 + len(spec.provider.worker_ips)):
        return
    local = tls_certs.cluster_dir(cluster.cache_dir, spec.cluster_name)
    # Hosts without a certificate yet get one now (pool hosts `up` does not reach; the head
    # on a first `up`, whose bundle is written before its install). A host whose reported
    # node IP differs from its address gets a certificate naming both when `up` applies it.
    hosts = [spec.provider.head_ip, *spec.provider.worker_ips]
    missing = {ip: [ip] for ip in hosts if not (local / "hosts" / ip / "names").exists()}
    if missing:
        tls_certs.ensure_certs(local, missing, spec.cluster_name)
    remote = f"{bundle.cache_dir}/tls/{spec.cluster_name}"
    for rel, data in tls_certs.head_copy(local, hosts).items():
        if rel.endswith(".key"):
            _write_private_bytes(sftp, f"{remote}/{rel}", data)
        else:
            write_remote_file(sftp, f"{remote}/{rel}", data)


def _write_private(sftp: Any, path: str, local: Any) -> None:
    """Write a secret file: the remote file is 0600 before any byte goes in."""
    _write_private_bytes(sftp, path, local.read_bytes())


def _write_private_bytes(sftp: Any, path: str, data: bytes) -> None:
    from rayops.launcher.transfer import remote_makedirs

    remote_makedirs(sftp, posixpath.dirname(path))
    tmp = f"{path}.rayops-tmp"
    with sftp.open(tmp, "wb") as f:
        f.chmod(0o600)
        f.write(data)
    sftp.posix_rename(tmp, path)


def place_wheelhouse(
    cluster: Cluster, head_install_dir: str, source_digest: str, python_tag: str
) -> HostFailure | None:
    """Copy the head's installed wheelhouse archive into the head-side wheelhouse cache."""
    d = head_install_dir.rstrip("/")
    dest = f"{d}/autoscaler/cache/wheelhouse/{wheelhouse_key(source_digest, python_tag)}"
    cmd = (
        f"mkdir -p '{dest}' && cp -f '{d}/{ARCHIVE}' '{dest}/.{ARCHIVE}.tmp' && "
        f"mv -f '{dest}/.{ARCHIVE}.tmp' '{dest}/{ARCHIVE}'"
    )
    res = cluster.pool.run(cluster.head, cmd, timeout=120)
    if res.failure is not None:
        return res.failure
    if res.exit_code != 0:
        return HostFailure(
            "command-failed",
            "copying the wheelhouse into the autoscaler's cache failed",
            step="autoscaler",
            command=cmd,
            exit_code=res.exit_code,
            output_tail=res.tail(),
        )
    return None
