"""The launcher's SSH without a host: failures named from paramiko's and the socket's exception
types (a table), known_hosts written safely, Ansible's own ssh options, remote quoting."""

from __future__ import annotations

import errno
import socket
import threading
from pathlib import Path

import paramiko
import pytest
from paramiko.ssh_exception import NoValidConnectionsError

from rayops.launcher.ansible_runner import ansible_ssh_args
from rayops.launcher.record import shell_path
from rayops.launcher.ssh import (
    ConnectionLostError,
    SshConfig,
    UnknownHostKeyError,
    add_known_host,
    classify_connect_error,
    detached_command,
    remote_env_prefix,
)

CFG = SshConfig(user="root", key_file="/keys/id_ed25519", known_hosts="/kh", connect_timeout=3)
ADDR = "10.0.0.5"
KEY_A = paramiko.ECDSAKey.generate()
KEY_B = paramiko.ECDSAKey.generate()

CASES: list[tuple[BaseException, str, list[str]]] = [
    (ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused"), "connection-refused",
     ["connection refused by 10.0.0.5:22"]),
    (NoValidConnectionsError({(ADDR, 22): ConnectionRefusedError(errno.ECONNREFUSED, "x")}),
     "connection-refused", ["connection refused by 10.0.0.5:22"]),
    (TimeoutError("timed out"), "timed-out", ["timed out after 3 s"]),
    (OSError(errno.ETIMEDOUT, "Connection timed out"), "timed-out", ["timed out after 3 s"]),
    (OSError(errno.EHOSTUNREACH, "No route to host"), "unreachable", ["No route to host"]),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), "unreachable",
     ["Network is unreachable"]),
    (socket.gaierror(socket.EAI_NONAME, "Name or service not known"), "name-unknown",
     ["cannot resolve host name 10.0.0.5", "Name or service not known"]),
    (paramiko.AuthenticationException("Authentication failed."), "auth-rejected",
     ["authentication rejected by 10.0.0.5 for user root with key /keys/id_ed25519"]),
    (paramiko.PasswordRequiredException("private key file is encrypted"), "auth-rejected",
     ["/keys/id_ed25519", "encrypted"]),
    (paramiko.BadHostKeyException(ADDR, KEY_B, KEY_A), "host-key-changed",
     ["host key of 10.0.0.5 changed", "does not match /kh", "ssh-keygen -R 10.0.0.5 -f /kh",
      KEY_B.fingerprint]),
    (UnknownHostKeyError(ADDR, "ssh-ed25519", "SHA256:abc"), "host-key-unknown",
     ["is not in /kh", "ssh-keyscan 10.0.0.5 >> /kh", "accept-new"]),
    (paramiko.SSHException("Error reading SSH protocol banner"), "ssh-error",
     ["failed during the handshake", "banner"]),
    (EOFError(), "ssh-error", ["handshake", "EOFError"]),
    (ConnectionLostError("no answer for 15 s"), "timed-out", ["lost the connection to 10.0.0.5"]),
    (ValueError("odd"), "ssh-error", ["ValueError: odd"]),
]  # fmt: skip


@pytest.mark.parametrize(("err", "kind", "needles"), CASES)
def test_connect_failures_are_named_from_exception_types(
    err: BaseException, kind: str, needles: list[str]
) -> None:
    failure = classify_connect_error(CFG, ADDR, err)
    assert failure.kind == kind, failure
    for needle in needles:
        assert needle in failure.message, (needle, failure.message)


def test_an_agent_login_is_named_as_such_and_ports_show_in_fix_commands() -> None:
    agent = SshConfig(user="u", known_hosts="/kh", port=2222)
    f = classify_connect_error(agent, ADDR, paramiko.AuthenticationException("no"))
    assert "for user u with key (the SSH agent" in f.message
    f = classify_connect_error(agent, ADDR, paramiko.BadHostKeyException(ADDR, KEY_B, KEY_A))
    assert "ssh-keygen -R '[10.0.0.5]:2222' -f /kh" in f.message
    f = classify_connect_error(agent, ADDR, UnknownHostKeyError(ADDR, "t", "fp"))
    assert "ssh-keyscan -p 2222 10.0.0.5" in f.message
    assert agent.known_hosts_name(ADDR) == "[10.0.0.5]:2222"


