"""The GCS's package store collects runtime_env packages nothing holds (issue 11): a job's
packages go when it finishes, a detached actor's when it dies, an upload nobody uses when its
temporary reference expires. A real cluster with the expiration cut to 1 s."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

import rayops
from rayops.envs import packaging
from rayops.gcs import calls
from rayops.gcs.client import GcsClient
from rayops.gcs.package_refs import TTL_VAR
from rayops.testing.cluster import Cluster

NS = packaging.PACKAGE_NAMESPACE

DRIVER = """
import sys
import rayops
address, temp_dir, wd, actor_wd = sys.argv[1:5]
rayops.init(address, _temp_dir=temp_dir, namespace="pkgrefs", runtime_env={"working_dir": wd})

@rayops.remote
class Keeper:
    def shipped(self):
        import keptmod
        return keptmod.WHAT, rayops.get_runtime_context().runtime_env["working_dir"]

# Its own working_dir replaces the job's (an actor inheriting the job's would hold it too).
keeper = Keeper.options(
    name="keeper", lifetime="detached", runtime_env={"working_dir": actor_wd}
).remote()
what, mod_uri = rayops.get(keeper.shipped.remote())
print(what, rayops.get_runtime_context().runtime_env["working_dir"], mod_uri, flush=True)
sys.stdin.readline()
"""


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv(TTL_VAR, "1")
        c = Cluster(os.path.join(temp_dir, "pkgrefs"), head_cpus=2)
    yield c
    c.shutdown()


@pytest.fixture
def gcs(cluster: Cluster) -> Iterator[GcsClient]:
    with GcsClient(cluster.address, cluster.token, timeout=10) as client:
        yield client


def _stored(gcs: GcsClient, uri: str) -> bool:
    return gcs.kv_exists(packaging.meta_key(uri), namespace=NS)


def _wait(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"not true after {timeout} s: {what}")
        time.sleep(0.05)


def test_job_and_detached_actor_packages_live_as_long_as_their_holders(
    cluster: Cluster, gcs: GcsClient, tmp_path: Path
) -> None:
    wd = tmp_path / "wd"
    wd.mkdir()
    (wd / "data.txt").write_text("job's working dir\n")
    actor_wd = tmp_path / "actor_wd"
    (actor_wd / "keptmod").mkdir(parents=True)
    (actor_wd / "keptmod" / "__init__.py").write_text("WHAT = 'kept module'\n")
    driver = subprocess.Popen(
        [
            sys.executable,
            "-c",
            DRIVER,
            cluster.address,
            cluster.head.temp_dir,
            str(wd),
            str(actor_wd),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line = driver.stdout.readline() if driver.stdout else ""
        assert line, driver.communicate(timeout=30)[1]
        what_a, what_b, wd_uri, mod_uri = line.split()
        assert f"{what_a} {what_b}" == "kept module"
        refs, _ = gcs.call(calls.get_package_references())
        job_holders = [h for h in refs[wd_uri] if h.startswith("job:")]
        assert len(job_holders) == 1, refs
        assert any(h.startswith("actor:") for h in refs[mod_uri]), refs
        # Past the 1 s temporary reference, the running job still holds both.
        _wait(lambda: "temporary" not in gcs.call(calls.get_package_references())[0][wd_uri],
              "the upload's temporary reference expired")  # fmt: skip
        assert _stored(gcs, wd_uri) and _stored(gcs, mod_uri)
    finally:
        if driver.stdin:
            driver.stdin.close()
        driver.wait(timeout=30)
    assert driver.returncode == 0, driver.stderr.read() if driver.stderr else ""
    # The job finished: its working_dir goes; the detached actor keeps its own.
    _wait(lambda: not _stored(gcs, wd_uri), f"{wd_uri} deleted after its job finished")
    assert gcs.kv_keys(f"{wd_uri}:".encode(), namespace=NS) == []  # chunks too
    refs, deleted = gcs.call(calls.get_package_references())
    assert _stored(gcs, mod_uri) and [h[:6] for h in refs[mod_uri]] == ["actor:"], refs
    assert deleted >= 1
    rayops.init(cluster.address, _temp_dir=cluster.head.temp_dir, namespace="pkgrefs")
    try:
        keeper = rayops.get_actor("keeper")
        rayops.kill(keeper)
        _wait(lambda: not _stored(gcs, mod_uri), f"{mod_uri} deleted after its actor died")
    finally:
        rayops.shutdown()


def test_an_upload_nobody_uses_is_deleted_when_its_temporary_reference_expires(
    gcs: GcsClient,
) -> None:
    # Written as the API server's PUT /api/packages/gcs/... writes it: straight to the KV.
    data = b"PK" + os.urandom(64)
    package = packaging.Package(packaging.package_uri(data, False), data, strip_top=False)
    before = gcs.call(calls.get_package_references())[1]
    t0 = time.monotonic()
    assert packaging.upload(
        package,
        lambda k: gcs.kv_exists(k, namespace=NS),
        lambda k, v: gcs.kv_put(k, v, namespace=NS),
    )
    assert gcs.call(calls.get_package_references())[0][package.uri] == ["temporary"]
    _wait(lambda: not _stored(gcs, package.uri), "an unused upload deleted")
    assert time.monotonic() - t0 >= 0.9  # not before its temporary reference ended
    assert gcs.call(calls.get_package_references())[1] == before + 1


def test_references_name_package_uris_and_need_the_token(cluster: Cluster, gcs: GcsClient) -> None:
    from rayops.exceptions import AuthenticationError
    from rayops.gcs.client import GcsRefused

    with GcsClient(cluster.address, "not-the-token", timeout=10) as stranger:
        with pytest.raises(AuthenticationError):
            stranger.call(calls.add_job_package_references(1, ["gcs://_ray_pkg_00.zip"]))
        with pytest.raises(AuthenticationError):
            stranger.call(calls.get_package_references())

    with pytest.raises(GcsRefused, match=r"expected package URIs .* found '/tmp/x'"):
        gcs.call(calls.add_job_package_references(1, ["/tmp/x"]))
    assert gcs.call(calls.add_job_package_references(999, ["gcs://_ray_pkg_00.zip"])) is False
