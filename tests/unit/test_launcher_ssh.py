"""Classifying what ssh prints when it fails (no connection made: the texts are OpenSSH 9.2's)."""

from __future__ import annotations

import pytest

from rayops.launcher.record import shell_path
from rayops.launcher.ssh import SshConfig, classify_ssh_error, remote_env_prefix

CFG = SshConfig(user="root", key_file="/keys/id_ed25519", known_hosts="/kh", connect_timeout=3)
ADDR = "10.0.0.5"

CHANGED = """@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
@    WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED!     @
@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@@
IT IS POSSIBLE THAT SOMEONE IS DOING SOMETHING NASTY!
Someone could be eavesdropping on you right now (man-in-the-middle attack)!
It is also possible that a host key has just been changed.
The fingerprint for the ED25519 key sent by the remote host is
SHA256:fTHdRtIMRmmSP96LxT+bTwYayGY4XPP5R9eZrJSQXLU.
Please contact your system administrator.
Add correct host key in /kh to get rid of this message.
Offending ED25519 key in /kh:2
  remove with:
  ssh-keygen -f "/kh" -R "10.0.0.5"
Host key for 10.0.0.5 has changed and you have requested strict checking.
Host key verification failed.
"""


@pytest.mark.parametrize(
    ("stderr", "kind", "needle"),
    [
        ("ssh: connect to host 10.0.0.5 port 22: Connection refused\r\n", "connection-refused",
         "connection refused by 10.0.0.5:22"),
        ("ssh: connect to host 10.0.0.5 port 22: Connection timed out\r\n", "timed-out",
         "timed out after 3 s"),
        ("ssh: connect to host 10.0.0.5 port 22: No route to host\r\n", "unreachable",
         "No route to host"),
        ("root@10.0.0.5: Permission denied (publickey).\r\n", "auth-rejected",
         "authentication rejected by 10.0.0.5 for user root with key /keys/id_ed25519"),
        (CHANGED, "host-key-changed", "does not match /kh:2"),
        ("No ED25519 host key is known for 10.0.0.5 and you have requested strict checking.\r\n"
         "Host key verification failed.\r\n", "host-key-unknown", "accept-new"),
        ("ssh: Could not resolve hostname nohost: Name or service not known\r\n", "name-unknown",
         "Name or service not known"),
        ("kex_exchange_identification: read: Connection reset by peer\r\n", "ssh-error",
         "handshake"),
    ],
)  # fmt: skip
def test_ssh_failures_are_named(stderr: str, kind: str, needle: str) -> None:
    failure = classify_ssh_error(CFG, ADDR, 255, stderr)
    assert failure is not None
    assert failure.kind == kind
    assert needle in failure.message


def test_a_mux_message_is_not_a_refused_connection() -> None:
    text = "Control socket connect(/tmp/x/abc): Connection refused\r\n"
    failure = classify_ssh_error(CFG, ADDR, 255, text)
    assert failure is None or failure.kind != "connection-refused"


def test_remote_exit_codes_are_not_ssh_failures() -> None:
    assert classify_ssh_error(CFG, ADDR, 3, "Permission denied (publickey)") is None
    assert classify_ssh_error(CFG, ADDR, 255, "") is None  # the command itself exited 255


def test_options_check_host_keys_and_share_connections() -> None:
    opts = " ".join(CFG.options())
    assert "StrictHostKeyChecking=yes" in opts and "UserKnownHostsFile=/kh" in opts
    assert "ControlMaster=auto" in opts and f"ControlPath=/tmp/{CFG.identity_tag()}-%C" in opts
    other_key = SshConfig(user="root", key_file="/keys/other", known_hosts="/kh")
    assert other_key.identity_tag() != CFG.identity_tag()
    assert "IdentitiesOnly=yes -i /keys/id_ed25519" in opts and "BatchMode=yes" in opts
    relaxed = SshConfig(user="u", host_key_policy="accept-new")
    assert "StrictHostKeyChecking=accept-new" in " ".join(relaxed.options())
    assert "StrictHostKeyChecking=no" not in " ".join(relaxed.options())


def test_remote_shell_quoting() -> None:
    assert shell_path("~/rayops/a b") == "\"$HOME\"/'rayops/a b'"
    assert shell_path("/opt/x") == "/opt/x"
    assert remote_env_prefix({"A": "x y"}) == "export A='x y'; "
