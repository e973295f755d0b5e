"""runtime_env without a cluster: validation, Ray's merge rules, the wire form and its hash,
deterministic packages with excludes and .gitignore, and a node's package cache (real files,
a dict standing in for the GCS's KV)."""

from __future__ import annotations

import asyncio
import json
import os
import zipfile
from pathlib import Path

import pytest

from rayops.envs import packaging
from rayops.envs import spec as envspec
from rayops.envs.node_cache import PackageCache, SetupFailed
from rayops.runtime_env import RuntimeEnv, RuntimeEnvConfig


def test_runtime_env_is_a_checked_dict(tmp_path: Path) -> None:
    env = RuntimeEnv(env_vars={"A": "1"}, working_dir=str(tmp_path))
    assert isinstance(env, dict)
    assert env == {"env_vars": {"A": "1"}, "working_dir": str(tmp_path)}
    assert env.env_vars() == {"A": "1"} and env.has_working_dir() and not env.has_pip()
    assert RuntimeEnv.deserialize(env.serialize()) == env
    env.set("py_modules", [str(tmp_path)])
    assert env.py_modules() == [str(tmp_path)]
    with pytest.raises(NotImplementedError, match="'conda' is not supported by rayops"):
        RuntimeEnv(conda="myenv")
    with pytest.raises(ValueError, match="unknown runtime_env field 'bogus'"):
        RuntimeEnv(bogus=1)
    assert RuntimeEnvConfig() == {"setup_timeout_seconds": 600, "eager_install": True}
    with pytest.raises(TypeError, match="eager_install"):
        RuntimeEnvConfig(eager_install="yes")  # type: ignore[arg-type]


def test_validate_normalizes_paths_and_names_what_is_wrong(tmp_path: Path) -> None:
    (tmp_path / "pkg").mkdir()
    (tmp_path / "w.whl").write_bytes(b"")
    os.chdir(tmp_path)
    got = envspec.validate(
        {"working_dir": ".", "py_modules": ["pkg", "w.whl"], "excludes": ["*.log"]},
        where="here",
    )
    assert got["working_dir"] == str(tmp_path)
    assert got["py_modules"] == [str(tmp_path / "pkg"), str(tmp_path / "w.whl")]
    assert envspec.validate(None, where="x") == {} == envspec.validate({}, where="x")
    uri = "gcs://_ray_pkg_0123456789abcdef.zip"
    assert envspec.validate({"working_dir": uri}, where="x") == {"working_dir": uri}
    with pytest.raises(ValueError, match=r"here: runtime_env\['working_dir'\] 'nope' is not"):
        envspec.validate({"working_dir": "nope"}, where="here")
    with pytest.raises(NotImplementedError, match="remote URIs"):
        envspec.validate({"working_dir": "s3://bucket/x.zip"}, where="here")
    with pytest.raises(TypeError, match="excludes"):
        envspec.validate({"excludes": "*.log"}, where="here")
    with pytest.raises(ValueError, match="unknown runtime_env config field 'log_files'"):
        envspec.validate({"config": {"log_files": []}}, where="here")


def test_merge_overrides_fields_and_merges_env_vars() -> None:
    job = {"env_vars": {"A": "job", "B": "job"}, "working_dir": "gcs://_ray_pkg_1.zip"}
    task = {"env_vars": {"B": "task", "C": "task"}, "py_modules": ["gcs://_ray_pkg_2.zip"]}
    assert envspec.merge(job, task) == {
        "env_vars": {"A": "job", "B": "task", "C": "task"},
        "working_dir": "gcs://_ray_pkg_1.zip",
        "py_modules": ["gcs://_ray_pkg_2.zip"],
    }
    assert envspec.merge(job, None) == job  # no env given: the parent's (inheritance)
    assert envspec.merge(None, task) == task
    assert envspec.merge(job, {"working_dir": "gcs://_ray_pkg_3.zip"})["working_dir"] == (
        "gcs://_ray_pkg_3.zip"
    )


