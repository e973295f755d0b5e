"""The dashboard's view of the cluster (`dashboard/overview_state.py`): batches of the spine's
"nodes", "actors" and "placement_groups" channels in, the page's payloads out; the usage rings;
the page's open paths. No processes."""

from __future__ import annotations

import json

import pytest

from rayops.dashboard.overview import ClusterOverview
from rayops.dashboard.overview_state import (
    ClusterState,
    UsageHistory,
    actors_payload,
    groups_payload,
    node_usage,
    nodes_payload,
)
from rayops.dashboard.page import is_public
from rayops.gcs.actor_events import ActorChange, ActorChanged, ActorSnapshot
from rayops.gcs.node_events import (
    NodeAdded,
    NodeDead,
    NodeRemoved,
    NodeResourcesChanged,
    NodeSnapshot,
)
from rayops.gcs.pg_events import PgAdded, PgForgotten, PgSnapshot, PgStateChanged, PgView
from rayops.gcs.pubsub import Batch
from rayops.gcs.types import NodeInfo, ObjectStoreStats

HEAD = NodeInfo(
    node_id="aa",
    node_ip="10.0.0.1",
    raylet_port=7000,
    resources_total={"CPU": 4, "memory": 1000},
    resources_available={"CPU": 4, "memory": 1000},
    is_head_node=True,
)
WORKER = NodeInfo(
    node_id="bb",
    node_ip="10.0.0.2",
    raylet_port=7001,
    resources_total={"CPU": 2, "GPU": 1},
    resources_available={"CPU": 2, "GPU": 1},
)


def nodes(version: int, *events: object, snapshot: object = None) -> Batch:
    return Batch("nodes", "e1", version, snapshot=snapshot, events=tuple(events))


def actor(aid: bytes, state: str, version: int = 1, **kw: object) -> ActorChanged:
    return ActorChanged(version, ActorChange.REGISTERED, aid, state, **kw)  # type: ignore[arg-type]


def test_nodes_snapshot_then_events() -> None:
    s = ClusterState()
    assert "nodes" not in s.synced
    s.apply(nodes(1, snapshot=NodeSnapshot(1, (HEAD,))))
    assert "nodes" in s.synced and list(s.nodes) == ["aa"]
    stats = ObjectStoreStats(used_bytes=100, capacity_bytes=400, spilled_bytes=7)
    s.apply(
        nodes(
            3,
            NodeAdded(2, WORKER),
            NodeResourcesChanged(
                3, "aa", {"CPU": 4, "memory": 1000}, {"CPU": 1, "memory": 600}, stats
            ),
            NodeResourcesChanged(4, "zz", {"CPU": 1}, {"CPU": 1}),  # unknown node: ignored
        )
    )
    p = nodes_payload(s)
    assert [n["node_id"] for n in p["nodes"]] == ["aa", "bb"]  # head first
    assert p["nodes"][0]["resources_used"] == {"CPU": 3.0, "memory": 400.0}
    assert p["nodes"][0]["object_store"] == {
        "used_bytes": 100,
        "capacity_bytes": 400,
        "spilled_bytes": 7,
    }
    assert p["cluster"]["resources_total"] == {"CPU": 6.0, "GPU": 1.0, "memory": 1000.0}
    assert p["cluster"]["resources_used"] == {"CPU": 3.0, "GPU": 0.0, "memory": 400.0}
    assert (p["alive"], p["dead"]) == (2, 0)
    s.apply(nodes(5, NodeDead(5, "bb", "raylet died", 99)))
    p = nodes_payload(s)
    assert (p["alive"], p["dead"]) == (1, 1)
    assert p["nodes"][1]["state"] == "DEAD" and p["nodes"][1]["death_reason"] == "raylet died"
    assert p["cluster"]["resources_total"] == {"CPU": 4.0, "memory": 1000.0}  # dead not counted
    s.apply(nodes(6, NodeRemoved(6, "bb")))
    assert list(s.nodes) == ["aa"]
    # A new snapshot (a restarted GCS) replaces everything.
    s.apply(nodes(1, snapshot=NodeSnapshot(1, (WORKER,))))
    assert list(s.nodes) == ["bb"]
    assert s.version["nodes"] == 5  # one per batch applied


def test_actors_snapshot_and_changes() -> None:
    s = ClusterState()
    a1, a2 = b"\x01" * 16, b"\x02" * 16
    s.apply(Batch("actors", "e", 1, snapshot=ActorSnapshot(1, (actor(a1, "ALIVE", pid=5),))))
    s.apply(
        Batch(
            "actors",
            "e",
            3,
            events=(
                actor(a2, "PENDING_CREATION", 2, class_name="C", name="n", job_id=1),
                actor(a1, "DEAD", 3, death_cause="killed"),
            ),
        )
    )
    p = actors_payload(s)
    assert p["total"] == 2 and p["by_state"] == {"DEAD": 1, "PENDING_CREATION": 1}
    row = {r["actor_id"]: r for r in p["actors"]}[a2.hex()]
    assert (row["class_name"], row["name"], row["job_id"]) == ("C", "n", "01000000")
    assert {r["actor_id"]: r for r in p["actors"]}[a1.hex()]["death_cause"] == "killed"


