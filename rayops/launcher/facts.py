"""Facts: what is true on each host right now, read in parallel with one SSH command per host.

``gather_facts`` pipes ``facts_probe.py`` into the host's Python (one command per host on the
command's shared connection, all hosts in parallel) and parses its JSON into a ``HostFacts``;
a host that cannot be reached gets ``HostFacts.unreachable`` with the exact cause. Facts only
read; they never change a host.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rayops.launcher.errors import HostFailure
from rayops.launcher.ssh import CommandResult, SshPool

_PROBE = Path(__file__).with_name("facts_probe.py")
FACTS_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class HostFacts:
    address: str
    failure: HostFailure | None = None
    hostname: str = ""
    user: str = ""
    home: str = ""
    python: str = ""
    python_version: str = ""
    machine: str = ""
    systemd: bool = False
    rsync: bool = False
    install_dir: str = ""
    temp_dir: str = ""
    venv_ok: bool = False
    rayops_version: str | None = None
    applied: Mapping[str, str] = field(default_factory=dict)
    daemons: Mapping[str, int] = field(default_factory=dict)
    session_dir: str | None = None
    gcs_address: str | None = None
    token_sha: str | None = None
    record: Mapping[str, Any] | None = None
    node_ip: str | None = None

    @property
    def reachable(self) -> bool:
        return self.failure is None

    @property
    def running(self) -> bool:
        """This cluster's raylet runs on the host (and the GCS too, for a head)."""
        return "raylet" in self.daemons

    @property
    def python_tag(self) -> str:
        """``3.11-x86_64``: which wheelhouse the host needs."""
        major_minor = ".".join(self.python_version.split(".")[:2])
        return f"{major_minor}-{self.machine}"

    @staticmethod
    def unreachable(address: str, failure: HostFailure) -> HostFacts:
        return HostFacts(address=address, failure=failure)


def probe_command(python: str, install_dir: str, temp_dir: str, address: str) -> str:
    """The remote command: find the interpreter, then run the probe read from stdin."""
    args = " ".join(shlex.quote(a) for a in (install_dir, temp_dir, address))
    return (
        f"PY=$(command -v {shlex.quote(python)}) || "
        f"{{ echo 'rayops-facts: {python} not found on PATH' >&2; exit 97; }}; "
        f'exec "$PY" - {args}'
    )


def parse_facts(address: str, python: str, res: CommandResult) -> HostFacts:
    """A probe's result -> HostFacts (no I/O)."""
    if res.failure is not None:
        return HostFacts.unreachable(address, res.failure)
    if res.exit_code == 97:
        return HostFacts.unreachable(
            address,
            HostFailure(
                "precondition",
                f"{python} not found on PATH of {address}: install Python 3 (for example in "
                "initialization_commands is too late: facts need it) or set rayops.python",
            ),
        )
    if res.exit_code != 0:
        return HostFacts.unreachable(
            address,
            HostFailure(
                "command-failed",
                f"reading facts on {address} failed with exit code {res.exit_code}",
                step="facts",
                exit_code=res.exit_code,
                output_tail=res.tail(),
            ),
        )
    try:
        data = json.loads(res.stdout.strip().splitlines()[-1])
    except (ValueError, IndexError) as err:
        return HostFacts.unreachable(
            address,
            HostFailure(
                "command-failed",
                f"the facts probe on {address} printed no JSON ({err})",
                step="facts",
                output_tail=res.tail(),
            ),
        )
    known = set(HostFacts.__dataclass_fields__) - {"address", "failure"}
    return HostFacts(address=address, **{k: v for k, v in data.items() if k in known})


def gather_facts(
    pool: SshPool,
    addresses: list[str],
    python: str,
    install_dir: str,
    temp_dir: str,
) -> dict[str, HostFacts]:
    """Facts of every host, in parallel; never raises for a host that fails."""
    source = _PROBE.read_bytes()
    results = pool.run_many(
        addresses,
        lambda a: probe_command(python, install_dir, temp_dir, a),
        input_bytes=source,
        timeout=FACTS_TIMEOUT_S,
    )
    return {a: parse_facts(a, python, results[a]) for a in addresses}
