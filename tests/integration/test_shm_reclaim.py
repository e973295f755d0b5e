"""Shared memory and spilled objects left by a SIGKILLed process group are reclaimed by the
next `init()` / `rayops start` under the same temp dir, and a live cluster's are not."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

import rayops
from rayops.node import session as sess
from rayops.node.processes import stop_node

PY = sys.executable
RAYOPS = os.path.join(os.path.dirname(PY), "rayops")

# A driver with an embedded cluster: puts 3 x 40 MB into a 64 MB store (so one spills to
# disk), prints its directories, then waits for stdin to close and shuts down cleanly.
DRIVER = textwrap.dedent(
    """
    import json, os, sys, rayops
    ctx = rayops.init(num_cpus=1, _temp_dir=sys.argv[1], object_store_memory=64 * 2**20)
    refs = [rayops.put(bytes([i]) * (40 * 2**20)) for i in range(3)]
    with open(os.path.join(ctx["session_dir"], "node.json")) as f:
        rec = json.load(f)
    print(rec["session_dir"], rec["shm_dir"], flush=True)
    sys.stdin.read()
    rayops.shutdown()
    """
)


@dataclass
class Driver:
    proc: subprocess.Popen[str]
    session_dir: str
    shm_dir: str
    files: tuple[list[str], list[str]] = ([], [])  # objects in shm and in spill, once started

    @property
    def spill_dir(self) -> str:
        return os.path.join(self.session_dir, "spill")


def start_driver(temp_dir: str) -> Driver:
    """A driver in its own process group (as `timeout`, a container or a job runner makes)."""
    proc = subprocess.Popen(
        [PY, "-c", DRIVER, temp_dir],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().split()
    assert len(line) == 2, f"driver did not start (exit code {proc.wait()})"
    driver = Driver(proc, line[0], line[1])
    driver.files = store_files(driver)
    return driver


def store_files(driver: Driver) -> tuple[list[str], list[str]]:
    return sorted(objects_in(driver.shm_dir)), sorted(os.listdir(driver.spill_dir))


def stop_driver(driver: Driver) -> None:
    assert driver.proc.stdin is not None
    driver.proc.stdin.close()
    driver.proc.wait(timeout=30)


def session_processes(session_dir: str) -> list[int]:
    name = os.path.basename(session_dir)
    out = []
    for p in psutil.process_iter():
        try:
            if name in " ".join(p.cmdline()):
                out.append(p.pid)
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass
    return out


def kill_group(driver: Driver) -> None:
    """SIGKILL the driver's whole process group, then wait until none of it runs."""
    os.killpg(driver.proc.pid, signal.SIGKILL)
    driver.proc.wait(timeout=10)
    deadline = time.monotonic() + 15
    while session_processes(driver.session_dir):
        assert time.monotonic() < deadline, (
            f"processes of {driver.session_dir} still run after SIGKILL of the group: "
            f"{session_processes(driver.session_dir)}"
        )
        time.sleep(0.05)


def objects_in(path: str) -> list[str]:
    return [n for n in os.listdir(path) if n != "pool"]


@pytest.fixture(scope="module")
def shared_temp(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("reclaim"))


@pytest.fixture(scope="module")
def live(shared_temp: str) -> Iterator[Driver]:
    """A cluster that stays up, under the same temp dir, while dead ones are reclaimed."""
    driver = start_driver(shared_temp)
    yield driver
    stop_driver(driver)


def dead_cluster(temp_dir: str) -> Driver:
    doomed = start_driver(temp_dir)
    kill_group(doomed)
    # What the issue saw: the group's SIGKILL leaves the store's memory behind.
    assert objects_in(doomed.shm_dir), "the killed cluster's objects should still be in /dev/shm"
    assert os.listdir(doomed.spill_dir), "the killed cluster's spilled object should remain"
    return doomed


def assert_untouched(live: Driver) -> None:
    assert live.proc.poll() is None
    assert live.files[0] and live.files[1], "the live cluster should have objects in both"
    assert store_files(live) == live.files, "the live cluster's objects were touched"


def test_init_reclaims_dead_session(
    shared_temp: str, live: Driver, caplog: pytest.LogCaptureFixture
) -> None:
    doomed = dead_cluster(shared_temp)
    caplog.set_level(logging.INFO, logger="rayops.node.reclaim")
    rayops.init(num_cpus=1, _temp_dir=shared_temp, object_store_memory=64 * 2**20)
    try:
        assert not os.path.exists(doomed.shm_dir)
        assert not os.path.exists(doomed.spill_dir)
        assert os.path.exists(os.path.join(doomed.session_dir, "logs")), "logs are kept"
        assert_untouched(live)
        said = [r.getMessage() for r in caplog.records if r.name == "rayops.node.reclaim"]
        assert len(said) == 1 and "reclaimed" in said[0] and doomed.shm_dir in said[0], said
        mb = float(said[0].split("reclaimed ")[1].split(" MB")[0])
        assert mb >= 100, f"3 x 40 MB were left behind, the log says {mb} MB"
    finally:
        rayops.shutdown()


def test_rayops_start_reclaims_dead_session(tmp_path: Path) -> None:
    temp_dir = str(tmp_path)
    live_here = start_driver(temp_dir)
    try:
        doomed = dead_cluster(temp_dir)  # the latest session: `rayops start` sees none running
        out = subprocess.run(
            [
                RAYOPS,
                "start",
                "--head",
                "--port",
                "0",
                "--temp-dir",
                temp_dir,
                "--node-ip-address",
                "127.0.0.1",
                "--num-cpus",
                "1",
                "--object-store-memory",
                str(64 * 2**20),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        try:
            assert out.returncode == 0, out.stderr
            assert f"dead session(s) under {temp_dir}" in out.stdout, out.stdout
            mb = float(out.stdout.split("reclaimed ")[1].split(" MB")[0])
            assert mb >= 100, out.stdout
            assert not os.path.exists(doomed.shm_dir)
            assert not os.path.exists(doomed.spill_dir)
            assert_untouched(live_here)
        finally:
            # Not `rayops stop`: it would stop every node under temp_dir, the live driver's too.
            started = sess.latest_session(temp_dir)
            assert started is not None and started not in (
                doomed.session_dir,
                live_here.session_dir,
            )
            stop_node(sess.NodeRecord.load(started))
    finally:
        stop_driver(live_here)


def test_other_temp_dir_is_not_touched(shared_temp: str, tmp_path: Path) -> None:
    """A dead session under another temp dir is not provably ours to judge: left alone."""
    doomed = dead_cluster(shared_temp)
    try:
        rayops.init(num_cpus=1, _temp_dir=str(tmp_path), object_store_memory=64 * 2**20)
        rayops.shutdown()
        assert objects_in(doomed.shm_dir)
    finally:
        from rayops.node.reclaim import reclaim_dead_sessions

        reclaim_dead_sessions(shared_temp)
    assert not os.path.exists(doomed.shm_dir)
