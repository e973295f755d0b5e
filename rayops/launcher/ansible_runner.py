"""Running the playbooks: the generated inventory and config, ``ansible-playbook``, its events.

The inventory is generated from the plan (hosts, roles, and per host the steps to run and
every value a task needs). Ansible keeps its own OpenSSH connections (the launcher's own SSH
is paramiko, ssh.py): ``ansible_ssh_args`` gives them the spec's key, the spec's known_hosts
file with the same policy (``StrictHostKeyChecking=yes``, or ``accept-new``), keepalives, and
ControlMaster sockets shared by the tasks of one run. Progress arrives as JSON lines from the
``rayops_progress`` callback plugin (playbooks/callback_plugins/) and is passed to
``on_event``. A host Ansible reports unreachable is diagnosed again by the launcher's own
connection (apply.py), so its cause comes from paramiko's exceptions, not from ssh's text.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rayops.launcher.errors import HostFailure, LauncherError
from rayops.launcher.ssh import SshConfig

Event = dict[str, Any]

_FAILED_CMD = "RAYOPS-FAILED-COMMAND "


def ansible_playbook_path() -> str:
    here = Path(sys.executable).parent / "ansible-playbook"
    if here.exists():
        return str(here)
    found = shutil.which("ansible-playbook")
    if found is None:
        raise LauncherError(
            "ansible-playbook was not found: install ansible-core into the environment rayops "
            "runs from (pip install 'ansible-core>=2.17,<2.20')"
        )
    return found


def ansible_ssh_args(cfg: SshConfig) -> list[str]:
    """OpenSSH ``-o`` options for Ansible's connections (its ``ssh_args``)."""
    import hashlib

    strict = "accept-new" if cfg.host_key_policy == "accept-new" else "yes"
    # A socket is only shared with the same key and host-key settings (``%C`` covers host,
    # port and user only), so a spec whose key changed never rides on the old connection.
    ident = f"{cfg.key_file}\0{cfg.known_hosts}\0{cfg.host_key_policy}"
    tag = hashlib.sha256(ident.encode()).hexdigest()[:8]
    opts = [
        "-o", "BatchMode=yes",
        "-o", f"ConnectTimeout={max(1, round(cfg.connect_timeout))}",
        "-o", f"StrictHostKeyChecking={strict}",
        "-o", f"UserKnownHostsFile={cfg.known_hosts}",
        "-o", "GlobalKnownHostsFile=/dev/null",
        "-o", "ControlMaster=auto",
        "-o", f"ControlPath={cfg.control_dir}/{tag}-%C",
        "-o", "ControlPersist=30",
        # A dead peer must fail a task in bounded time instead of hanging on a live master
        # (TEST-HOSTS.md P5).
        "-o", f"ServerAliveInterval={max(1, round(cfg.keepalive_s))}",
        "-o", f"ServerAliveCountMax={cfg.keepalive_count}",
        "-o", "LogLevel=ERROR",
    ]  # fmt: skip
    if cfg.key_file:
        opts += ["-o", "IdentitiesOnly=yes", "-i", cfg.key_file]
    return opts


def write_config(run_dir: Path, playbooks: Path, ssh: SshConfig, forks: int) -> Path:
    """ansible.cfg for one run; returns its path.

    Ansible reads ini values raw (no ``%`` interpolation), so ssh's ``%C`` goes in as is:
    escaping it would make every host share one ControlMaster socket.
    """
    ssh_args = shlex.join(ansible_ssh_args(ssh))
    cfg = f"""[defaults]
inventory = {run_dir}/inventory.json
host_key_checking = True
forks = {forks}
timeout = {max(1, round(ssh.connect_timeout))}
retry_files_enabled = False
local_tmp = {run_dir}/tmp
stdout_callback = rayops_progress
callback_plugins = {playbooks}/callback_plugins
roles_path = {playbooks}/roles
interpreter_python = auto_silent
deprecation_warnings = False
system_warnings = False
nocows = True

[ssh_connection]
pipelining = True
ssh_args = {ssh_args}
"""
    path = run_dir / "ansible.cfg"
    path.write_text(cfg)
    return path


def write_inventory(run_dir: Path, inventory: Mapping[str, Any]) -> None:
    (run_dir / "inventory.json").write_text(json.dumps(inventory, indent=1))


