"""Messages between raylets that set up a bulk object transfer (``raylet/object_manager.py``).

The bytes themselves never travel over the framed transport: the holder answers an
``OpenPull`` with one-time tickets for its data port (``raylet/transfer_data.py``), and the
puller receives each byte range straight into the object's file. Field order is the wire
order. Imports nothing of rayops outside ``rayops.protocol``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from rayops.protocol.framed_message import Message


@dataclass(frozen=True, slots=True)
class OpenPull(Message):
    """``puller`` wants a copy of the object in ``stripes`` byte ranges. Reply: ``PullOffer``.

    ``redirected``: the puller was sent here by another holder (or falls back after a
    redirect failed): serve, never redirect again.
    """

    METHOD: ClassVar[str] = "open_pull"
    object_id: bytes
    puller: str
    stripes: int
    redirected: bool


@dataclass(frozen=True, slots=True)
class PullOffer(Message):
    """``size`` None: the object is not here. Else either ``redirect`` names a node holding a
    complete copy to pull from instead, or ``tickets`` (one per stripe, in stripe order, see
    ``transfer_plan.stripes``) open the byte ranges on data ``port`` of this node."""

    METHOD: ClassVar[str] = "pull_offer"
    size: int | None
    port: int
    tickets: list[bytes]
    redirect: str


@dataclass(frozen=True, slots=True)
class PullDone(Message):
    """Notification: ``puller`` finished the pull it opened (``ok``: it now holds a complete
    copy, which later pullers may be sent to)."""

    METHOD: ClassVar[str] = "pull_done"
    object_id: bytes
    puller: str
    ok: bool


__all__ = ["OpenPull", "PullDone", "PullOffer"]
