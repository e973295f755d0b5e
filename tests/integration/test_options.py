"""What the accepted options do, against a real embedded cluster (rayops/options.py).

Each test here is named by a row of tests/unit/test_option_table.py. The options refused until
their feature exists are tested without a cluster in tests/unit/test_options_refused.py; here
their "not used" values (None, {}, 0, ...) are shown to keep working as in Ray.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import rayops
from rayops import exceptions as rex
from rayops.testing.waiting import wait_for

GIB = 2**30


@pytest.fixture(scope="module")
def cluster(temp_dir: str) -> Iterator[Any]:
    """One node with 2 CPUs, 1 GPU, an A100 "accelerator" and 2 custom slots; every init()
    keyword that is not a node setting is given its Ray default or "not used" value."""
    before = logging.getLogger("rayops").level
    ctx = rayops.init(
        num_cpus=2,
        num_gpus=1,
        resources={"accelerator_type:A100": 1, "slot": 2},
        object_store_memory=256 * 2**20,
        namespace="options-ns",
        include_dashboard=False,
        runtime_env={},
        logging_level="warning",
        _temp_dir=temp_dir,
        _node_ip_address="127.0.0.1",
    )
    yield ctx
    rayops.shutdown()
    logging.getLogger("rayops").setLevel(before)


# ------------------------------------------------------------------------------ init()
def test_init_keywords_take_effect(cluster: Any) -> None:
    total = rayops.cluster_resources()
    assert total["CPU"] == 2.0 and total["GPU"] == 1.0 and total["slot"] == 2.0
    assert total["object_store_memory"] == 256 * 2**20
    assert rayops.get_runtime_context().namespace == "options-ns"
    assert cluster["node_ip_address"] == "127.0.0.1"
    assert logging.getLogger("rayops").getEffectiveLevel() == logging.WARNING


def test_init_twice(cluster: Any) -> None:
    with pytest.raises(RuntimeError, match="ignore_reinit_error=True"):
        rayops.init()
    again = rayops.init(ignore_reinit_error=True)
    assert again["node_id"] == cluster["node_id"]


# ------------------------------------------------------------------------------ tasks
@rayops.remote
def assigned() -> dict[str, Any]:
    ctx = rayops.get_runtime_context()
    return {"resources": ctx.get_assigned_resources(), "name": ctx.get_task_name()}


def test_task_resource_options_are_assigned(cluster: Any) -> None:
    got = rayops.get(
        assigned.options(
            num_cpus=0.5, num_gpus=1, memory=GIB // 4, resources={"slot": 1}, name="sized"
        ).remote()
    )
    assert got["resources"] == {"CPU": 0.5, "GPU": 1.0, "memory": float(GIB // 4), "slot": 1.0}
    assert got["name"] == "sized"


def test_task_accelerator_type_runs_only_where_advertised(cluster: Any) -> None:
    got = rayops.get(assigned.options(accelerator_type="A100").remote(), timeout=30)
    assert got["resources"]["accelerator_type:A100"] == pytest.approx(0.001)
    pending = assigned.options(accelerator_type="H100").remote()
    ready, not_ready = rayops.wait([pending], timeout=1.0)
    assert (ready, not_ready) == ([], [pending]), "an H100 task ran on a node without H100"
    rayops.cancel(pending)


def test_task_not_used_values_run(cluster: Any) -> None:
    """Ray's "not used" values of the options rayops refuses otherwise run as plain tasks."""
    opts = assigned.options(  # max_calls is a decoration-only option, as in Ray (below)
        runtime_env={},
        label_selector={},
        accelerator_type=None,
        enable_task_events=False,
        placement_group="default",
        placement_group_bundle_index=-1,
        placement_group_capture_child_tasks=None,
        fallback_strategy=None,
        object_store_memory=None,
        scheduling_strategy="DEFAULT",
        num_returns=1,
    )
    assert rayops.get(opts.remote(), timeout=30)["resources"] == {"CPU": 1.0}
    plain = rayops.remote(runtime_env=None, label_selector=None, max_calls=0)(lambda: 7)
    assert rayops.get(plain.remote(), timeout=30) == 7


# ------------------------------------------------------------------------------ actors
@rayops.remote
class Holder:
    def resources(self) -> dict[str, float]:
        return dict(rayops.get_runtime_context().get_assigned_resources())


def test_actor_resource_options_hold_resources(cluster: Any) -> None:
    h = Holder.options(num_cpus=1, num_gpus=1, memory=GIB // 4, resources={"slot": 2}).remote()
    rayops.get(h.resources.remote(), timeout=30)
    wait_for(
        "the actor to hold its resources",
        lambda: (
            rayops.available_resources().get("slot", 0.0) == 0.0
            and rayops.available_resources().get("GPU", 0.0) == 0.0
        ),
    )
    rayops.kill(h)
    wait_for(
        "the killed actor's resources to come back",
        lambda: rayops.available_resources().get("slot", 0.0) == 2.0,
    )


def test_actor_accelerator_type_is_placed_only_where_advertised(cluster: Any) -> None:
    on_a100 = Holder.options(accelerator_type="A100").remote()
    rayops.get(on_a100.resources.remote(), timeout=30)
    wait_for(
        "the A100 actor to hold its accelerator_type resource",
        lambda: (
            rayops.available_resources().get("accelerator_type:A100", 1.0) == pytest.approx(0.999)
        ),
    )
    nowhere = Holder.options(accelerator_type="H100").remote()
    with pytest.raises(rex.GetTimeoutError):
        rayops.get(nowhere.resources.remote(), timeout=1.5)
    rayops.kill(nowhere)
    rayops.kill(on_a100)


def test_actor_not_used_values_run(cluster: Any) -> None:
    h = Holder.options(
        runtime_env={},
        label_selector={},
        accelerator_type=None,
        enable_task_events=False,
        scheduling_strategy="DEFAULT",
        placement_group=None,
        placement_group_bundle_index=-1,
        placement_group_capture_child_tasks=False,
        fallback_strategy=None,
        object_store_memory=None,
        allow_out_of_order_execution=False,
    ).remote()
    assert rayops.get(h.resources.remote(), timeout=30) is not None
    rayops.kill(h)


# ----------------------------------------------------------------------- actor methods
@rayops.remote(max_restarts=2)
class Crasher:
    """Its process exits the first time a call sees no ``marker`` file (then writes it)."""

    def crash_first(self, marker: str) -> str:
        if not os.path.exists(marker):
            with open(marker, "w"):
                pass
            os._exit(1)
        return "ok"

    def pair(self) -> tuple[int, int]:
        return 1, 2


def test_actor_method_max_task_retries_and_num_returns(cluster: Any, tmp_path: Path) -> None:
    a = Crasher.remote()
    no_retry = a.crash_first.options(max_task_retries=0).remote(str(tmp_path / "a"))
    with pytest.raises(rex.RayActorError):
        rayops.get(no_retry, timeout=60)
    retried = a.crash_first.options(max_task_retries=1).remote(str(tmp_path / "b"))
    assert rayops.get(retried, timeout=60) == "ok"
    assert rayops.get(a.pair.options(num_returns=2, name=None).remote(), timeout=30) == [1, 2]
    rayops.kill(a)
