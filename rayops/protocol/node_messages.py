"""Messages between raylets (object transfer) and to a node's agent (metrics), over the
framed transport. Field order is the wire order; see ``framed_message.py`` for the
versioning rules. Imports nothing of rayops outside ``rayops.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from rayops.protocol.framed_message import Message
from rayops.protocol.metrics import MetricsReport


@dataclass(frozen=True, slots=True)
class ObjectSize(Message):
    """How big is the object here (and remember ``puller`` holds a copy)?
    Reply: ``ObjectSizeReply``."""

    METHOD: ClassVar[str] = "object_size"
    object_id: bytes
    puller: str  # the pulling node's id


@dataclass(frozen=True, slots=True)
class ObjectSizeReply(Message):
    """``size`` None: the object is not on this node."""

    METHOD: ClassVar[str] = "object_size_reply"
    size: int | None


@dataclass(frozen=True, slots=True)
class ReadChunk(Message):
    """Bytes ``[offset, offset + length)`` of the object's file. Reply: ``Chunk``."""

    METHOD: ClassVar[str] = "read_chunk"
    object_id: bytes
    offset: int
    length: int


@dataclass(frozen=True, slots=True)
class Chunk(Message):
    """``data`` is sent out of band (a ``pickle.PickleBuffer``), received as a memoryview;
    None: the object is gone."""

    METHOD: ClassVar[str] = "chunk"
    data: Any


@dataclass(frozen=True, slots=True)
class MetricsSnapshot(Message):
    """The agent asks its raylet for its state. Reply: a ``node_snapshot.RayletSnapshot``."""

    METHOD: ClassVar[str] = "metrics_snapshot"


@dataclass(frozen=True, slots=True)
class ReportMetrics(Message):
    """Notification from a core worker to its node's agent: its metrics."""

    METHOD: ClassVar[str] = "report_metrics"
    report: MetricsReport


__all__ = [
    "Chunk",
    "MetricsSnapshot",
    "ObjectSize",
    "ObjectSizeReply",
    "ReadChunk",
    "ReportMetrics",
]
