"""Spilling past a small store capacity, and restoring, byte-identical."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import rayops


@pytest.fixture(scope="module")
def small_store(temp_dir: str) -> Iterator[None]:
    rayops.init(num_cpus=1, _temp_dir=temp_dir, object_store_memory=64 * 2**20)
    yield
    rayops.shutdown()


def test_spill_and_restore(small_store: None) -> None:
    rng = np.random.default_rng(1)
    arrays = [rng.integers(0, 255, size=20 * 2**20, dtype=np.uint8) for _ in range(8)]
    digests = [hashlib.sha256(a.tobytes()).hexdigest() for a in arrays]
    refs = [rayops.put(a) for a in arrays]  # 160 MB into a 64 MB store
    del arrays
    ctx = rayops.get_runtime_context().worker
    spill_dir = os.path.join(ctx.session_dir, "spill")
    assert os.listdir(spill_dir), "nothing was spilled to disk"
    for ref, digest in zip(refs, digests, strict=True):
        out = rayops.get(ref)
        assert hashlib.sha256(out.tobytes()).hexdigest() == digest
        del out

    @rayops.remote
    def checksum(a: Any) -> str:
        return hashlib.sha256(a.tobytes()).hexdigest()

    assert rayops.get([checksum.remote(r) for r in refs]) == digests
    del refs
