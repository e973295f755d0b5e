"""The decision of which dead sessions' directories to reclaim: a table, no processes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from rayops.node import session as sess
from rayops.node.reclaim import (
    Removal,
    SessionFacts,
    ShmDirFacts,
    plan_reclaim,
)

ME, OTHER = 1000, 1001
A = "session_2026-01-01_00-00-00_000001_11"
B = "session_2026-01-01_00-00-00_000002_22"
TEMP = "/tmp/t"


def shm_path(name: str, node: str = "abcd1234") -> str:
    return f"/dev/shm/rayops-{name}-{node}"


def record(name: str, node: str = "abcd1234") -> sess.NodeRecord:
    return sess.NodeRecord(
        session_dir=f"{TEMP}/{name}",
        temp_dir=TEMP,
        node_id=node + "0" * 48,
        node_ip="127.0.0.1",
        gcs_address="127.0.0.1:1",
        raylet_port=2,
        shm_dir=shm_path(name, node),
        is_head=True,
        pids={"gcs": 10, "raylet": 11},
    )


def session(
    name: str,
    *,
    uid: int = ME,
    has_record: bool = True,
    spill: bool = False,
    rec: sess.NodeRecord | None = None,
) -> SessionFacts:
    return SessionFacts(
        name=name,
        session_dir=f"{TEMP}/{name}",
        uid=uid,
        record=(rec or record(name)) if has_record else None,
        spill_dir=f"{TEMP}/{name}/spill",
        spill_has_files=spill,
    )


@dataclass
class Case:
    shm: list[ShmDirFacts]
    sessions: list[SessionFacts]
    live: dict[str, set[int]] = field(default_factory=dict)
    want: list[tuple[str, str]] = field(default_factory=list)  # (kind, session)


CASES = {
    # The case: a process group SIGKILLed, nothing of it alive.
    "dead session: its shm dir goes": Case(
        [ShmDirFacts(shm_path(A), A, ME)], [session(A)], {A: set()}, [("shm", A)]
    ),
    "dead session with spilled objects: shm and spill go": Case(
        [ShmDirFacts(shm_path(A), A, ME)], [session(A, spill=True)], {}, [("shm", A), ("spill", A)]
    ),
    "dead session whose shm dir is already gone: spill still goes": Case(
        [], [session(A, spill=True)], {}, [("spill", A)]
    ),
    "dead session with an empty spill dir: nothing to do for spill": Case([], [session(A)], {}, []),
    "a live daemon keeps its session": Case(
        [ShmDirFacts(shm_path(A), A, ME)], [session(A, spill=True)], {A: {11}}, []
    ),
    "one live session beside a dead one: only the dead one goes": Case(
        [ShmDirFacts(shm_path(A), A, ME), ShmDirFacts(shm_path(B), B, ME)],
        [session(A), session(B)],
        {A: set(), B: {10}},
        [("shm", A)],
    ),
    "killed during start-up (no node.json), nothing alive: reclaimed": Case(
        [ShmDirFacts(shm_path(A), A, ME)], [session(A, has_record=False)], {}, [("shm", A)]
    ),
    "no node.json yet but a process names the session (starting now): kept": Case(
        [ShmDirFacts(shm_path(A), A, ME)], [session(A, has_record=False)], {A: {12}}, []
    ),
    "session not under this temp dir: whose it is is unknown, kept": Case(
        [ShmDirFacts(shm_path(B), B, ME)], [session(A)], {}, []
    ),
    "shm dir of another user: kept": Case(
        [ShmDirFacts(shm_path(A), A, OTHER)], [session(A)], {}, []
    ),
    "session dir of another user: neither shm nor spill touched": Case(
        [ShmDirFacts(shm_path(A), A, ME)], [session(A, uid=OTHER, spill=True)], {}, []
    ),
    "shm dir not the one the record names: kept": Case(
        [ShmDirFacts(shm_path(A, "ffff0000"), A, ME)], [session(A)], {}, []
    ),
}


@pytest.mark.parametrize("case", CASES.values(), ids=list(CASES))
def test_plan_reclaim(case: Case) -> None:
    sessions = {s.name: s for s in case.sessions}
    got = plan_reclaim(case.shm, sessions, case.live, ME)
    assert [(r.kind, r.session_name) for r in got] == case.want
    for r in got:
        expected = shm_path(r.session_name) if r.kind == "shm" else f"{TEMP}/{r.session_name}/spill"
        assert r == Removal(expected, r.kind, r.session_name)


@pytest.mark.parametrize(
    ("name", "session_name"),
    [
        (f"rayops-{A}-abcd1234", A),
        (f"rayops-{A}-ABCD1234", A),
        (f"rayops-{A}-abcd123", None),  # not 8 hex digits
        (f"rayops-{A}-abcdefgz", None),
        ("rayops-test-29484bf5501a4701befbe25c9bec9f52", None),  # not a session's
        ("prom_metrics_service_discovery.json", None),
        (f"rayops-{A}", None),
    ],
)
def test_session_of_shm_dir(name: str, session_name: str | None) -> None:
    assert sess.session_of_shm_dir(name) == session_name


def test_shm_dir_names_round_trip() -> None:
    """The parser reads back what session.shm_dir_for writes."""
    path = sess.shm_dir_for(f"{TEMP}/{A}", "0123abcd" + "9" * 48)
    assert sess.session_of_shm_dir(path.rsplit("/", 1)[1]) == A
