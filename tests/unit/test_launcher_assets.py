"""Node-side assets and playbooks: pins match pyproject, templates render to valid scripts and
units, the playbooks reference what exists, the command runner reports failures precisely."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from packaging.requirements import Requirement

REPO = Path(__file__).resolve().parents[2]
RUNTIME = REPO / "runtime"
PLAYBOOKS = REPO / "playbooks"


def test_node_requirements_pin_every_runtime_dependency_inside_its_range() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    pins: dict[str, str] = {}
    for line in (RUNTIME / "requirements-node.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            req = Requirement(line)
            (spec,) = req.specifier
            assert spec.operator == "==", f"{line}: node requirements must be exact pins"
            pins[req.name.lower().replace("_", "-")] = spec.version
    for dep in project["dependencies"]:
        req = Requirement(dep)
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} (a dependency in pyproject.toml) is not pinned"
        assert req.specifier.contains(pins[name]), f"{name}=={pins[name]} is outside {req}"


def _render(template: Path, **context: Any) -> str:
    jinja2 = pytest.importorskip("jinja2")
    import shlex

    env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True)
    env.filters["quote"] = lambda v: shlex.quote(str(v))
    env.filters["to_json"] = lambda v: json.dumps(v)
    return env.from_string(template.read_text()).render(**context)


def _node_config(tmp_path: Path, role: str) -> dict[str, Any]:
    return {
        "cluster_name": "t", "role": role, "node_ip": "10.0.0.1", "head_address": "10.0.0.1:6379",
        "gcs_port": 6379, "install_dir": str(tmp_path / "inst dir"),
        "temp_dir": str(tmp_path / "inst dir/sessions"), "num_cpus": 2.0, "num_gpus": None,
        "resources": {"accel": 1.0}, "labels": {"zone": "a b"}, "object_store_memory": None,
        "process_manager": "plain",
    }  # fmt: skip


@pytest.mark.parametrize("role", ["head", "worker"])
def test_node_control_script_renders_to_valid_sh(tmp_path: Path, role: str) -> None:
    text = _render(RUNTIME / "rayops-node.sh.j2", rayops_node_config=_node_config(tmp_path, role))
    script = tmp_path / "rayops-node"
    script.write_text(text)
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert ("--head --port 6379" in text) == (role == "head")
    assert ("--address 10.0.0.1:6379" in text) == (role == "worker")
    assert "--resources '{\"accel\": 1.0}'" in text and "--num-cpus 2.0" in text
    assert '--labels \'{"zone": "a b"}\'' in text and "--num-gpus" not in text
    bad = subprocess.run(["sh", str(script), "bogus"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr


def test_systemd_unit_renders_and_verifies(tmp_path: Path) -> None:
    config = _node_config(tmp_path, "head")
    config["install_dir"] = str(tmp_path / "inst")
    unit = _render(RUNTIME / "systemd" / "rayops-node.service.j2", rayops_node_config=config,
                   rayops_ssh_user="root")  # fmt: skip
    assert "Type=forking" in unit and "Restart=on-failure" in unit
    assert f"ExecStart={tmp_path}/inst/bin/rayops-node start" in unit
    if shutil.which("systemd-analyze") is None:
        pytest.skip("systemd-analyze is not installed: rendered, not verified")
    (tmp_path / "inst" / "bin").mkdir(parents=True)
    exe = tmp_path / "inst" / "bin" / "rayops-node"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(0o755)
    path = tmp_path / "rayops-t.service"
    path.write_text(unit)
    res = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr


def test_shell_assets_parse() -> None:
    subprocess.run(["sh", "-n", str(RUNTIME / "install-node.sh")], check=True)


def _b64(cmds: list[str]) -> str:
    return base64.b64encode(json.dumps(cmds).encode()).decode()


def test_run_commands_stops_at_the_first_failure_and_names_it(tmp_path: Path) -> None:
    key_file = tmp_path / "state" / "setup.key"
    cmds = ["echo first", "echo boom >&2; exit 3", "echo never"]
    res = subprocess.run(
        [sys.executable, str(RUNTIME / "run-commands.py"), "setup", _b64(cmds), "-",
         str(key_file), "k1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert res.returncode == 3
    assert "first" in res.stdout and "boom" in res.stdout and "never" not in res.stdout
    marker = res.stderr.strip().splitlines()[-1]
    assert marker.startswith("RAYOPS-FAILED-COMMAND ")
    info = json.loads(marker.split(" ", 1)[1])
    assert info == {"step": "setup", "index": 1, "count": 3, "command": cmds[1], "rc": 3}
    assert not key_file.exists()
    ok = subprocess.run(
        [sys.executable, str(RUNTIME / "run-commands.py"), "setup", _b64(["true"]), "-",
         str(key_file), "k1"],
        capture_output=True, text=True,
    )  # fmt: skip
    assert ok.returncode == 0 and key_file.read_text() == "k1\n"


def _tasks(path: Path) -> list[dict[str, Any]]:
    data = yaml.safe_load(path.read_text())
    out: list[dict[str, Any]] = []
    for item in data:
        out += item.get("tasks", []) if "hosts" in item else [item]
    return out


def test_playbooks_reference_existing_roles_and_name_steps() -> None:
    site = yaml.safe_load((PLAYBOOKS / "site.yml").read_text())
    imported = [i["ansible.builtin.import_playbook"] for i in site]
    assert imported == ["prepare.yml", "head.yml", "worker.yml"]
    roles = sorted((PLAYBOOKS / "roles").glob("*/tasks/main.yml"))
    files = [PLAYBOOKS / f for f in imported] + roles
    steps = {"layout", "init", "install", "mounts", "setup", "config", "start"}
    for path in files:
        for task in _tasks(path):
            assert re.match(r"^[a-z]+ \| ", task["name"]), f"{path}: {task['name']!r}"
            assert task["name"].split(" | ")[0] in steps, f"{path}: {task['name']!r}"
            inc = task.get("ansible.builtin.include_role")
            if inc:
                assert (PLAYBOOKS / "roles" / inc["name"] / "tasks" / "main.yml").is_file()


def test_callback_plugin_loads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Ansible creates its home and local tmp when its config loads: keep them out of ~.
    monkeypatch.setenv("ANSIBLE_HOME", str(tmp_path / "ansible-home"))
    monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", str(tmp_path / "ansible-tmp"))
    pytest.importorskip("ansible")
    sys.path.insert(0, str(PLAYBOOKS / "callback_plugins"))
    try:
        import rayops_progress

        assert rayops_progress.CallbackModule.CALLBACK_NAME == "rayops_progress"
        assert rayops_progress._tail("a\r\nb\n") == ["a", "b"]
    finally:
        sys.path.remove(str(PLAYBOOKS / "callback_plugins"))
        sys.modules.pop("rayops_progress", None)
