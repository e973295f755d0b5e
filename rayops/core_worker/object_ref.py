"""ObjectRef and ObjectRefGenerator: the user-facing handles to objects.

An ObjectRef counts as one local reference in its process's reference table for
as long as it is alive. Pickling a ref (into a task argument, a put value or a
return value) is recorded so the owner can keep the object alive for borrowers.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from collections.abc import Generator
from typing import TYPE_CHECKING, Any

from rayops import ids, serialization
from rayops.core_worker import state

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker

Address = tuple[str, int]


class ObjectRef:
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
        return cw.get_async(self).__await__()

    def future(self) -> concurrent.futures.Future[Any]:
        """A concurrent.futures.Future that resolves to the object's value."""
        cw = state.require()
        return cw.get_future(self)

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

    Iterate it (``for ref in gen``) or ``next(gen)``; each step blocks until the task
    has yielded the next value, and stops when the task returns. ``async for`` works too.
    """

    def __init__(self, task_id: bytes, owner: Address, cw: CoreWorker) -> None:
        self._task_id = task_id
        self._owner = owner
        self._cw = cw
        self._next = 0

    def __iter__(self) -> ObjectRefGenerator:
        return self

    def __next__(self) -> ObjectRef:
        ref = self._cw.generator_next(self._task_id, self._next, timeout=None)
        if ref is None:
            raise StopIteration
        self._next += 1
        return ref

    def __aiter__(self) -> ObjectRefGenerator:
        return self

    async def __anext__(self) -> ObjectRef:
        ref = await asyncio.wrap_future(self._cw.generator_next_future(self._task_id, self._next))
        if ref is None:
            raise StopAsyncIteration
        self._next += 1
        return ref

    def completed(self) -> ObjectRef:
        """A ref that resolves (to None) when the generator task has finished."""
        return self._cw.generator_completed_ref(self._task_id)

    def __del__(self) -> None:
        try:
            self._cw.generator_release(self._task_id, self._next)
        except Exception:
            pass

    def __repr__(self) -> str:
        return f"ObjectRefGenerator({self._task_id.hex()})"
