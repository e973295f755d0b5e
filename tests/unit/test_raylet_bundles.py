"""A raylet's share of placement groups (raylet/bundles.py) and the bundle resource names
every process agrees on (protocol/bundle_resources.py), without processes."""

from __future__ import annotations

import pytest

from rayops.protocol import bundle_resources as br
from rayops.raylet.bundles import BundleBook
from rayops.raylet.resources import NodeResources

PG = "ab" * br.PG_ID_BYTES
OTHER = "cd" * br.PG_ID_BYTES


def _node() -> tuple[NodeResources, BundleBook]:
    res = NodeResources({"CPU": 4.0, "GPU": 2.0, "memory": 100.0})
    return res, BundleBook(res)


def test_prepare_takes_all_bundles_or_none() -> None:
    res, book = _node()
    assert book.prepare(PG, [(0, {"CPU": 2.0}), (1, {"CPU": 2.0})])
    assert res.available_dict()["CPU"] == 0.0
    # Idempotent: the GCS may ask again after a lost reply.
    assert book.prepare(PG, [(0, {"CPU": 2.0}), (1, {"CPU": 2.0})])
    assert res.available_dict()["CPU"] == 0.0
    # A group that does not fit entirely takes nothing.
    assert not book.prepare(OTHER, [(0, {"GPU": 1.0}), (1, {"CPU": 1.0})])
    assert res.available_dict()["GPU"] == 2.0 and (OTHER, 0) not in book


def test_commit_adds_the_groups_resources_and_release_takes_them_back() -> None:
    res, book = _node()
    book.prepare(PG, [(0, {"CPU": 1.0}), (1, {"CPU": 2.0, "GPU": 1.0})])
    assert not book.commit(PG, [0, 2])  # bundle 2 was never prepared here: nothing changes
    assert f"CPU_group_{PG}" not in res.total_dict()
    assert book.commit(PG, [0, 1])
    assert book.commit(PG, [0, 1])  # idempotent
    total = res.total_dict()
    assert total[f"CPU_group_0_{PG}"] == 1.0 and total[f"CPU_group_1_{PG}"] == 2.0
    assert total[f"CPU_group_{PG}"] == 3.0 and total[f"GPU_group_{PG}"] == 1.0
    assert total[f"bundle_group_{PG}"] == 2 * br.MARKER_UNITS
    # A task in bundle 1 fits; one asking more than the bundle has does not.
    assert res.fits(br.demand_in_bundle({"CPU": 2.0}, PG, 1))
    assert not res.fits(br.demand_in_bundle({"CPU": 3.0}, PG, 1))
    assert res.fits(br.demand_in_bundle({"CPU": 3.0}, PG, -1))  # any bundle: the wildcard
    released = book.release(PG, [1])
    assert [b.index for b in released] == [1]
    assert f"CPU_group_1_{PG}" not in res.total_dict()
    assert res.total_dict()[f"CPU_group_{PG}"] == 1.0
    book.release(PG)
    assert not any(br.is_bundle_resource(k) for k in res.total_dict())
    assert res.available_dict() == {"CPU": 4.0, "GPU": 2.0, "memory": 100.0}


@pytest.mark.parametrize(
    ("name", "group"),
    [
        (f"CPU_group_0_{PG}", PG),
        (f"CPU_group_{PG}", PG),
        (f"bundle_group_3_{PG}", PG),
        ("CPU", None),
        ("my_group_resource", None),  # merely contains the infix: not a group's
        (f"x_group_{PG[:-2]}", None),  # not an id's length
    ],
)
def test_group_of(name: str, group: str | None) -> None:
    assert br.group_of(name) == group


def test_a_demand_in_a_bundle_reads_back_as_its_plain_shape() -> None:
    for index in (-1, 0, 2):
        demand = br.demand_in_bundle({"CPU": 1.0, "GPU": 0.5}, PG, index)
        assert br.plain_shape(demand) == {"CPU": 1.0, "GPU": 0.5}
        assert all(br.group_of(k) == PG for k in demand)
    # A zero-resource task still asks for the marker, so it lands on a node of the group.
    assert br.demand_in_bundle({}, PG, -1) == {f"bundle_group_{PG}": br.MARKER_DEMAND}
    assert br.plain_resources({"CPU": 2.0, f"CPU_group_{PG}": 1.0}) == {"CPU": 2.0}


def test_a_lease_in_a_gpu_bundle_is_given_that_bundles_devices() -> None:
    _res, book = _node()  # GPU instances 0 and 1
    book.prepare(PG, [(0, {"GPU": 1.0}), (1, {"GPU": 1.0})])
    book.commit(PG, [0, 1])
    first = book.take_devices(br.demand_in_bundle({"GPU": 1.0}, PG, 1))
    assert first is not None and first.instances == ((1, 1.0),)  # bundle 1 took device 1
    assert book.take_devices(br.demand_in_bundle({"GPU": 1.0}, PG, 1)) is None  # in use
    # Any bundle: the first with room (bundle 0, device 0); halves share a device.
    halves = [book.take_devices(br.demand_in_bundle({"GPU": 0.5}, PG, -1)) for _ in range(2)]
    assert [h.instances for h in halves if h] == [((0, 0.5),), ((0, 0.5),)]
    assert book.take_devices(br.demand_in_bundle({"CPU": 1.0}, PG, 0)) is None  # no GPU asked
    book.give_back(first)
    again = book.take_devices(br.demand_in_bundle({"GPU": 1.0}, PG, 1))
    assert again is not None and again.instances == ((1, 1.0),)
    assert br.split_bundle_resource(f"GPU_group_1_{PG}") == ("GPU", 1, PG)
    assert br.split_bundle_resource(f"GPU_group_{PG}") == ("GPU", -1, PG)
    assert br.split_bundle_resource("GPU") is None
