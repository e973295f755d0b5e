"""The GCS's reference counting of runtime_env packages (rayops.gcs.package_refs), as tables:
each row a sequence of events and, per event, the packages it deletes."""

from __future__ import annotations

import pytest

from rayops.gcs.package_refs import (
    TTL_VAR,
    ActorCreated,
    ActorDead,
    DeletePackage,
    JobFinished,
    JobStarted,
    JobUsesPackages,
    PackageRefEvent,
    PackageRefs,
    PackageStoreSettings,
    PackageUploaded,
    Tick,
)

U1 = "gcs://_ray_pkg_1111.zip"
U2 = "gcs://_ray_pkg_2222.zip"
A1 = b"\x01" * 16
TTL = 10.0

Row = list[tuple[PackageRefEvent, list[str]]]

CASES: dict[str, Row] = {
    "an upload nobody uses goes when its temporary reference expires": [
        (PackageUploaded(U1, 0.0), []),
        (Tick(9.9), []),
        (Tick(10.0), [U1]),
        (Tick(20.0), []),  # forgotten: not deleted twice
    ],
    "a job holds its packages past the temporary reference, until it finishes": [
        (JobStarted(1), []),
        (JobUsesPackages(1, (U1,)), []),
        (PackageUploaded(U1, 0.0), []),
        (Tick(100.0), []),
        (JobFinished(1), [U1]),
    ],
    "a job that finishes inside the temporary reference leaves it to the timer": [
        (JobStarted(1), []),
        (JobUsesPackages(1, (U1,)), []),
        (PackageUploaded(U1, 0.0), []),
        (JobFinished(1), []),
        (Tick(10.0), [U1]),
    ],
    "two jobs share a package: it goes with the last one": [
        (JobStarted(1), []),
        (JobStarted(2), []),
        (JobUsesPackages(1, (U1, U2)), []),
        (JobUsesPackages(2, (U1,)), []),
        (JobFinished(1), [U2]),
        (JobFinished(2), [U1]),
    ],
    "a finished job's late reference holds nothing": [
        (JobStarted(1), []),
        (JobFinished(1), []),
        (JobUsesPackages(1, (U1,)), []),
        (PackageUploaded(U1, 0.0), []),
        (Tick(10.0), [U1]),
    ],
    "a job never added holds nothing": [
        (JobUsesPackages(7, (U1,)), []),
        (PackageUploaded(U1, 0.0), []),
        (Tick(10.0), [U1]),
    ],
    "a detached actor keeps its job's package after the job": [
        (JobStarted(1), []),
        (JobUsesPackages(1, (U1,)), []),
        (ActorCreated(A1, (U1,)), []),
        (JobFinished(1), []),
        (Tick(1000.0), []),
        (ActorDead(A1), [U1]),
    ],
    "a second registration of an actor changes nothing; an unknown actor's death is a no-op": [
        (ActorCreated(A1, (U1,)), []),
        (ActorCreated(A1, (U2,)), []),
        (ActorDead(b"\x02" * 16), []),
        (ActorDead(A1), [U1]),
    ],
    "a re-upload extends the temporary reference": [
        (PackageUploaded(U1, 0.0), []),
        (PackageUploaded(U1, 5.0), []),
        (Tick(10.0), []),
        (Tick(15.0), [U1]),
    ],
    "a package deleted and uploaded again is tracked again": [
        (PackageUploaded(U1, 0.0), []),
        (Tick(10.0), [U1]),
        (PackageUploaded(U1, 20.0), []),
        (Tick(29.0), []),
        (Tick(30.0), [U1]),
    ],
    "a job's reference to a package never uploaded is released all the same": [
        (JobStarted(3), []),
        (JobUsesPackages(3, (U2,)), []),
        (JobFinished(3), [U2]),
    ],
}


@pytest.mark.parametrize("name", list(CASES))
def test_package_reference_table(name: str) -> None:
    refs = PackageRefs(ttl_s=TTL)
    for i, (event, deleted) in enumerate(CASES[name]):
        got = refs.apply(event)
        assert [a.uri for a in got] == deleted, f"step {i}: {event}"
        assert all(isinstance(a, DeletePackage) and a.reason for a in got)


def test_holders_and_next_expiry_describe_the_state() -> None:
    refs = PackageRefs(ttl_s=TTL)
    refs.apply(JobStarted(1))
    refs.apply(JobUsesPackages(1, (U1,)))
    refs.apply(ActorCreated(A1, (U1,)))
    refs.apply(PackageUploaded(U1, 3.0))
    assert refs.holders(U1) == {"job:1", f"actor:{A1.hex()}", "temporary"}
    assert refs.next_expiry() == 13.0
    assert refs.is_running(1) and not refs.is_running(2)
    assert refs.tracked() == {U1}


def test_deletion_reasons_name_what_released_the_package() -> None:
    refs = PackageRefs(ttl_s=0.0)
    refs.apply(JobStarted(4))
    refs.apply(JobUsesPackages(4, (U1,)))
    (action,) = refs.apply(JobFinished(4))
    assert action.reason == "job 4 finished"
    refs.apply(ActorCreated(A1, (U2,)))
    (action,) = refs.apply(ActorDead(A1))
    assert action.reason == f"detached actor {A1.hex()} died"


def test_settings_read_the_variable_and_name_it_when_bad() -> None:
    assert PackageStoreSettings.from_env({}).temporary_reference_s == 600.0
    assert PackageStoreSettings.from_env({TTL_VAR: "2.5"}).temporary_reference_s == 2.5
    for bad in ("-1", "soon", "nan"):
        with pytest.raises(ValueError, match=f"{TTL_VAR}='{bad}': expected a number"):
            PackageStoreSettings.from_env({TTL_VAR: bad})
    with pytest.raises(ValueError, match="expiration must be >= 0"):
        PackageRefs(ttl_s=-1)
