"""pip and uv runtime_envs without a cluster: validation and normalization at the call, the
conflict between installers, merging, the wire form and its hash, the index settings; and the
node's venv cache with real installer subprocesses (uv and pip) from a local wheelhouse."""

from __future__ import annotations

import asyncio
import os
import socket
import subprocess
from pathlib import Path

import pytest

from rayops.envs import spec as envspec
from rayops.envs.eviction import plan_evictions
from rayops.envs.install_settings import InstallSettings
from rayops.envs.venv_cache import READY_MARKER, SetupFailed, VenvCache, find_uv, venv_python
from rayops.runtime_env import RuntimeEnv
from rayops.testing.wheels import write_wheel


def test_pip_forms_normalize_to_one_dict(tmp_path: Path) -> None:
    as_list = envspec.validate({"pip": ["a==1", " b "]}, where="x")
    assert as_list == {"pip": {"packages": ["a==1", "b"], "pip_check": False}}
    req = tmp_path / "requirements.txt"
    req.write_text("# deps\na==1\n\nb\n")
    assert envspec.validate({"pip": str(req)}, where="x") == as_list  # read at the call
    full = {"packages": ["a==1", "b"], "pip_check": True, "pip_version": "==23.3"}
    assert envspec.validate({"pip": full}, where="x") == {"pip": full}
    uv = envspec.validate({"uv": ["a"]}, where="x")["uv"]
    assert uv == {"packages": ["a"], "uv_check": False, "uv_pip_install_options": ["--no-cache"]}
    # Equal specs given differently have one wire form, so one hash: one env per node.
    w1 = envspec.wire_form(envspec.validate({"pip": ["a==1", "b"]}, where="x"))
    w2 = envspec.wire_form(envspec.validate({"pip": {"packages": str(req)}}, where="x"))
    assert w1 == w2 and envspec.env_hash(w1) == envspec.env_hash(w2)
    assert envspec.from_wire(w1)["pip"]["packages"] == ["a==1", "b"]
    assert envspec.installer_of(envspec.from_wire(w1)) == ("pip", as_list["pip"])
    env = RuntimeEnv(pip=["a"])
    assert env.has_pip() and not env.has_uv() and env.pip_config()["packages"] == ["a"]


def test_bad_pip_and_uv_values_raise_naming_the_field(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="'pip' and 'uv' cannot both be given"):
        envspec.validate({"pip": ["a"], "uv": ["a"]}, where="x")
    with pytest.raises(ValueError, match=r"unknown runtime_env\['pip'\] key 'uv_check'"):
        envspec.validate({"pip": {"packages": ["a"], "uv_check": True}}, where="x")
    with pytest.raises(TypeError, match=r"runtime_env\['pip'\]\['pip_check'\] must be a bool"):
        envspec.validate({"pip": {"packages": ["a"], "pip_check": "yes"}}, where="x")
    with pytest.raises(ValueError, match="needs 'packages'"):
        envspec.validate({"uv": {"uv_check": True}}, where="x")
    with pytest.raises(ValueError, match=r"requirements file 'nope\.txt' cannot be read"):
        envspec.validate({"pip": "nope.txt"}, where="x")
    with pytest.raises(TypeError, match="packages must be a list"):
        envspec.validate({"uv": [1]}, where="x")
    with pytest.raises(TypeError, match=r"uv_pip_install_options.*list of strings"):
        envspec.validate({"uv": {"packages": ["a"], "uv_pip_install_options": "-q"}}, where="x")


def test_an_inner_installer_replaces_the_outer_one() -> None:
    outer = envspec.validate({"pip": ["a"], "env_vars": {"A": "1"}}, where="x")
    inner = envspec.validate({"uv": ["b"]}, where="x")
    merged = envspec.merge(outer, inner)
    assert "pip" not in merged and merged["uv"]["packages"] == ["b"]
    assert merged["env_vars"] == {"A": "1"}
    assert envspec.merge(outer, {"env_vars": {"B": "2"}})["pip"] == outer["pip"]


def test_install_settings_from_the_environment() -> None:
    s = InstallSettings.from_env({"RAYOPS_RUNTIME_ENV_FIND_LINKS": "/w1, /w2"})
    assert s.installer_args() == ["--find-links", "/w1", "--find-links", "/w2", "--no-index"]
    assert "no index" in s.describe() and "/w1 /w2" in s.describe()
    s = InstallSettings.from_env(
        {"RAYOPS_RUNTIME_ENV_INDEX_URL": "http://idx/simple", "RAYOPS_RUNTIME_ENV_CACHE_MB": "5"}
    )
    assert s.installer_args() == ["--index-url", "http://idx/simple"]
    assert s.cache_bytes == 5 * 2**20 and "http://idx/simple" in s.describe()
    assert InstallSettings.from_env({}).cache_bytes == 10 * 2**30  # Ray's 10 GiB
    with pytest.raises(ValueError, match="RAYOPS_RUNTIME_ENV_CACHE_MB='lots'"):
        InstallSettings.from_env({"RAYOPS_RUNTIME_ENV_CACHE_MB": "lots"})


