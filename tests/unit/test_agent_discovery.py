"""The Prometheus service-discovery list and its atomic file (rayops/agent/discovery.py)."""

from __future__ import annotations

import json
import os
import threading

from rayops.agent.discovery import NodeMembership, sd_targets, write_file_sd
from rayops.gcs.node_events import (
    NodeAdded,
    NodeDead,
    NodeRemoved,
    NodeResourcesChanged,
    NodeSnapshot,
)
from rayops.gcs.pubsub import Batch
from rayops.gcs.types import NodeInfo, NodeState


def _node(node_id: str, ip: str, port: int, *, head: bool = False, alive: bool = True) -> NodeInfo:
    return NodeInfo(
        node_id=node_id,
        node_ip=ip,
        raylet_port=1234,
        is_head_node=head,
        metrics_export_port=port,
        state=NodeState.ALIVE if alive else NodeState.DEAD,
    )


def test_one_group_per_live_agent_with_labels() -> None:
    nodes = [
        _node("bb", "10.0.0.2", 9002),
        _node("aa", "10.0.0.1", 9001, head=True),
        _node("cc", "10.0.0.3", 9003, alive=False),  # dead: left out
        _node("dd", "10.0.0.4", 0),  # no agent: left out
    ]
    groups = sd_targets(nodes, "session_x")
    assert groups == [
        {
            "targets": ["10.0.0.1:9001"],
            "labels": {
                "job": "ray",
                "SessionName": "session_x",
                "NodeId": "aa",
                "NodeAddress": "10.0.0.1",
                "ray_io_node_type": "head",
            },
        },
        {
            "targets": ["10.0.0.2:9002"],
            "labels": {
                "job": "ray",
                "SessionName": "session_x",
                "NodeId": "bb",
                "NodeAddress": "10.0.0.2",
                "ray_io_node_type": "worker",
            },
        },
    ]


def test_ipv6_targets_are_bracketed() -> None:
    assert sd_targets([_node("aa", "fd00::1", 9001)], "s")[0]["targets"] == ["[fd00::1]:9001"]


def test_same_nodes_same_list() -> None:
    a = [_node("aa", "10.0.0.1", 1), _node("bb", "10.0.0.2", 2)]
    assert sd_targets(a, "s") == sd_targets(list(reversed(a)), "s")


def _load(path: str) -> object:
    with open(path) as f:
        return json.load(f)


def test_file_is_replaced_atomically(tmp_path: object) -> None:
    path = os.path.join(str(tmp_path), "sub", "prom_metrics_service_discovery.json")
    write_file_sd(path, [])
    assert _load(path) == []
    big = [
        {"targets": [f"10.0.{i // 250}.{i % 250}:9000"], "labels": {"NodeId": f"{i:056x}"}}
        for i in range(2000)
    ]
    small = big[:1]
    stop = threading.Event()
    bad: list[str] = []

    def reader() -> None:
        # Every read sees a whole file: one of the two lists, never a torn write.
        while not stop.is_set():
            with open(path) as f:
                text = f.read()
            try:
                value = json.loads(text)
            except ValueError:
                bad.append(text[-80:])
                return
            if value not in ([], big, small):
                bad.append("unexpected content")
                return

    t = threading.Thread(target=reader)
    t.start()
    try:
        for _ in range(30):
            write_file_sd(path, big)
            write_file_sd(path, small)
    finally:
        stop.set()
        t.join()
    assert not bad
    assert _load(path) == small
    assert [n for n in os.listdir(os.path.dirname(path)) if n.endswith(".tmp")] == []


# The membership the head's agent keeps from the "nodes" channel.


def _events(version: int, *events: object) -> Batch:
    return Batch("nodes", "e", version, None, events)


def test_membership_from_a_snapshot_then_events_gives_the_polled_list() -> None:
    """What the agent lists from the stream equals what GetAllNodeInfo(alive_only) gave."""
    head, worker = _node("aa", "10.0.0.1", 9001, head=True), _node("bb", "10.0.0.2", 9002)
    m = NodeMembership()
    assert m.apply(Batch("nodes", "e", 2, NodeSnapshot(2, (head, worker))))
    assert sd_targets(m.alive(), "s") == sd_targets([head, worker], "s")
    joined = _node("cc", "10.0.0.3", 9003)
    assert m.apply(_events(3, NodeAdded(3, joined)))
    assert [g["labels"]["NodeId"] for g in sd_targets(m.alive(), "s")] == ["aa", "bb", "cc"]
    # Usage changes nothing discovery reads.
    assert not m.apply(_events(4, NodeResourcesChanged(4, "bb", {"CPU": 1.0}, {"CPU": 0.0})))
    assert m.apply(_events(5, NodeDead(5, "bb", "missed health checks", 77)))
    assert [n.node_id for n in m.alive()] == ["aa", "cc"]
    assert m.nodes["bb"].death_reason == "missed health checks"
    assert m.apply(_events(6, NodeRemoved(6, "bb")))
    assert "bb" not in m.nodes
    # Events about nodes it never held change nothing.
    assert not m.apply(_events(7, NodeDead(7, "zz", "x", 1), NodeRemoved(8, "yy")))


def test_a_snapshot_after_a_reconnect_replaces_everything() -> None:
    m = NodeMembership()
    m.apply(Batch("nodes", "e", 1, NodeSnapshot(1, (_node("aa", "10.0.0.1", 9001),))))
    m.apply(Batch("nodes", "f", 9, NodeSnapshot(9, (_node("bb", "10.0.0.2", 9002),))))
    assert [n.node_id for n in m.alive()] == ["bb"]