def test_accept_new_appends_keys_once_and_refuses_a_changed_one(tmp_path: Path) -> None:
    kh = tmp_path / "ssh" / "known_hosts"
    kh.parent.mkdir()
    kh.write_text("# operator's line\n10.0.0.9 " + f"{KEY_A.get_name()} {KEY_A.get_base64()}")
    kh.chmod(0o640)
    names = [f"10.0.0.{i}" for i in range(1, 9)]
    threads = [threading.Thread(target=add_known_host, args=(str(kh), n, KEY_A)) for n in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    add_known_host(str(kh), names[0], KEY_A)  # already there: nothing added
    lines = kh.read_text().splitlines()
    assert lines[0] == "# operator's line" and len(lines) == 2 + len(names)
    assert sorted(ln.split()[0] for ln in lines[2:]) == sorted(names)
    assert kh.stat().st_mode & 0o777 == 0o640
    assert not [p for p in kh.parent.iterdir() if p.name.endswith(".tmp")]
    known = paramiko.HostKeys(str(kh))
    assert known.lookup("10.0.0.3")[KEY_A.get_name()] == KEY_A
    with pytest.raises(paramiko.BadHostKeyException):
        add_known_host(str(kh), names[0], KEY_B)  # a changed key is never written
    assert len(kh.read_text().splitlines()) == 2 + len(names)


def test_a_missing_known_hosts_file_is_created_private(tmp_path: Path) -> None:
    kh = tmp_path / "new" / "known_hosts"
    add_known_host(str(kh), "[10.0.0.1]:2222", KEY_A)
    assert kh.read_text().startswith("[10.0.0.1]:2222 ecdsa-sha2-nistp256 ")
    assert kh.stat().st_mode & 0o777 == 0o600


def test_ansible_keeps_its_own_checked_connections() -> None:
    opts = " ".join(ansible_ssh_args(CFG))
    assert "StrictHostKeyChecking=yes" in opts and "UserKnownHostsFile=/kh" in opts
    assert "ControlMaster=auto" in opts and "ServerAliveInterval=5" in opts
    assert "IdentitiesOnly=yes -i /keys/id_ed25519" in opts and "BatchMode=yes" in opts
    other_key = SshConfig(user="root", key_file="/keys/other", known_hosts="/kh")
    tag = [o for o in ansible_ssh_args(CFG) if o.startswith("ControlPath=")]
    assert tag != [o for o in ansible_ssh_args(other_key) if o.startswith("ControlPath=")]
    relaxed = " ".join(ansible_ssh_args(SshConfig(user="u", host_key_policy="accept-new")))
    assert "StrictHostKeyChecking=accept-new" in relaxed
    assert "StrictHostKeyChecking=no" not in relaxed


def test_remote_shell_quoting() -> None:
    assert shell_path("~/rayops/a b") == "\"$HOME\"/'rayops/a b'"
    assert shell_path("/opt/x") == "/opt/x"
    assert remote_env_prefix({"A": "x y"}) == "export A='x y'; "


def test_detached_daemons_do_not_hold_the_session(tmp_path: Path) -> None:
    """TEST-HOSTS.md P4, checked with a local shell: the line returns while the daemon runs,
    and nothing holds the caller's output pipe open."""
    import subprocess
    import time

    started, done = tmp_path / "started", tmp_path / "done"
    daemon = f"touch {started}; sleep 1; touch {done}"
    line = detached_command(daemon, str(tmp_path / "d.log"), str(tmp_path))
    assert line.startswith(f"cd {tmp_path} && (nohup sh -c ")
    t0 = time.monotonic()
    out = subprocess.run(["sh", "-c", line], capture_output=True, timeout=4, check=True)
    assert time.monotonic() - t0 < 0.9 and out.stdout == b""  # did not wait for the daemon
    deadline = time.monotonic() + 5
    while not done.exists() and time.monotonic() < deadline:  # the daemon ran, and is gone
        time.sleep(0.02)
    assert started.exists() and done.exists()
