"""The local (static pool) node provider keeps the NodeProvider guarantees."""

from __future__ import annotations

from rayops.providers import LocalNodeProvider
from rayops.providers.base import TAG_NODE_TYPE, TAG_REQUEST, TAG_ROLE


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
