"""Node-side assets and playbooks: found through importlib.resources from a source checkout, an
installed (non-editable) wheel and a zipped one; templates render to valid scripts and units,
the playbooks reference what exists, the command runner reports failures precisely."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
ASSETS = REPO / "rayops" / "_assets"
RUNTIME = ASSETS / "runtime"
PLAYBOOKS = ASSETS / "playbooks"


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
        "gcs_port": 6379, "metrics_export_port": 8080, "install_dir": str(tmp_path / "inst dir"),
        "temp_dir": str(tmp_path / "inst dir/sessions"), "num_cpus": 2.0, "num_gpus": None,
        "resources": {"accel": 1.0}, "labels": {"zone": "a b"}, "object_store_memory": None,
        "process_manager": "plain", "runtime_env_index_url": None,
        "runtime_env_find_links": [str(tmp_path / "inst dir/wheelhouse"), "/srv/w"],
        "runtime_env_cache_mb": 512,
    }  # fmt: skip


@pytest.mark.parametrize("role", ["head", "worker"])
def test_node_control_script_renders_to_valid_sh(tmp_path: Path, role: str) -> None:
    text = _render(RUNTIME / "rayops-node.sh.j2", rayops_node_config=_node_config(tmp_path, role))
    script = tmp_path / "rayops-node"
    script.write_text(text)
    subprocess.run(["sh", "-n", str(script)], check=True)
    assert ("--head --port 6379" in text) == (role == "head")
    assert ("--address 10.0.0.1:6379" in text) == (role == "worker")
    assert "--metrics-export-port 8080" in text
    assert "--resources '{\"accel\": 1.0}'" in text and "--num-cpus 2.0" in text
    assert '--labels \'{"zone": "a b"}\'' in text and "--num-gpus" not in text
    links = f"{tmp_path}/inst dir/wheelhouse /srv/w"
    assert f"export RAYOPS_RUNTIME_ENV_FIND_LINKS='{links}'" in text
    assert "RAYOPS_RUNTIME_ENV_INDEX_URL" not in text
    assert "export RAYOPS_RUNTIME_ENV_CACHE_MB=512" in text
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


# --- finding the assets: source checkout, installed wheel, zipped wheel ----------------------


def test_assets_from_the_source_checkout_are_the_tree_itself() -> None:
    from rayops.launcher.assets import launcher_assets

    with launcher_assets() as root:
        assert root == ASSETS
        assert (root / "playbooks" / "site.yml").is_file()


@pytest.fixture(scope="module")
def rayops_wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The rayops wheel, built the way the launcher builds it (from a copy of the tree)."""
    from rayops.launcher.wheelhouse import _rayops_wheel, running_source

    work = tmp_path_factory.mktemp("build")
    out = work / "dist"
    out.mkdir()
    return _rayops_wheel(running_source(), work, out)


def _site_view(dest: Path, drop: tuple[str, ...]) -> Path:
    """This environment's site-packages as symlinks, without rayops (so an installed copy is
    the one imported) and without the distributions whose names start with ``drop``."""
    import sysconfig

    dest.mkdir(parents=True, exist_ok=True)
    site = Path(sysconfig.get_paths()["purelib"])
    skip = ("rayops", "__editable__", *drop)
    for entry in site.iterdir():
        if not entry.name.lower().startswith(skip) and not entry.name.endswith(".pth"):
            (dest / entry.name).symlink_to(entry)
    return dest


@pytest.fixture(scope="module")
def installed_rayops(rayops_wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh virtualenv outside the source tree with the wheel installed (not editable)."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
         "--no-index", "--no-deps", str(rayops_wheel)],
        check=True, env=env,
    )  # fmt: skip
    return venv


def _run_in(venv: Path, code: str, pythonpath: list[Path], cwd: Path) -> str:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in pythonpath)
    res = subprocess.run(
        [str(venv / "bin" / "python"), "-c", code],
        capture_output=True, text=True, cwd=cwd, env=env, check=False,
    )  # fmt: skip
    assert res.returncode == 0, res.stdout + res.stderr
    return res.stdout


