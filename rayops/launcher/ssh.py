"""Running commands on hosts over SSH (the OpenSSH client), with reused connections.

Every command goes through ``ssh`` with the same options Ansible gets, so one ControlMaster
connection per host is shared by facts, ``exec``, ``submit`` and the playbooks: after the first
connection a command costs one round trip instead of a key exchange (DESIGN.md: 0.35-0.5 s per
fresh connection on this kind of machine). Host keys are always checked: against the
configured known_hosts file, with ``accept-new`` only when the spec opts in.

Errors of ssh itself (exit status 255 with a recognisable message) are turned into a
``HostFailure`` that says exactly what went wrong; a remote command's own exit status is
returned untouched. This module blocks; callers run it in threads.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import IO

from rayops.launcher.errors import HostFailure

SSH_ERROR_EXIT = 255
TAIL_LINES = 20


@dataclass(frozen=True)
class SshConfig:
    """How to reach every host of one cluster (the spec's ``auth`` plus local paths)."""

    user: str
    port: int = 22
    key_file: str | None = None
    known_hosts: str = os.path.expanduser("~/.ssh/known_hosts")
    host_key_policy: str = "strict"
    connect_timeout: float = 10.0
    control_dir: str = "/tmp"
    control_persist_s: int = 60

    def options(self) -> list[str]:
        """``-o`` options shared by ssh, rsync's ``-e`` and Ansible's ``ssh_args``."""
        strict = "accept-new" if self.host_key_policy == "accept-new" else "yes"
        opts = [
            "-o", "BatchMode=yes",
            "-o", f"ConnectTimeout={max(1, round(self.connect_timeout))}",
            "-o", f"StrictHostKeyChecking={strict}",
            "-o", f"UserKnownHostsFile={self.known_hosts}",
            "-o", "ControlMaster=auto",
            "-o", f"ControlPath={self.control_dir}/{self.identity_tag()}-%C",
            "-o", f"ControlPersist={self.control_persist_s}",
            # A dead peer must fail a session within ~15 s instead of hanging on a live
            # master (TEST-HOSTS.md P5).
            "-o", "ServerAliveInterval=5",
            "-o", "ServerAliveCountMax=3",
            "-o", "LogLevel=ERROR",
        ]  # fmt: skip
        if self.key_file:
            opts += ["-o", "IdentitiesOnly=yes", "-i", self.key_file]
        return opts

    def identity_tag(self) -> str:
        """Part of the ControlMaster socket name: a shared connection is only reused with the
        same key and host-key settings (``%C`` covers host, port and user only), so a spec
        whose key changed never rides on a connection the old key opened."""
        import hashlib

        ident = f"{self.key_file}\0{self.known_hosts}\0{self.host_key_policy}"
        return hashlib.sha256(ident.encode()).hexdigest()[:8]

    def ssh_argv(self, address: str, *, tty: bool = False) -> list[str]:
        argv = ["ssh", *self.options(), "-p", str(self.port)]
        argv.append("-tt" if tty else "-T")
        argv += [f"{self.user}@{address}"]
        return argv

    def rsync_shell(self) -> str:
        """The ``-e`` value for rsync: ssh with the same options and port."""
        return shlex.join(["ssh", *self.options(), "-p", str(self.port)])


@dataclass
class CommandResult:
    address: str
    exit_code: int
    stdout: str
    stderr: str
    seconds: float
    failure: HostFailure | None = None  # set when ssh itself failed (not the command)

    @property
    def ok(self) -> bool:
        return self.failure is None and self.exit_code == 0

    def tail(self, n: int = TAIL_LINES) -> list[str]:
        text = (self.stdout + ("\n" if self.stdout and self.stderr else "") + self.stderr).strip()
        return text.splitlines()[-n:] if text else []


@dataclass(frozen=True)
class _Pattern:
    kind: str
    regex: re.Pattern[str]
    message: Callable[[SshConfig, str, re.Match[str]], str]


def _changed(cfg: SshConfig, addr: str, m: re.Match[str]) -> str:
    where = m.group(1) if m.groups() and m.group(1) else cfg.known_hosts
    return (
        f"host key of {addr} changed: it does not match {where}. If the host was reinstalled, "
        f"remove the old key (ssh-keygen -R {addr} -f {cfg.known_hosts}) and connect again; "
        "otherwise someone may be intercepting the connection"
    )


_PATTERNS = [
    _Pattern(
        "host-key-changed",
        re.compile(
            r"REMOTE HOST IDENTIFICATION HAS CHANGED(?:.|\n)*?Offending \S+ key in (\S+)"
            r"|REMOTE HOST IDENTIFICATION HAS CHANGED()"
        ),
        lambda c, a, m: _changed(c, a, m),
    ),
    _Pattern(
        "host-key-unknown",
        re.compile(r"No \S+ host key is known for|Host key verification failed"),
        lambda c, a, m: (
            f"host key of {a} is not in {c.known_hosts} and auth.host_key_policy is 'strict': "
            f"add the key after checking it out of band (ssh-keyscan -p {c.port} {a} >> "
            f"{c.known_hosts}) or set auth.host_key_policy: accept-new"
        ),
    ),
    _Pattern(
        "connection-refused",
        re.compile(r"connect to host \S+ port \d+: Connection refused"),
        lambda c, a, m: f"connection refused by {a}:{c.port} (no sshd listening: is the host up?)",
    ),
    _Pattern(
        "timed-out",
        re.compile(
            r"connect to host \S+ port \d+: (?:Connection|Operation) timed out"
            r"|Connection timed out during banner exchange"
        ),
        lambda c, a, m: (
            f"connection to {a}:{c.port} timed out after {c.connect_timeout:g} s "
            "(host down, or packets dropped on the way)"
        ),
    ),
    _Pattern(
        "unreachable",
        re.compile(r"connect to host \S+ port \d+: (No route to host|Network is unreachable)"),
        lambda c, a, m: f"{a} is unreachable: {m.group(1)}",
    ),
    _Pattern(
        "name-unknown",
        re.compile(r"Could not resolve hostname \S+: (.*)"),
        lambda c, a, m: f"cannot resolve host name {a}: {m.group(1).strip()}",
    ),
    _Pattern(
        "auth-rejected",
        re.compile(r"Permission denied \(([^)]*)\)|Too many authentication failures"),
        lambda c, a, m: (
            f"authentication rejected by {a} for user {c.user} with key "
            f"{c.key_file or '(ssh default keys/agent)'}"
            + (f" (server allows: {m.group(1)})" if m.group(1) else "")
        ),
    ),
    _Pattern(
        "ssh-error",
        re.compile(r"kex_exchange_identification: (.*)|Connection (?:closed|reset) by \S+"),
        lambda c, a, m: f"ssh to {a}:{c.port} failed during the handshake: {m.group(0).strip()}",
    ),
]

_MUX_TROUBLE = re.compile(
    r"mux_client_|Control socket connect|ControlSocket .* already exists|"
    r"read from master failed|master is (?:dead|not running)"
)


def classify_ssh_error(
    cfg: SshConfig, address: str, exit_code: int, stderr: str
) -> HostFailure | None:
    """The failure ssh itself reported, or None if the remote command ran (no I/O)."""
    if exit_code != SSH_ERROR_EXIT:
        return None
    for p in _PATTERNS:
        m = p.regex.search(stderr)
        if m:
            return HostFailure(p.kind, p.message(cfg, address, m))
    lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
    if lines and lines[-1].startswith("ssh:"):
        return HostFailure("ssh-error", f"ssh to {address} failed: {lines[-1]}")
    return None


class SshRunner:
    """Runs commands on hosts; thread-safe (each call is its own ``ssh`` process)."""

    def __init__(self, cfg: SshConfig, max_parallel: int = 32) -> None:
        self.cfg = cfg
        self.max_parallel = max_parallel
        os.makedirs(cfg.control_dir, mode=0o700, exist_ok=True)

    def run(
        self,
        address: str,
        command: str,
        *,
        input_bytes: bytes | None = None,
        timeout: float | None = 120.0,
    ) -> CommandResult:
        t0 = time.monotonic()
        rc, out, err = self._call(address, command, input_bytes, timeout)
        if rc == SSH_ERROR_EXIT and _MUX_TROUBLE.search(err):
            # A master left from before a host went away: drop it and connect afresh.
            self.close(address)
            rc, out, err = self._call(address, command, input_bytes, timeout)
        failure = classify_ssh_error(self.cfg, address, rc, err)
        return CommandResult(address, rc, out, err, time.monotonic() - t0, failure)

    def _call(
        self, address: str, command: str, input_bytes: bytes | None, timeout: float | None
    ) -> tuple[int, str, str]:
        argv = [*self.cfg.ssh_argv(address), command]
        try:
            proc = subprocess.run(
                argv,
                input=input_bytes if input_bytes is not None else b"",
                capture_output=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as err:
            out = (err.stdout or b"").decode(errors="replace")
            return 124, out, f"rayops: command timed out after {timeout:g} s on {address}"
        return (
            proc.returncode,
            proc.stdout.decode(errors="replace"),
            proc.stderr.decode(errors="replace"),
        )

    def run_many(
        self,
        addresses: Iterable[str],
        command: Callable[[str], str] | str,
        *,
        input_bytes: Callable[[str], bytes | None] | bytes | None = None,
        timeout: float | None = 120.0,
    ) -> dict[str, CommandResult]:
        """Run on every address in parallel; results keyed by address."""
        addrs = list(dict.fromkeys(addresses))
        if not addrs:
            return {}

        def one(addr: str) -> CommandResult:
            cmd = command(addr) if callable(command) else command
            data = input_bytes(addr) if callable(input_bytes) else input_bytes
            return self.run(addr, cmd, input_bytes=data, timeout=timeout)

        with ThreadPoolExecutor(
            max_workers=min(self.max_parallel, len(addrs)), thread_name_prefix="rayops-ssh"
        ) as pool:
            return dict(zip(addrs, pool.map(one, addrs), strict=True))

    def stream(
        self,
        address: str,
        command: str,
        *,
        tty: bool = False,
        stdin: IO[bytes] | int | None = subprocess.DEVNULL,
    ) -> tuple[int, HostFailure | None]:
        """Run with output passed straight through to ours (``exec``/``submit``)."""
        argv = [*self.cfg.ssh_argv(address, tty=tty), command]
        proc = subprocess.Popen(argv, stdin=stdin, stderr=subprocess.PIPE)
        assert proc.stderr is not None
        err_lines: list[str] = []
        for raw in proc.stderr:
            line = raw.decode(errors="replace")
            err_lines.append(line)
            del err_lines[:-50]
            os.write(2, raw)
        rc = proc.wait()
        return rc, classify_ssh_error(self.cfg, address, rc, "".join(err_lines))

    def interactive_argv(self, address: str, command: str) -> list[str]:
        return [*self.cfg.ssh_argv(address, tty=True), command]

    def close(self, address: str) -> None:
        """Stop the shared connection to ``address`` (if any)."""
        subprocess.run(
            ["ssh", *self.cfg.options(), "-p", str(self.cfg.port), "-O", "exit",
             f"{self.cfg.user}@{address}"],
            capture_output=True,
            timeout=10,
            check=False,
        )  # fmt: skip

    def close_all(self, addresses: Iterable[str]) -> None:
        for a in addresses:
            self.close(a)


def remote_env_prefix(env: Mapping[str, str]) -> str:
    """``export A='x' B='y';`` for a remote shell (ssh cannot pass env without AcceptEnv)."""
    if not env:
        return ""
    return "export " + " ".join(f"{k}={shlex.quote(v)}" for k, v in env.items()) + "; "
