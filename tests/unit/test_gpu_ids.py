"""GPU ids as Ray hands them out: the node's own device list, fractional GPUs packed onto
shared devices, whole GPUs on free ones (rayops.raylet.resources, no processes)."""

from __future__ import annotations

import pytest

from rayops.raylet.resources import (
    NodeResources,
    check_gpu_count,
    device_assignment,
    pick_instances,
    visible_device_ids,
)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        (None, None),  # unset: every device, ids are indices
        ("", []),
        ("NoDevFiles", []),
        ("2,3", ["2", "3"]),
        ("0", ["0"]),
        (" 1 , 4 ", ["1", "4"]),
        ("GPU-5a1b,GPU-77ff", ["GPU-5a1b", "GPU-77ff"]),  # UUIDs are kept as given
    ],
)
def test_visible_device_ids(env: str | None, expected: list[str] | None) -> None:
    assert visible_device_ids(env) == expected


@pytest.mark.parametrize(
    ("num_gpus", "visible", "ok"),
    [(2, ["2", "3"], True), (1, ["2", "3"], True), (3, ["2", "3"], False), (4, None, True)],
)
def test_gpu_count_against_visible_devices(
    num_gpus: float, visible: list[str] | None, ok: bool
) -> None:
    if ok:
        check_gpu_count(num_gpus, visible)
    else:
        with pytest.raises(ValueError, match="CUDA_VISIBLE_DEVICES lists only 2"):
            check_gpu_count(num_gpus, visible)


@pytest.mark.parametrize(
    ("free", "demand", "expected"),
    [
        ([1.0, 1.0], 1, [(0, 1.0)]),  # whole: lowest free device
        ([0.0, 1.0], 1, [(1, 1.0)]),
        ([0.5, 1.0], 1, [(1, 1.0)]),  # a part-used device is not whole
        ([0.5, 0.5], 1, None),  # 1 GPU free in total, but not on one device
        ([1.0, 1.0], 2, [(0, 1.0), (1, 1.0)]),
        ([1.0, 0.5, 1.0], 2, [(0, 1.0), (2, 1.0)]),
        ([1.0, 1.0], 0.5, [(0, 0.5)]),  # fraction: lowest index on ties
        ([0.5, 1.0], 0.5, [(0, 0.5)]),  # best fit: the fullest device it still fits on
        ([1.0, 0.5], 0.5, [(1, 0.5)]),
        ([0.25, 0.75], 0.5, [(1, 0.5)]),  # 0.25 is too little
        ([0.25, 0.25], 0.5, None),
        ([0.3, 0.6, 1.0], 0.3, [(0, 0.3)]),
        ([], 0.5, None),
    ],
)
def test_pick_instances(
    free: list[float], demand: float, expected: list[tuple[int, float]] | None
) -> None:
    assert pick_instances(free, demand) == expected


@pytest.mark.parametrize(
    ("instances", "device_ids", "expected"),
    [
        ({"GPU": [(0, 1.0)]}, {"GPU": ["2", "3"]}, {"GPU": [("2", 1.0)]}),
        ({"GPU": [(1, 0.5)]}, {"GPU": ["2", "3"]}, {"GPU": [("3", 0.5)]}),
        ({"GPU": [(0, 1.0), (1, 1.0)]}, {"GPU": ["2", "3"]}, {"GPU": [("2", 1.0), ("3", 1.0)]}),
        # no device list (CUDA_VISIBLE_DEVICES unset): indices, ints, as Ray's get_gpu_ids()
        ({"GPU": [(1, 1.0)]}, {}, {"GPU": [(1, 1.0)]}),
        ({}, {"GPU": ["2", "3"]}, {}),
    ],
)
def test_device_assignment(
    instances: dict[str, list[tuple[int, float]]],
    device_ids: dict[str, list[str]],
    expected: dict[str, list[tuple[object, float]]],
) -> None:
    assert device_assignment(instances, device_ids) == expected


def test_half_gpu_tasks_share_devices_as_in_ray() -> None:
    """Four 0.5 GPU leases on CUDA_VISIBLE_DEVICES=2,3: two per device, as Ray 2.60 packs."""
    node = NodeResources({"CPU": 8, "GPU": 2}, {"GPU": ["2", "3"]})
    allocs = [node.acquire({"GPU": 0.5}) for _ in range(4)]
    assert [node.assigned_ids(a)["GPU"] for a in allocs] == [
        [("2", 0.5)],
        [("2", 0.5)],
        [("3", 0.5)],
        [("3", 0.5)],
    ]
    assert not node.fits({"GPU": 0.5})
    node.release(allocs[2])
    # the freed half on device 3 is the only room; a whole GPU does not fit
    assert not node.fits({"GPU": 1})
    assert node.assigned_ids(node.acquire({"GPU": 0.5})) == {"GPU": [("3", 0.5)]}


def test_whole_gpus_and_release() -> None:
    node = NodeResources({"GPU": 2}, {"GPU": ["2", "3"]})
    both = node.acquire({"GPU": 2})
    assert node.assigned_ids(both) == {"GPU": [("2", 1.0), ("3", 1.0)]}
    assert not node.fits({"GPU": 0.1})
    node.release(both)
    one = node.acquire({"GPU": 1})
    half = node.acquire({"GPU": 0.5})
    assert node.assigned_ids(one) == {"GPU": [("2", 1.0)]}
    assert node.assigned_ids(half) == {"GPU": [("3", 0.5)]}


def test_without_a_device_list_ids_are_indices() -> None:
    node = NodeResources({"GPU": 2})
    node.acquire({"GPU": 1})
    assert node.assigned_ids(node.acquire({"GPU": 1})) == {"GPU": [(1, 1.0)]}


def test_fewer_device_ids_than_gpus_is_refused() -> None:
    with pytest.raises(ValueError, match="GPU: 3 instances but only 2 device ids"):
        NodeResources({"GPU": 3}, {"GPU": ["2", "3"]})


def test_resizing_a_lease_keeps_its_devices() -> None:
    """An actor's lease shrinks after placement (1 CPU, then 0): its GPU must stay the device
    its worker was told about, even when a lower one has become free meanwhile."""
    node = NodeResources({"CPU": 2, "GPU": 2}, {"GPU": ["2", "3"]})
    first = node.acquire({"CPU": 1, "GPU": 1})
    actor = node.acquire({"CPU": 1, "GPU": 1})
    assert node.assigned_ids(actor) == {"GPU": [("3", 1.0)]}
    node.release(first)  # device 2 is free now
    node.release(actor)
    resized = node.acquire({"GPU": 1}, keep=actor.instances)
    assert node.assigned_ids(resized) == {"GPU": [("3", 1.0)]}
    assert node.assigned_ids(node.acquire({"GPU": 1})) == {"GPU": [("2", 1.0)]}


def test_resizing_to_another_amount_picks_afresh() -> None:
    node = NodeResources({"GPU": 2}, {"GPU": ["2", "3"]})
    whole = node.acquire({"GPU": 1})  # device 2
    node.acquire({"GPU": 0.5})  # device 3, half used
    node.release(whole)
    # half of a GPU packs best onto device 3, not onto the device the lease had
    assert node.assigned_ids(node.acquire({"GPU": 0.5}, keep=whole.instances)) == {
        "GPU": [("3", 0.5)]
    }