def test_wire_form_is_canonical_and_hashed() -> None:
    a = envspec.wire_form({"env_vars": {"B": "2", "A": "1"}, "excludes": ["x"]})
    b = envspec.wire_form({"env_vars": {"A": "1", "B": "2"}})
    assert a == b == '{"env_vars":{"A":"1","B":"2"}}'
    assert (
        envspec.env_hash(a)
        == envspec.env_hash(b)
        != envspec.env_hash(envspec.wire_form({"env_vars": {"A": "1"}}))
    )
    assert envspec.wire_form({}) == "" and envspec.env_hash("") == ""
    assert envspec.from_wire(a) == {"env_vars": {"A": "1", "B": "2"}}
    with pytest.raises(ValueError, match="not a gcs://_ray_pkg_"):
        envspec.from_wire(json.dumps({"working_dir": "/etc"}))


def _tree(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_package_honours_excludes_and_gitignore_files(tmp_path: Path) -> None:
    _tree(
        tmp_path,
        {
            "main.py": "x",
            "notes.log": "x",
            "keep.log": "x",
            ".gitignore": "*.log\n!keep.log\nbuild/\n",
            "build/out.bin": "x",
            "data/big.bin": "x",
            "data/small.txt": "x",
            "sub/.gitignore": "# a comment\n/local.txt\n",
            "sub/local.txt": "x",
            "sub/deep/local.txt": "x",
            "cache/__pycache__/m.pyc": "x",
        },
    )
    got = [
        rel for rel, _ in packaging.package_files(str(tmp_path), ["data/*.bin", "**/__pycache__"])
    ]
    assert got == [
        ".gitignore",
        "data/small.txt",
        "keep.log",
        "main.py",
        "sub/.gitignore",
        "sub/deep/local.txt",  # /local.txt is anchored to sub/
    ]


def test_zip_is_deterministic_and_the_uri_follows_the_content(tmp_path: Path) -> None:
    _tree(tmp_path / "a", {"x.py": "1", "d/y.py": "2"})
    _tree(tmp_path / "b", {"d/y.py": "2", "x.py": "1"})  # same content, other order and times
    os.utime(tmp_path / "b" / "x.py", (1, 1))
    pa = packaging.make_package(str(tmp_path / "a"), excludes=[], as_module=False)
    pb = packaging.make_package(str(tmp_path / "b"), excludes=[], as_module=False)
    assert pa.data == pb.data and pa.uri == pb.uri
    assert pa.uri.startswith("gcs://_ray_pkg_") and pa.uri.endswith(".zip")
    (tmp_path / "b" / "x.py").write_text("changed")
    assert packaging.make_package(str(tmp_path / "b"), excludes=[], as_module=False).uri != pa.uri
    module = packaging.make_package(str(tmp_path / "a"), excludes=[], as_module=True)
    assert module.uri != pa.uri
    with zipfile.ZipFile(__import__("io").BytesIO(module.data)) as zf:
        assert zf.namelist() == ["a/d/y.py", "a/x.py"]  # a module keeps its directory name


def test_a_package_over_the_limit_names_its_biggest_files(tmp_path: Path) -> None:
    _tree(tmp_path, {"small.txt": "x" * 10, "huge.bin": "x" * 5000, "mid.bin": "x" * 2000})
    with pytest.raises(packaging.PackageTooLarge, match=r"Biggest files: huge.bin .*mid.bin"):
        packaging.make_package(str(tmp_path), excludes=[], as_module=False, max_bytes=4096)
    packaging.make_package(str(tmp_path), excludes=["*.bin"], as_module=False, max_bytes=4096)


def _store_with(pkg: packaging.Package) -> dict[bytes, bytes]:
    kv: dict[bytes, bytes] = {}
    assert packaging.upload(pkg, kv.__contains__, kv.__setitem__)
    assert not packaging.upload(pkg, kv.__contains__, kv.__setitem__)  # once only
    return kv


def test_node_cache_downloads_once_for_concurrent_requests(tmp_path: Path) -> None:
    _tree(tmp_path / "wd", {"mod.py": "V = 1", "run.sh": "#!/bin/sh\n"})
    os.chmod(tmp_path / "wd" / "run.sh", 0o755)
    pkg = packaging.make_package(str(tmp_path / "wd"), excludes=[], as_module=False)
    kv = _store_with(pkg)
    fetched: list[bytes] = []

    async def fetch(key: bytes) -> bytes | None:
        fetched.append(key)
        await asyncio.sleep(0.01)
        return kv.get(key)

    cache = PackageCache(str(tmp_path / "node"), fetch)
    wire = envspec.wire_form({"working_dir": pkg.uri, "env_vars": {"A": "1"}})

    async def main() -> list[str | None]:
        envs = await asyncio.gather(*(cache.prepare(wire) for _ in range(8)))
        return [e.working_dir for e in envs]

    dirs = asyncio.run(main())
    assert len(set(dirs)) == 1 and cache.downloads == 1
    assert len(fetched) == 2  # metadata and one chunk, for 8 waiters
    path = dirs[0]
    assert path is not None
    assert sorted(os.listdir(path)) == ["mod.py", "run.sh"]
    assert os.access(os.path.join(path, "run.sh"), os.X_OK)
    assert not [n for n in os.listdir(os.path.dirname(path)) if n.startswith(".unpacking")]


def test_node_cache_failures_are_reported_and_never_cached(tmp_path: Path) -> None:
    _tree(tmp_path / "wd", {"mod.py": "V = 1"})
    pkg = packaging.make_package(str(tmp_path / "wd"), excludes=[], as_module=False)
    kv = _store_with(pkg)
    kv[packaging.chunk_key(pkg.uri, 0)] = b"not a zip at all"
    kv[packaging.meta_key(pkg.uri)] = json.dumps(
        {"size": 16, "chunks": 1, "strip_top": False}
    ).encode()

    async def fetch(key: bytes) -> bytes | None:
        return kv.get(key)

    cache = PackageCache(str(tmp_path / "node"), fetch)
    wire = envspec.wire_form({"working_dir": pkg.uri})
    with pytest.raises(SetupFailed, match="BadZipFile"):
        asyncio.run(cache.prepare(wire))
    assert not os.path.exists(cache.local_path(pkg.uri))
    assert os.listdir(tmp_path / "node") == []  # nothing half-unpacked left behind
    missing = envspec.wire_form({"working_dir": "gcs://_ray_pkg_00000000000000ff.zip"})
    with pytest.raises(SetupFailed, match="not in the GCS's package store"):
        asyncio.run(cache.prepare(missing))

    async def slow(key: bytes) -> bytes | None:
        await asyncio.sleep(5)
        return None

    timed = envspec.wire_form({"working_dir": pkg.uri, "config": {"setup_timeout_seconds": 1}})
    with pytest.raises(SetupFailed, match="longer than setup_timeout_seconds=1"):
        asyncio.run(PackageCache(str(tmp_path / "n2"), slow).prepare(timed))


def test_idle_env_workers_are_stopped_only_past_the_limit_and_the_idle_time() -> None:
    from rayops.raylet.worker_pool import IDLE_ENV_WORKER_S, plan_idle_stops

    old, older, fresh = 100.0, 50.0, 200.0 - IDLE_ENV_WORKER_S / 2
    idle = [(old, b"a"), (fresh, b"b"), (older, b"c")]
    assert plan_idle_stops(idle, workers=5, soft_limit=2, now=200.0) == [b"c", b"a"]
    assert plan_idle_stops(idle, workers=3, soft_limit=2, now=200.0) == [b"c"]
    assert plan_idle_stops(idle, workers=2, soft_limit=2, now=200.0) == []


def test_job_config_validates_its_runtime_env_when_asked() -> None:
    from rayops.job_config import JobConfig

    jc = JobConfig()
    jc.set_runtime_env({"conda": "x"})  # as Ray: not checked unless validate=True ...
    with pytest.raises(NotImplementedError, match="'conda' is not supported by rayops"):
        jc.set_runtime_env({"conda": "x"}, validate=True)  # ... and init() checks it anyway
    jc.set_runtime_env({"env_vars": {"A": "1"}}, validate=True)
    assert jc.runtime_env == {"env_vars": {"A": "1"}}


def test_init_and_job_config_envs_merge_and_conflicts_raise() -> None:
    from rayops.api import _job_and_init_env

    job = {"env_vars": {"A": "1"}, "working_dir": "gcs://_ray_pkg_1.zip"}
    assert _job_and_init_env(job, {"env_vars": {"B": "2"}}) == {
        "env_vars": {"A": "1", "B": "2"},
        "working_dir": "gcs://_ray_pkg_1.zip",
    }
    with pytest.raises(ValueError, match=r"both set env_vars\['A'\]"):
        _job_and_init_env(job, {"env_vars": {"A": "other"}})
    with pytest.raises(ValueError, match="both set working_dir"):
        _job_and_init_env(job, {"working_dir": "gcs://_ray_pkg_2.zip"})
