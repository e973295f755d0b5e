"""The reference table as a state machine: event sequences in, instructions out.

No processes, no sockets, no core worker: each case is a list of events applied to a
fresh ``ReferenceTable`` and the instructions every event must return.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from rayops import ids
from rayops.core_worker.references import (
    ActorHandleOutOfScope,
    DeleteStoreCopy,
    FreeValue,
    Instruction,
    ReferenceTable,
    RegisterBorrow,
    SendRemoveBorrower,
)

ME = ("127.0.0.1", 1000)
OWNER = ("127.0.0.1", 2000)  # another process that owns what we borrow
BORROWER = ("127.0.0.1", 3000)
OTHER_BORROWER = ("127.0.0.1", 3001)

A, B, C = (bytes([i]) * ids.OBJECT_ID_LEN for i in (1, 2, 3))
ACTOR_ID = bytes([7]) * ids.TASK_ID_LEN
HANDLE = ids.object_id_for(ACTOR_ID, ids.ACTOR_HANDLE_INDEX)


@dataclass(frozen=True)
class Step:
    """One event (a table method and its arguments) and the instructions it must return
    (None: the event returns nothing, or True for an accepted ``add_borrower``: the
    events that never free anything)."""

    event: str
    args: tuple[Any, ...]
    expect: list[Instruction] | None = None
    kwargs: tuple[tuple[str, Any], ...] = ()

    def apply(self, table: ReferenceTable) -> Any:
        method: Callable[..., Any] = getattr(table, self.event)
        return method(*self.args, **dict(self.kwargs))


def own(oid: bytes, local: int = 1, **kw: Any) -> Step:
    return Step("add_owned", (oid, ME), None, (("local", local), *kw.items()))


CASES: dict[str, list[Step]] = {
    "owned, last handle dropped": [
        own(A),
        Step("remove_local", (A,), [FreeValue(A)]),
    ],
    "owned value freed deletes its store copy": [
        own(A, in_store=True),
        Step("add_local", (A, ME)),
        Step("remove_local", (A,), []),
        Step("remove_local", (A,), [FreeValue(A), DeleteStoreCopy(A)]),
    ],
    "a task's return stored in shared memory, freed later": [
        own(A),
        Step("on_owned_value_stored", (A, True, (), ME), []),
        Step("remove_local", (A,), [FreeValue(A), DeleteStoreCopy(A)]),
    ],
    "a task's return arriving after its refs were dropped is dropped at once": [
        own(A),
        Step("remove_local", (A,), [FreeValue(A)]),
        Step(
            "on_owned_value_stored",
            (A, True, ((B, OWNER), (C, ME)), ME),
            # B's owner made us a borrower when the worker returned it; C is ours.
            [FreeValue(A), DeleteStoreCopy(A), SendRemoveBorrower(B, OWNER)],
        ),
    ],
    "borrower release": [
        own(A),
        Step("add_borrower", (A, BORROWER)),
        Step("remove_local", (A,), []),  # the borrower still holds it
        Step("remove_borrower", (A, BORROWER), [FreeValue(A)]),
    ],
    "two borrowers: freed when the second releases": [
        own(A),
        Step("add_borrower", (A, BORROWER)),
        Step("add_borrower", (A, OTHER_BORROWER)),
        Step("remove_local", (A,), []),
        Step("remove_borrower", (A, BORROWER), []),
        Step("remove_borrower", (A, OTHER_BORROWER), [FreeValue(A)]),
    ],
    "borrower connection lost": [
        own(A),
        own(B),
        Step("add_borrower", (A, BORROWER)),
        Step("add_borrower", (B, BORROWER)),
        Step("add_borrower", (B, OTHER_BORROWER)),
        Step("remove_local", (A,), []),
        Step("remove_local", (B,), []),
        # A goes; B is still held by the other borrower.
        Step("borrower_lost", (BORROWER,), [FreeValue(A)]),
        Step("borrower_lost", (OTHER_BORROWER,), [FreeValue(B)]),
    ],
    "a lost connection of a process that borrowed nothing frees nothing": [
        own(A),
        Step("borrower_lost", (BORROWER,), []),
        Step("remove_local", (A,), [FreeValue(A)]),
    ],
    "nested refs freed when the outer goes": [
        own(B),
        own(A, contains=(B,)),  # put([ref_b])
        Step("remove_local", (B,), []),  # still inside A's value
        Step("remove_local", (A,), [FreeValue(A), FreeValue(B)]),
    ],
    "nested borrowed refs of a return value released with it": [
        own(A),
        Step("on_owned_value_stored", (A, False, ((B, OWNER),), ME), []),
        # A value holding B is ours; B was registered with its owner by the worker.
        Step("remove_local", (A,), [FreeValue(A), FreeValue(B), SendRemoveBorrower(B, OWNER)]),
    ],
    "pinned submitted args released on completion": [
        own(A),
        own(B),
        Step("pin_submitted", ([A, B],)),
        Step("remove_local", (A,), []),
        Step("remove_local", (B,), []),
        Step("unpin_submitted", ([A, B],), [FreeValue(A), FreeValue(B)]),
    ],
    "an arg passed to two tasks lives until both finish": [
        own(A),
        Step("pin_submitted", ([A],)),
        Step("pin_submitted", ([A],)),
        Step("remove_local", (A,), []),
        Step("unpin_submitted", ([A],), []),
        Step("unpin_submitted", ([A],), [FreeValue(A)]),
    ],
    "actor handle out of scope": [
        own(HANDLE),
        Step("remove_local", (HANDLE,), [ActorHandleOutOfScope(ACTOR_ID)]),
    ],
    "a borrowed ref, registered with its owner, dropped": [
        Step("on_deserialized", (A, OWNER)),
        Step("drain_new_borrows", (), [RegisterBorrow(A, OWNER)]),
        Step("drain_new_borrows", (), []),  # told once
        Step("remove_local", (A,), [FreeValue(A), SendRemoveBorrower(A, OWNER)]),
    ],
    "a borrowed ref dropped before its owner was told: nothing to send": [
        Step("on_deserialized", (A, OWNER)),
        Step("remove_local", (A,), [FreeValue(A)]),
        Step("drain_new_borrows", (), []),
    ],
    "a generator item pinned until taken": [
        Step("add_owned_pinned", (A, ME)),
        Step("add_local", (A, ME)),  # the ref handed out when the item is taken
        Step("release_nested", (A,), []),
        Step("remove_local", (A,), [FreeValue(A)]),
    ],
    "events on unknown objects are ignored": [
        Step("remove_local", (A,), []),
        Step("unpin_submitted", ([A],), []),
        Step("release_nested", (A,), []),
        Step("remove_borrower", (A, BORROWER), []),
        Step("borrower_lost", (BORROWER,), []),
    ],
}


@pytest.mark.parametrize("steps", list(CASES.values()), ids=list(CASES))
def test_event_sequences_give_these_instructions(steps: list[Step]) -> None:
    table = ReferenceTable()
    for i, step in enumerate(steps):
        got = step.apply(table)
        if step.expect is None:
            assert got is None or got is True, f"step {i} {step.event}: returned {got!r}"
        else:
            assert list(got) == step.expect, f"step {i} {step.event}{step.args}"


@pytest.mark.parametrize("steps", list(CASES.values()), ids=list(CASES))
def test_nothing_is_left_once_every_ref_is_gone(steps: list[Step]) -> None:
    table = ReferenceTable()
    for step in steps:
        step.apply(table)
    assert len(table) == 0


def test_add_borrower_refused_for_an_object_we_do_not_own() -> None:
    table = ReferenceTable()
    table.on_deserialized(A, OWNER)
    assert table.add_borrower(A, BORROWER) is False
    assert table.add_borrower(B, BORROWER) is False  # unknown
    own(C).apply(table)
    assert table.add_borrower(C, BORROWER) is True


def test_a_freed_outer_releases_a_chain_of_nested_values() -> None:
    table = ReferenceTable()
    table.add_owned(C, ME)
    table.add_owned(B, ME, contains=[C])
    table.add_owned(A, ME, contains=[B])
    assert list(table.remove_local(C)) == []
    assert list(table.remove_local(B)) == []
    freed = list(table.remove_local(A))
    assert sorted(freed, key=lambda ins: ins.oid) == [FreeValue(A), FreeValue(B), FreeValue(C)]
    assert len(table) == 0


def test_instructions_are_frozen_values() -> None:
    ins = FreeValue(A)
    with pytest.raises(AttributeError):
        ins.oid = B  # type: ignore[misc]
    assert ins == FreeValue(A) and hash(ins) == hash(FreeValue(A))


def test_a_lost_borrower_is_forgotten_everywhere() -> None:
    """Its index entry goes with it: a later borrower at the same address starts afresh."""
    table = ReferenceTable()
    table.add_owned(A, ME)
    table.add_owned(B, ME)
    table.add_borrower(A, BORROWER)
    table.add_borrower(B, BORROWER)
    assert list(table.remove_borrower(A, BORROWER)) == []  # A still has its handle
    assert list(table.borrower_lost(BORROWER)) == []  # B still has its handle
    assert list(table.borrower_lost(BORROWER)) == []
    table.add_borrower(A, BORROWER)
    assert list(table.remove_local(A)) == []
    assert list(table.borrower_lost(BORROWER)) == [FreeValue(A)]
    assert list(table.remove_local(B)) == [FreeValue(B)]
    assert len(table) == 0
