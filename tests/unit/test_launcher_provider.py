"""The local (static pool) node provider keeps the NodeProvider guarantees."""

from __future__ import annotations

from rayops.providers import LocalNodeProvider
from rayops.providers.base import TAG_NODE_TYPE, TAG_ROLE


def test_every_listed_host_is_a_node_with_its_role() -> None:
    p = LocalNodeProvider("10.0.0.1", ["10.0.0.2", "10.0.0.3"], "head.default", "worker.default")
    nodes = p.non_terminated_nodes()
    assert [n.internal_ip for n in nodes] == ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    assert [n.role for n in nodes] == ["head", "worker", "worker"]
    workers = p.non_terminated_nodes({TAG_ROLE: "worker"})
    assert {n.tags[TAG_NODE_TYPE] for n in workers} == {"worker.default"}


def test_launch_is_idempotent_by_request_id_and_terminate_returns_to_the_pool() -> None:
    p = LocalNodeProvider("10.0.0.1", ["10.0.0.2", "10.0.0.3"])
    p.terminate("10.0.0.2")
    p.terminate("10.0.0.2")  # again: a no-op
    p.terminate("10.0.0.99")  # unknown: a no-op
    assert [n.internal_ip for n in p.non_terminated_nodes()] == ["10.0.0.1", "10.0.0.3"]
    first = p.launch(1, "w", {"x": "1"}, request_id="r1")
    again = p.launch(1, "w", {"x": "1"}, request_id="r1")
    assert first == again and [n.internal_ip for n in first] == ["10.0.0.2"]
    assert p.launch(1, "w", {}, request_id="r2") == []  # the pool is empty
    p.set_tags("10.0.0.2", {"y": "2"})
    (n,) = p.non_terminated_nodes({"y": "2"})
    assert n.tags["x"] == "1" and n.role == "worker"
