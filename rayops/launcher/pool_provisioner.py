"""Provisioning pool hosts from the head: the autoscaler's side of ``rayops up``.

``rayops up`` (with autoscaling) leaves on the head, under ``<install_dir>/autoscaler/``, what
the head needs to add workers by itself (``HeadBundle``): the cluster spec rewritten for the
head (``cluster.yaml``: the SSH key and known_hosts are the copies next to it), the SSH
private key (``ssh_key``, mode 0600), the launcher's ``known_hosts``, and ``runtime.json``
naming the digest of the runtime the launcher installed, whose wheelhouse archive is placed in
the head's wheelhouse cache (``cache/wheelhouse/<key>/wheelhouse.tar``) so the head never
rebuilds it and a node it adds gets the same install key as one ``rayops up`` made.

``LauncherProvisioner`` implements ``rayops.providers.local.PoolProvisioner`` with the same
facts -> plan -> apply path ``rayops up`` takes, for the head plus the new workers; the head
itself is never changed by it (its actions are dropped from the plan: it only hands out the
cluster token). ``stop`` runs what ``rayops down`` runs on a host.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from pathlib import Path

from rayops.launcher.apply import apply_plan
from rayops.launcher.assets import launcher_assets
from rayops.launcher.autoscaling import RUNTIME_FILE
from rayops.launcher.cluster import Cluster, Events, check_control_dir, ssh_config_for
from rayops.launcher.desired import LocalInputs, host_target, mounts_digest
from rayops.launcher.facts import gather_facts
from rayops.launcher.plan import PlanOptions, make_plan
from rayops.launcher.spec import ClusterSpec, load_spec
from rayops.launcher.ssh import SshPool
from rayops.launcher.wheelhouse import RuntimeSource, running_source

__all__ = ["LauncherProvisioner", "load_bundle"]


def load_bundle(spec_file: str) -> tuple[ClusterSpec, str | None]:
    """The head's spec and the runtime digest ``rayops up`` installed (None if unknown)."""
    spec, _notes = load_spec(spec_file)
    runtime = Path(spec_file).with_name(RUNTIME_FILE)
    digest = None
    if runtime.is_file():
        digest = str(json.loads(runtime.read_text()).get("source_digest") or "") or None
    return spec, digest


class LauncherProvisioner:
    """Adds and removes pool hosts with the launcher library (see the module docstring)."""

    def __init__(
        self,
        spec: ClusterSpec,
        source_digest: str | None,
        cache_dir: Path,
        log: Callable[[str], None],
        control_dir: str | None = None,
    ) -> None:
        self.spec = spec
        self.cache_dir = cache_dir
        self.log = log
        self.control_dir = control_dir or f"/tmp/rayops-ssh-{os.getuid()}-as"
        check_control_dir(self.control_dir)
        self.ssh = ssh_config_for(spec, self.control_dir)
        self._source: RuntimeSource | None = None
        self._digest = source_digest

    def _runtime(self) -> tuple[RuntimeSource, str]:
        if self._source is None:
            self._source = running_source(tuple(self.spec.rayops.install.extra_packages))
        if self._digest is None:
            self._digest = self._source.digest()
        return self._source, self._digest

    def provision(self, addresses: Sequence[str], node_type: str) -> Mapping[str, str | None]:
        spec = self.spec
        head = spec.provider.head_ip
        started = time.monotonic()
        with SshPool(self.ssh) as pool:
            roles = {head: "head", **{a: "worker" for a in addresses}}
            facts = gather_facts(
                pool, list(roles), spec.rayops.python, spec.install_dir, spec.temp_dir
            )
            if not facts[head].reachable:
                cause = f"the head {head} is unreachable from itself: {facts[head].failure}"
                return {a: cause for a in addresses}
            source, digest = self._runtime()
            inputs = LocalInputs(runtime_source=digest, mounts=mounts_digest(spec))
            targets = {
                a: host_target(spec, inputs, facts[a], role)
                for a, role in roles.items()
                if facts[a].reachable
            }
            plan = make_plan(
                spec.cluster_name, spec.config_hash(), head, roles, targets, facts, PlanOptions()
            )
            # A worker's launch never touches the head: it only hands out the token.
            plan = replace(
                plan,
                hosts=tuple(
                    replace(h, actions=(), restart=False) if h.role == "head" else h
                    for h in plan.hosts
                ),
            )
            for h in plan.hosts:
                if h.role == "worker":
                    steps = ", ".join(h.steps) or "nothing to do"
                    self.log(f"{h.address}: plan: {steps}")
            with launcher_assets() as assets:
                outcomes = apply_plan(
                    spec,
                    self.ssh,
                    pool,
                    plan,
                    targets,
                    facts,
                    source,
                    digest,
                    self.cache_dir,
                    assets,
                    self.log,
                    started,
                )
        out: dict[str, str | None] = {}
        for a in addresses:
            o = outcomes.get(a)
            if o is None:
                out[a] = "not in the plan"
            elif o.failure is not None:
                step = f" in step {o.failure.step}" if o.failure.step else ""
                out[a] = f"provisioning failed{step}: {o.failure.one_line()}"
            else:
                out[a] = None
        self.log(
            f"provisioned {', '.join(a for a, c in out.items() if c is None) or 'none'} "
            f"in {time.monotonic() - started:.1f} s"
        )
        return out

    def stop(self, address: str) -> str | None:
        from rayops.launcher.down_status import stop_command

        with SshPool(self.ssh) as pool:
            cluster = Cluster(self.spec, self.ssh, pool, self.cache_dir, Events(self.log))
            res = pool.run(address, stop_command(cluster), timeout=60)
        if res.failure is not None:
            return res.failure.one_line()
        if res.exit_code != 0:
            return f"stop exited with code {res.exit_code}: {' | '.join(res.tail(5))}"
        return None
