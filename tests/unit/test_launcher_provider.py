"""The local (static pool) node provider keeps the NodeProvider guarantees."""

from __future__ import annotations

from pathlib import Path

import pytest

from rayops.launcher.spec import load_spec
from rayops.providers import LocalNodeProvider, make_provider
from rayops.providers.base import TAG_CLUSTER, TAG_NODE_TYPE, TAG_REQUEST, TAG_ROLE


def test_every_listed_host_is_a_node_with_its_role() -> None:
    p = LocalNodeProvider("10.0.0.1", ["10.0.0.2", "10.0.0.3"], "head.default", "worker.default")
    nodes = list(p.non_terminated().values())
    assert [n.internal_ip for n in nodes] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert [n.role for n in nodes] == ["head", "worker", "worker"]
    assert [n.node_type for n in nodes] == ["head.default", "worker.default", "worker.default"]
    assert {n.tags[TAG_NODE_TYPE] for n in nodes if n.tags[TAG_ROLE] == "worker"} == {
        "worker.default"
    }
    assert all(n.running for n in nodes)


def test_launch_is_idempotent_by_request_id_and_terminate_returns_to_the_pool() -> None:
    p = LocalNodeProvider("10.0.0.1", ["10.0.0.2", "10.0.0.3"], clock=lambda: 5.0)
    p.terminate(["10.0.0.2"], "t1")
    p.terminate(["10.0.0.2", "10.0.0.99"], "t2")  # again, and an unknown one: no-ops
    p.terminate(["10.0.0.1"], "t3")  # the head is never released
    assert list(p.non_terminated()) == ["10.0.0.1", "10.0.0.3"]
    p.launch("worker", 1, request_id="r1")
    p.launch("worker", 1, request_id="r1")  # replayed: nothing more
    assert list(p.non_terminated()) == ["10.0.0.1", "10.0.0.3", "10.0.0.2"]
    assert p.non_terminated()["10.0.0.2"].tags[TAG_REQUEST] == "r1"
    assert p.poll_errors() == []
    p.launch("worker", 2, request_id="r2")  # the pool is empty: an error value, not a raise
    (err,) = p.poll_errors()
    assert (err.kind, err.request_id, err.count, err.timestamp) == ("launch", "r2", 2, 5.0)
    assert "no free host" in err.cause and p.poll_errors() == []
    p.set_tags("10.0.0.2", {"y": "2"})
    n = p.non_terminated()["10.0.0.2"]
    assert n.tags["y"] == "2" and n.role == "worker" and n.request_id == "r1"


def test_make_provider_builds_the_local_pool_from_a_spec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    (home / ".ssh").mkdir(parents=True)
    (home / ".ssh" / "id_ed25519").write_text("not really a key\n")
    (home / ".ssh" / "id_ed25519").chmod(0o600)
    (home / ".ssh" / "known_hosts").write_text("")
    monkeypatch.setenv("HOME", str(home))
    path = tmp_path / "cluster.yaml"
    path.write_text(
        "cluster_name: t\n"
        "provider: {type: local, head_ip: 10.0.0.1, worker_ips: [10.0.0.2, 10.0.0.3]}\n"
        "auth: {ssh_user: root, ssh_private_key: ~/.ssh/id_ed25519}\n"
    )
    spec, _ = load_spec(path)
    p = make_provider(spec)
    assert isinstance(p, LocalNodeProvider)
    listed = p.non_terminated()
    assert list(listed) == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert {n.tags[TAG_CLUSTER] for n in listed.values()} == {"t"}
    with pytest.raises(TypeError):
        make_provider(spec, no_such_option=1)  # nothing accepted and ignored
