"""The typed cluster spec (cluster.yaml): Ray's local-provider keys plus rayops' own section.

Parsed once, at the edge, into frozen pydantic models; everything downstream receives a
``ClusterSpec`` and never reads the YAML again. ``load_spec`` turns every problem into a
``ClusterSpecError`` naming the file, line, key path, the expected and the found value, and
the closest valid key for a typo, before anything touches the network.

Ray keys that rayops accepts but does not act on (start commands, ...) are
listed in ``IGNORED_RAY_KEYS``; ``load_spec`` returns a note for each one that is set, so a Ray
user sees what differs instead of silently losing a setting.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from rayops.launcher.errors import ClusterSpecError, SpecIssue
from rayops.launcher.spec_messages import issue_from_pydantic
from rayops.launcher.yaml_source import KeyPath, format_path, line_for, load_yaml_with_lines
from rayops.node.node_args import label_problem

_LABEL = r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
_HOSTNAME = re.compile(rf"^(?=.{{1,253}}$){_LABEL}(\.{_LABEL})*$")
_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")

Port = Annotated[int, Field(ge=1, le=65535)]
NonNegative = Annotated[float, Field(ge=0)]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _check_address(value: str) -> str:
    try:
        ipaddress.ip_address(value)
        return value
    except ValueError:
        pass
    if not _HOSTNAME.match(value):
        raise ValueError(f"expected an IP address or a host name, found {value!r}")
    return value


# ---- provider: local (Ray's fixed host list), aws (EC2), external (a user's class) ----------
# Keys only one provider type takes; every other ProviderSpec key belongs to ``local``.
_AWS_PROVIDER_KEYS = ("region", "availability_zone", "cache_stopped_nodes", "endpoint_url")
_EXTERNAL_PROVIDER_KEYS = ("module", "config")
# Ray aws provider keys rayops does not implement, each with what to do instead.
_AWS_KEYS_NOT_SUPPORTED = {
    "security_group": "rayops does not create security groups: list existing ones in each "
    "node type's node_config.SecurityGroupIds",
    "use_internal_ips": "not supported yet: the autoscaler on the head reaches workers at "
    "their private address, and `rayops up` cannot launch an EC2 head yet",
    "key_pair": "set node_config.KeyName in each node type",
}


class ProviderSpec(_Model):
    """Where the machines come from: ``local`` (a list of hosts), ``aws`` (EC2 through boto3)
    or ``external`` (a NodeProvider class of the user's)."""

    type: Literal["local", "aws", "external"] = Field(
        description="the node provider: 'local' (a list of hosts), 'aws' or 'external'"
    )
    head_ip: str = Field(description="the head's IP address or host name")
    worker_ips: list[str] = Field(
        default_factory=list, description="a list of worker IP addresses or host names"
    )
    external_head_ip: str | None = Field(
        default=None, description="the head's address as seen from the launching machine"
    )
    region: str | None = Field(default=None, description="the AWS region, e.g. 'us-west-2'")
    availability_zone: str | None = Field(
        default=None,
        description="comma-separated zones to launch in (SubnetIds elsewhere are not used)",
    )
    cache_stopped_nodes: bool | None = Field(
        default=None, description="false (rayops terminates EC2 instances, never stops them)"
    )
    endpoint_url: str | None = Field(
        default=None,
        description="an EC2 API endpoint other than AWS's own (rayops' own key; e.g. a VPC "
        "endpoint)",
    )
    module: str | None = Field(
        default=None, description="the provider class, 'package.module:ClassName'"
    )
    config: dict[str, Any] | None = Field(
        default=None,
        description="settings handed to the external provider class (rayops' own key)",
    )

    @model_validator(mode="before")
    @classmethod
    def _keys_of_the_type(cls, data: Any) -> Any:
        if not isinstance(data, dict) or data.get("type") not in ("aws", "external"):
            if isinstance(data, dict) and data.get("type") == "local":
                _refuse_keys(data, "local", _AWS_PROVIDER_KEYS + _EXTERNAL_PROVIDER_KEYS)
            return data
        kind = data["type"]
        own = _AWS_PROVIDER_KEYS if kind == "aws" else _EXTERNAL_PROVIDER_KEYS
        if kind == "aws":
            for key, why in _AWS_KEYS_NOT_SUPPORTED.items():
                if key in data:
                    raise ValueError(f"{key!r} is not supported: {why}")
            if data.get("cache_stopped_nodes") is True:
                raise ValueError(
                    "'cache_stopped_nodes': rayops terminates idle EC2 instances and never "
                    "stops them for reuse: expected false, found true"
                )
        others = [k for k in cls.model_fields if k != "type" and k not in own]
        _refuse_keys(data, kind, others)
        required = "region" if kind == "aws" else "module"
        if not data.get(required):
            raise ValueError(
                f"{required!r} is required for provider type {kind!r}: "
                f"expected {cls.model_fields[required].description}"
            )
        # The head's address is not in the spec for these types (it comes from the provider).
        return {**data, "head_ip": ""}

    @field_validator("head_ip")
    @classmethod
    def _head_address(cls, v: str, info: ValidationInfo) -> str:
        if v == "" and info.data.get("type") in ("aws", "external"):
            return v
        return _check_address(v)

    @field_validator("external_head_ip")
    @classmethod
    def _address(cls, v: str | None) -> str | None:
        return None if v is None else _check_address(v)

    @field_validator("worker_ips")
    @classmethod
    def _workers(cls, v: list[str]) -> list[str]:
        for item in v:
            _check_address(item)
        return v


def _refuse_keys(data: dict[str, Any], kind: str, keys: Any) -> None:
    wrong = sorted(k for k in keys if k in data)
    if wrong:
        raise ValueError(f"{', '.join(map(repr, wrong))}: not a key of provider type {kind!r}")


class AuthSpec(_Model):
    """How to log in. ``host_key_policy`` and ``known_hosts_file`` are rayops' own keys."""

    ssh_user: str = Field(min_length=1, description="the user to log in as on every host")
    ssh_private_key: str | None = Field(
        default=None, description="path of the private key file (default: ssh's own keys)"
    )
    ssh_port: Port = Field(default=22, description="an SSH port number (1-65535)")
    host_key_policy: Literal["strict", "accept-new"] = Field(
        default="strict",
        description="'strict' (host keys must be in known_hosts) or 'accept-new'",
    )
    known_hosts_file: str = Field(
        default="~/.ssh/known_hosts", description="the known_hosts file host keys are checked in"
    )
    connect_timeout: Annotated[float, Field(gt=0, le=300)] = Field(
        default=10.0, description="seconds to wait for an SSH connection (0 < t <= 300)"
    )


class NodeTypeSpec(_Model):
    """One entry of ``available_node_types``."""

    resources: dict[str, NonNegative] = Field(
        default_factory=dict, description="a mapping of resource name to amount >= 0"
    )
    node_config: dict[str, Any] = Field(
        default_factory=dict, description="provider-specific settings (empty for 'local')"
    )
    min_workers: Annotated[int, Field(ge=0)] = 0
    max_workers: Annotated[int, Field(ge=0)] | None = None
    labels: dict[str, str] = Field(default_factory=dict, description="node labels")

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: dict[str, str]) -> dict[str, str]:
        # The same rules `rayops start --labels` and init(labels=) apply (Ray's label syntax).
        for key, value in v.items():
            problem = label_problem(key, value)
            if problem is not None:
                raise ValueError(problem)
        return v


