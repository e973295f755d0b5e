"""The shell of reference counting: feeds ``ReferenceTable`` its events and carries out
the instructions it returns; answers the owner-side messages of borrowers.

Owns: ``cw.references`` (the table behind it is ``references.ReferenceTable``); freeing
values (the memory-store entry, the shared-memory copy, batched into one ``store_delete``
to the raylet per loop turn); telling owners we hold or dropped their objects
(``add_borrower`` / ``remove_borrower``); telling the GCS an owned actor handle went out
of scope; and the owner handlers ``get_object``, ``add_borrower``, ``remove_borrower``
and ``hello``. It makes no decision about when an object dies: the table does.

Threads: the event methods are ``@any_thread`` (see the rule in ``references``):
instructions that only touch this process's memory run on the calling thread, the ones
that need a connection are posted to the IO thread. Handlers run on the IO thread.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rayops import exceptions as rex
from rayops import serialization
from rayops.core_worker.memory_store import Entry
from rayops.core_worker.references import (
    ActorHandleOutOfScope,
    DeleteStoreCopy,
    FreeValue,
    Instruction,
    RefEntry,
    ReferenceTable,
    RegisterBorrow,
    SendRemoveBorrower,
)
from rayops.core_worker.threads import any_thread, io_thread, user_thread
from rayops.protocol import raylet_messages as rm
from rayops.protocol import worker_messages as wm

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker
    from rayops.rpc import framed

logger = logging.getLogger(__name__)

Address = tuple[str, int]


class References:
    """``cw.references``: this process's reference counts and the I/O they imply."""

    def __init__(self, cw: CoreWorker) -> None:
        self._cw = cw
        self.table = table = ReferenceTable()
        self._ms = cw.memory_store
        self._delete_q: list[bytes] = []
        # Owners we said hello to (see "borrower liveness").
        self._introduced: set[Address] = set()
        self._delete_scheduled = False
        # Events that never free anything go straight to the table (hot: every put/copy).
        self.get: Callable[[bytes], RefEntry | None] = table.get
        self.is_owned: Callable[[bytes], bool] = table.is_owned
        self.add_owned = table.add_owned
        self.add_owned_pinned: Callable[[bytes, Address], None] = table.add_owned_pinned
        self.add_local: Callable[[bytes, Address], None] = table.add_local
        self.on_deserialized: Callable[[bytes, Address], None] = table.on_deserialized
        self.pin_submitted: Callable[[Iterable[bytes]], None] = table.pin_submitted
        self.add_borrower: Callable[[bytes, Address], bool] = table.add_borrower
        self.drain_new_borrows: Callable[[], list[RegisterBorrow]] = table.drain_new_borrows
        self._table_remove_local = table.remove_local
        self._do: dict[type, Callable[[Any], None]] = {
            FreeValue: self._free_value,
            DeleteStoreCopy: self._delete_store_copy,
            SendRemoveBorrower: self._send_remove_borrower_ins,
            RegisterBorrow: self._register_borrow_ins,
            ActorHandleOutOfScope: self._actor_out_of_scope,
        }

    def __len__(self) -> int:
        return len(self.table)

    def __contains__(self, oid: bytes) -> bool:
        return oid in self.table

    # ------------------------------------------------------------- events
    @any_thread
    def remove_local(self, oid: bytes) -> None:
        for ins in self._table_remove_local(oid):  # hot (ObjectRef.__del__): no execute()
            if type(ins) is FreeValue:
                self._ms.delete(ins.oid)
            else:
                self._do[type(ins)](ins)

    @any_thread
    def unpin_submitted(self, oids: Iterable[bytes]) -> None:
        ins = self.table.unpin_submitted(oids)
        if ins:
            self.execute(ins)

    @any_thread
    def release_nested(self, oid: bytes) -> None:
        ins = self.table.release_nested(oid)
        if ins:
            self.execute(ins)

    @any_thread
    def set_contains(self, oid: bytes, inner: Sequence[tuple[bytes, Address]]) -> None:
        ins = self.table.set_contains(oid, inner, self._cw.address)
        if ins:
            self.execute(ins)
        self._introduce_to_owners(inner)

    def _introduce_to_owners(self, inner: Sequence[tuple[bytes, Address]]) -> None:
        """Refs inside a value we hold were registered with their owners for us."""
        for _oid, owner in inner:
            self.introduce(tuple(owner))  # type: ignore[arg-type]

    @any_thread
    def remove_borrower(self, oid: bytes, who: Address) -> None:
        ins = self.table.remove_borrower(oid, who)
        if ins:
            self.execute(ins)

    @any_thread
    def remove_borrower_everywhere(self, who: Address) -> None:
        """A borrower's connection closed: it holds nothing of ours any more."""
        ins = self.table.borrower_lost(who)
        if ins:
            self.execute(ins)

    @any_thread
    def store_owned(
        self, oid: bytes, entry: Entry, contained: Sequence[tuple[bytes, Address]] = ()
    ) -> None:
        """The value of our object ``oid`` arrived (a return, a generator item): keep it if
        anything still refers to it, else drop it and what it holds."""
        self._ms.put(oid, entry)
        ins = self.table.on_owned_value_stored(oid, entry[0] == "s", contained, self._cw.address)
        if ins:
            self.execute(ins)
        if contained:
            self._introduce_to_owners(contained)

    # ------------------------------------------------------- instructions
    @any_thread
    def execute(self, instructions: Iterable[Instruction]) -> None:
        """Carry out the table's instructions (the I/O ones on the IO thread)."""
        do = self._do
        for ins in instructions:
            if type(ins) is FreeValue:  # most of them: inline, no dispatch
                self._ms.delete(ins.oid)
            else:
                do[type(ins)](ins)

    def _free_value(self, ins: FreeValue) -> None:
        self._ms.delete(ins.oid)

    def _delete_store_copy(self, ins: DeleteStoreCopy) -> None:
        self.queue_delete(ins.oid)

    def _send_remove_borrower_ins(self, ins: SendRemoveBorrower) -> None:
        cw = self._cw
        if cw.is_shut_down:
            return
        try:
            cw.loop.call_soon_threadsafe(self.send_remove_borrower, ins.oid, ins.owner)
        except RuntimeError:  # loop closed at shutdown
            pass

    def _register_borrow_ins(self, ins: RegisterBorrow) -> None:
        try:
            self._cw.loop.call_soon_threadsafe(self._start_register, ins.oid, ins.owner)
        except RuntimeError:  # loop closed at shutdown
            pass

    @io_thread
    def _start_register(self, oid: bytes, owner: Address) -> None:
        cw = self._cw
        cw.spawn(self.register_borrow(oid, owner, cw.address))

    def _actor_out_of_scope(self, ins: ActorHandleOutOfScope) -> None:
        cw = self._cw
        if cw.is_shut_down:
            return
        actor_id = ins.actor_id

        async def report() -> None:
            from rayops.gcs import calls

            try:
                gcs = await cw.async_gcs()
                await gcs.call(calls.report_actor_out_of_scope(actor_id))
            except Exception as err:
                logger.debug("could not report actor %s out of scope: %r", actor_id.hex(), err)

        try:
            cw.loop.call_soon_threadsafe(cw.spawn, report())
        except RuntimeError:
            pass

    @any_thread
    def queue_delete(self, oid: bytes) -> None:
        """Delete our object's shared-memory copy (batched: one message per loop turn)."""
        self._delete_q.append(oid)
        if not self._delete_scheduled and not self._cw.is_shut_down:
            self._delete_scheduled = True
            try:
                self._cw.loop.call_soon_threadsafe(self._flush_deletes)
            except RuntimeError:  # loop closed at shutdown
                pass

    @io_thread
    def _flush_deletes(self) -> None:
        self._delete_scheduled = False
        batch, self._delete_q = self._delete_q, []
        raylet = self._cw.raylet
        if batch and not raylet.closed:
            raylet.notify(rm.StoreDelete(batch))
        if batch:
            self._cw.recovery.freed(batch)  # their lineage may go

    @io_thread
    def send_remove_borrower(self, oid: bytes, owner: Address) -> None:
        cw = self._cw

        async def send() -> None:
            try:
                conn = await cw.peer(owner)
                conn.notify(wm.RemoveBorrower(oid, cw.address))
            except Exception:
                pass  # owner gone: nothing to release

        cw.spawn(send())

    # ------------------------------------------------------- registering borrows
    @any_thread
    def register_new_borrows_async(self) -> None:
        """Tell owners about borrowed refs we just received (without waiting)."""
        new = self.table.drain_new_borrows()
        if new:
            try:  # one hop to the IO thread for the lot (a value may hold thousands)
                self._cw.loop.call_soon_threadsafe(self._start_registers, new)
            except RuntimeError:  # loop closed at shutdown
                pass

    @io_thread
    def _start_registers(self, borrows: list[RegisterBorrow]) -> None:
        for b in borrows:
            self._start_register(b.oid, b.owner)

    @io_thread
    async def register_borrow(self, oid: bytes, owner: Address, borrower: Address) -> None:
        """Tell ``owner`` that ``borrower`` holds ``oid``."""
        try:
            if borrower == self._cw.address:
                conn = await self._hello(owner)  # first, so our death releases it
            else:
                conn = await self._cw.peer(owner)
            await conn.request(wm.AddBorrower(oid, borrower))
        except Exception as err:
            logger.debug("could not register borrow of %s with %s: %r", oid.hex(), owner, err)

    @user_thread
    def register_borrows_blocking(self, pairs: list[tuple[bytes, Address, Address]]) -> None:
        """Tell owners (other than the task's submitter) about borrowers, and wait for them."""
        if not pairs:
            return

        async def all_of() -> None:
            await asyncio.gather(*(self.register_borrow(o, w, b) for o, w, b in pairs))

        self._cw.run(all_of(), timeout=30)

    # ------------------------------------------------------- borrower liveness
    # An owner learns that a borrower died when the borrower's connection to it closes
    # (``remove_borrower_everywhere``), which needs that connection to say whose it is:
    # a borrower says "hello" with its address on its connection to each owner it
    # borrows from, before (or while) the owner counts it.

    async def _hello(self, owner: Address) -> framed.Connection:
        """(IO thread) Our connection to ``owner``, introduced once."""
        cw = self._cw
        conn = await cw.peer(owner)
        if not conn.context.get("introduced"):
            conn.context["introduced"] = True
            conn.notify(wm.Hello(cw.address))
        self._introduced.add(owner)
        return conn

    @any_thread
    def introduce(self, owner: Address) -> None:
        """Make sure ``owner`` knows our connection (without waiting)."""
        if owner in self._introduced or owner == self._cw.address:
            return
        self._introduced.add(owner)
        cw = self._cw

        async def hello() -> None:
            try:
                await self._hello(owner)
            except Exception as err:
                logger.debug("could not introduce ourselves to %s: %r", owner, err)

        try:
            cw.loop.call_soon_threadsafe(cw.spawn, hello())
        except RuntimeError:
            pass

    @user_thread
    def introduce_blocking(self, owner: Address) -> None:
        """``introduce``, waiting until the hello is written (before a task's reply
        reports our borrows to ``owner``)."""
        if owner in self._introduced or owner == self._cw.address:
            return
        try:
            self._cw.run(self._hello(owner), timeout=30)
        except Exception as err:
            logger.debug("could not introduce ourselves to %s: %r", owner, err)

    # ------------------------------------------------------- owner handlers
    @io_thread
    def h_hello(self, conn: framed.Connection, address: Address) -> None:
        conn.context["peer_address"] = tuple(address)

    @io_thread
    def h_get_object(self, conn: framed.Connection, oid: bytes) -> Any:
        """A borrower asks for our object's value: now, or once it is ready."""
        ms = self._ms
        entry = ms.get(oid)
        if entry is not None:
            return entry
        if oid not in self.table:
            return error_entry(rex.ObjectLostError(oid.hex()))
        loop = self._cw.loop
        fut: asyncio.Future[Entry] = loop.create_future()

        def ready(_oid: bytes, e: Entry) -> None:
            loop.call_soon_threadsafe(_resolve, fut, e)

        ms.on_ready(oid, ready)
        return fut

    @io_thread
    def h_add_borrower(self, conn: framed.Connection, oid: bytes, who: Address) -> bool:
        return self.table.add_borrower(oid, tuple(who))  # type: ignore[arg-type]

    @io_thread
    def h_remove_borrower(self, conn: framed.Connection, oid: bytes, who: Address) -> None:
        self.remove_borrower(oid, tuple(who))  # type: ignore[arg-type]


def error_entry(err: BaseException) -> Entry:
    """A memory-store entry that raises ``err`` at get()."""
    sv = serialization.serialize(err, serialization.META_ERROR)
    return ("v", sv.to_wire())


def _resolve(fut: asyncio.Future[Any], value: Any) -> None:
    if not fut.done():
        fut.set_result(value)
