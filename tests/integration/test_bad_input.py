"""Bad input gets one clear message, no traceback, and nothing started.

Each case runs as a user would: a driver script or the `rayops` command in a subprocess,
asserting on its stderr/stdout and exit code, and on what it left (sessions, processes).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from rayops.node.processes import free_port

PY = sys.executable
RAYOPS = os.path.join(os.path.dirname(PY), "rayops")


def clean_env(temp_dir: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAYOPS_")}
    env["RAYOPS_TEMP_DIR"] = temp_dir
    env.update(extra)
    return env


def run_driver(code: str, temp_dir: str, **env: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` after `import rayops`; it prints the type and message of what init raised."""
    script = (
        "import rayops\ntry:\n"
        + textwrap.indent(textwrap.dedent(code), "    ")
        + ("\nexcept Exception as err:\n    print(f'{type(err).__name__}: {err}')\n")
    )
    return subprocess.run(
        [PY, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        env=clean_env(temp_dir, **env),
    )


def run_cli(*args: str, temp_dir: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [RAYOPS, *args], capture_output=True, text=True, timeout=60, env=clean_env(temp_dir, **env)
    )


def started_nothing(temp_dir: str) -> None:
    sessions = [n for n in os.listdir(temp_dir) if n.startswith("session_")]
    assert not sessions, f"a session was created for refused input: {sessions}"
    procs = []
    for p in psutil.process_iter():
        try:
            if temp_dir in " ".join(p.cmdline()):
                procs.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    assert not procs, f"processes were started for refused input: {procs}"


def no_traceback(out: subprocess.CompletedProcess[str]) -> None:
    assert "Traceback" not in out.stderr + out.stdout, out.stderr + out.stdout


def wrong_token_file(directory: Path) -> str:
    path = directory / "wrong_token"
    path.write_text(secrets.token_urlsafe(32) + "\n")
    path.chmod(0o600)
    return str(path)


@pytest.mark.parametrize(
    ("args", "says"),
    [
        ("num_cpus=-1", "ValueError: init(num_cpus=...) must be a finite number >= 0, got -1"),
        ("num_gpus=-2", "ValueError: init(num_gpus=...) must be a finite number >= 0, got -2"),
        ("num_cpus='2'", "TypeError: init(num_cpus=...) must be a number >= 0, got str '2'"),
        ("resources={'accel': -1}", "ValueError: init(resources=...): resource 'accel' must"),
        ("resources={'CPU': 1}", "ValueError: init(resources=...) must not contain 'CPU'"),
        ("object_store_memory=-5", "ValueError: init(object_store_memory=...) must be a whole"),
        ("labels={'region': 1}", "TypeError: init(labels=...): label keys and values"),
        ("labels={'ray.io/x': 'y'}", "ValueError: init(labels=...): label key 'ray.io/x'"),
    ],
)
def test_init_refuses_bad_node_args_before_starting(args: str, says: str, tmp_path: Path) -> None:
    out = run_driver(f"rayops.init({args})", str(tmp_path))
    assert out.returncode == 0
    assert out.stdout.strip().startswith(says), out.stdout
    assert out.stderr == "", out.stderr  # no daemon wrote a traceback to the driver's terminal
    started_nothing(str(tmp_path))


def test_init_labels_reach_the_node(tmp_path: Path) -> None:
    """The good case of init(labels=...): the node carries them (Ray: ray.nodes()[i]["Labels"])."""
    out = run_driver(
        """
        import json
        rayops.init(num_cpus=1, object_store_memory=64 * 2**20, labels={"region": "us"})
        node = rayops.nodes()[0]
        print(json.dumps([node["NodeID"], node["Labels"]]))
        rayops.shutdown()
        """,
        str(tmp_path),
    )
    node_id, labels = json.loads(out.stdout.strip().splitlines()[-1])
    # with Ray's default label, as in Ray 2.60
    assert labels == {"region": "us", "ray.io/node-id": node_id}, out.stdout


def test_init_unreachable_address_says_so(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    out = run_driver(f"rayops.init({address!r})", str(tmp_path))
    assert out.stdout.strip().startswith(
        f"ConnectionError: could not reach a GCS at {address}: connection refused"
    ), out.stdout
    no_traceback(out)
    started_nothing(str(tmp_path))


@pytest.fixture(scope="module")
def head(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str]]:
    """A running head (`rayops start --head`): its temp dir and GCS address."""
    temp_dir = str(tmp_path_factory.mktemp("head"))
    out = run_cli(
        "start",
        "--head",
        "--port",
        "0",
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(64 * 2**20),
        temp_dir=temp_dir,
    )
    assert out.returncode == 0, out.stderr
    with open(os.path.join(temp_dir, "session_latest", "node.json")) as f:
        address = json.load(f)["gcs_address"]
    yield temp_dir, address
    run_cli("stop", temp_dir=temp_dir)


def test_init_reachable_without_token_says_so(head: tuple[str, str], tmp_path: Path) -> None:
    _, address = head
    out = run_driver(f"rayops.init({address!r})", str(tmp_path))  # no session, no token file
    assert out.stdout.strip().startswith(
        f"AuthenticationError: the GCS at {address} is reachable, but no cluster token was found"
    ), out.stdout
    no_traceback(out)


def test_init_wrong_token_names_the_file(head: tuple[str, str], tmp_path: Path) -> None:
    _, address = head
    token = wrong_token_file(tmp_path)
    out = run_driver(f"rayops.init({address!r})", str(tmp_path), RAYOPS_TOKEN_FILE=token)
    assert out.stdout.strip().startswith(
        f"AuthenticationError: the GCS at {address} refused the cluster token from {token}"
    ), out.stdout
    no_traceback(out)


@pytest.mark.parametrize(
    ("flag", "value"),
    [
        ("--labels", "[1,2]"),
        ("--labels", "region"),
        ("--labels", "a=b=c"),
        ("--labels", '{"a": 1}'),
        ("--labels", "ray.io/node-id=x"),
        ("--labels", "a=b,a=c"),
        ("--port", "70000"),
        ("--num-cpus", "-1"),
        ("--num-gpus", "nan"),
        ("--resources", "[1]"),
        ("--resources", '{"memory": 1}'),
        ("--object-store-memory", "-5"),
    ],
)
def test_start_bad_flag(flag: str, value: str, tmp_path: Path) -> None:
    out = run_cli("start", "--head", "--port", "0", f"{flag}={value}", temp_dir=str(tmp_path))
    assert out.returncode != 0
    assert f"rayops start: error: argument {flag}:" in out.stderr, out.stderr
    no_traceback(out)
    started_nothing(str(tmp_path))


def test_start_labels_in_rays_form(tmp_path: Path) -> None:
    temp_dir = str(tmp_path)
    out = run_cli(
        "start",
        "--head",
        "--port",
        "0",
        "--node-ip-address",
        "127.0.0.1",
        "--num-cpus",
        "1",
        "--object-store-memory",
        str(64 * 2**20),
        "--labels",
        "region=us, tier=gold",
        temp_dir=temp_dir,
    )
    try:
        assert out.returncode == 0, out.stderr
        got = run_driver(
            """
            import json
            rayops.init("auto")
            labels = rayops.nodes()[0]["Labels"]
            labels.pop("ray.io/node-id")  # Ray's default label, as in Ray 2.60
            print(json.dumps(labels, sort_keys=True))
            rayops.shutdown()
            """,
            temp_dir,
        )
        assert got.stdout.strip() == '{"region": "us", "tier": "gold"}', got.stdout + got.stderr
    finally:
        run_cli("stop", temp_dir=temp_dir)


def test_status_wrong_token(head: tuple[str, str], tmp_path: Path) -> None:
    temp_dir, address = head
    token = wrong_token_file(tmp_path)
    out = run_cli("status", temp_dir=temp_dir, RAYOPS_TOKEN_FILE=token)
    assert out.returncode == 1
    assert (
        f"rayops status: error: the GCS at {address} refused the cluster token from {token}"
        in out.stderr
    ), out.stderr
    no_traceback(out)


def test_status_unreachable(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    out = run_cli("status", "--address", address, temp_dir=str(tmp_path))
    assert out.returncode == 1
    assert f"could not reach a GCS at {address}: connection refused" in out.stderr, out.stderr
    no_traceback(out)


def test_start_address_wrong_token(head: tuple[str, str], tmp_path: Path) -> None:
    _, address = head
    temp_dir = str(tmp_path / "node")
    os.makedirs(temp_dir)
    token = wrong_token_file(tmp_path)
    out = run_cli("start", "--address", address, "--token-file", token, temp_dir=temp_dir)
    assert out.returncode == 1
    assert f"the GCS at {address} refused the cluster token from {token}" in out.stderr
    no_traceback(out)
    started_nothing(temp_dir)


def test_start_address_unreachable(tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port('127.0.0.1')}"
    temp_dir = str(tmp_path / "node")
    os.makedirs(temp_dir)
    token = wrong_token_file(tmp_path)
    out = run_cli("start", "--address", address, "--token-file", token, temp_dir=temp_dir)
    assert out.returncode == 1
    assert f"could not reach a GCS at {address}: connection refused" in out.stderr, out.stderr
    no_traceback(out)
    started_nothing(temp_dir)


def test_stop_with_nothing_running(tmp_path: Path) -> None:
    out = run_cli("stop", temp_dir=str(tmp_path / "never-used"))
    assert out.returncode == 0
    assert "no running rayops processes" in out.stdout
    no_traceback(out)


def test_raylet_with_wrong_token_exits_at_once(head: tuple[str, str], tmp_path: Path) -> None:
    """A raylet whose token the GCS refuses stops at once (retrying cannot help) and says why."""
    _, address = head
    session = tmp_path / "session"
    for sub in ("logs", "shm", "spill"):
        (session / sub).mkdir(parents=True)
    argv = [
        PY, "-m", "rayops.raylet",
        "--node-id", secrets.token_hex(28),
        "--node-ip", "127.0.0.1",
        "--gcs-address", address,
        "--token-file", wrong_token_file(tmp_path),
        "--session-dir", str(session),
        "--shm-dir", str(session / "shm"),
        "--spill-dir", str(session / "spill"),
        "--resources", json.dumps({"CPU": 1}),
        "--object-store-memory", str(32 * 2**20),
        "--prestart-workers", "0",
    ]  # fmt: skip
    out = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=20,
        env=clean_env(str(tmp_path), RAYOPS_WORKER_ZYGOTE="0"),
    )
    assert out.returncode != 0
    assert "the GCS refused this node" in out.stderr, out.stderr[-2000:]
    assert "cluster token" in out.stderr, out.stderr[-2000:]
    assert "Traceback" not in out.stderr, out.stderr[-2000:]


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["--head", "--redis-password", "pw"], {}, "does not persist to Redis"),
        (["--head", "--gcs-storage", "redis://h"], {}, "--gcs-storage='redis://h'"),
        (["--head"], {"RAY_REDIS_ADDRESS": "a:1,b:2"}, "RAY_REDIS_ADDRESS="),
        (["--address", "127.0.0.1:1", "--redis-password", "pw"], {}, "is for the head"),
    ],
)
def test_start_bad_redis_store(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path
) -> None:
    out = run_cli("start", *args, temp_dir=str(tmp_path), **env)
    assert out.returncode != 0
    assert says in out.stderr, out.stderr
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    no_traceback(out)
    started_nothing(str(tmp_path))
