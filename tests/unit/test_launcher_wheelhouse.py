"""The node wheelhouse from the installed distributions: the dependency closure, repacked wheels
that carry correct RECORD hashes and install with ``pip --no-index`` into a fresh virtualenv,
and a cache key that follows the installed versions."""

from __future__ import annotations

import base64
import hashlib
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from rayops.launcher import repack
from rayops.launcher.wheelhouse import RuntimeSource, running_source

REPO = Path(__file__).resolve().parents[2]


def _pyproject_dependencies() -> list[str]:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    return list(project["dependencies"])


def test_node_dependencies_are_the_installed_closure_inside_pyprojects_ranges() -> None:
    """What the nodes get: every runtime dependency at the version installed here, which pip
    resolved inside pyproject's ranges; their own dependencies too; no extra of rayops."""
    deps = _pyproject_dependencies()
    resolved = repack.resolve_installed(deps, repack.marker_environment())
    assert resolved.unsatisfied == ()
    for dep in deps:
        req = Requirement(dep)
        dist = resolved.installed[canonicalize_name(req.name)]
        assert req.specifier.contains(dist.version), f"{dist.version} is outside {req}"
    names = set(resolved.installed)
    assert {"typing-extensions", "pydantic-core", "yarl"} <= names  # transitive ones
    assert not names & {"ansible-core", "fabric", "paramiko", "pytest", "rayops"}
    pins = resolved.pins()
    assert len(pins) == len(names) and all("==" in p for p in pins)
    # The installed metadata lists the extras too: resolving it leaves them out.
    from importlib import metadata

    requires = metadata.distribution("rayops").requires or []
    assert any("extra ==" in r for r in requires)
    closure = set(repack.resolve_installed(requires, repack.marker_environment()).installed)
    assert "grpcio" in closure and not closure & {"ansible-core", "fabric", "pytest", "mypy"}


def test_markers_and_extras_are_followed_for_the_hosts_python() -> None:
    env = repack.marker_environment("3.10")
    assert env["python_version"] == "3.10"
    old = repack.resolve_installed(['tomli>=1; python_version < "3.11"'], env)
    now = repack.resolve_installed(
        ['tomli>=1; python_version < "3.11"'], repack.marker_environment()
    )
    assert now.installed == {} and now.unsatisfied == ()
    assert old.installed or old.unsatisfied  # asked for on 3.10 hosts
    # rayops's own Requires-Dist carries its extras: resolving it leaves them out.
    launcher = repack.resolve_installed(
        ['fabric>=3.2,<4; extra == "launcher"', "cloudpickle"], repack.marker_environment()
    )
    assert set(launcher.installed) == {"cloudpickle"}
    missing = repack.resolve_installed(["surely-not-installed-rayops-x==1.0"], env)
    assert missing.unsatisfied == ("surely-not-installed-rayops-x==1.0",)
    assert missing.reasons["surely-not-installed-rayops-x==1.0"] == "not installed"


def _check_wheel(path: Path) -> list[str]:
    """Every entry is in RECORD with its sha256 and size, RECORD is last; returns the names."""
    with zipfile.ZipFile(path) as zf:
        names = zf.namelist()
        assert zf.testzip() is None
        record_name = names[-1]
        assert record_name.endswith(".dist-info/RECORD")
        rows = [r.split(",") for r in zf.read(record_name).decode().splitlines()]
        listed = {r[0]: (r[1], r[2]) for r in rows}
        assert sorted(listed) == sorted(names)
        for name in names[:-1]:
            data = zf.read(name)
            want = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
            assert listed[name] == (f"sha256={want}", str(len(data))), name
        assert listed[record_name] == ("", "")
        assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert not [n for n in names if n.rsplit("/", 1)[-1] in ("INSTALLER", "direct_url.json")]
    return names


def _fresh_venv(path: Path) -> Path:
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(path)], check=True)
    return path / "bin" / "python"


def _pip_into(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_NO_INDEX": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1"}  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "-q", *args],
        capture_output=True, text=True, env=env, check=False,
    )  # fmt: skip


