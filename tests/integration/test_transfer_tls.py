"""A cross-node pull with TLS on: the data connections are TLS (verified both ways, as the
framed plane) and the object arrives byte for byte."""

from __future__ import annotations

import glob
import hashlib
import os
from typing import Any

import numpy as np
import pytest

import rayops
from rayops.testing.cluster import Cluster

MiB = 2**20
BIG = 300 * MiB


@rayops.remote(num_cpus=0, max_retries=0)
def make(size: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size, dtype=np.uint8)


@rayops.remote(num_cpus=0)
def digest(a: np.ndarray) -> str:
    return hashlib.sha256(a.data).hexdigest()


def _on(res: str) -> dict[str, Any]:
    return {"resources": {res: 0.01}}


def _raylet_log(temp_dir: str) -> str:
    out = ""
    for path in glob.glob(os.path.join(temp_dir, "session_latest", "logs", "raylet*")):
        with open(path, errors="replace") as f:
            out += f.read()
    return out


@pytest.mark.slow  # a cluster of its own: ~15 s to start on this machine
def test_large_object_over_tls_arrives_byte_identical(
    temp_dir: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from rayops.rpc import tls
    from rayops.testing.tls_files import loopback_certs

    files = loopback_certs(tmp_path_factory.mktemp("xfer-certs"))
    c = Cluster(
        os.path.join(temp_dir, "xfer-tls"), head_cpus=1, object_store_memory=1024 * MiB, tls=files
    )
    try:
        c.add_node(num_cpus=1, resources={"w0": 1}, object_store_memory=1024 * MiB)
        c.wait_for_nodes(2)
        c.connect()
        ref = make.options(**_on("w0")).remote(BIG, 4)
        expected = rayops.get(digest.options(**_on("w0")).remote(ref))
        got = rayops.get(ref, timeout=60)
        assert hashlib.sha256(got.data).hexdigest() == expected
        del got, ref
        log = _raylet_log(c.head.temp_dir)
        assert "(TLS on)" in log, "the data port does not speak TLS"
        assert "ok=True" in log and "data connection failed" not in log
    finally:
        rayops.shutdown()
        c.shutdown()
        tls.configure(None)
