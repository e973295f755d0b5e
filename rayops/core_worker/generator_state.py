"""The owner's bookkeeping of generator tasks, as a state machine with no I/O.

A generator task (``num_returns="streaming"`` or ``"dynamic"``) reports its items one by
one while it runs, then finishes with the number of items it produced. The owner keeps,
per generator: how many items have been reported, whether the task finished, whether the
user dropped the ``ObjectRefGenerator`` (released), and which items the user took a ref to
(taken). Events come in (``ItemReported``, ``Finished``, ``Failed``, ``Released``);
instructions come out (pin an item, delete a store copy nobody can read, release an item's
pin, wake the waiters, store the completion object, ...). ``core_worker/generators.py`` is
the shell that carries them out.

The rules, one per edge:
- an item reported twice (a retried attempt re-yields from the start) is ignored;
- an item reported after the generator was released is dropped: nobody can read it, so its
  shared-memory copy is deleted;
- an item is pinned (one ``nested`` count in the reference table) from its report until the
  user takes its ref or drops the generator, whichever is first. Taking an item hands its pin
  to the ref taken: the shell drops the pin right there, on the taking thread (the reference
  table is thread-safe), because waking the IO thread for every item taken costs a stream
  about half its rate. ``next()`` takes items in order, so ``Released`` says how many were
  taken, and the machine drops the pins of the rest;
- the state is forgotten once the task finished and the generator was released, in either
  order;
- a dynamic generator (``num_returns="dynamic"``) is never iterated nor released by the
  user: when it finishes, its items move into the one return value (``StoreDynamicResult``);
  when it fails without running (``Failed``), the error is that value and the items go;
- a streaming generator that fails without running yields the error as its last item.

Only ever called on the IO thread; it needs no lock. Pure: no sockets, no clock, no logging.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from rayops import ids

Address = tuple[str, int]
Entry = tuple[Any, ...]


def item_id(task_id: bytes, index: int) -> bytes:
    """The object id of a generator's item ``index`` (return index 1 is the completion)."""
    return ids.object_id_for(task_id, index + 2)


def _item_ids(task_id: bytes, first: int, end: int) -> tuple[bytes, ...]:
    return tuple(ids.object_id_for(task_id, i + 2) for i in range(first, end))


def completion_id(task_id: bytes) -> bytes:
    """The object id of a generator's completion object (resolves when the task ends)."""
    return ids.object_id_for(task_id, 1)


# ------------------------------------------------------------------------------- events
@dataclass(frozen=True, slots=True)
class Started:
    """A generator task was submitted; ``dynamic`` for ``num_returns="dynamic"``."""

    task_id: bytes
    dynamic: bool = False


@dataclass(frozen=True, slots=True)
class ItemReported:
    """The task yielded item ``index`` (its value as a memory-store entry, and the refs it
    holds with their owners)."""

    task_id: bytes
    index: int
    entry: Entry
    contained: tuple[tuple[bytes, Address], ...] = ()


@dataclass(frozen=True, slots=True)
class Finished:
    """The task ended after producing ``num_items`` items (an error counts as the last)."""

    task_id: bytes
    num_items: int


@dataclass(frozen=True, slots=True)
class Failed:
    """The task ends with the error ``entry`` without (further) running (its worker died past
    its retries, it was cancelled)."""

    task_id: bytes
    entry: Entry


@dataclass(frozen=True, slots=True)
class Released:
    """The user dropped the ObjectRefGenerator after taking the first ``taken`` items (whose
    pins went with the refs taken)."""

    task_id: bytes
    taken: int = 0


Event = Started | ItemReported | Finished | Failed | Released


# ------------------------------------------------------------------------- instructions
@dataclass(frozen=True, slots=True)
class PinItem:
    """Own ``object_id``, pinned once (``nested``) until taken or released; record the refs
    its value holds; put ``entry`` in the memory store. Then the generator ``task_id`` has
    ``items`` items: takers waiting for it wake (one instruction per item, not two: this is
    the hot path of a stream)."""

    task_id: bytes
    object_id: bytes
    entry: Entry
    contained: tuple[tuple[bytes, Address], ...]
    items: int


@dataclass(frozen=True, slots=True)
class DeleteStoreCopy:
    """Delete ``object_id``'s shared-memory copy: nobody can ever read it."""

    object_id: bytes


@dataclass(frozen=True, slots=True)
class ReleaseNested:
    """Drop the pin ``PinItem`` put on each of ``object_ids``."""

    object_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class WakeWaiters:
    """The generator's progress changed: wake user threads and futures waiting on it."""

    task_id: bytes
    items: int
    done: bool


@dataclass(frozen=True, slots=True)
class StoreCompleted:
    """Store the completion object, if anyone still holds it: None, or ``error`` (an error
    entry) when the task failed without finishing (its worker died past its retries, it was
    cancelled), so that ``get(gen.completed())`` raises it, as in Ray."""

    task_id: bytes
    error: Entry | None = None


@dataclass(frozen=True, slots=True)
class UnpinCompleted:
    """Drop the generator's pin on its completion object."""

    task_id: bytes


@dataclass(frozen=True, slots=True)
class StoreEndMarker:
    """Mark the end of the stream: the id of the item after the last one becomes ready, so
    ``wait()`` on a finished generator returns it as ready."""

    object_id: bytes