def test_repacked_wheels_have_correct_records_and_install_in_a_fresh_venv(
    tmp_path: Path,
) -> None:
    resolved = repack.resolve_installed(["grpcio", "psutil", "uvloop"], repack.marker_environment())
    assert {"grpcio", "psutil", "uvloop"} <= set(resolved.installed)
    out = tmp_path / "wheels"
    out.mkdir()
    for dist in resolved.installed.values():
        whl = repack.repack(dist, out)
        names = _check_wheel(whl)
        assert f"{whl.name.split('-')[0]}-{dist.version}.dist-info/METADATA".lower() in [
            n.lower() for n in names
        ]
    grpc_whl = next(out.glob("grpcio-*.whl"))
    assert "-cp311-cp311-" in grpc_whl.name or f"cp{sys.version_info.minor}" in grpc_whl.name
    # The same install repacks to the same bytes (an unchanged wheelhouse is not re-sent).
    again = tmp_path / "again"
    again.mkdir()
    dist = resolved.installed["psutil"]
    assert repack.repack(dist, again).read_bytes() == next(out.glob("psutil-*.whl")).read_bytes()

    python = _fresh_venv(tmp_path / "venv")
    res = _pip_into(python, "--find-links", str(out), *resolved.pins())
    assert res.returncode == 0, res.stdout + res.stderr
    code = (
        "import grpc, psutil, uvloop, sys; "
        "assert all(m.__file__.startswith(sys.prefix) for m in (grpc, psutil, uvloop)); "
        "print(grpc.__version__, psutil.__version__, uvloop.__version__, psutil.cpu_count() > 0)"
    )
    ran = subprocess.run(
        [str(python), "-c", code], capture_output=True, text=True, cwd=tmp_path, check=False
    )
    assert ran.returncode == 0, ran.stderr
    versions = {n: resolved.installed[n].version for n in ("grpcio", "psutil", "uvloop")}
    assert ran.stdout.split() == [versions["grpcio"], versions["psutil"], versions["uvloop"],
                                  "True"]  # fmt: skip


def _fake_dist(site: Path, name: str, version: str) -> None:
    info = site / f"{name}-{version}.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: {version}\n")
    (info / "WHEEL").write_text("Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
    (site / f"{name}.py").write_text(f"VERSION = {version!r}\n")
    (info / "RECORD").write_text(f"{name}.py,,\n{info.name}/METADATA,,\n{info.name}/WHEEL,,\n"
                                 f"{info.name}/RECORD,,\n")  # fmt: skip


def test_cache_key_follows_the_installed_versions(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = tmp_path / "site"
    _fake_dist(site, "rayops_probe_dep", "1.0")
    monkeypatch.syspath_prepend(str(site))
    whl_file = tmp_path / "given.whl"
    whl_file.write_bytes(b"not read for the digest")
    source = RuntimeSource("wheel", whl_file, ("cloudpickle",), ("rayops_probe_dep",))
    first = source.digest()
    assert (
        first == RuntimeSource("wheel", whl_file, ("cloudpickle",), ("rayops_probe_dep",)).digest()
    )
    shutil.rmtree(site / "rayops_probe_dep-1.0.dist-info")  # an upgrade, as pip does it
    _fake_dist(site, "rayops_probe_dep", "1.1")
    assert source.digest() != first
    # A repacked pure distribution installs under its own name and version.
    out = tmp_path / "out"
    out.mkdir()
    from importlib import metadata

    whl = repack.repack(metadata.distribution("rayops_probe_dep"), out)
    assert whl.name == "rayops_probe_dep-1.1-py3-none-any.whl"
    _check_wheel(whl)


def test_a_source_checkout_builds_from_its_tree() -> None:
    source = running_source()
    assert isinstance(source, RuntimeSource)
    assert source.kind == "project" and source.path == REPO
    assert list(source.requires) == _pyproject_dependencies()


def test_hosts_with_another_python_without_an_index_get_a_clear_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pure-Python and stable-ABI wheels are repacked for any host; the others must be fetched
    for the host's Python, and with no index that fails naming the Python, the wheels and the
    ways out."""
    from rayops.launcher.errors import LauncherError
    from rayops.launcher.wheelhouse import build_wheelhouse, controller_tag

    monkeypatch.setenv("PIP_CONFIG_FILE", os.devnull)
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    whl = tmp_path / "given.whl"
    built = repack.repack(repack.resolve_installed(["cloudpickle"], {}).installed["cloudpickle"],
                          tmp_path)  # fmt: skip
    built.rename(whl)  # any wheel does as the "rayops" wheel here
    source = RuntimeSource("wheel", whl, ("cloudpickle", "psutil", "uvloop"), ())
    machine = controller_tag().split("-", 1)[1]
    tag = "3.12-" + machine if not controller_tag().startswith("3.12-") else "3.13-" + machine
    with pytest.raises(LauncherError) as err:
        build_wheelhouse(source, source.digest(), tag, tmp_path / "cache")
    text = str(err.value)
    assert f"the hosts with Python {tag} need wheels" in text
    assert "uvloop==" in text  # built for this Python only: to be fetched
    assert "cloudpickle" not in text and "psutil" not in text  # pure / abi3: repacked
    assert f"Give those hosts Python {sys.version_info.major}.{sys.version_info.minor}" in text
    assert "make a package index reachable" in text
    assert not list((tmp_path / "cache" / "wheelhouse").glob("*/wheelhouse.tar"))
