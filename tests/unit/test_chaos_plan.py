"""The chaos suite's fault plan: a pure function of kinds, duration, period and seed."""

from __future__ import annotations

import pytest

from rayops.testing.chaos import FAULT_KINDS, Fault, plan_faults


def test_same_seed_same_plan_and_faults_every_period() -> None:
    a = plan_faults(FAULT_KINDS, 10.0, 1.5, seed=3)
    assert a == plan_faults(FAULT_KINDS, 10.0, 1.5, seed=3)
    assert [f.at_s for f in a] == [1.0, 2.5, 4.0, 5.5, 7.0, 8.5]
    assert {f.kind for f in a} == set(FAULT_KINDS)  # six slots: each kind once


def test_faults_hit_worker_nodes_and_the_gcs_on_the_head() -> None:
    for f in plan_faults(FAULT_KINDS, 60.0, 1.0, seed=1):
        assert f.node == ("h1" if f.kind == "kill_gcs" else f.node)
        if f.kind != "kill_gcs":
            assert f.node in ("h2", "h3")
        assert (f.duration_s > 0) is (f.kind in ("link_down", "packet_loss"))
        assert (f.loss_pct > 0) is (f.kind == "packet_loss")


@pytest.mark.parametrize(
    ("kinds", "duration", "expected"),
    [
        ((), 10.0, ()),
        (("kill_worker",), 1.0, ()),  # nothing before the first fault time
        (("kill_worker",), 2.5, (Fault(1.0, "kill_worker", "h3"), Fault(2.0, "kill_worker", "h3"))),
    ],
)
def test_plan_edges(kinds: tuple[str, ...], duration: float, expected: tuple[Fault, ...]) -> None:
    got = plan_faults(kinds, duration, 1.0, seed=0)
    assert [(f.at_s, f.kind) for f in got] == [(f.at_s, f.kind) for f in expected]


def test_unknown_kind_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="kill_everything"):
        plan_faults(["kill_everything"], 5.0, 1.0, seed=0)
