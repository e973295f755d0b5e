"""Values to bytes and back: pickle protocol 5 with out-of-band buffers.

Owns: the choice of pickler (plain pickle for values it can handle exactly,
cloudpickle for everything else: lambdas, closures, classes defined in
``__main__``), capture of the ObjectRefs contained in a value, and the inline
representation of small values.

A serialized value is ``(metadata, pickled, buffers)``. Large buffers (numpy
arrays, bytes-like objects exposing PickleBuffer) stay out-of-band so the object
store can lay them out aligned and readers can map them without a copy.
"""

from __future__ import annotations

import io
import pickle
import threading
from collections.abc import Callable, Sequence
from typing import Any

import cloudpickle

# metadata tags
META_VALUE = b""
META_ERROR = b"E"  # the value is an exception to raise at get()

_PLAIN_TYPES = (int, float, str, bytes, bool, type(None))

_local = threading.local()


class SerializedValue:
    """A value ready to ship: inline in a message or written to the object store."""

    __slots__ = ("buffers", "contained_refs", "metadata", "pickled")

    def __init__(
        self,
        metadata: bytes,
        pickled: bytes,
        buffers: list[Any],
        contained_refs: list[Any] | None = None,
    ) -> None:
        self.metadata = metadata
        self.pickled = pickled
        self.buffers = buffers
        self.contained_refs = contained_refs or []

    @property
    def total_bytes(self) -> int:
        if not self.buffers:
            return len(self.pickled)
        return len(self.pickled) + sum(memoryview(b).nbytes for b in self.buffers)

    def to_wire(self) -> tuple[bytes, bytes, list[bytes]]:
        """A picklable tuple (buffers copied to bytes) for inline transfer."""
        if not self.buffers:
            return (self.metadata, self.pickled, [])
        bufs = [b if isinstance(b, bytes) else memoryview(b).tobytes() for b in self.buffers]
        return (self.metadata, self.pickled, bufs)


def record_ref(ref: Any) -> None:
    """Called by ObjectRef.__reduce__: remember refs found inside the value being pickled."""
    refs = getattr(_local, "refs", None)
    if refs is not None:
        refs.append(ref)


def _dumps(value: Any, buffers: list[Any]) -> bytes:
    cb: Callable[[pickle.PickleBuffer], None] = buffers.append
    if type(value) in _PLAIN_TYPES:
        return pickle.dumps(value, protocol=5)
    try:
        return cloudpickle.dumps(value, protocol=5, buffer_callback=cb)
    except RecursionError:
        buffers.clear()
        f = io.BytesIO()
        cloudpickle.CloudPickler(f, protocol=5, buffer_callback=cb).dump(value)
        return f.getvalue()


def serialize(value: Any, metadata: bytes = META_VALUE) -> SerializedValue:
    """Serialize ``value``, collecting out-of-band buffers and contained ObjectRefs."""
    if type(value) in _PLAIN_TYPES:  # no buffers, no refs: nothing to collect
        return SerializedValue(metadata, pickle.dumps(value, protocol=5), [])
    buffers: list[Any] = []
    outer = getattr(_local, "refs", None)
    _local.refs = []
    try:
        pickled = _dumps(value, buffers)
        refs = _local.refs
    finally:
        _local.refs = outer
    # Zero-length buffers gain nothing out-of-band; keep the buffer list as is
    # because pickle references buffers by position.
    return SerializedValue(metadata, pickled, buffers, refs)


def deserialize(pickled: bytes | memoryview, buffers: Sequence[Any] = ()) -> Any:
    return pickle.loads(pickled, buffers=buffers)


def dumps_function(fn: Any) -> bytes:
    """Functions and classes travel once, by value, with cloudpickle."""
    return cloudpickle.dumps(fn, protocol=5)


class UnserializableArgumentError(TypeError):
    """Raised at ``.remote()`` when an argument cannot be serialized."""


def check_serializable(what: str, value: Any) -> SerializedValue:
    try:
        return serialize(value)
    except Exception as err:
        raise UnserializableArgumentError(
            f"Could not serialize {what} of type {type(value).__name__}: {err!r}. "
            "Arguments of remote calls must be picklable (cloudpickle); pass the data "
            "needed to rebuild the object instead, or create it inside the task."
        ) from err
