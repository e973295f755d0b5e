"""ObjectRef, ObjectRefGenerator and DynamicObjectRefGenerator: the user-facing handles to
objects.

An ObjectRef counts as one local reference in its process's reference table for
as long as it is alive. Pickling a ref (into a task argument, a put value or a
return value) is recorded so the owner can keep the object alive for borrowers.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
from collections.abc import Generator, Iterable, Iterator
from typing import TYPE_CHECKING, Any

from rayops import ids, serialization
from rayops.core_worker import state

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker
    from rayops.core_worker.generators import Generators

Address = tuple[str, int]


class ObjectRef:
    """A handle to an object. Making, copying and dropping one changes its local count in
    the reference table on whichever thread does it (under the table's lock; see
    ``references``): ``__del__`` runs wherever the garbage collector runs it."""

    __slots__ = ("__weakref__", "_cw", "_id", "_owner")

    def __init__(
        self,
        object_id: bytes,
        owner: Address | None = None,
        cw: CoreWorker | None = None,
        *,
        counted: bool = False,
    ) -> None:
        # ``counted``: the caller already added the local reference for this handle.
        if owner is None:
            # Ray's ``ObjectRef(id_bytes)``: a ref to an id, counted if this process knows it.
            self._cw = None  # for __del__, should the id be refused
            object_id, owner, cw = _from_id(object_id)
        self._id = object_id
        self._owner = owner
        self._cw = cw
        if cw is not None and not counted:
            cw.references.add_local(object_id, owner)

    @classmethod
    def from_random(cls) -> ObjectRef:
        """A ref to a new random object id that no process owns (Ray's ``from_random``)."""
        return cls(ids.random_id(ids.OBJECT_ID_LEN))

    @classmethod
    def from_binary(cls, id_bytes: bytes) -> ObjectRef:
        """``ObjectRef(id_bytes)``."""
        return cls(id_bytes)

    @classmethod
    def from_hex(cls, hex_id: str) -> ObjectRef:
        """The ref of an id given in hex (as ``hex()`` gives it)."""
        try:
            id_bytes = bytes.fromhex(hex_id)
        except (TypeError, ValueError) as err:
            raise ValueError(
                f"ObjectRef.from_hex(hex_id) expects a hex string, got {hex_id!r}"
            ) from err
        return cls(id_bytes)

    @classmethod
    def nil(cls) -> ObjectRef:
        """The all-zero object id (Ray's ``nil``)."""
        return cls(bytes(ids.OBJECT_ID_LEN))

    def is_nil(self) -> bool:
        return self._id == bytes(ids.OBJECT_ID_LEN)

    def size(self) -> int:
        """The length of the id in bytes."""
        return len(self._id)

    def binary(self) -> bytes:
        return self._id

    def hex(self) -> str:
        return self._id.hex()

    def task_id(self) -> bytes:
        return self._id[:16]

    @property
    def owner_address(self) -> Address:
        return self._owner

    def __repr__(self) -> str:
        return f"ObjectRef({self._id.hex()})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ObjectRef) and other._id == self._id

    def __hash__(self) -> int:
        return hash(self._id)

    def __del__(self) -> None:
        cw = self._cw
        if cw is not None:
            try:
                cw.references.remove_local(self._id)
            except Exception:  # interpreter shutdown
                pass

    def __reduce__(self) -> tuple[Any, ...]:
        serialization.record_ref(self)
        return (_rebuild_ref, (self._id, self._owner))

    def __copy__(self) -> ObjectRef:
        return ObjectRef(self._id, self._owner, self._cw, counted=False)

    def __deepcopy__(self, memo: Any) -> ObjectRef:
        return self.__copy__()

    def __await__(self) -> Generator[Any, None, Any]:
        cw = state.require()
        return cw.objects.get_async(self).__await__()

    def future(self) -> concurrent.futures.Future[Any]:
        """A concurrent.futures.Future that resolves to the object's value."""
        cw = state.require()
        return cw.objects.get_future(self)

    def as_future(self) -> asyncio.Future[Any]:
        return asyncio.wrap_future(self.future())


# Ray's older name for ObjectRef, kept by Ray as an alias.
ObjectID = ObjectRef

_NO_OWNER: Address = ("", 0)


def _from_id(object_id: Any) -> tuple[bytes, Address, CoreWorker | None]:
    """(id, owner, core worker) of a ref made from id bytes alone."""
    if not isinstance(object_id, bytes):
        raise TypeError(f"ObjectRef(object_id) expects bytes, got {type(object_id).__name__}")
    if len(object_id) != ids.OBJECT_ID_LEN:
        raise ValueError(
            f"ObjectRef(object_id): an object id is {ids.OBJECT_ID_LEN} bytes long, "
            f"got {len(object_id)}"
        )
    cw = state.current()
    entry = None if cw is None else cw.references.get(object_id)
    if entry is None:
        return object_id, _NO_OWNER, None
    return object_id, entry.owner, cw


def _rebuild_ref(object_id: bytes, owner: Address) -> ObjectRef:
    cw = state.current()
    if cw is None:
        return ObjectRef(object_id, owner, None, counted=True)
    cw.references.on_deserialized(object_id, owner)
    return ObjectRef(object_id, owner, cw, counted=True)


class ObjectRefGenerator:
    """What ``.remote()`` of a generator function returns: one ref per yield, as produced.

    Iterate it (``for ref in gen``) or ``next(gen)``; each step blocks until the task has
    yielded the next value, and stops when the task returns. ``async for`` works too, and
    ``wait()`` takes it (ready once ``next(gen)`` would return at once). It cannot be
    pickled: only its owner can read it.
    """

    def __init__(self, task_id: bytes, owner: Address, gens: Generators) -> None:
        self._task_id = task_id
        self._owner = owner
        self._gens = gens
        self._next = 0

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._gens.take(self._task_id, self._next, None)
        if ref is None:
            raise StopIteration
        self._next += 1
        return ref

    def _next_sync(self, timeout_s: float | None = None) -> ObjectRef:
        """The next ref, waiting up to ``timeout_s`` seconds (None or -1: no limit); the nil
        ref if none came in time. Raises StopIteration once the stream ended."""
        timeout = None if timeout_s is None or timeout_s == -1 else max(0.0, float(timeout_s))
        try:
            ref = self._gens.take(self._task_id, self._next, timeout)
        except TimeoutError:
            return ObjectRef.nil()
        if ref is None:
            raise StopIteration
        self._next += 1
        return ref

    async def _next_async(self, timeout_s: float | None = None) -> ObjectRef:
        """``_next_sync`` for async code: awaits instead of blocking the thread. Raises
        StopAsyncIteration once the stream ended."""
        ready = asyncio.wrap_future(self._gens.when_ready(self._task_id, self._next))
        timeout = None if timeout_s is None or timeout_s == -1 else max(0.0, float(timeout_s))
        try:
            await asyncio.wait_for(ready, timeout)
        except TimeoutError:
            return ObjectRef.nil()
        try:
            ref = self._gens.take(self._task_id, self._next, 0)
        except TimeoutError:  # pragma: no cover - ready said it was there
            return ObjectRef.nil()
        if ref is None:
            raise StopAsyncIteration
        self._next += 1
        return ref

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        return await self._next_async(None)

    def completed(self) -> ObjectRef:
        """A ref that resolves (to None) when the generator task has finished."""
        return self._gens.completed_ref(self._task_id)

    def next_ready(self) -> bool:
        """Whether ``next(gen)`` would return a ref at once (False once the stream ended:
        check ``is_finished()``). Does not wait."""
        return self._gens.ready(self._task_id, self._next)[0]

    def is_finished(self) -> bool:
        """Whether the task finished and every ref was taken (``next(gen)`` would raise
        StopIteration). Does not wait."""
        ready, done = self._gens.ready(self._task_id, self._next)
        return done and not ready

    def _waitable(self) -> GeneratorWaitable:
        """What ``wait()`` waits on for this generator (see GeneratorWaitable)."""
        return GeneratorWaitable(self, self._gens.wait_id(self._task_id, self._next))

    def send(self, value: Any) -> None:
        raise NotImplementedError("ObjectRefGenerator.send is not supported (as in Ray).")

    def throw(self, value: Any) -> None:
        raise NotImplementedError("ObjectRefGenerator.throw is not supported (as in Ray).")

    def close(self) -> None:
        raise NotImplementedError("ObjectRefGenerator.close is not supported (as in Ray).")

    async def asend(self, value: Any) -> None:
        raise NotImplementedError("ObjectRefGenerator.asend is not supported (as in Ray).")

    async def athrow(self, value: Any) -> None:
        raise NotImplementedError("ObjectRefGenerator.athrow is not supported (as in Ray).")

    async def aclose(self) -> None:
        raise NotImplementedError("ObjectRefGenerator.aclose is not supported (as in Ray).")

    def __reduce__(self) -> Any:
        raise TypeError(
            "An ObjectRefGenerator cannot be pickled (returned from or passed to a task): "
            "only its owner can read it. Pass the refs it yields instead."
        )

    def __del__(self) -> None:
        try:
            self._gens.release(self._task_id, self._next)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"


class GeneratorWaitable:
    """An ObjectRefGenerator as ``wait()`` sees it: ready when the object of ``wait_id``
    (its next item, or the end-of-stream marker) is. ``binary()`` is the generator's
    completion id, which this process owns, so ``wait()`` never asks another process for it.
    """

    __slots__ = ("generator", "wait_id")

    def __init__(self, generator: ObjectRefGenerator, wait_id: bytes) -> None:
        self.generator = generator
        self.wait_id = wait_id

    def binary(self) -> bytes:
        return ids.object_id_for(self.generator._task_id, 1)

    @property
    def owner_address(self) -> Address:
        return self.generator._owner


class DynamicObjectRefGenerator:
    """The value of a ``num_returns="dynamic"`` task's ref: the refs of what it yielded.

    Iterating it hands out each ref once, in order (as Ray's does); ``len()`` is how many
    are left.
    """

    def __init__(self, refs: Iterable[ObjectRef]) -> None:
        self._refs: collections.deque[ObjectRef] = collections.deque(refs)

    def __iter__(self) -> Iterator[ObjectRef]:
        while self._refs:
            yield self._refs.popleft()

    def __len__(self) -> int:
        return len(self._refs)
