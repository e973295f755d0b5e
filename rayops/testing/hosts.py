"""SSH test hosts: a real ``sshd`` per Linux network namespace, joined by a bridge.

Each host is ``sshd`` running as PID 1 of its own PID+UTS+mount namespace inside its own
network namespace, so ``hostname``/``ps`` inside a host see only that host and killing that
one process powers the whole host off (double-forked daemons included). Hosts share the
filesystem, so every host gets its own directory (``hosts/hN/``) and its own ``$HOME`` (set by
sshd's ``SetEnv``): a path under ``~`` is per host. Follows ../shared/TEST-HOSTS.md.

Names carry a tag (the creating process id by default), so two runs on one machine never
collide, and a later run cleans up what a crashed run with a dead owner left behind. The subnet
is the first free ``10.213.X.0/24``. Traffic goes only to these namespaces.

This module needs root and ``ip netns``; ``unavailable_reason()`` says why it cannot run.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SSHD = "/usr/sbin/sshd"  # sshd re-execs itself and needs its absolute path (P2)
_NS_RE = re.compile(r"^rayops-t(\d+)-h\d+$")
_BR_RE = re.compile(r"^rob(\d+)$")


def _run(*argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, check=check, timeout=30)


def unavailable_reason() -> str | None:
    """Why SSH test hosts cannot be made here, or None when they can."""
    if os.geteuid() != 0:
        return "SSH test hosts need root (network namespaces, sshd on port 22)"
    for tool in ("ip", "unshare", "ssh", "ssh-keygen"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed (run scripts/bootstrap-hosts.sh)"
    if not os.path.exists(SSHD):
        return f"{SSHD} is missing (run scripts/bootstrap-hosts.sh: openssh-server)"
    probe = f"rayops-probe{os.getpid()}"
    r = _run("ip", "netns", "add", probe, check=False)
    if r.returncode != 0:
        return f"`ip netns add` does not work here: {r.stderr.strip()}"
    _run("ip", "netns", "del", probe, check=False)
    return None


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale() -> None:
    """Remove namespaces and bridges of earlier runs whose owner process is gone."""
    names = _run("ip", "netns", "list", check=False).stdout.split()
    for name in names:
        m = _NS_RE.match(name)
        if m and not _pid_alive(int(m.group(1))):
            _kill_namespace(name)
            _run("ip", "netns", "del", name, check=False)
    links = _run("ip", "-o", "link", "show", "type", "bridge", check=False).stdout
    for line in links.splitlines():
        parts = line.split(":")
        if len(parts) > 1:
            br = parts[1].strip().split("@")[0]
            m = _BR_RE.match(br)
            if m and not _pid_alive(int(m.group(1))):
                _run("ip", "link", "del", br, check=False)


def _kill_namespace(ns: str) -> None:
    pids = _run("ip", "netns", "pids", ns, check=False).stdout.split()
    for p in pids:
        with contextlib.suppress(ProcessLookupError, ValueError):
            os.kill(int(p), signal.SIGKILL)


def _free_subnet() -> str:
    used = _run("ip", "-4", "-o", "addr", "show", check=False).stdout
    routes = _run("ip", "-4", "route", "show", check=False).stdout
    start = os.getpid() % 200
    for k in range(250):
        third = 20 + (start + k) % 230
        prefix = f"10.213.{third}."
        if prefix not in used and prefix not in routes:
            return prefix
    raise RuntimeError("no free 10.213.X.0/24 subnet for test hosts")


@dataclass
class TestHost:
    name: str  # h1, h2, ...
    ns: str
    ip: str
    veth: str
    root: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def home(self) -> Path:
        return self.root / "home"

    @property
    def etc(self) -> Path:
        return self.root / "etc"

    @property
    def sshd_log(self) -> Path:
        return self.etc / "sshd.log"


class HostNetwork:
    """``count`` SSH hosts on a private bridge. Use as a context manager; close() cleans up."""

    def __init__(self, base: Path, count: int = 3, tag: str | None = None) -> None:
        self.base = Path(base)
        self.tag = tag or str(os.getpid())
        if len(self.tag) > 10 or not self.tag.isdigit():
            raise ValueError(f"tag must be at most 10 digits (interface names), got {self.tag!r}")
        self.count = count
        self.bridge = f"rob{self.tag}"
        self.prefix = ""
        self.hosts: dict[str, TestHost] = {}
        self.keys = self.base / "keys"
        self.key = self.keys / "id_ed25519"
        self.wrong_key = self.keys / "wrong_ed25519"
        self.known_hosts = self.base / "known_hosts"

    # ---- life cycle --------------------------------------------------------------------
    def __enter__(self) -> HostNetwork:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def start(self) -> None:
        clean_stale()
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # P1: sshd needs it
        self.keys.mkdir(parents=True, exist_ok=True)
        for k in (self.key, self.wrong_key):
            if not k.exists():
                _run(
                    "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "rayops-test", "-f", str(k)
                )
        shutil.copy(f"{self.key}.pub", self.keys / "authorized_keys")
        self.prefix = _free_subnet()
        _run("ip", "link", "add", self.bridge, "type", "bridge")
        _run("ip", "addr", "add", f"{self.prefix}1/24", "dev", self.bridge)
        _run("ip", "link", "set", self.bridge, "up")
        for i in range(1, self.count + 1):
            self._make_host(i)
        self.write_known_hosts()
        for name in self.hosts:
            self.boot(name)

    def _make_host(self, i: int) -> None:
        name = f"h{i}"
        h = TestHost(
            name=name,
            ns=f"rayops-t{self.tag}-{name}",
            ip=f"{self.prefix}{10 + i}",
            veth=f"rov{self.tag}{name}",
            root=self.base / "hosts" / name,
        )
        for d in (h.home, h.etc, h.root / "run"):
            d.mkdir(parents=True, exist_ok=True)
        _run("ip", "netns", "add", h.ns)
        _run("ip", "link", "add", h.veth, "type", "veth", "peer", "name", "eth0", "netns", h.ns)
        _run("ip", "link", "set", h.veth, "master", self.bridge, "up")
        _run("ip", "-n", h.ns, "link", "set", "lo", "up")  # lo is down in a new netns
        _run("ip", "-n", h.ns, "addr", "add", f"{h.ip}/24", "dev", "eth0")
        _run("ip", "-n", h.ns, "link", "set", "eth0", "up")
        self.new_host_key(h)
        self.hosts[name] = h

    def new_host_key(self, h: TestHost) -> None:
        """(Re)generate the host's key, as a reinstalled machine would have."""
        key = h.etc / "ssh_host_ed25519_key"
        for p in (key, Path(f"{key}.pub")):
            p.unlink(missing_ok=True)
        _run("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key))
        (h.etc / "sshd_config").write_text(self._sshd_config(h))

    def _sshd_config(self, h: TestHost) -> str:
        return "\n".join(
            [
                "Port 22",
                f"ListenAddress {h.ip}",
                f"HostKey {h.etc}/ssh_host_ed25519_key",
                f"PidFile {h.root}/run/sshd.pid",
                f"AuthorizedKeysFile {self.keys}/authorized_keys",
                "PubkeyAuthentication yes",
                "PasswordAuthentication no",
                "KbdInteractiveAuthentication no",
                "PermitRootLogin prohibit-password",
                "UsePAM no",
                "StrictModes no",  # keys live under /tmp (mode 1777): P3
                "MaxSessions 64",
                "MaxStartups 64",
                "Subsystem sftp /usr/lib/openssh/sftp-server",
                f"SetEnv HOME={h.home} RAYOPS_TEST_HOST={h.name}",
                "LogLevel VERBOSE",
                "",
            ]
        )

    def write_known_hosts(self) -> None:
        lines = []
        for h in self.hosts.values():
            pub = (h.etc / "ssh_host_ed25519_key.pub").read_text().split()
            lines.append(f"{h.ip} {pub[0]} {pub[1]}")
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def boot(self, name: str) -> None:
        """Power the host on: a fresh PID namespace whose PID 1 is sshd."""
        h = self.hosts[name]
        if h.proc is not None and h.proc.poll() is None:
            return
        run_dir = h.root / "run"  # like a tmpfs: empty at every boot (stale pid files)
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        listening = self._log_count(h, "Server listening on")
        inner = f"hostname {h.name}; exec {SSHD} -D -f {h.etc}/sshd_config -E {h.sshd_log}"
        h.proc = subprocess.Popen(
            ["ip", "netns", "exec", h.ns, "unshare", "--uts", "--pid", "--fork",
             "--kill-child", "--mount-proc", "sh", "-c", inner],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )  # fmt: skip
        # Ready once sshd says it listens: probing the port would log a connection, and tests
        # count connections to prove that nothing connected.
        deadline = time.monotonic() + 10
        while self._log_count(h, "Server listening on") <= listening:
            if h.proc.poll() is not None:
                log = h.sshd_log.read_text() if h.sshd_log.exists() else ""
                raise RuntimeError(f"sshd of {h.name} exited: {log[-1000:]}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sshd of {h.name} ({h.ip}) did not listen within 10 s")
            time.sleep(0.02)

    def _log_count(self, h: TestHost, needle: str) -> int:
        if not h.sshd_log.exists():
            return 0
        return h.sshd_log.read_text(errors="replace").count(needle)

    def init_pid(self, name: str) -> int | None:
        """The host's PID 1 (sshd) as seen from the root namespace."""
        h = self.hosts[name]
        if h.proc is None or h.proc.poll() is not None:
            return None
        try:
            children = Path(f"/proc/{h.proc.pid}/task/{h.proc.pid}/children").read_text().split()
        except OSError:
            return None
        return int(children[0]) if children else None

    def crash(self, name: str) -> None:
        """Power off at once: SIGKILL the host's PID 1, which takes every process with it."""
        h = self.hosts[name]
        pid = self.init_pid(name)
        if pid is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        _kill_namespace(h.ns)
        if h.proc is not None:
            try:
                h.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                h.proc.kill()
                h.proc.wait(timeout=5)
            h.proc = None
        deadline = time.monotonic() + 10
        while self.pids(name) and time.monotonic() < deadline:
            time.sleep(0.05)

    def link(self, name: str, up: bool) -> None:
        """Take the host's cable out (timeouts, not refusals) or put it back."""
        _run("ip", "link", "set", self.hosts[name].veth, "up" if up else "down")

    def pids(self, name: str) -> list[int]:
        out = _run("ip", "netns", "pids", self.hosts[name].ns, check=False).stdout
        return [int(p) for p in out.split()]

    def processes(self, name: str) -> list[str]:
        """Command lines of every process on the host."""
        out = []
        for pid in self.pids(name):
            with contextlib.suppress(OSError):
                raw = Path(f"/proc/{pid}/cmdline").read_bytes()
                out.append(raw.replace(b"\0", b" ").decode(errors="replace").strip())
        return out

    def ssh(
        self, name: str, command: str, timeout: float = 30.0
    ) -> subprocess.CompletedProcess[str]:
        """A direct ssh call (no shared connection) for test assertions."""
        h = self.hosts[name]
        return subprocess.run(
            ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", "-o", "IdentitiesOnly=yes",
             "-o", "StrictHostKeyChecking=yes", "-o", f"UserKnownHostsFile={self.known_hosts}",
             "-o", "ControlMaster=no", "-o", "ControlPath=none", "-o", "LogLevel=ERROR",
             "-i", str(self.key), f"root@{h.ip}", command],
            capture_output=True, text=True, timeout=timeout, check=False,
        )  # fmt: skip

    def connections_logged(self, name: str) -> int:
        """How many SSH connections the host's sshd has accepted so far (from its log)."""
        return self._log_count(self.hosts[name], "Connection from")

    def close(self) -> None:
        for name, h in list(self.hosts.items()):
            with contextlib.suppress(Exception):
                self.crash(name)
            _run("ip", "link", "del", h.veth, check=False)
            _run("ip", "netns", "del", h.ns, check=False)
        _run("ip", "link", "del", self.bridge, check=False)
        self.hosts.clear()
        self.remove_shared_memory()

    def remove_shared_memory(self) -> None:
        """/dev/shm is shared by all hosts: remove the object stores of sessions that ran on
        these hosts (a crashed host never cleans up after itself)."""
        sessions = {p.name for p in self.base.glob("hosts/*/home/**/session_*") if p.is_dir()}
        for entry in Path("/dev/shm").glob("rayops-session_*"):
            name = entry.name.removeprefix("rayops-").rsplit("-", 1)[0]
            if name in sessions:
                shutil.rmtree(entry, ignore_errors=True)


def kill_ssh_masters(control_dir: str) -> None:
    """Stop leftover OpenSSH ControlMaster processes whose socket lives in ``control_dir``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, ProcessLookupError):
            cmd = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            if cmd.startswith("ssh") and control_dir in cmd:
                os.kill(int(entry.name), signal.SIGTERM)


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"still true after {timeout:g} s: {what}")
        time.sleep(0.1)