def test_placement_groups() -> None:
    s = ClusterState()
    g = PgView(
        b"\x09" * 14,
        "g",
        "ns",
        "PACK",
        ({"CPU": 1.0}, {"GPU": 1.0}),
        ({}, {}),
        1,
        False,
        "PENDING",
        {},
    )
    s.apply(Batch("placement_groups", "e", 1, snapshot=PgSnapshot(0, ())))
    s.apply(
        Batch(
            "placement_groups",
            "e",
            2,
            events=(PgAdded(1, g), PgStateChanged(2, g.pg_id, "CREATED", {0: "aa", 1: "bb"})),
        )
    )
    (row,) = groups_payload(s)["groups"]
    assert row["state"] == "CREATED"
    assert [b["node_id"] for b in row["bundles"]] == ["aa", "bb"]
    assert row["bundles"][1]["unit_resources"] == {"GPU": 1.0}
    s.apply(Batch("placement_groups", "e", 3, events=(PgForgotten(3, g.pg_id),)))
    assert groups_payload(s)["total"] == 0


def test_unknown_channel_is_refused() -> None:
    with pytest.raises(ValueError, match="'kv'"):
        ClusterState().apply(Batch("kv", "e", 1))


def test_node_usage() -> None:
    busy = NodeInfo(
        node_id="x",
        node_ip="i",
        raylet_port=1,
        resources_total={"CPU": 4, "GPU": 2},
        resources_available={"CPU": 1, "GPU": 2},
        object_store_stats=ObjectStoreStats(used_bytes=5, capacity_bytes=10),
    )
    u = node_usage(busy)
    assert u == {
        "CPU": (3.0, 4.0),
        "GPU": (0.0, 2.0),
        "memory": (0.0, 0.0),
        "object_store": (5.0, 10.0),
    }


def test_usage_history_is_a_bounded_ring() -> None:
    s = ClusterState()
    s.apply(nodes(1, snapshot=NodeSnapshot(1, (HEAD, WORKER))))
    h = UsageHistory(3)
    for t in range(5):
        cpu_free = 4 - t % 4
        s.apply(
            nodes(
                2 + t,
                NodeResourcesChanged(
                    2 + t, "aa", {"CPU": 4, "memory": 1000}, {"CPU": cpu_free, "memory": 1000}
                ),
            )
        )
        h.record(float(t), s)
    p = h.payload()
    assert p["times"] == [2.0, 3.0, 4.0]  # the oldest two overwritten
    assert p["series"]["aa"]["CPU"]["used"] == [2.0, 3.0, 0.0]
    assert p["series"]["cluster"]["CPU"]["used"] == [2.0, 3.0, 0.0]
    assert p["series"]["cluster"]["CPU"]["total"] == [6.0, 6.0, 6.0]
    # A node gone from the table leaves the history with its rings.
    s.apply(nodes(10, NodeRemoved(10, "bb")))
    h.record(5.0, s)
    assert set(h.payload()["series"]) == {"cluster", "aa"}
    with pytest.raises(ValueError):
        UsageHistory(1)


def test_answers_are_encoded_once_per_change() -> None:
    o = ClusterOverview(gcs=None, clock=lambda: 100.0)
    first = o._answer("nodes", nodes_payload)
    assert json.loads(first)["synced"] is False
    assert o._answer("nodes", nodes_payload) is first  # nothing changed: the same bytes
    o.state.apply(nodes(1, snapshot=NodeSnapshot(1, (HEAD,))))
    second = o._answer("nodes", nodes_payload)
    assert second is not first and json.loads(second)["synced"] is True
    o.sample()
    assert o.history.payload()["times"] == [100.0]
    with pytest.raises(ValueError):
        ClusterOverview(gcs=None, sample_every_s=0)


@pytest.mark.parametrize(
    ("path", "public"),
    [
        ("/", True),
        ("/static/app.js", True),
        ("/api/dashboard/login", True),
        ("/api/dashboard/logout", True),
        ("/api/dashboard/nodes", False),
        ("/api/dashboard/actors", False),
        ("/api/jobs/", False),
        ("/index.html", False),
        ("/api/v0/tasks/summarize", False),
    ],
)
def test_open_paths(path: str, public: bool) -> None:
    assert is_public(path) is public


def test_page_files_ship_in_the_wheel() -> None:
    """Every file of the page is read from the package and matched by pyproject's package-data
    (a wheel built with `pip wheel .` lists them under rayops/dashboard/static/)."""
    import fnmatch
    import tomllib
    from importlib import resources
    from pathlib import Path

    from rayops.dashboard.page import _load_static

    files = _load_static()
    assert {"index.html", "app.js", "charts.js", "style.css"} <= set(files)
    root = Path(__file__).resolve().parents[2]
    data = tomllib.loads((root / "pyproject.toml").read_text())
    globs = data["tool"]["setuptools"]["package-data"]["rayops"]
    for entry in (resources.files("rayops.dashboard") / "static").iterdir():
        rel = f"dashboard/static/{entry.name}"
        assert any(fnmatch.fnmatch(rel, g) for g in globs), rel
    # The page loads only its own files: no CDN, no outside address.
    for name, (body, _) in files.items():
        assert b"http://" not in body.replace(b"http://www.w3.org/2000/svg", b""), name
        assert b"https://" not in body, name
