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


# The shell over the GCS's real in-memory tables (no processes, no gRPC), with a fake clock:
# table changes reach it through the publisher's in-process listeners.


class _Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _put_package(state: object, uri: str) -> None:
    from rayops.envs import packaging

    data = b"PK" + uri.encode()
    packaging.upload(
        packaging.Package(uri, data, strip_top=False),
        lambda k: state.kv.exists(packaging.PACKAGE_NAMESPACE, k),  # type: ignore[attr-defined]
        lambda k, v: state.kv.put(packaging.PACKAGE_NAMESPACE, k, v, overwrite=True),  # type: ignore[attr-defined]
    )


def _stored(state: object, uri: str) -> bool:
    from rayops.envs import packaging

    return bool(state.kv.keys(packaging.PACKAGE_NAMESPACE, f"{uri}:".encode()))  # type: ignore[attr-defined]


def test_the_shell_follows_the_tables_and_deletes_released_packages() -> None:
    from rayops.gcs.actor_table import ActorRecord
    from rayops.gcs.package_refs_service import PackageReferences
    from rayops.gcs.server import GcsState
    from rayops.gcs.types import JobInfo

    state = GcsState()
    clock = _Clock()
    shell = PackageReferences(state, PackageStoreSettings(TTL), clock)
    state.jobs.add(JobInfo(job_id=1, driver_pid=1, driver_ip="127.0.0.1", namespace="n"))
    assert shell.add_job_references(1, [U1]) is True
    assert shell.add_job_references(2, [U2]) is False  # never added
    _put_package(state, U1)
    _put_package(state, U2)
    assert shell.refs.holders(U1) == {"job:1", "temporary"}
    # A detached actor registered with an env holding U2 keeps it.
    wire = '{"working_dir": "' + U2 + '"}'
    rec = ActorRecord(
        actor_id=A1, class_name="K", job_id=1, name="", namespace="n", is_detached=True,
        max_restarts=0, placement_resources={}, hold_resources={}, creation_spec=b"",
        handle_meta=b"", owner_address="", runtime_env=wire,
    )  # fmt: skip
    state.actors.register(rec, get_if_exists=False)
    assert shell.refs.holders(U2) == {f"actor:{A1.hex()}", "temporary"}
    clock.now += TTL
    shell.apply(Tick(clock.now))
    assert _stored(state, U1) and _stored(state, U2)
    state.jobs.mark_finished(1)
    assert not _stored(state, U1) and _stored(state, U2)
    state.actors.killed(rec, no_restart=True)
    assert not _stored(state, U2)
    assert shell.deleted == 2 and shell.refs.tracked() == set()
