"""runtime_env against a real two-node cluster: env_vars merged over the job's, working_dir and
py_modules shipped to another node, workers pooled per env, and setup failures."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.testing.cluster import Cluster
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy

JOB_ENV = {"env_vars": {"JOB": "job", "SHARED": "job"}}


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "renv"), head_cpus=1)
    c.add_node(num_cpus=1, resources={"other": 1})
    c.wait_for_nodes(2)
    c.connect(runtime_env=JOB_ENV)
    yield c
    rayops.shutdown()
    c.shutdown()


@rayops.remote
def env_of(*names: str) -> dict[str, str | None]:
    return {n: os.environ.get(n) for n in names}


@rayops.remote
def pid_and_node() -> tuple[int, str]:
    return os.getpid(), rayops.get_runtime_context().get_node_id()


@rayops.remote(runtime_env={"env_vars": {"SHARED": "parent", "PARENT": "p"}})
def parent() -> tuple[dict[str, str | None], dict[str, str | None], str]:
    inherited = rayops.get(env_of.remote("JOB", "SHARED", "PARENT", "CHILD"))
    child = env_of.options(runtime_env={"env_vars": {"CHILD": "c"}})
    merged = rayops.get(child.remote("JOB", "SHARED", "PARENT", "CHILD"))
    return inherited, merged, rayops.get_runtime_context().get_runtime_env_string()


def test_env_vars_on_tasks_merge_over_the_job(cluster: Cluster) -> None:
    names = ("JOB", "SHARED", "TASK")
    assert rayops.get(env_of.remote(*names)) == {"JOB": "job", "SHARED": "job", "TASK": None}
    task_env = {"env_vars": {"SHARED": "task", "TASK": "t"}}
    got = rayops.get(env_of.options(runtime_env=task_env).remote(*names))
    assert got == {"JOB": "job", "SHARED": "task", "TASK": "t"}  # the task's wins per key
    decorated = rayops.remote(runtime_env=task_env)(lambda: {n: os.environ.get(n) for n in names})
    assert rayops.get(decorated.remote()) == got
    assert rayops.get_runtime_context().runtime_env == JOB_ENV
    # Child tasks inherit their parent's env; an env they are given merges over it.
    inherited, merged, string = rayops.get(parent.remote())
    assert inherited == {"JOB": "job", "SHARED": "parent", "PARENT": "p", "CHILD": None}
    assert merged == {"JOB": "job", "SHARED": "parent", "PARENT": "p", "CHILD": "c"}
    assert '"PARENT": "p"' in string and '"JOB": "job"' in string


@rayops.remote
class Counter:
    def __init__(self) -> None:
        self.name = os.getenv("counter_name")  # noqa: SIM112 (the seed names it so)
        self.counter = 0

    def inc(self) -> str:
        self.counter += 1
        return f"{self.name} got {self.counter}"

    def env(self) -> dict[str, Any]:
        return dict(rayops.get_runtime_context().runtime_env)


def test_seed_counter_actor_reads_its_env_var(cluster: Cluster) -> None:
    counter = Counter.options(runtime_env={"env_vars": {"counter_name": "seed"}}).remote()
    assert [rayops.get(counter.inc.remote()) for _ in range(5)] == [
        f"seed got {i}" for i in range(1, 6)
    ]
    env = rayops.get(counter.env.remote())
    assert env == {"env_vars": {"JOB": "job", "SHARED": "job", "counter_name": "seed"}}
    plain = Counter.remote()  # the job's env only
    assert rayops.get(plain.inc.remote()) == "None got 1"


def test_seed_example_prints_as_the_seed_says(tmp_path: Path) -> None:
    script = Path(__file__).parents[2] / "examples" / "runtime_env_counter.py"
    env = {**os.environ, "RAYOPS_TEMP_DIR": str(tmp_path)}
    out = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=60, env=env
    )
    assert out.returncode == 0, out.stderr
    import requests

    assert out.stdout.splitlines() == [
        *(f"seed got {i}" for i in range(1, 6)),
        requests.__version__,
    ]


def _write(root: Path, files: dict[str, str]) -> Path:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def test_working_dir_package_is_imported_on_another_node(cluster: Cluster, tmp_path: Path) -> None:
    wd = _write(
        tmp_path / "project",
        {
            "shipped/__init__.py": "ANSWER = 42\n",
            "config.txt": "from the driver\n",
            "scratch.tmp": "left out by excludes\n",
            ".gitignore": "*.log\n",
            "debug.log": "left out by .gitignore\n",
        },
    )

    @rayops.remote(resources={"other": 1}, runtime_env={"working_dir": str(wd)})
    def use_it() -> tuple[int, str, str, list[str], str, str]:
        import shipped  # type: ignore[import-not-found]

        with open("config.txt") as f:
            text = f.read().strip()
        node = rayops.get_runtime_context().get_node_id()
        return shipped.ANSWER, text, os.getcwd(), sorted(os.listdir(".")), sys.path[0], node

    env = {"working_dir": str(wd), "excludes": ["*.tmp"]}
    answer, text, cwd, files, first, node = rayops.get(use_it.options(runtime_env=env).remote())
    assert (answer, text) == (42, "from the driver")
    assert node == cluster.nodes[1].node_id  # the other node, not the driver's
    assert files == [".gitignore", "config.txt", "shipped"]
    assert first == cwd and "_ray_pkg_" in cwd and cwd != str(wd)
    uri = rayops.get(
        rayops.remote(lambda: rayops.get_runtime_context().runtime_env["working_dir"])
        .options(runtime_env=env)
        .remote()
    )
    assert uri.startswith("gcs://_ray_pkg_") and uri.endswith(".zip")


def test_py_modules_directories_zips_and_wheels(cluster: Cluster, tmp_path: Path) -> None:
    pkg = _write(tmp_path / "mods" / "alpha", {"__init__.py": "NAME = 'alpha'\n"})
    zipped = tmp_path / "beta.zip"
    with zipfile.ZipFile(zipped, "w") as zf:
        zf.writestr("beta/__init__.py", "NAME = 'beta'\n")
    wheel = tmp_path / "gamma-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr("gamma/__init__.py", "NAME = 'gamma'\n")
        zf.writestr("gamma-1.0.dist-info/METADATA", "Name: gamma\nVersion: 1.0\n")

    @rayops.remote(resources={"other": 1})
    def names() -> list[str]:
        import alpha  # type: ignore[import-not-found]
        import beta  # type: ignore[import-not-found]
        import gamma  # type: ignore[import-not-found]

        return [alpha.NAME, beta.NAME, gamma.NAME]

    env = {"py_modules": [str(pkg), str(zipped), str(wheel)]}
    assert rayops.get(names.options(runtime_env=env).remote()) == ["alpha", "beta", "gamma"]


@rayops.remote
def try_import(name: str) -> tuple[bool, bool, int]:
    try:
        __import__(name)
        imported = True
    except ImportError:
        imported = False
    return imported, name in sys.modules, os.getpid()


def test_workers_are_never_shared_across_envs(cluster: Cluster, tmp_path: Path) -> None:
    mod = _write(tmp_path / "m" / "only_in_a", {"__init__.py": "X = 1\n"})
    env_a = {"py_modules": [str(mod)], "env_vars": {"WHICH": "a"}}
    env_b = {"env_vars": {"WHICH": "b"}}
    head = {"scheduling_strategy": NodeAffinitySchedulingStrategy(cluster.nodes[0].node_id, False)}
    pids: dict[str, set[int]] = {"a": set(), "b": set(), "job": set()}
    for _ in range(3):  # interleaved, so an idle worker of one env is there for the other
        ok, _, pid = rayops.get(try_import.options(runtime_env=env_a, **head).remote("only_in_a"))
        assert ok
        pids["a"].add(pid)
        ok, loaded, pid = rayops.get(
            try_import.options(runtime_env=env_b, **head).remote("only_in_a")
        )
        assert not ok and not loaded  # env a's module is not visible from env b's worker
        pids["b"].add(pid)
        ok, loaded, pid = rayops.get(try_import.options(**head).remote("only_in_a"))
        assert not ok and not loaded
        pids["job"].add(pid)
    assert not (pids["a"] & pids["b"]) and not (pids["a"] & pids["job"])
    assert not (pids["b"] & pids["job"])
    assert len(pids["a"]) < 3  # ... while a worker is reused within its env


def test_env_setup_failure_raises_runtime_env_setup_error(cluster: Cluster) -> None:
    gone = {"working_dir": "gcs://_ray_pkg_00000000deadbeef.zip"}  # never uploaded
    with pytest.raises(rex.RuntimeEnvSetupError, match="not in the GCS's package store"):
        rayops.get(env_of.options(runtime_env=gone).remote("JOB"), timeout=30)
    actor = Counter.options(runtime_env=gone).remote()
    with pytest.raises(rex.RuntimeEnvSetupError, match="not in the GCS's package store"):
        rayops.get(actor.inc.remote(), timeout=30)
    # The cluster is fine afterwards, and the failure was not cached as a result.
    assert rayops.get(env_of.remote("JOB"), timeout=30) == {"JOB": "job"}
    with pytest.raises(rex.RuntimeEnvSetupError):
        rayops.get(env_of.options(runtime_env=gone).remote("JOB"), timeout=30)


def test_a_missing_working_dir_raises_at_the_call(cluster: Cluster, tmp_path: Path) -> None:
    missing = str(tmp_path / "nowhere")
    with pytest.raises(ValueError, match="nowhere"):
        env_of.options(runtime_env={"working_dir": missing})


DRIVER = """
import os, sys
import rayops
from rayops.job_config import JobConfig
job = JobConfig(runtime_env={"env_vars": {"FROM_JOB_CONFIG": "yes"}})
rayops.init(sys.argv[1], _temp_dir=sys.argv[2], job_config=job,
            runtime_env={"working_dir": sys.argv[3], "env_vars": {"FROM_INIT": "yes"}})

@rayops.remote(resources={"other": 1})
def task():
    import jobpkg
    return jobpkg.WHO, os.environ["FROM_INIT"], os.environ["FROM_JOB_CONFIG"], os.getcwd()

who, a, b, cwd = rayops.get(task.remote())
print(who, a, b, "_ray_pkg_" in cwd)
print(sorted(rayops.get_runtime_context().runtime_env))
"""


def test_init_working_dir_is_the_jobs_on_every_node(cluster: Cluster, tmp_path: Path) -> None:
    """A second driver's job env (init's runtime_env merged with its JobConfig's): its
    working_dir is uploaded at init and is every task's cwd, here on the other node."""
    wd = _write(tmp_path / "job", {"jobpkg/__init__.py": "WHO = 'job package'\n"})
    out = subprocess.run(
        [sys.executable, "-c", DRIVER, cluster.address, cluster.head.temp_dir, str(wd)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=str(tmp_path),
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "job package yes yes True",
        "['env_vars', 'working_dir']",
    ]