@pytest.mark.parametrize("use_uv", [True, False], ids=["uv", "pip"])
def test_venv_is_layered_on_the_node_install(tmp_path: Path, use_uv: bool) -> None:
    if use_uv:
        assert find_uv() is not None, "the uv package is a rayops dependency"
    house = tmp_path / "wheels"
    write_wheel(str(house), "rayops-layer-pkg", "1.0")
    cache = VenvCache(
        str(tmp_path / "venvs"), InstallSettings(find_links=(str(house),)), use_uv=use_uv
    )
    options = {"packages": ["rayops-layer-pkg"], "pip_check": False}
    path = asyncio.run(cache.ensure("pip", options, 120))
    assert os.path.isfile(os.path.join(path, READY_MARKER)) and cache.builds == 1
    code = "import rayops, rayops_layer_pkg, sys; print(rayops_layer_pkg.__version__)"
    out = subprocess.run([venv_python(path), "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "1.0", out.stderr  # rayops from the node, the pkg from the env
    assert not [n for n in os.listdir(tmp_path / "venvs") if n.startswith(".building")]


def test_a_build_past_its_timeout_is_killed_and_leaves_nothing(tmp_path: Path) -> None:
    with socket.socket() as silent:  # an "index" that accepts and never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        url = f"http://127.0.0.1:{silent.getsockname()[1]}/simple"
        cache = VenvCache(str(tmp_path / "venvs"), InstallSettings(index_url=url))
        with pytest.raises(SetupFailed, match=r"longer than setup_timeout_seconds=3.*" + url):
            asyncio.run(cache.ensure("uv", {"packages": ["anything"]}, 3))
    assert os.listdir(tmp_path / "venvs") == [".uv-cache"] or not [
        n for n in os.listdir(tmp_path / "venvs") if n != ".uv-cache"
    ]
    assert cache.builds == 0


def test_concurrent_requests_share_one_build_and_eviction_skips_used_envs(
    tmp_path: Path,
) -> None:
    house = tmp_path / "wheels"
    write_wheel(str(house), "rayops-evict-pkg", "1.0")
    write_wheel(str(house), "rayops-evict-pkg", "2.0")
    settings = InstallSettings(find_links=(str(house),), cache_bytes=0)
    cache = VenvCache(str(tmp_path / "venvs"), settings)
    one = {"packages": ["rayops-evict-pkg==1.0"], "pip_check": False}
    two = {"packages": ["rayops-evict-pkg==2.0"], "pip_check": False}

    async def many() -> set[str]:
        return set(await asyncio.gather(*(cache.ensure("pip", one, 120) for _ in range(8))))

    (path_one,) = asyncio.run(many())
    assert cache.builds == 1
    path_two = asyncio.run(cache.ensure("pip", two, 120))
    uv_cache = os.path.join(cache.root, ".uv-cache")
    entries = {e.path: e for e in cache.entries({path_one, path_two})}
    assert set(entries) == {path_one, path_two, uv_cache}  # the uv cache counts too
    assert entries[path_one].in_use and not entries[uv_cache].in_use
    assert entries[path_one].size > 0 and entries[uv_cache].size > 0
    # Over the size (0): what nothing uses goes, the least recently used first.
    doomed = plan_evictions(cache.entries({path_two}), settings.cache_bytes)
    assert doomed == [path_one, uv_cache]
    for path in doomed:
        cache.delete(path)
    assert not os.path.exists(path_one) and not os.path.exists(uv_cache)
    assert os.path.isdir(path_two)
    assert [e.path for e in cache.entries(set())] == [path_two]
    # Deleted, it is built again when asked for (the uv cache made again).
    assert asyncio.run(cache.ensure("pip", one, 120)) == path_one and cache.builds == 3


def test_a_requirement_only_the_node_install_satisfies_is_not_installed_again(
    tmp_path: Path,
) -> None:
    # pyyaml is a rayops dependency: installed on the node, absent from the wheelhouse.
    house = tmp_path / "wheels"
    write_wheel(str(house), "rayops-needs-yaml", "1.0", requires=("pyyaml>=6",))
    cache = VenvCache(str(tmp_path / "venvs"), InstallSettings(find_links=(str(house),)))
    path = asyncio.run(cache.ensure("pip", {"packages": ["rayops-needs-yaml"]}, 120))
    site = subprocess.run(
        [venv_python(path), "-c", "import yaml, rayops_needs_yaml; print(yaml.__file__)"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not site.startswith(path)  # the node's pyyaml, not a copy in the env
    # A uv field resolves with uv alone, which sees only the env: it names what is missing.
    with pytest.raises(SetupFailed, match=r"(?s)find-links.*pyyaml was not found"):
        asyncio.run(cache.ensure("uv", {"packages": ["rayops-needs-yaml"]}, 120))
