"""pip and uv runtime_envs against a real two-node cluster installing from a local wheelhouse
with no package index (``RAYOPS_RUNTIME_ENV_FIND_LINKS``): the env built once per node and
spec, used on another node, isolated from workers of other envs, failures reported."""

from __future__ import annotations

import os
import re
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.testing.cluster import Cluster, ClusterNode
from rayops.testing.wheels import write_wheel
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy

PKG = "rayops-tiny-pkg"
MOD = "rayops_tiny_pkg"


@pytest.fixture(scope="module")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> str:
    house = str(tmp_path_factory.mktemp("wheelhouse"))
    write_wheel(house, PKG, "1.0")
    write_wheel(house, PKG, "2.0")
    return house


def _set_env(updates: dict[str, str]) -> dict[str, str | None]:
    saved = {k: os.environ.get(k) for k in updates}
    os.environ.update(updates)
    return saved


def _restore(saved: dict[str, str | None]) -> None:
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def cluster(temp_dir: str, wheelhouse: str) -> Iterator[Cluster]:
    # The daemons inherit the index settings from the environment they start in.
    saved = _set_env({"RAYOPS_RUNTIME_ENV_FIND_LINKS": wheelhouse})
    saved.update(_set_env({"RAYOPS_RUNTIME_ENV_INDEX_URL": ""}))
    try:
        c = Cluster(os.path.join(temp_dir, "renv-pip"), head_cpus=1)
        c.add_node(num_cpus=1, resources={"other": 1})
        c.wait_for_nodes(2)
    finally:
        _restore(saved)
    c.connect()
    yield c
    rayops.shutdown()
    c.shutdown()


@rayops.remote
def probe() -> dict[str, Any]:
    try:
        import rayops_tiny_pkg  # type: ignore[import-not-found]

        version = rayops_tiny_pkg.__version__
    except ImportError:
        version = None
    return {
        "version": version,
        "python": sys.executable,
        "node": rayops.get_runtime_context().get_node_id(),
        "pid": os.getpid(),
    }


def _raylet_log(node: ClusterNode) -> str:
    path = os.path.join(node.started.record.session_dir, "logs", "raylet.log")
    with open(path, encoding="utf-8", errors="replace") as f:
        return f.read()


def _builds(node: ClusterNode, field: str) -> list[str]:
    return re.findall(rf"runtime_env ({field}-[0-9a-f]+) built in", _raylet_log(node))


def _venvs(node: ClusterNode) -> set[str]:
    root = os.path.join(
        node.started.record.session_dir, "runtime_resources", node.node_id[:12], "venvs"
    )
    return {n for n in os.listdir(root) if not n.startswith(".")} if os.path.isdir(root) else set()


def test_pip_env_from_a_local_wheelhouse_on_another_node(cluster: Cluster) -> None:
    other = cluster.nodes[1]
    in_env = probe.options(runtime_env={"pip": [f"{PKG}==1.0"]}, resources={"other": 1})
    got = rayops.get(in_env.remote(), timeout=120)
    assert got["version"] == "1.0" and got["node"] == other.node_id
    assert "/venvs/pip-" in got["python"]  # the worker runs the env's python
    # A worker of no env on the same node cannot import it: nothing leaks between envs.
    plain = rayops.get(probe.options(resources={"other": 1}).remote(), timeout=60)
    assert plain["version"] is None and plain["pid"] != got["pid"]
    assert plain["python"] == sys.executable
    # Another version is another env, its own venv and workers.
    v2 = probe.options(runtime_env={"pip": [f"{PKG}==2.0"]}, resources={"other": 1})
    got2 = rayops.get(v2.remote(), timeout=120)
    assert got2["version"] == "2.0" and got2["python"] != got["python"]
    # Warm: the same spec again reuses the env (no new build) and its worker.
    again = rayops.get(in_env.remote(), timeout=60)
    assert again["version"] == "1.0" and again["python"] == got["python"]
    assert len(_builds(other, "pip")) == 2


def test_uv_env_built_once_while_eight_tasks_wait(cluster: Cluster) -> None:
    head = cluster.nodes[0]
    before = _builds(head, "uv")
    on_head = NodeAffinitySchedulingStrategy(head.node_id, soft=False)
    env = {"uv": {"packages": [PKG], "uv_check": True}}
    refs = [probe.options(runtime_env=env, scheduling_strategy=on_head).remote() for _ in range(8)]
    results = rayops.get(refs, timeout=120)
    assert {r["version"] for r in results} == {"2.0"}  # the newest in the wheelhouse
    assert {r["node"] for r in results} == {head.node_id}
    built = _builds(head, "uv")
    assert len(built) == len(before) + 1, built  # one build for the eight


