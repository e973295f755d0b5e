"""What this process tells the state API about the object references it holds.

Answers ``ListReferences`` (from the API server, over this core worker's framed server) with
one ``ObjectReference`` per entry of the reference table, typed as Ray's ``ray memory``
does: PINNED_IN_MEMORY (an owned value with a shared-memory copy, held by a local handle),
ACTOR_HANDLE (an actor's handle token), LOCAL_REFERENCE (a local handle),
USED_BY_PENDING_TASK (only pending tasks hold it), CAPTURED_IN_OBJECT (only other objects
hold it), else UNKNOWN_STATUS. Sizes come from the node stores (the API server joins them);
a task's return carries its task's state while the task is pending at this owner. Runs on
the IO thread (the task records live there); the reference table is read under its own lock.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from rayops import ids
from rayops.core_worker.references import RefEntry
from rayops.core_worker.task_events import OWNER_STATE
from rayops.core_worker.task_metrics import UNCOUNTED
from rayops.protocol import state_messages as sm
from rayops.protocol.state_messages import TASK_STATES

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

__all__ = ["list_references", "reference_type"]


_HANDLE_SUFFIX = ids.ACTOR_HANDLE_INDEX.to_bytes(ids.OBJECT_ID_LEN - ids.TASK_ID_LEN, "little")


def reference_type(oid: bytes, e: RefEntry) -> str:
    if oid.endswith(_HANDLE_SUFFIX):  # an actor's handle token (its count is the handles)
        return "ACTOR_HANDLE"
    if e.local > 0 and e.owned and e.in_store:
        return "PINNED_IN_MEMORY"
    if e.local > 0:
        return "LOCAL_REFERENCE"
    if e.submitted > 0:
        return "USED_BY_PENDING_TASK"
    if e.nested > 0:
        return "CAPTURED_IN_OBJECT"
    return "UNKNOWN_STATUS"


def list_references(cw: CoreWorker) -> sm.ReferencesReply:
    refs = []
    machine = cw.tasks.machine
    for oid, e in cw.references.table.snapshot():
        status = ""
        if e.owned:
            record = machine.record(ids.task_id_of(oid))
            if record is not None and record.mstate != UNCOUNTED:
                status = TASK_STATES[OWNER_STATE[record.mstate]]
            else:
                status = "FINISHED"
        refs.append(
            sm.ObjectReference(
                oid, reference_type(oid, e), -1, e.owned, e.local, e.submitted, e.nested,
                len(e.borrowers or ()), status,
            )
        )  # fmt: skip
    return sm.ReferencesReply(
        cw.worker_id, os.getpid(), cw.job_id, cw.mode == "driver", tuple(refs)
    )