def run_playbook(
    run_dir: Path,
    playbook: Path,
    limit: list[str],
    on_event: Callable[[Event], None],
) -> tuple[int, list[str]]:
    """Run ``playbook`` for the hosts in ``limit``; return its exit code and stderr tail."""
    # The user's own ANSIBLE_* settings (a stdout callback, host key checking off, ...) would
    # override the generated config, so none of them reach the run.
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANSIBLE_")}
    env.update(
        ANSIBLE_CONFIG=str(run_dir / "ansible.cfg"),
        ANSIBLE_HOME=str(run_dir / "home"),
        ANSIBLE_LOCAL_TEMP=str(run_dir / "tmp"),
        # Where tasks delegated to this machine (localhost) keep their files; the
        # hosts' own ansible_remote_tmp (under the install dir) takes precedence for them.
        ANSIBLE_REMOTE_TEMP=str(run_dir / "remote-tmp"),
        ANSIBLE_NOCOLOR="1",
        ANSIBLE_FORCE_COLOR="0",
        PYTHONUNBUFFERED="1",
    )
    argv = [ansible_playbook_path(), str(playbook), "--limit", ",".join([*limit, "localhost"])]
    proc = subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, env=env
    )
    assert proc.stdout is not None and proc.stderr is not None
    err_lines: list[str] = []
    err_stream = proc.stderr

    def drain_stderr() -> None:
        for raw in err_stream:
            err_lines.append(raw.decode(errors="replace").rstrip())
            del err_lines[:-200]

    t = threading.Thread(target=drain_stderr, name="rayops-ansible-stderr", daemon=True)
    t.start()
    for raw in proc.stdout:
        line = raw.decode(errors="replace").strip()
        if not line.startswith("{"):
            err_lines.append(line)
            continue
        try:
            on_event(json.loads(line))
        except ValueError:
            err_lines.append(line)
    rc = proc.wait()
    t.join(timeout=5)
    return rc, err_lines[-40:]


@dataclass(frozen=True)
class StepName:
    step: str
    what: str


def split_task_name(task: str) -> StepName:
    """``"install | copy the wheelhouse"`` -> step ``install``; other names -> step ``start``."""
    # Tasks inside an included role are named "role : name" by Ansible.
    _, _, own = task.rpartition(" : ")
    step, sep, what = (own or task).partition(" | ")
    if not sep:
        return StepName("start", task)
    return StepName(step.strip(), what.strip())


def failure_from_event(ev: Event, address: str) -> HostFailure:
    """A failed or unreachable task event -> the precise cause for the summary."""
    name = split_task_name(str(ev.get("task", "")))
    stdout = [str(x) for x in ev.get("stdout") or []]
    stderr = [str(x) for x in ev.get("stderr") or []]
    msg = str(ev.get("msg") or "")
    if ev.get("status") == "unreachable":
        # Only a placeholder: apply.py asks the launcher's own connection for the cause.
        first = msg.strip().splitlines()[-1] if msg.strip() else "no message"
        return HostFailure(
            "ssh-error", f"Ansible lost the SSH connection to {address}: {first}",
            step=name.step,
        )  # fmt: skip
    failed_cmd = _failed_command(stdout + stderr)
    output = [ln for ln in stdout + stderr if not ln.startswith(_FAILED_CMD)]
    rc = ev.get("rc")
    if failed_cmd is not None:
        which = f"{failed_cmd['step']} command {failed_cmd['index'] + 1} of {failed_cmd['count']}"
        return HostFailure(
            "command-failed",
            f"{which} exited with code {failed_cmd['rc']}",
            step=name.step,
            command=str(failed_cmd["command"]),
            exit_code=int(failed_cmd["rc"]),
            output_tail=[ln for ln in output if not ln.startswith("$ ")][-20:] or output[-20:],
        )
    text = f"{name.what} failed"
    if rc is not None:
        text += f" with exit code {rc}"
    elif msg:
        text += f": {msg.strip().splitlines()[0][:300] if msg.strip() else msg}"
    return HostFailure(
        "command-failed",
        text,
        step=name.step,
        command=str(ev.get("cmd") or ""),
        exit_code=int(rc) if isinstance(rc, int) else None,
        output_tail=(output or msg.strip().splitlines())[-20:],
    )


def _failed_command(lines: list[str]) -> dict[str, Any] | None:
    for ln in reversed(lines):
        idx = ln.find(_FAILED_CMD)
        if idx >= 0:
            try:
                data: dict[str, Any] = json.loads(ln[idx + len(_FAILED_CMD) :])
                return data
            except ValueError:
                return None
    return None
