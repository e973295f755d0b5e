"""Reference counting for the objects this process owns or borrows: decisions only, no I/O.

An object stays alive while any of these is non-zero:
- ``local``: ObjectRef handles alive in this process;
- ``submitted``: pending tasks of ours that take it as an argument;
- ``nested``: objects we hold whose value contains a ref to it;
- ``borrowers`` (owned objects only): other processes that told us they hold it.

``ReferenceTable`` is a state machine: each event (a method) changes the counts and
returns the instructions it implies, as frozen dataclasses; it never sends, stores or
deletes anything itself. When every count of an entry drops to zero the entry goes and
the table says what to do: ``FreeValue`` (drop our copy of the value), plus
``DeleteStoreCopy`` for an owned value that has a shared-memory copy,
``SendRemoveBorrower`` for a borrowed one whose owner was told we hold it, or
``ActorHandleOutOfScope`` for an actor's handle token. The shell that carries them out
is ``borrowing.References``.

Threads (``@any_thread``): every method takes the table's own lock and is safe from any
thread. The table does no I/O, so a user thread calling it never waits on the network.
Local counts change on user threads, and often: ``ObjectRef.__del__`` and ref copies run
wherever the garbage collector or the user's code runs them (every ``put``, ``get`` and
``.remote()``). Posting each change to the IO loop instead costs ~15 us per change
(``loop.call_soon_threadsafe``, measured here with a busy loop thread) against ~0.3 us for
the lock, and would let a user thread's query (``oid in table``) run ahead of its own
pending changes. So the rule is: the table is called from any thread under its lock, and
only the instructions it returns that need a connection are handed to the IO thread.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from rayops import ids
from rayops.core_worker import table_size
from rayops.core_worker.threads import any_thread

Address = tuple[str, int]


# ------------------------------------------------------------------ instructions
@dataclass(frozen=True, slots=True)
class FreeValue:
    """Drop this process's copy of the value (its memory-store entry)."""

    oid: bytes


@dataclass(frozen=True, slots=True)
class DeleteStoreCopy:
    """Delete the shared-memory copy of an owned value (the raylet unlinks it)."""

    oid: bytes


@dataclass(frozen=True, slots=True)
class SendRemoveBorrower:
    """Tell ``owner`` that this process no longer holds its object ``oid``."""

    oid: bytes
    owner: Address


@dataclass(frozen=True, slots=True)
class RegisterBorrow:
    """Tell ``owner`` that this process holds its object ``oid`` (so it stays alive)."""

    oid: bytes
    owner: Address


@dataclass(frozen=True, slots=True)
class ActorHandleOutOfScope:
    """The last handle of an actor we own is gone: tell the GCS so it can end the actor."""

    actor_id: bytes


Instruction = (
    FreeValue | DeleteStoreCopy | SendRemoveBorrower | RegisterBorrow | ActorHandleOutOfScope
)
NONE: tuple[Instruction, ...] = ()


@dataclass(slots=True)
class RefEntry:
    owner: Address
    owned: bool
    local: int = 0
    submitted: int = 0
    nested: int = 0
    # Made on the first borrower: most objects never have one, and an empty set costs
    # 216 bytes per entry (a fifth of the driver's memory per task in flight).
    borrowers: set[Address] | None = None
    # borrowed entries: has the owner been told we hold it?
    registered: bool = False
    # owned entries: does the value have a shared-memory copy to delete when freed?
    in_store: bool = False
    contains: tuple[bytes, ...] = ()