@dataclass(frozen=True, slots=True)
class DeleteEndMarker:
    """Forget the end-of-stream marker (the generator is gone)."""

    object_id: bytes


@dataclass(frozen=True, slots=True)
class StoreDynamicResult:
    """A dynamic generator finished: store, as its one return value, a
    DynamicObjectRefGenerator of ``item_ids`` that holds those items (their pins move to it)."""

    task_id: bytes
    item_ids: tuple[bytes, ...]


@dataclass(frozen=True, slots=True)
class StoreFailure:
    """A dynamic generator failed: store ``entry`` (an error) as its one return value."""

    task_id: bytes
    entry: Entry


Instruction = (
    PinItem
    | DeleteStoreCopy
    | ReleaseNested
    | WakeWaiters
    | StoreCompleted
    | UnpinCompleted
    | StoreEndMarker
    | DeleteEndMarker
    | StoreDynamicResult
    | StoreFailure
)


# -------------------------------------------------------------------------------- state
@dataclass(slots=True)
class GeneratorRecord:
    """One generator's progress (read-only for callers)."""

    dynamic: bool = False
    items: int = 0
    done: bool = False
    released: bool = False
    taken: int = 0  # items below this were taken by the user (known once released)


class GeneratorStates:
    """Every live generator this process owns: ``handle(event) -> instructions``."""

    def __init__(self) -> None:
        self._gens: dict[bytes, GeneratorRecord] = {}

    def __contains__(self, task_id: object) -> bool:
        return task_id in self._gens

    def __len__(self) -> int:
        return len(self._gens)

    def __iter__(self) -> Iterator[bytes]:
        return iter(self._gens)

    def record(self, task_id: bytes) -> GeneratorRecord | None:
        return self._gens.get(task_id)

    def handle(self, event: Event) -> list[Instruction]:
        if type(event) is ItemReported:
            return self.on_item(event.task_id, event.index, event.entry, event.contained)
        if type(event) is Finished:
            return self._finished(event)
        if type(event) is Released:
            return self._released(event)
        if type(event) is Failed:
            return self._failed(event)
        if type(event) is Started:
            # A resubmission of a known generator keeps its progress (retries re-yield).
            self._gens.setdefault(event.task_id, GeneratorRecord(dynamic=event.dynamic))
            return []
        raise TypeError(f"GeneratorStates.handle: not a generator event: {event!r}")

    def on_item(
        self,
        task_id: bytes,
        index: int,
        entry: Entry,
        contained: tuple[tuple[bytes, Address], ...] = (),
    ) -> list[Instruction]:
        """``handle(ItemReported(...))`` without making the event: once per item, the hot
        path of a stream."""
        g = self._gens.get(task_id)
        if g is None or index < g.items or g.done:
            # Unknown (forgotten), a retried attempt re-yielding an item we have, or late.
            return []
        oid = ids.object_id_for(task_id, index + 2)
        g.items = index + 1
        if g.released:
            return [DeleteStoreCopy(oid)] if entry[0] == "s" else []
        return [PinItem(task_id, oid, entry, contained, g.items)]

    def _finished(self, ev: Finished, error: Entry | None = None) -> list[Instruction]:
        g = self._gens.get(ev.task_id)
        if g is None:
            return [StoreCompleted(ev.task_id, error)]
        if g.done:
            return []
        g.items = max(g.items, ev.num_items)
        g.done = True
        if g.dynamic:
            # Never iterated: the items' pins move into the one return value.
            del self._gens[ev.task_id]
            return [StoreDynamicResult(ev.task_id, _item_ids(ev.task_id, 0, g.items))]
        out: list[Instruction] = [StoreCompleted(ev.task_id, error)]
        if g.released:
            # Dropped before it finished: the release left the state to us.
            del self._gens[ev.task_id]
            return out
        out.append(StoreEndMarker(item_id(ev.task_id, g.items)))
        out.append(WakeWaiters(ev.task_id, g.items, True))
        return out

    def _failed(self, ev: Failed) -> list[Instruction]:
        g = self._gens.get(ev.task_id)
        if g is None or g.done:
            return []
        if g.dynamic:
            del self._gens[ev.task_id]
            out: list[Instruction] = []
            if g.items:
                out.append(ReleaseNested(_item_ids(ev.task_id, 0, g.items)))
            out.append(StoreFailure(ev.task_id, ev.entry))
            return out
        # A streaming generator yields the error as its last item.
        index = g.items
        return [
            *self.on_item(ev.task_id, index, ev.entry),
            *self._finished(Finished(ev.task_id, index + 1), ev.entry),
        ]

    def _released(self, ev: Released) -> list[Instruction]:
        g = self._gens.get(ev.task_id)
        if g is None or g.released:
            return []
        g.released = True
        g.taken = min(max(ev.taken, 0), g.items)  # never more than was reported
        out: list[Instruction] = []
        if g.taken < g.items:
            out.append(ReleaseNested(_item_ids(ev.task_id, g.taken, g.items)))
        out.append(UnpinCompleted(ev.task_id))
        if g.done:
            del self._gens[ev.task_id]
            out.append(DeleteEndMarker(item_id(ev.task_id, g.items)))
        return out
