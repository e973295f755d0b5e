"""What a task hands back, packaged for its owner: return values (inline, or in the
node's store past ``INLINE_MAX_BYTES``), errors as ``RayTaskError``, generator items, and the
borrows settled before the reply. Runs on the thread that ran the task (the main thread,
an actor's pool thread, or an async actor's loop thread).
"""

from __future__ import annotations

import inspect
import os
from typing import TYPE_CHECKING, Any

from rayops import exceptions as rex
from rayops import ids, serialization
from rayops.protocol import worker_messages as wm
from rayops.protocol.task_messages import STREAMING, TaskSpec
from rayops.rpc import framed

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

Address = tuple[str, int]


class Results:
    """``Executor.results``: packages the results of the tasks this worker runs."""

    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw

    def returns(self, spec: TaskSpec, result: Any) -> list[Any]:
        n = spec.num_returns
        if n == 1:  # the common case
            return [self.package(spec, spec.return_ids[0], result)]
        if n == 0:
            values = []
        else:
            try:
                values = list(result)
            except TypeError as err:
                raise ValueError(
                    f"Task {spec.name} declared num_returns={n} but returned a "
                    f"non-iterable {type(result).__name__}."
                ) from err
            if len(values) != n:
                raise ValueError(
                    f"Task {spec.name} declared num_returns={n} but returned {len(values)} values."
                )
        return [self.package(spec, rid, v) for rid, v in zip(spec.return_ids, values, strict=True)]

    def package(self, spec: TaskSpec, oid: bytes, value: Any, meta: bytes = b"") -> Any:
        cw = self._cw
        sv = serialization.serialize(value, meta)
        entry = cw.objects.store_value(oid, sv)
        refs = sv.contained_refs
        return (entry, self._hand_over_refs(spec, refs) if refs else [])

    def _hand_over_refs(self, spec: TaskSpec, refs: list[Any]) -> list[tuple[bytes, Address]]:
        """Refs inside a return value: make the task's owner a borrower of each."""
        cw = self._cw
        contained = []
        remote: list[tuple[bytes, Address, Address]] = []
        for r in refs:
            oid, owner = r.binary(), r.owner_address
            contained.append((oid, owner))
            if owner == spec.owner:
                continue  # the owner holds its own object through the return value
            if owner == cw.address:
                cw.references.add_borrower(oid, spec.owner)
            else:
                remote.append((oid, owner, spec.owner))
        cw.references.register_borrows_blocking(remote)
        return contained

    def errors(self, spec: TaskSpec, err: BaseException) -> list[Any]:
        cw = self._cw
        task_err = rex.RayTaskError.from_exception(err, spec.name, os.getpid(), cw.node_ip)
        try:
            serialization.serialize(task_err)
        except Exception:
            task_err = rex.make_task_error_picklable(task_err)
        n = max(1, spec.num_returns) if spec.num_returns != STREAMING else 1
        ids_ = (
            spec.return_ids
            if spec.num_returns != STREAMING
            else (ids.object_id_for(spec.task_id, 2),)
        )
        return [
            self.package(spec, rid, task_err, serialization.META_ERROR) for rid in ids_[:n]
        ] or [self.package(spec, spec.return_ids[0], task_err, serialization.META_ERROR)]

    def error_at(self, spec: TaskSpec, index: int, err: BaseException) -> Any:
        cw = self._cw
        task_err = rex.RayTaskError.from_exception(err, spec.name, os.getpid(), cw.node_ip)
        return self.package(
            spec, ids.object_id_for(spec.task_id, index + 2), task_err, serialization.META_ERROR
        )

    def run_generator(
        self, spec: TaskSpec, conn: framed.Connection, fn: Any, args: Any, kwargs: Any
    ) -> int:
        gen = fn(*args, **kwargs)
        if not inspect.isgenerator(gen):
            raise TypeError(
                f"{spec.name} was called with num_returns='streaming' "
                "but is not a generator function."
            )
        index = 0
        try:
            for value in gen:
                item = self.package(spec, ids.object_id_for(spec.task_id, index + 2), value)
                self.send_item(conn, spec, index, item)
                index += 1
        except KeyboardInterrupt:
            raise
        except Exception as err:
            item = self.error_at(spec, index, err)
            self.send_item(conn, spec, index, item)
            index += 1
        return index

    def send_item(self, conn: framed.Connection, spec: TaskSpec, index: int, item: Any) -> None:
        entry, contained = item
        # Written by this thread, in order with the reply that follows the items.
        conn.send_threadsafe(
            framed.notify_tuple(wm.GeneratorItem(spec.task_id, index, entry, contained))
        )

    def settle_borrows(self, spec: TaskSpec) -> list[bytes]:
        """Borrowed refs we still hold after the task: tell their owners before replying."""
        cw = self._cw
        mine: list[bytes] = []
        if not cw.references.table.new_borrows:  # nothing borrowed since the last (no lock)
            return mine
        others: list[tuple[bytes, Address, Address]] = []
        for borrow in cw.references.drain_new_borrows():
            oid, owner = borrow.oid, borrow.owner
            if owner == spec.owner:
                mine.append(oid)
            else:
                others.append((oid, owner, cw.address))
        cw.references.register_borrows_blocking(others)
        if mine:  # so that the owner releases them if this process dies
            cw.references.introduce_blocking(spec.owner)
        return mine
