"""RAYOPS_OBJECT_STORE_HUGE_PAGES on a real node: "off" keeps plain /dev/shm, "on" mounts the
huge-page tmpfs (or the node fails to start), and either way nothing is left behind."""

from __future__ import annotations

import os

import numpy as np
import pytest

import rayops
from rayops.objectstore._tmpfs import is_huge_tmpfs


def _shm_dir() -> str:
    from rayops.node.session import NodeRecord

    return NodeRecord.load(rayops.get_runtime_context().worker.session_dir).shm_dir


@pytest.mark.parametrize("mode", ["off", "on"])
def test_mode(mode: str, temp_dir: str, monkeypatch: pytest.MonkeyPatch) -> None:
    if mode == "on" and os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs CAP_SYS_ADMIN")
    monkeypatch.setenv("RAYOPS_OBJECT_STORE_HUGE_PAGES", mode)
    rayops.init(num_cpus=1, _temp_dir=temp_dir, object_store_memory=128 * 2**20)
    try:
        shm_dir = _shm_dir()
        assert is_huge_tmpfs(shm_dir) is (mode == "on")
        assert os.path.ismount(shm_dir) is (mode == "on")
        arr = np.arange(12 * 2**20, dtype=np.uint8)
        assert np.array_equal(rayops.get(rayops.put(arr)), arr)
    finally:
        rayops.shutdown()
    assert not os.path.exists(shm_dir)
    assert not is_huge_tmpfs(shm_dir)