class InstallSpec(_Model):
    """Where the runtime installed on the hosts comes from (rayops' own)."""

    source: Literal["project", "wheel"] = Field(
        default="project",
        description="'project' (build the rayops the launcher runs from) or 'wheel'",
    )
    path: str | None = Field(
        default=None,
        description="a rayops source tree (source: project) or a .whl file (source: wheel)",
    )
    extra_packages: list[str] = Field(
        default_factory=list,
        description="more requirements (e.g. 'numpy>=1.26') added to the wheelhouse",
    )


class PortsSpec(_Model):
    gcs: Port = Field(default=6379, description="the GCS port on the head (1-65535)")
    metrics_export: Port = Field(
        default=8080,
        description="the node agent's Prometheus /metrics port on every node (1-65535)",
    )


class RayopsSpec(_Model):
    """rayops' own settings (the ``rayops:`` section)."""

    install_dir: str | None = Field(
        default=None,
        description="per-host directory for the runtime (default ~/rayops/<cluster_name>)",
    )
    temp_dir: str | None = Field(
        default=None, description="per-host session directory (default <install_dir>/sessions)"
    )
    python: str = Field(
        default="python3", description="the interpreter on the hosts the virtualenv is made from"
    )
    install: InstallSpec = Field(default_factory=InstallSpec)
    ports: PortsSpec = Field(default_factory=PortsSpec)
    process_manager: Literal["auto", "systemd", "plain"] = Field(
        default="auto",
        description="'auto' (systemd when it runs as PID 1), 'systemd' or 'plain'",
    )
    object_store_memory: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="bytes of shared memory per node for objects"
    )
    runtime_env_index_url: str | None = Field(
        default=None,
        description="the package index pip/uv runtime_envs install from (http(s):// or "
        "file://); default: none (air-gapped: only runtime_env_find_links)",
    )
    runtime_env_find_links: list[str] | None = Field(
        default=None,
        description="wheelhouse directories or URLs pip/uv runtime_envs install from; default: "
        "the cluster's wheelhouse on each host (<install_dir>/wheelhouse)",
    )
    runtime_env_cache_mb: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="MiB of disk each node's pip/uv envs may take (default 10240)"
    )
    tls: bool | None = Field(
        default=None,
        description="TLS with mutual verification on every port, from a cluster CA and a "
        "certificate per host that `rayops up` makes; default: on when the cluster has more "
        "than one host",
    )

    @field_validator("runtime_env_index_url")
    @classmethod
    def _index_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("http://", "https://", "file://")):
            raise ValueError(f"expected an http://, https:// or file:// URL, found {v!r}")
        return v

    @field_validator("runtime_env_find_links")
    @classmethod
    def _find_links(cls, v: list[str] | None) -> list[str] | None:
        for link in v or []:
            if not link.strip() or any(c in link for c in " ,"):
                raise ValueError(f"expected paths or URLs without spaces or commas, found {link!r}")
        return v


