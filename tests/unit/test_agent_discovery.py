"""The Prometheus service-discovery list and its atomic file (rayops/agent/discovery.py)."""

from __future__ import annotations

import json
import os
import threading

from rayops.agent.discovery import sd_targets, write_file_sd
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