def test_the_wheel_ships_every_asset(rayops_wheel: Path) -> None:
    import zipfile

    with zipfile.ZipFile(rayops_wheel) as zf:
        names = set(zf.namelist())
    want = {
        f"rayops/_assets/{p.relative_to(ASSETS).as_posix()}"
        for p in ASSETS.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    }
    assert "rayops/_assets/playbooks/site.yml" in want
    assert "rayops/_assets/runtime/install-node.sh" in want
    assert want <= names, sorted(want - names)
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]


def test_assets_and_source_from_an_installed_wheel(
    installed_rayops: Path, rayops_wheel: Path, tmp_path: Path
) -> None:
    """Installed (not editable): the assets are the package data inside site-packages, and
    the node wheelhouse's rayops is that install repacked, file for file the built wheel."""
    import zipfile

    code = f"""
import json, sys, zipfile
from importlib import metadata
from pathlib import Path
import rayops
from rayops.launcher.assets import launcher_assets
from rayops.launcher.repack import repack
from rayops.launcher.wheelhouse import running_source
with launcher_assets() as root:
    ok = all((root / p).is_file() for p in ("playbooks/site.yml", "runtime/install-node.sh"))
    print(json.dumps({{"root": str(root), "ok": ok, "prefix": sys.prefix,
        "rayops": rayops.__file__, "kind": running_source().kind,
        "wheel": str(repack(metadata.distribution("rayops"), Path({str(tmp_path)!r})))}}))
"""
    view = _site_view(tmp_path / "site", ())
    got = json.loads(_run_in(installed_rayops, code, [view], tmp_path).strip().splitlines()[-1])
    assert got["ok"] and got["kind"] == "installed"
    assert got["root"].startswith(got["prefix"]) and got["rayops"].startswith(got["prefix"])
    assert not got["root"].startswith(str(REPO))

    def contents(whl: Path) -> dict[str, bytes]:
        with zipfile.ZipFile(whl) as zf:
            return {n: zf.read(n) for n in zf.namelist() if not n.endswith(".dist-info/RECORD")}

    assert contents(Path(got["wheel"])) == contents(rayops_wheel)


def test_assets_from_a_zipped_wheel_are_copied_out_for_the_block(
    rayops_wheel: Path, installed_rayops: Path, tmp_path: Path
) -> None:
    code = """
import json, rayops
from rayops.launcher.assets import launcher_assets
with launcher_assets() as root:
    ok = all((root / p).is_file() for p in ("playbooks/site.yml", "runtime/rayops-node.sh.j2"))
print(json.dumps({"root": str(root), "ok": ok, "gone": not root.exists(), "from": rayops.__file__}))
"""
    view = _site_view(tmp_path / "site", ())
    got = json.loads(_run_in(installed_rayops, code, [rayops_wheel, view], tmp_path).strip())
    assert got["from"].startswith(str(rayops_wheel))  # imported from inside the archive
    assert got["ok"] and got["gone"]


def test_launcher_commands_without_the_launcher_extra_say_how_to_install_it(
    installed_rayops: Path, tmp_path: Path
) -> None:
    view = _site_view(tmp_path / "site", ("ansible", "fabric", "paramiko"))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(view)
    spec = tmp_path / "cluster.yaml"
    shutil.copy(REPO / "cluster.yaml.example", spec)
    for verb in (["up", "-y"], ["exec"]):
        argv = [str(installed_rayops / "bin" / "rayops"), verb[0], str(spec), *verb[1:]]
        if verb[0] == "exec":
            argv.append("true")
        res = subprocess.run(argv, capture_output=True, text=True, cwd=tmp_path, env=env,
                             timeout=60, check=False)  # fmt: skip
        assert res.returncode == 1, res.stdout + res.stderr
        assert "pip install 'rayops[launcher]'" in res.stderr, res.stderr
        assert "Traceback" not in res.stderr and "paramiko" in res.stderr
        assert res.stderr.count("\n") == 1  # one message
