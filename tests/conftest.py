"""Shared fixtures: clusters on loopback, and a leak check over the whole run."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

_MARKERS = (
    "rayops.raylet",
    "rayops.gcs",
    "rayops.core_worker",
    "rayops.agent",
    "rayops.dashboard",
)


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return ""


def _rayops_procs(scope: str) -> set[int]:
    """Runtime processes that belong to this test run: started by it (descendants of
    this process) or naming one of its temp dirs (detached daemons, and what they
    started). Other rayops clusters on the machine are none of our business."""
    me = os.getpid()
    out = set()
    for p in psutil.process_iter():
        cmd = _cmdline(p)
        if p.pid == me or not any(m in cmd for m in _MARKERS):
            continue
        try:
            chain = [p, *p.parents()]
        except psutil.NoSuchProcess:
            continue
        if any(q.pid == me or scope in _cmdline(q) for q in chain):
            out.add(p.pid)
    return out


def _our_shm(scope: str) -> set[str]:
    """Shared-memory dirs of sessions created under this run's temp dirs."""
    sessions = {
        os.path.basename(p)
        for p in glob.glob(os.path.join(scope, "**", "session_*"), recursive=True)
    }
    return {
        d
        for d in glob.glob("/dev/shm/rayops-session_*")
        if os.path.basename(d)[len("rayops-") :].rsplit("-", 1)[0] in sessions
    }


@pytest.fixture(scope="session", autouse=True)
def no_leaks(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """After the whole suite: no runtime processes and no shared-memory files left."""
    scope = str(tmp_path_factory.getbasetemp())
    procs_before = _rayops_procs(scope)
    shm_before = _our_shm(scope)
    yield
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        leaked = _rayops_procs(scope) - procs_before
        shm = _our_shm(scope) - shm_before
        if not leaked and not shm:
            return
        time.sleep(0.2)
    assert not leaked, f"leaked runtime processes: {sorted(leaked)}"
    assert not shm, f"leaked shared-memory dirs: {sorted(shm)}"


@pytest.fixture(scope="module")
def temp_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    return str(tmp_path_factory.mktemp("rayops"))


@pytest.fixture(scope="module")
def ray(temp_dir: str) -> Iterator[object]:
    """An embedded 2-CPU cluster shared by a module's tests."""
    import rayops

    rayops.init(num_cpus=2, _temp_dir=temp_dir, object_store_memory=512 * 2**20)
    yield rayops
    rayops.shutdown()


@pytest.fixture
def tiny_tmpfs(tmp_path: Path) -> Iterator[Path]:
    """An 8 MiB tmpfs of the test's own, to fill (skipped where mounting is not allowed);
    unmounted after the test."""
    from rayops.objectstore._tmpfs import mount_huge_tmpfs, unmount

    mount = tmp_path / "tiny"
    mount.mkdir()
    reason = mount_huge_tmpfs(str(mount), 8 * 2**20)
    if reason is not None:
        pytest.skip(f"no tmpfs: {reason}")
    try:
        yield mount
    finally:
        unmount(str(mount))