@rayops.remote
class PkgActor:
    def version(self) -> tuple[str, str]:
        import rayops_tiny_pkg

        return rayops_tiny_pkg.__version__, sys.executable


def test_actor_in_a_uv_env_on_another_node(cluster: Cluster) -> None:
    actor = PkgActor.options(runtime_env={"uv": [f"{PKG}==1.0"]}, resources={"other": 1}).remote()
    version, python = rayops.get(actor.version.remote(), timeout=120)
    assert version == "1.0" and "/venvs/uv-" in python
    rayops.kill(actor)


def test_failing_install_raises_runtime_env_setup_error(cluster: Cluster) -> None:
    env = {"pip": ["rayops-no-such-package-anywhere==0.1"]}
    with pytest.raises(rex.RuntimeEnvSetupError) as info:
        rayops.get(probe.options(runtime_env=env).remote(), timeout=120)
    message = str(info.value)
    assert "rayops-no-such-package-anywhere" in message  # the installer's own output
    assert "no index" in message and "find-links" in message  # what was tried
    # Not cached as a failure forever, and not retried forever: a second call fails again.
    with pytest.raises(rex.RuntimeEnvSetupError):
        rayops.get(probe.options(runtime_env=env).remote(), timeout=120)
    # The cluster is fine afterwards.
    assert rayops.get(probe.remote(), timeout=60)["version"] is None


def test_pip_and_uv_together_raise_at_the_call(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="'pip' and 'uv'"):
        probe.options(runtime_env={"pip": [PKG], "uv": [PKG]})


def test_unused_envs_are_deleted_past_the_cache_size(
    temp_dir: str, wheelhouse: str, tmp_path: Path
) -> None:
    rayops.shutdown()
    saved = _set_env(
        {"RAYOPS_RUNTIME_ENV_FIND_LINKS": wheelhouse, "RAYOPS_RUNTIME_ENV_CACHE_MB": "0"}
    )
    try:
        c = Cluster(os.path.join(temp_dir, "renv-cache"), head_cpus=1)
    finally:
        _restore(saved)
    try:
        c.connect()
        node = c.nodes[0]
        env_a = {"pip": [f"{PKG}==1.0"]}
        env_b = {"pip": [f"{PKG}==2.0"]}
        assert (
            rayops.get(probe.options(runtime_env=env_a).remote(), timeout=120)["version"] == "1.0"
        )
        (venv_a,) = _venvs(node)
        assert (
            rayops.get(probe.options(runtime_env=env_b).remote(), timeout=120)["version"] == "2.0"
        )
        # A's env is used by no lease any more (its idle worker does not hold it): deleted.
        deadline = time.monotonic() + 30
        while venv_a in _venvs(node):
            assert time.monotonic() < deadline, f"{venv_a} still cached: {_venvs(node)}"
            time.sleep(0.1)
        assert len(_venvs(node)) == 1
        # Asked for again, it is built again and works.
        assert (
            rayops.get(probe.options(runtime_env=env_a).remote(), timeout=120)["version"] == "1.0"
        )
        assert len(_builds(node, "pip")) == 3
        # The installers' download caches count in the size too: with 0 MiB, uv's goes
        # after each build (nothing uses it between builds).
        assert not os.path.exists(os.path.join(_resources(node), "venvs", ".uv-cache"))
        # Unpacked working_dir packages are cache entries like the venvs: A's goes once
        # B's is set up and nothing uses A's; asked for again, it is downloaded again.
        wd_a = tmp_path / "wd_a"
        wd_b = tmp_path / "wd_b"
        for wd in (wd_a, wd_b):
            wd.mkdir()
            (wd / "which.txt").write_text(wd.name)
        read = rayops.remote(lambda: Path("which.txt").read_text())
        assert rayops.get(read.options(runtime_env={"working_dir": str(wd_a)}).remote()) == "wd_a"
        (pkg_a,) = _packages(node)
        assert rayops.get(read.options(runtime_env={"working_dir": str(wd_b)}).remote()) == "wd_b"
        deadline = time.monotonic() + 30
        while pkg_a in _packages(node):
            assert time.monotonic() < deadline, f"{pkg_a} still cached: {_packages(node)}"
            time.sleep(0.1)
        assert rayops.get(read.options(runtime_env={"working_dir": str(wd_a)}).remote()) == "wd_a"
        assert pkg_a in _packages(node)
    finally:
        rayops.shutdown()
        c.shutdown()


def _resources(node: ClusterNode) -> str:
    record = node.started.record
    return os.path.join(record.session_dir, "runtime_resources", node.node_id[:12])


def _packages(node: ClusterNode) -> set[str]:
    root = os.path.join(_resources(node), "packages")
    return {n for n in os.listdir(root) if not n.startswith(".")} if os.path.isdir(root) else set()
