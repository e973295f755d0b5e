"""Placement as Ray 2.60 does it, on real nodes: GPU ids from the node's own
CUDA_VISIBLE_DEVICES (no GPU needed: GPUs are a resource), fractional GPUs sharing devices,
node labels (Ray's default ones too) and ``label_selector`` on tasks and actors, and
infeasible requests that stay pending and warn once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.gcs import calls
from rayops.gcs.client import GcsClient
from rayops.node.processes import free_port
from rayops.testing.cluster import Cluster, ClusterNode
from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "placement"), head_cpus=2)
    before = os.environ.get("CUDA_VISIBLE_DEVICES")
    os.environ["CUDA_VISIBLE_DEVICES"] = "2,3"  # the GPU node's own device list
    try:
        c.add_node(num_cpus=4, num_gpus=2, labels={"region": "us", "tier": "gold"})
    finally:
        if before is None:
            del os.environ["CUDA_VISIBLE_DEVICES"]
        else:
            os.environ["CUDA_VISIBLE_DEVICES"] = before
    c.add_node(num_cpus=1, labels={"region": "eu"})
    c.wait_for_nodes(3)
    c.connect()
    yield c
    rayops.shutdown()
    c.shutdown()


def gpu_node(c: Cluster) -> ClusterNode:
    return c.nodes[1]


def eu_node(c: Cluster) -> ClusterNode:
    return c.nodes[2]


@rayops.remote(num_cpus=0)
def seen() -> dict[str, Any]:
    ctx = rayops.get_runtime_context()
    return {
        "env": os.environ.get("CUDA_VISIBLE_DEVICES"),
        "gpu_ids": rayops.get_gpu_ids(),
        "accelerator_ids": ctx.get_accelerator_ids()["GPU"],
        "node": ctx.get_node_id(),
    }


@rayops.remote(num_cpus=0)
class Seer:
    def seen(self) -> dict[str, Any]:
        ctx = rayops.get_runtime_context()
        return {
            "env": os.environ.get("CUDA_VISIBLE_DEVICES"),
            "gpu_ids": rayops.get_gpu_ids(),
            "node": ctx.get_node_id(),
        }


# ------------------------------------------------------------------------------ labels
def test_nodes_carry_their_labels_and_rays_defaults(cluster: Cluster) -> None:
    by_id = {n["NodeID"]: n["Labels"] for n in rayops.nodes()}
    assert by_id[gpu_node(cluster).node_id] == {
        "region": "us",
        "tier": "gold",
        "ray.io/node-id": gpu_node(cluster).node_id,
    }
    assert by_id[cluster.head.node_id] == {"ray.io/node-id": cluster.head.node_id}
    # the GCS node table holds them (what every raylet's cluster view is built from)
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        labels = {n.node_id: dict(n.labels) for n in gcs.get_all_nodes(alive_only=True)}
    assert labels[eu_node(cluster).node_id]["region"] == "eu"
    # and a task sees its node's labels
    on_eu = labels_of.options(label_selector={"region": "eu"}).remote()
    assert rayops.get(on_eu, timeout=60) == labels[eu_node(cluster).node_id]
    assert rayops.get_runtime_context().get_node_labels() == {
        "ray.io/node-id": cluster.head.node_id
    }


@rayops.remote(num_cpus=0)
def labels_of() -> dict[str, str]:
    return rayops.get_runtime_context().get_node_labels()


# ------------------------------------------------------------------------------ GPU ids
def test_gpu_task_sees_the_nodes_physical_device(cluster: Cluster) -> None:
    for got in rayops.get([seen.options(num_gpus=1).remote() for _ in range(4)], timeout=60):
        assert got["node"] == gpu_node(cluster).node_id
        assert got["env"] in ("2", "3"), got
        # Ray 2.60 gives the ids of CUDA_VISIBLE_DEVICES as strings
        assert got["gpu_ids"] == [got["env"]] and got["accelerator_ids"] == [got["env"]]
    both = rayops.get(seen.options(num_gpus=2).remote(), timeout=60)
    assert both["env"] == "2,3" and both["gpu_ids"] == ["2", "3"]


def test_a_task_in_a_gpu_bundle_sees_the_bundles_device(cluster: Cluster) -> None:
    """A placement-group bundle holds particular GPUs of its node; a task in that bundle is
    told exactly those (CUDA_VISIBLE_DEVICES, get_gpu_ids), as a plain GPU task is."""
    from rayops.util.placement_group import placement_group, remove_placement_group
    from rayops.util.scheduling_strategies import PlacementGroupSchedulingStrategy

    pg = placement_group([{"GPU": 1}, {"GPU": 1}], strategy="STRICT_PACK")
    assert pg.wait(60)
    try:
        seen_by = {}
        for index in (0, 1):
            strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)
            got = rayops.get(
                seen.options(num_gpus=1, scheduling_strategy=strategy).remote(), timeout=60
            )
            assert got["node"] == gpu_node(cluster).node_id
            assert got["env"] in ("2", "3") and got["gpu_ids"] == [got["env"]], got
            seen_by[index] = got["env"]
        assert sorted(seen_by.values()) == ["2", "3"]  # each bundle its own device
        anywhere = PlacementGroupSchedulingStrategy(pg)
        got = rayops.get(
            seen.options(num_gpus=1, scheduling_strategy=anywhere).remote(), timeout=60
        )
        assert got["env"] in ("2", "3")
    finally:
        remove_placement_group(pg)


def test_task_without_gpus_sees_the_nodes_devices(cluster: Cluster) -> None:
    """A zero-GPU task on the GPU node sees the node's variable untouched (Ray leaves it), even
    on a worker that ran a GPU task before."""
    on_gpu_node = {"region": "us"}
    rayops.get([seen.options(num_gpus=1).remote() for _ in range(4)], timeout=60)
    for got in rayops.get(
        [seen.options(label_selector=on_gpu_node).remote() for _ in range(8)], timeout=60
    ):
        assert got["node"] == gpu_node(cluster).node_id
        assert (got["env"], got["gpu_ids"]) == ("2,3", [])


def test_half_gpu_actors_share_devices(cluster: Cluster) -> None:
    """Four 0.5 GPU actors held at once on 2 GPUs: two per device, as Ray packs them."""
    actors = [Seer.options(num_gpus=0.5).remote() for _ in range(4)]
    try:
        got = rayops.get([a.seen.remote() for a in actors], timeout=60)
        assert Counter(g["env"] for g in got) == {"2": 2, "3": 2}
        assert all(g["gpu_ids"] == [g["env"]] for g in got)
        # a whole GPU cannot fit while they hold both devices
        ref = seen.options(num_gpus=1).remote()
        assert rayops.wait([ref], timeout=1.0)[0] == []
    finally:
        for a in actors:
            rayops.kill(a)
    assert rayops.get(ref, timeout=60)["env"] in ("2", "3")


def test_gpu_actor_keeps_its_device(cluster: Cluster) -> None:
    a = Seer.options(num_gpus=1).remote()
    try:
        first, second = rayops.get([a.seen.remote(), a.seen.remote()], timeout=60)
        assert first["env"] in ("2", "3") and first == second
        assert first["gpu_ids"] == [first["env"]]
        # what the actor was told is what the node accounts to it: tasks get the other device
        others = rayops.get([seen.options(num_gpus=1).remote() for _ in range(3)], timeout=60)
        assert {o["env"] for o in others} == {"2", "3"} - {first["env"]}
    finally:
        rayops.kill(a)


# ------------------------------------------------------------------------------ selectors
@pytest.mark.parametrize(
    ("selector", "nodes"),
    [
        ({"region": "us"}, {"gpu"}),
        ({"region": "!us"}, {"head", "eu"}),  # a node without the label matches a negation
        ({"region": "in(us,eu)"}, {"gpu", "eu"}),
        ({"region": "!in(us,eu)"}, {"head"}),
        ({"tier": "gold", "region": "!eu"}, {"gpu"}),
    ],
)
def test_task_label_selector_restricts_placement(
    cluster: Cluster, selector: dict[str, str], nodes: set[str]
) -> None:
    names = {
        cluster.head.node_id: "head",
        gpu_node(cluster).node_id: "gpu",
        eu_node(cluster).node_id: "eu",
    }
    task = seen.options(label_selector=selector, scheduling_strategy="SPREAD")
    got = rayops.get([task.remote() for _ in range(12)], timeout=60)
    assert {names[g["node"]] for g in got} == nodes


def test_node_id_label_pins_a_task(cluster: Cluster) -> None:
    eu = eu_node(cluster).node_id
    got = rayops.get(seen.options(label_selector={"ray.io/node-id": eu}).remote(), timeout=60)
    assert got["node"] == eu


def test_unmatched_selector_stays_pending_and_warns_once(cluster: Cluster, capfd: Any) -> None:
    capfd.readouterr()
    ref = seen.options(label_selector={"region": "ap"}).remote()
    assert rayops.wait([ref], timeout=1.5)[0] == []
    err = capfd.readouterr().err
    warnings = [ln for ln in err.splitlines() if "warning" in ln and "'region': 'ap'" in ln]
    assert len(warnings) == 1, err
    assert "label_selector" in warnings[0]
    rayops.cancel(ref)


def test_actor_label_selector_restricts_placement(cluster: Cluster, capfd: Any) -> None:
    capfd.readouterr()
    a = Seer.options(label_selector={"region": "eu"}).remote()
    b = Seer.options(label_selector={"region": "!in(us,eu)"}).remote()
    pending = Seer.options(label_selector={"region": "ap"}).remote()
    try:
        assert rayops.get(a.seen.remote(), timeout=60)["node"] == eu_node(cluster).node_id
        assert rayops.get(b.seen.remote(), timeout=60)["node"] == cluster.head.node_id
        ref = pending.seen.remote()
        assert rayops.wait([ref], timeout=1.5)[0] == [], "an actor ran on an unmatched node"
        err = capfd.readouterr().err
        warnings = [ln for ln in err.splitlines() if "warning" in ln and "'region': 'ap'" in ln]
        assert len(warnings) == 1 and "No node can place actor Seer" in warnings[0], err
    finally:
        for h in (a, b, pending):
            rayops.kill(h)


# ------------------------------------------------------------------------------ actor strategies
GHOST = "ab" * 28  # a node id no node has


def test_actor_hard_affinity_to_an_unknown_node_is_not_placed(cluster: Cluster) -> None:
    """As Ray 2.60: the actor is never placed, and calling it raises ActorUnschedulableError
    (not ActorDiedError); soft affinity to the same id places it elsewhere."""
    hard = Seer.options(scheduling_strategy=NodeAffinitySchedulingStrategy(GHOST, soft=False))
    a = hard.remote()
    with pytest.raises(
        rex.ActorUnschedulableError, match=f"node {GHOST}, which is dead or unknown"
    ):
        rayops.get(a.seen.remote(), timeout=60)
    assert not isinstance(rex.ActorUnschedulableError("x"), rex.ActorDiedError)
    with GcsClient(cluster.address, cluster.token, timeout=5) as gcs:
        info = gcs.call(calls.get_actor_info(a._actor_id))
    assert info is not None
    assert (info.state, info.node_id, info.pid, info.address) == ("DEAD", "", 0, None)
    assert "cannot be scheduled" in info.death_cause
    soft = Seer.options(scheduling_strategy=NodeAffinitySchedulingStrategy(GHOST, soft=True))
    b = soft.remote()
    try:
        assert rayops.get(b.seen.remote(), timeout=60)["node"]
    finally:
        rayops.kill(b)


def test_actor_node_affinity_hard_and_soft(cluster: Cluster) -> None:
    eu = eu_node(cluster).node_id
    pinned = [
        Seer.options(scheduling_strategy=NodeAffinitySchedulingStrategy(eu, soft=soft)).remote()
        for soft in (False, True)
    ]
    # hard affinity to a live node that could never hold the actor: unschedulable, as in Ray
    no_gpu = Seer.options(
        num_gpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(eu, soft=False)
    ).remote()
    # soft: the eu node has no GPU, so it goes where one is
    elsewhere = Seer.options(
        num_gpus=1, scheduling_strategy=NodeAffinitySchedulingStrategy(eu, soft=True)
    ).remote()
    try:
        got = rayops.get([h.seen.remote() for h in pinned], timeout=60)
        assert [g["node"] for g in got] == [eu, eu]
        with pytest.raises(rex.ActorUnschedulableError, match="lacks the resources"):
            rayops.get(no_gpu.seen.remote(), timeout=60)
        assert rayops.get(elsewhere.seen.remote(), timeout=60)["node"] == gpu_node(cluster).node_id
    finally:
        for h in (*pinned, no_gpu, elsewhere):
            rayops.kill(h)


def test_spread_actors_go_to_distinct_nodes(cluster: Cluster) -> None:
    actors = [Seer.options(scheduling_strategy="SPREAD").remote() for _ in range(3)]
    try:
        got = rayops.get([a.seen.remote() for a in actors], timeout=60)
        assert len({g["node"] for g in got}) == 3, got
    finally:
        for a in actors:
            rayops.kill(a)


def test_actor_strategy_with_label_selector(cluster: Cluster) -> None:
    """The selector narrows first: hard affinity to a node it excludes is unschedulable."""
    us = {"region": "us"}
    spread = [
        Seer.options(scheduling_strategy="SPREAD", label_selector=us).remote() for _ in range(2)
    ]
    excluded = Seer.options(
        label_selector=us,
        scheduling_strategy=NodeAffinitySchedulingStrategy(eu_node(cluster).node_id, soft=False),
    ).remote()
    try:
        got = rayops.get([a.seen.remote() for a in spread], timeout=60)
        assert {g["node"] for g in got} == {gpu_node(cluster).node_id}
        with pytest.raises(rex.ActorUnschedulableError, match="does not match the label_selector"):
            rayops.get(excluded.seen.remote(), timeout=60)
    finally:
        for h in (*spread, excluded):
            rayops.kill(h)


# ------------------------------------------------------------------------------ accelerators
def test_missing_accelerator_type_stays_pending_and_warns_once(
    cluster: Cluster, capfd: Any
) -> None:
    capfd.readouterr()
    ref = seen.options(accelerator_type="H100").remote()
    assert rayops.wait([ref], timeout=1.5)[0] == [], "an H100 task ran without an H100 node"
    err = capfd.readouterr().err
    warnings = [ln for ln in err.splitlines() if "warning" in ln and "accelerator_type:H100" in ln]
    assert len(warnings) == 1, err
    rayops.cancel(ref)


@pytest.mark.parametrize("strategy", ["DEFAULT", "SPREAD"])
def test_pending_selector_runs_when_a_matching_node_joins(cluster: Cluster, strategy: str) -> None:
    region = f"sa-{strategy.lower()}"
    task = seen.options(label_selector={"region": region}, scheduling_strategy=strategy)
    refs = [task.remote() for _ in range(2)]
    assert rayops.wait(refs, num_returns=2, timeout=1.0)[0] == []
    joined = cluster.add_node(num_cpus=1, labels={"region": region})
    try:
        got = rayops.get(refs, timeout=60)
        assert {g["node"] for g in got} == {joined.node_id}
    finally:
        cluster.remove_node(joined)


# ------------------------------------------------------------------------------ the CLI
def test_rayops_start_labels_and_devices(temp_dir: str) -> None:
    """``rayops start --labels k=v,k2=v2`` under the node's own CUDA_VISIBLE_DEVICES: a driver
    sees the labels in the node table and a task the node's physical GPU id."""
    tmp = os.path.join(temp_dir, "cli-start")
    cli = [sys.executable, "-m", "rayops.cli.main"]
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "2,3"}
    r = subprocess.run(
        [*cli, "start", "--head", "--port", str(free_port("127.0.0.1")), "--num-cpus", "1",
         "--num-gpus", "2", "--labels", "region=us,tier=gold", "--temp-dir", tmp,
         "--node-ip-address", "127.0.0.1"],
        capture_output=True, text=True, timeout=60, env=env,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    try:
        script = textwrap.dedent(
            """
            import json, os, rayops
            os.environ.pop("CUDA_VISIBLE_DEVICES", None)  # the driver's own does not matter
            rayops.init("auto", _temp_dir=TMP)
            @rayops.remote(num_gpus=1, label_selector={"tier": "in(gold,silver)"})
            def f():
                return os.environ.get("CUDA_VISIBLE_DEVICES"), rayops.get_gpu_ids()
            task = rayops.get(f.remote())
            print(json.dumps({"labels": rayops.nodes()[0]["Labels"], "task": task}))
            """
        ).replace("TMP", repr(tmp))
        out = subprocess.run(
            [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stderr
        got = json.loads(out.stdout.strip().splitlines()[-1])
        labels = got["labels"]
        assert labels["region"] == "us" and labels["tier"] == "gold", labels
        assert set(labels) == {"region", "tier", "ray.io/node-id"}
        assert got["task"] == ["2", ["2"]]
    finally:
        subprocess.run([*cli, "stop", "--temp-dir", tmp], capture_output=True, timeout=60)
