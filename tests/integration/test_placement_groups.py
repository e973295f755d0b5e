"""Placement groups on real nodes (a head and two more raylets on loopback): each strategy's
placement checked by node id, tasks and actors in bundles, a group that must wait for a node,
an infeasible group, removal killing what runs in the group, a detached group outliving its
job, a node's death re-placing its bundles, and Ray's errors for bad input."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.testing.cluster import Cluster
from rayops.testing.waiting import wait_for
from rayops.util.placement_group import (
    PlacementGroup,
    get_current_placement_group,
    get_placement_group,
    placement_group,
    placement_group_table,
    remove_placement_group,
)
from rayops.util.scheduling_strategies import PlacementGroupSchedulingStrategy


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Cluster]:
    c = Cluster(os.path.join(temp_dir, "pgs"), head_cpus=2)
    c.add_node(num_cpus=2)
    c.add_node(num_cpus=2)
    c.wait_for_nodes(3)
    c.connect(namespace="pgs")
    yield c
    rayops.shutdown()
    c.shutdown()


def _node_ids(c: Cluster) -> list[str]:
    return [n.node_id for n in c.nodes]


def _all_cpus_free(total: float) -> bool:
    return rayops.available_resources().get("CPU", 0.0) == total


def _placed(pg: PlacementGroup) -> dict[int, str]:
    assert pg.wait(30), placement_group_table(pg)
    return placement_group_table(pg)["bundles_to_node_id"]


def _remove(pg: PlacementGroup, total: float = 6.0) -> None:
    remove_placement_group(pg)
    wait_for("the group's CPUs back", lambda: _all_cpus_free(total))


@rayops.remote(num_cpus=1)
def where() -> dict[str, Any]:
    ctx = rayops.get_runtime_context()
    pg = get_current_placement_group()
    return {
        "node": ctx.get_node_id(),
        "resources": ctx.get_assigned_resources(),
        "pg": pg.id.hex() if pg is not None else None,
    }


@rayops.remote(num_cpus=0)
def child_where() -> Any:
    pg = get_current_placement_group()
    return pg.id.hex() if pg is not None else None


@rayops.remote(num_cpus=0)
def parent() -> Any:
    return rayops.get(child_where.remote())


# ------------------------------------------------------------------------ strategies
@pytest.mark.parametrize(
    ("strategy", "bundles", "distinct_nodes"),
    [
        ("PACK", [{"CPU": 1}, {"CPU": 1}], 1),
        ("STRICT_PACK", [{"CPU": 1}, {"CPU": 1}], 1),
        ("PACK", [{"CPU": 2}, {"CPU": 2}], 2),  # best effort: spills onto a second node
        ("SPREAD", [{"CPU": 1}] * 3, 3),
        ("STRICT_SPREAD", [{"CPU": 1}] * 3, 3),
        ("SPREAD", [{"CPU": 1}] * 4, 3),  # best effort: more bundles than nodes
    ],
)
def test_each_strategy_places_its_bundles(
    cluster: Cluster, strategy: str, bundles: list[dict[str, float]], distinct_nodes: int
) -> None:
    pg = placement_group(bundles, strategy=strategy)
    nodes = _placed(pg)
    assert sorted(nodes) == list(range(len(bundles)))
    assert set(nodes.values()) <= set(_node_ids(cluster))
    assert len(set(nodes.values())) == distinct_nodes, nodes
    row = placement_group_table(pg)
    assert row["state"] == "CREATED" and row["strategy"] == strategy
    assert row["stats"]["scheduling_state"] == "FINISHED"
    # The reservation shows as plain CPUs taken; bundle resources stay out of the totals.
    taken = sum(b.get("CPU", 0) for b in bundles)
    wait_for("the reservation in the resource view", lambda: _all_cpus_free(6.0 - taken))
    assert not any("_group_" in k for k in rayops.cluster_resources())
    _remove(pg)
    assert placement_group_table(pg)["state"] == "REMOVED"


def test_tasks_and_actors_run_on_their_bundles_node(cluster: Cluster) -> None:
    pg = placement_group([{"CPU": 1}] * 3, strategy="STRICT_SPREAD", name="spread3")
    assert rayops.get(pg.ready(), timeout=30) == pg
    nodes = _placed(pg)
    for index in range(3):
        strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)
        seen = rayops.get(where.options(scheduling_strategy=strategy).remote(), timeout=30)
        assert seen == {"node": nodes[index], "resources": {"CPU": 1.0}, "pg": pg.id.hex()}
    # Ray's older options mean the same.
    seen = rayops.get(where.options(placement_group=pg).remote(), timeout=30)
    assert seen["node"] in nodes.values() and seen["pg"] == pg.id.hex()
    # Children stay out of the group unless the parent captures them.
    plain = PlacementGroupSchedulingStrategy(pg)
    capture = PlacementGroupSchedulingStrategy(pg, placement_group_capture_child_tasks=True)
    assert rayops.get(parent.options(scheduling_strategy=plain).remote(), timeout=30) is None
    captured = rayops.get(parent.options(scheduling_strategy=capture).remote(), timeout=30)
    assert captured == pg.id.hex()

    @rayops.remote(num_cpus=1)
    class Member:
        def where(self) -> tuple[str, Any]:
            current = get_current_placement_group()
            node = rayops.get_runtime_context().get_node_id()
            return node, current.id.hex() if current else None

    member = Member.options(
        scheduling_strategy=PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=2)
    ).remote()
    assert rayops.get(member.where.remote(), timeout=30) == (nodes[2], pg.id.hex())
    assert get_placement_group("spread3") == pg
    # Removing the group kills its actor (no restart) and frees every CPU.
    _remove(pg)
    with pytest.raises(rex.ActorDiedError, match="placement group"):
        rayops.get(member.where.remote(), timeout=30)
    with pytest.raises(rex.TaskPlacementGroupRemoved):
        rayops.get(pg.ready(), timeout=30)
    with pytest.raises(ValueError, match="spread3"):
        get_placement_group("spread3")


def test_a_group_that_does_not_fit_yet_waits_and_one_that_never_fits_says_so(
    cluster: Cluster,
) -> None:
    waiting = placement_group([{"CPU": 1}] * 4, strategy="STRICT_SPREAD")
    huge = placement_group([{"CPU": 64}])
    assert not waiting.wait(1)
    assert placement_group_table(waiting)["state"] == "PENDING"
    row = placement_group_table(huge)
    assert row["state"] == "PENDING" and row["stats"]["scheduling_state"] == "INFEASIBLE"
    node = cluster.add_node(num_cpus=1)
    try:
        nodes = _placed(waiting)  # created once the fourth node joins
        assert len(set(nodes.values())) == 4 and node.node_id in nodes.values()
        assert placement_group_table(huge)["state"] == "PENDING"
        remove_placement_group(waiting)
        remove_placement_group(huge)
        wait_for("the group's CPUs back", lambda: _all_cpus_free(7.0))
    finally:
        cluster.remove_node(node)
        cluster.wait_for_nodes(3)


def test_bad_input_gets_rays_errors(cluster: Cluster) -> None:
    with pytest.raises(ValueError, match="non-empty list"):
        placement_group([])
    with pytest.raises(ValueError, match="only 0 values"):
        placement_group([{"CPU": 0}])
    with pytest.raises(ValueError, match="negative"):
        placement_group([{"CPU": -1}])
    with pytest.raises(ValueError, match="Invalid placement group strategy FOO"):
        placement_group([{"CPU": 1}], strategy="FOO")
    with pytest.raises(ValueError, match="lifetime"):
        placement_group([{"CPU": 1}], lifetime="forever")
    pg = placement_group([{"CPU": 1}, {"CPU": 1}], name="twice")
    try:
        with pytest.raises(ValueError, match="twice"):
            placement_group([{"CPU": 1}], name="twice")
        for index in (2, -2):
            strategy = PlacementGroupSchedulingStrategy(pg, placement_group_bundle_index=index)
            with pytest.raises(ValueError, match=f"bundle index {index} is invalid"):
                where.options(scheduling_strategy=strategy).remote()
        with pytest.raises(TypeError, match="PlacementGroup"):
            PlacementGroupSchedulingStrategy("not a group")
    finally:
        _remove(pg)
    with pytest.raises(ValueError, match="no-such-group"):
        get_placement_group("no-such-group")


def test_a_detached_group_outlives_its_job_and_the_others_go_with_it(
    cluster: Cluster,
) -> None:
    script = textwrap.dedent(
        f"""
        import rayops
        from rayops.util.placement_group import placement_group
        rayops.init({cluster.address!r}, _temp_dir={cluster.head.temp_dir!r}, namespace="pgs")
        kept = placement_group([{{"CPU": 1}}], name="kept", lifetime="detached")
        gone = placement_group([{{"CPU": 1}}], name="gone")
        assert kept.wait(30) and gone.wait(30)
        """
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=120)
    kept = get_placement_group("kept")
    assert placement_group_table(kept)["state"] == "CREATED"

    def gone_removed() -> bool:
        rows = [r for r in placement_group_table().values() if r["name"] == "gone"]
        return len(rows) == 1 and rows[0]["state"] == "REMOVED"

    wait_for("the job's own group removed with it", gone_removed)
    _remove(kept)


def test_a_dead_nodes_bundles_are_placed_again(cluster: Cluster) -> None:
    extra = cluster.add_node(num_cpus=1, resources={"spare": 1})
    cluster.wait_for_nodes(4)
    pg = placement_group([{"CPU": 1}, {"spare": 1}], strategy="STRICT_SPREAD")
    nodes = _placed(pg)
    assert nodes[1] == extra.node_id
    cluster.kill_raylet(extra)
    wait_for("the group rescheduling", lambda: placement_group_table(pg)["state"] == "RESCHEDULING")
    assert placement_group_table(pg)["bundles_to_node_id"] == {0: nodes[0]}
    spare = cluster.add_node(num_cpus=1, resources={"spare": 1})
    try:
        again = _placed(pg)
        assert again == {0: nodes[0], 1: spare.node_id}
        _remove(pg, total=7.0)
    finally:
        cluster.remove_node(spare)
        cluster.wait_for_nodes(3)


def test_a_raylet_killed_between_prepare_and_commit_leaks_nothing(temp_dir: str) -> None:
    """The two-phase commit under a real SIGKILL: the GCS waits between the phases (its
    fault-injection setting), a raylet holding a prepared bundle dies meanwhile; the attempt
    is aborted, the other prepared bundle released, and the group is created later on the
    nodes left, with every CPU accounted for once it is removed."""
    from rayops.gcs.pg_manager import COMMIT_DELAY_ENV

    rayops.shutdown()  # this test's own cluster; the module's reconnects after
    os.environ[COMMIT_DELAY_ENV] = "5"
    try:
        c = Cluster(os.path.join(temp_dir, "pg-2pc"), head_cpus=1)
    finally:
        del os.environ[COMMIT_DELAY_ENV]
    try:
        first = c.add_node(num_cpus=1)
        second = c.add_node(num_cpus=1)
        c.wait_for_nodes(3)
        c.connect()
        pg = placement_group([{"CPU": 1}, {"CPU": 1}], strategy="STRICT_SPREAD")
        wait_for("both bundles prepared", lambda: placement_group_table(pg)["state"] == "PREPARED")
        # A node whose CPU the reservation took (not the head, which this test keeps).
        wait_for(
            "the prepared bundles in the view",
            lambda: sum(n["AvailableResources"].get("CPU", 0.0) for n in rayops.nodes()) == 1.0,
        )
        free = {n["NodeID"]: n["AvailableResources"].get("CPU", 0.0) for n in rayops.nodes()}
        victim = first if free.get(first.node_id) == 0.0 else second
        assert free[victim.node_id] == 0.0
        assert placement_group_table(pg)["state"] == "PREPARED"  # still between the phases
        c.kill_raylet(victim)
        nodes = _placed(pg)  # aborted, then placed on the two nodes left
        assert victim.node_id not in nodes.values()
        assert placement_group_table(pg)["stats"]["scheduling_attempt"] >= 2
        remove_placement_group(pg)
        wait_for("every CPU free again", lambda: _all_cpus_free(2.0))
    finally:
        rayops.shutdown()
        c.shutdown()