class ClusterSpec(_Model):
    """The whole cluster.yaml."""

    cluster_name: str = Field(
        default="default", description="a name made of letters, digits, . _ -"
    )
    max_workers: Annotated[int, Field(ge=0)] | None = None
    min_workers: Annotated[int, Field(ge=0)] | None = None
    upscaling_speed: NonNegative = 1.0
    idle_timeout_minutes: NonNegative = 5.0
    provider: ProviderSpec
    auth: AuthSpec
    available_node_types: dict[str, NodeTypeSpec] = Field(default_factory=dict)
    head_node_type: str | None = None
    file_mounts: dict[str, str] = Field(
        default_factory=dict, description="a mapping of remote path to local path"
    )
    cluster_synced_files: list[str] = Field(default_factory=list)
    file_mounts_sync_continuously: bool = False
    rsync_exclude: list[str] = Field(default_factory=list)
    rsync_filter: list[str] = Field(default_factory=list)
    initialization_commands: list[str] = Field(default_factory=list)
    setup_commands: list[str] = Field(default_factory=list)
    head_setup_commands: list[str] = Field(default_factory=list)
    worker_setup_commands: list[str] = Field(default_factory=list)
    head_start_ray_commands: list[str] = Field(default_factory=list)
    worker_start_ray_commands: list[str] = Field(default_factory=list)
    rayops: RayopsSpec = Field(default_factory=RayopsSpec)

    # Set by load_spec: the file the spec came from (relative local paths resolve against it).
    _source_file: str = PrivateAttr(default="")

    @field_validator("cluster_name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not _CLUSTER_NAME.match(v):
            raise ValueError(
                f"expected 1-63 letters, digits, '.', '_' or '-' (starting with a letter or "
                f"digit), found {v!r}"
            )
        return v

    # ---- derived values (no I/O) -------------------------------------------------------
    @property
    def source_file(self) -> str:
        return self._source_file

    @property
    def install_dir(self) -> str:
        """The per-host install directory, possibly starting with ``~`` (expanded per host)."""
        return self.rayops.install_dir or f"~/rayops/{self.cluster_name}"

    @property
    def temp_dir(self) -> str:
        return self.rayops.temp_dir or f"{self.install_dir.rstrip('/')}/sessions"

    @property
    def gcs_port(self) -> int:
        return self.rayops.ports.gcs

    @property
    def metrics_export_port(self) -> int:
        return self.rayops.ports.metrics_export

    @property
    def head_address(self) -> str:
        """HOST:PORT of the GCS, as workers and drivers reach it."""
        return f"{self.provider.head_ip}:{self.gcs_port}"

    def worker_node_type(self) -> str | None:
        others = [t for t in self.available_node_types if t != self.head_node_type]
        return others[0] if others else None

    def resources_for(self, role: str) -> dict[str, float]:
        name = self.head_node_type if role == "head" else self.worker_node_type()
        if not name or name not in self.available_node_types:
            return {}
        return dict(self.available_node_types[name].resources)

    def labels_for(self, role: str) -> dict[str, str]:
        name = self.head_node_type if role == "head" else self.worker_node_type()
        if not name or name not in self.available_node_types:
            return {}
        return dict(self.available_node_types[name].labels)

    def local_path(self, path: str) -> Path:
        """A local path from the spec: ``~`` expanded, relative to the spec file's folder."""
        p = Path(os.path.expanduser(path))
        if not p.is_absolute() and self._source_file:
            p = Path(self._source_file).resolve().parent / p
        return p

    def config_hash(self) -> str:
        """A digest of the whole spec: what the head's cluster record remembers."""
        data = self.model_dump(mode="json")
        return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


# Ray keys accepted for compatibility whose settings rayops does not act on (yet).
IGNORED_RAY_KEYS: dict[str, str] = {
    "head_start_ray_commands": "rayops starts its own daemons (`rayops start --head`)",
    "worker_start_ray_commands": "rayops starts its own daemons (`rayops start --address`)",
    "cluster_synced_files": "not supported yet; use file_mounts",
    "file_mounts_sync_continuously": "not supported yet",
}


def load_spec(path: str | os.PathLike[str]) -> tuple[ClusterSpec, list[str]]:
    """Read and check ``path``; return the spec and notes about ignored Ray keys.

    Raises ClusterSpecError (before any network use) listing every problem found.
    """
    file = str(path)
    try:
        text = Path(path).read_text()
    except OSError as err:
        raise ClusterSpecError(file, [SpecIssue(0, "", f"cannot read the file: {err}")]) from err
    data, lines = load_yaml_with_lines(text, file)
    if not isinstance(data, dict):
        raise ClusterSpecError(
            file,
            [SpecIssue(1, "", f"expected a mapping of cluster settings, found {_kind(data)}")],
        )
    try:
        spec = ClusterSpec.model_validate(data)
    except ValidationError as err:
        issues = [issue_from_pydantic(e, lines, ClusterSpec) for e in err.errors()]
        raise ClusterSpecError(file, _dedupe(issues)) from err
    spec._source_file = file
    issues = check_consistency(spec, lines)
    if issues:
        raise ClusterSpecError(file, issues)
    notes = [
        f"{file}:{line_for(lines, (key,))}: {key} is accepted but not used: {why}"
        for key, why in IGNORED_RAY_KEYS.items()
        if key in data and data[key] not in (None, [], {}, False, 1, 1.0)
    ]
    return spec, notes


def _kind(value: Any) -> str:
    from rayops.launcher.spec_messages import yaml_kind

    return yaml_kind(value)


def _dedupe(issues: list[SpecIssue]) -> list[SpecIssue]:
    seen: set[tuple[int, str, str]] = set()
    out = []
    for i in issues:
        key = (i.line, i.key_path, i.message)
        if key not in seen:
            seen.add(key)
            out.append(i)
    return sorted(out, key=lambda i: (i.line, i.key_path))


def check_consistency(spec: ClusterSpec, lines: dict[KeyPath, int]) -> list[SpecIssue]:
    """Checks that span several keys or look at local files (still no network)."""
    issues: list[SpecIssue] = []

    def add(path: KeyPath, message: str) -> None:
        issues.append(SpecIssue(line_for(lines, path), format_path(path), message))

    _check_hosts(spec, add)
    _check_ports(spec, add)
    _check_node_types(spec, add)
    _check_local_files(spec, add)
    return issues


def _check_hosts(spec: ClusterSpec, add: Any) -> None:
    seen: dict[str, int] = {}
    for i, ip in enumerate(spec.provider.worker_ips):
        if ip == spec.provider.head_ip:
            add(("provider", "worker_ips", i), f"{ip} is the head_ip; list each host once")
        elif ip in seen:
            add(
                ("provider", "worker_ips", i),
                f"{ip} is listed twice (also at worker_ips[{seen[ip]}])",
            )
        seen.setdefault(ip, i)


def _check_ports(spec: ClusterSpec, add: Any) -> None:
    # Every node's agent listens on metrics_export: on the head beside the GCS, on every host
    # beside sshd.
    port = spec.rayops.ports.metrics_export
    if port == spec.rayops.ports.gcs:
        add(
            ("rayops", "ports", "metrics_export"),
            f"expected a port other than rayops.ports.gcs ({spec.rayops.ports.gcs}): the head "
            f"runs both the GCS and a node agent, found {port}",
        )
    elif port == spec.auth.ssh_port:
        add(
            ("rayops", "ports", "metrics_export"),
            f"expected a port other than auth.ssh_port ({spec.auth.ssh_port}): every host's "
            f"sshd listens there, found {port}",
        )


def _check_node_types(spec: ClusterSpec, add: Any) -> None:
    types = spec.available_node_types
    if types and spec.head_node_type is None:
        add(
            ("head_node_type",),
            f"required when available_node_types is set: expected one of {sorted(types)}",
        )
    if spec.head_node_type is not None and types and spec.head_node_type not in types:
        from difflib import get_close_matches

        close = get_close_matches(spec.head_node_type, list(types), n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        add(
            ("head_node_type",),
            f"expected one of the available_node_types {sorted(types)}, "
            f"found {spec.head_node_type!r}{hint}",
        )
    workers = [t for t in types if t != spec.head_node_type]
    if spec.provider.type != "local":
        _check_cloud_node_types(spec, add)
        return
    if len(workers) > 1:
        add(
            ("available_node_types",),
            "the local provider gives every worker_ips host one node type: expected at most one "
            f"worker node type, found {len(workers)} ({', '.join(workers)})",
        )
    for name, nt in types.items():
        if nt.node_config:
            add(
                ("available_node_types", name, "node_config"),
                "expected an empty mapping for the local provider (hosts already exist), "
                f"found keys {sorted(nt.node_config)}",
            )


def _check_cloud_node_types(spec: ClusterSpec, add: Any) -> None:
    """aws: each node_config is checked against the EC2 keys rayops implements; external: the
    user's class gets node_configs as they are."""
    if not spec.available_node_types:
        add(
            ("available_node_types",),
            f"required for provider type {spec.provider.type!r}: expected at least one node "
            "type with its node_config",
        )
    if spec.provider.type != "aws":
        return
    from rayops.providers.aws_node_config import node_config_problems

    for name, nt in spec.available_node_types.items():
        for path, message in node_config_problems(nt.node_config):
            add(("available_node_types", name, "node_config", *path), message)


def _check_local_files(spec: ClusterSpec, add: Any) -> None:
    key = spec.auth.ssh_private_key
    if key is not None:
        p = spec.local_path(key)
        if not p.is_file():
            add(("auth", "ssh_private_key"), f"expected a private key file, found nothing at {p}")
        elif p.stat().st_mode & 0o077:
            add(
                ("auth", "ssh_private_key"),
                f"{p} is readable by group or others (mode {p.stat().st_mode & 0o777:04o}); "
                f"ssh refuses such keys: run `chmod 600 {p}`",
            )
    kh = spec.local_path(spec.auth.known_hosts_file)
    if spec.auth.host_key_policy == "strict" and not kh.is_file():
        add(
            ("auth", "known_hosts_file"),
            f"host_key_policy is 'strict' but {kh} does not exist: add the hosts' keys to it "
            "(ssh-keyscan, checked out of band) or set auth.host_key_policy: accept-new",
        )
    for remote, local in spec.file_mounts.items():
        p = spec.local_path(local)
        if not p.exists():
            add(
                ("file_mounts", remote), f"expected a local file or directory, found nothing at {p}"
            )
    inst = spec.rayops.install
    if inst.source == "wheel":
        if not inst.path:
            add(("rayops", "install", "path"), "required when source is 'wheel': a .whl file")
        elif not spec.local_path(inst.path).is_file() or not inst.path.endswith(".whl"):
            add(
                ("rayops", "install", "path"),
                f"expected a .whl file, found {spec.local_path(inst.path)}",
            )
    elif inst.path and not (spec.local_path(inst.path) / "pyproject.toml").is_file():
        add(
            ("rayops", "install", "path"),
            "expected a rayops source tree (with pyproject.toml), "
            f"found {spec.local_path(inst.path)}",
        )
