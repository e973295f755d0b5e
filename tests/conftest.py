"""Shared fixtures: clusters on loopback, and a leak check over the whole run."""

from __future__ import annotations

import glob
import os
from collections.abc import Iterator

import psutil
import pytest


def _rayops_procs() -> set[int]:
    me = os.getpid()
    out = set()
    for p in psutil.process_iter(["pid", "cmdline"]):
        try:
            cmd = " ".join(p.info["cmdline"] or [])
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if p.info["pid"] != me and (
            "rayops.raylet" in cmd or "rayops.gcs" in cmd or "rayops.core_worker" in cmd
        ):
            out.add(p.info["pid"])
    return out


@pytest.fixture(scope="session", autouse=True)
def no_leaks() -> Iterator[None]:
    """After the whole suite: no runtime processes and no shared-memory files left."""
    procs_before = _rayops_procs()
    shm_before = set(glob.glob("/dev/shm/rayops-*"))
    yield
    import time

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        leaked = _rayops_procs() - procs_before
        shm = set(glob.glob("/dev/shm/rayops-*")) - shm_before
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