class ReferenceTable:
    """The counts of every object this process owns or borrows (see the module docstring)."""

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._refs: dict[bytes, RefEntry] = {}
        # Borrowed refs deserialized since the last drain (for registration with owners).
        # Read without the lock as a cheap "anything to register?" test on the get path.
        self.new_borrows: list[bytes] = []
        # borrower -> the objects of ours it holds, so a lost borrower costs what it held,
        # not a scan of the whole table.
        self._by_borrower: dict[Address, set[bytes]] = {}
        self._frees_since_compaction = 0

    # ------------------------------------------------------------------ queries
    @any_thread
    def get(self, oid: bytes) -> RefEntry | None:
        return self._refs.get(oid)

    @any_thread
    def is_owned(self, oid: bytes) -> bool:
        e = self._refs.get(oid)
        return e is not None and e.owned

    @any_thread
    def snapshot(self) -> list[tuple[bytes, RefEntry]]:
        """Every entry, copied under the lock (the state API's view; not the hot path)."""
        with self._lock:
            return [
                (oid, RefEntry(e.owner, e.owned, e.local, e.submitted, e.nested,
                               set(e.borrowers or ()), e.registered, e.in_store, e.contains))
                for oid, e in self._refs.items()
            ]  # fmt: skip

    def __len__(self) -> int:
        return len(self._refs)

    def __contains__(self, oid: bytes) -> bool:
        return oid in self._refs

    @any_thread
    def table_bytes(self) -> int:
        """The size of the id -> entry table itself (for tests that it gives memory back)."""
        return self._refs.__sizeof__()

    # ------------------------------------------------------- events: no instructions
    @any_thread
    def add_owned(
        self,
        oid: bytes,
        owner: Address,
        *,
        local: int = 1,
        contains: Iterable[bytes] = (),
        in_store: bool = False,
    ) -> None:
        """We created ``oid`` (put, a task's return, an actor handle token)."""
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                e = RefEntry(owner, True)
                self._refs[oid] = e
            e.owned = True
            e.local += local
            e.in_store = e.in_store or in_store
            if contains:
                self._hold_nested(e, contains)

    @any_thread
    def add_owned_pinned(self, oid: bytes, owner: Address) -> None:
        """An owned object with no handle yet (an untaken generator item), pinned by ``nested``."""
        with self._lock:
            e = self._refs.setdefault(oid, RefEntry(owner, True))
            e.nested += 1

    @any_thread
    def add_local(self, oid: bytes, owner: Address) -> None:
        """A new ObjectRef handle (a copy, or one made from an id)."""
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                e = RefEntry(owner, False)
                self._refs[oid] = e
            e.local += 1

    @any_thread
    def on_deserialized(self, oid: bytes, owner: Address) -> None:
        """A ref arrived inside a value: a new handle, and a borrow to register if not ours."""
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                e = RefEntry(owner, False)
                self._refs[oid] = e
            if not e.owned and not e.registered:
                self.new_borrows.append(oid)
            e.local += 1

    @any_thread
    def pin_submitted(self, oids: Iterable[bytes]) -> None:
        """A task of ours that takes these as arguments was submitted."""
        with self._lock:
            for oid in oids:
                e = self._refs.get(oid)
                if e is not None:
                    e.submitted += 1

    @any_thread
    def add_borrower(self, oid: bytes, who: Address) -> bool:
        """``who`` holds our object ``oid``; False if we do not own it (any more)."""
        with self._lock:
            e = self._refs.get(oid)
            if e is None or not e.owned:
                return False
            if e.borrowers is None:
                e.borrowers = set()
            e.borrowers.add(who)
            self._by_borrower.setdefault(who, set()).add(oid)
            return True

    # ---------------------------------------------------- events: may free objects
    @any_thread
    def remove_local(self, oid: bytes) -> Sequence[Instruction]:
        """An ObjectRef handle was dropped."""
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                return NONE
            e.local -= 1
            if e.local > 0 or e.submitted > 0 or e.nested > 0 or e.borrowers:
                return NONE
            if e.contains or not e.owned or e.in_store or oid.endswith(_HANDLE_SUFFIX):
                return self._collect(oid, e)
            # The hot case, inlined (the end of every put(0)'s ref): an owned inline value.
            del self._refs[oid]
            self._count_free()
            return [FreeValue(oid)]

    @any_thread
    def unpin_submitted(self, oids: Iterable[bytes]) -> Sequence[Instruction]:
        """A task that took these as arguments finished (or was dropped)."""
        out: list[Instruction] = []
        with self._lock:
            for oid in oids:
                e = self._refs.get(oid)
                if e is not None:
                    e.submitted -= 1
                    out.extend(self._collect(oid, e))
        return out

    @any_thread
    def release_nested(self, oid: bytes) -> Sequence[Instruction]:
        """One pin by ``nested`` goes (a generator item taken or dropped)."""
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                return NONE
            e.nested -= 1
            return self._collect(oid, e)

    @any_thread
    def set_contains(
        self, oid: bytes, inner: Sequence[tuple[bytes, Address]], me: Address
    ) -> Sequence[Instruction]:
        """The value of ``oid`` (ours or borrowed) holds these refs; keep them alive with it.

        Inner refs not owned by us arrive already registered with their owner (whoever
        sent us the value told the owner about us). If ``oid`` is gone already, nobody
        can reach the inner refs through it: release the borrows made for us (``me``).
        """
        with self._lock:
            e = self._refs.get(oid)
            if e is None:
                return self._release_unheld(inner, me)
            ids_ = []
            for inner_id, inner_owner in inner:
                ie = self._refs.get(inner_id)
                if ie is None:
                    ie = RefEntry(inner_owner, False, registered=True)
                    self._refs[inner_id] = ie
                ie.nested += 1
                ids_.append(inner_id)
            e.contains = (*e.contains, *ids_)
            return NONE

    @any_thread
    def on_owned_value_stored(
        self,
        oid: bytes,
        in_store: bool,
        contains: Sequence[tuple[bytes, Address]],
        me: Address,
    ) -> Sequence[Instruction]:
        """The value of our object ``oid`` arrived (a task's return, a generator item).

        The shell has put it in the memory store. If every ref to it is gone already,
        the value is dropped at once (and its shared-memory copy, and the borrows made
        for the refs inside it).
        """
        with self._lock:
            e = self._refs.get(oid)
            if e is None or not e.owned:
                out: list[Instruction] = [FreeValue(oid)]
                if in_store:
                    out.append(DeleteStoreCopy(oid))
                out.extend(self._release_unheld(contains, me))
                return out
            e.in_store = e.in_store or in_store
            if contains:
                return self.set_contains(oid, contains, me)
            return NONE

    @any_thread
    def remove_borrower(self, oid: bytes, who: Address) -> Sequence[Instruction]:
        """``who`` told us it no longer holds our object ``oid``."""
        with self._lock:
            held = self._by_borrower.get(who)
            if held is not None:
                held.discard(oid)
                if not held:
                    del self._by_borrower[who]
            e = self._refs.get(oid)
            if e is None:
                return NONE
            if e.borrowers is not None:
                e.borrowers.discard(who)
            return self._collect(oid, e)

    @any_thread
    def borrower_lost(self, who: Address) -> Sequence[Instruction]:
        """The connection to borrower ``who`` closed: it holds nothing of ours any more."""
        out: list[Instruction] = []
        with self._lock:
            for oid in self._by_borrower.pop(who, ()):
                e = self._refs.get(oid)
                if e is not None and e.borrowers is not None and who in e.borrowers:
                    e.borrowers.discard(who)
                    out.extend(self._collect(oid, e))
        return out

    @any_thread
    def drain_new_borrows(self) -> list[RegisterBorrow]:
        """Borrowed refs still alive that the owner has not been told about; marks them told."""
        with self._lock:
            out = []
            for oid in self.new_borrows:
                e = self._refs.get(oid)
                if e is not None and not e.owned and not e.registered:
                    e.registered = True
                    out.append(RegisterBorrow(oid, e.owner))
            self.new_borrows.clear()
            return out

    # ---------------------------------------------------------------- freeing
    def _hold_nested(self, e: RefEntry, contains: Iterable[bytes]) -> None:
        ids_ = tuple(contains)
        for inner in ids_:
            ie = self._refs.get(inner)
            if ie is not None:
                ie.nested += 1
        e.contains = (*e.contains, *ids_)

    def _release_unheld(
        self, inner: Sequence[tuple[bytes, Address]], me: Address
    ) -> list[Instruction]:
        """Refs inside a value nobody holds: give back the borrows their owners made for
        ``me`` (the worker that returned the value registered us), unless we hold them
        otherwise. Our own objects had no borrow made."""
        return [
            SendRemoveBorrower(i, owner)
            for i, owner in inner
            if owner != me and i not in self._refs
        ]

    def _collect(self, oid: bytes, e: RefEntry) -> list[Instruction]:
        """Free ``oid`` if nothing holds it, and then whatever only it held."""
        if e.local > 0 or e.submitted > 0 or e.nested > 0 or e.borrowers:
            return []
        out: list[Instruction] = []
        if not e.contains:  # the common case (every put(0) ends here): one entry
            if self._refs.get(oid) is e:
                del self._refs[oid]
                _freed(oid, e, out)
                self._count_free()
            return out
        stack = [(oid, e)]
        while stack:
            oid, e = stack.pop()
            if e.local > 0 or e.submitted > 0 or e.nested > 0 or e.borrowers:
                continue
            if self._refs.get(oid) is not e:
                continue
            del self._refs[oid]
            _freed(oid, e, out)
            for inner in e.contains:
                ie = self._refs.get(inner)
                if ie is not None:
                    ie.nested -= 1
                    stack.append((inner, ie))
        self._count_free()
        return out

    def _count_free(self) -> None:
        self._frees_since_compaction += 1
        if self._frees_since_compaction >= table_size.CHECK_EVERY:
            self._frees_since_compaction = 0
            smaller = table_size.compacted(self._refs)
            if smaller is not None:
                self._refs = smaller


_HANDLE_SUFFIX = ids.ACTOR_HANDLE_INDEX.to_bytes(ids.OBJECT_ID_LEN - ids.TASK_ID_LEN, "little")


def _freed(oid: bytes, e: RefEntry, out: list[Instruction]) -> None:
    """What freeing entry ``e`` of ``oid`` implies."""
    if e.owned:
        if oid.endswith(_HANDLE_SUFFIX):  # an actor's handle token: it has no value
            out.append(ActorHandleOutOfScope(ids.task_id_of(oid)))
            return
        out.append(FreeValue(oid))
        if e.in_store:
            out.append(DeleteStoreCopy(oid))
        return
    out.append(FreeValue(oid))
    if e.registered:
        out.append(SendRemoveBorrower(oid, e.owner))
