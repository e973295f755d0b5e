"""The chaos suite (its own command: ``python -m rayops.testing.chaos``) as a test: a
map-reduce of 2,000 tasks and an actor pipeline on a three-node namespace cluster, each run
once clean and once while faults are injected on real processes and links. No result may be
lost: every fault here is one Ray's semantics recover from (retries, actor restarts).

Run alone with ``scripts/test.sh -m chaos``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from rayops.testing.chaos import render, run_suite
from rayops.testing.hosts import unavailable_reason
from rayops.testing.netns_cluster import NsCluster, running_cluster

pytestmark = [pytest.mark.slow, pytest.mark.chaos]

# Every kind: workers and actors are retried or restarted, a lost node's results are rebuilt
# from lineage, the GCS restarts from its store, links come back.
KINDS = ["kill_worker", "kill_actor", "kill_raylet", "kill_gcs", "link_down", "packet_loss"]


@pytest.fixture(scope="module")
def chaos_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[NsCluster, Path]]:
    reason = unavailable_reason()
    if reason:
        pytest.skip(reason)
    base = tmp_path_factory.mktemp("chaos")
    with running_cluster(base) as cluster:
        yield cluster, base


def test_chaos_suite_loses_no_results(chaos_cluster: tuple[NsCluster, Path]) -> None:
    cluster, base = chaos_cluster
    # Map results of 200 KiB live in the executing node's store: a killed raylet loses them.
    results = run_suite(
        cluster, base, KINDS, tasks=2000, object_kb=200, items=300, period_s=1.0, seed=7
    )
    table = render(results)
    print(table)
    for r in results:
        assert r.injected >= 2, table
        assert r.lost == 0, table
        assert r.results > 0
