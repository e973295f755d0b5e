"""The decisions of a bulk object transfer, without I/O: stripes, tickets, where to pull from.

- ``stripes``: how one object is cut into byte ranges, each moved over its own connection
  by its own thread on both ends.
- ``TicketBook``: the one-time tickets a holder issues over the authenticated framed
  connection, each bound to one object and one byte range, redeemed once on the data port
  (checked in constant time) and expiring unused.
- ``choose_source``: whether a holder serves a pull itself, sends the puller to a node that
  already holds a complete copy (a broadcast fans out as a tree), or makes it wait for one.
- The data connection's opening bytes (``encode_request`` / ``decode_request``).
"""

from __future__ import annotations

import hmac
import secrets
import struct
from dataclasses import dataclass, field

MAGIC = b"RAYOXFR1"
TICKET_ID_BYTES = 16
TICKET_SECRET_BYTES = 32
TICKET_BYTES = TICKET_ID_BYTES + TICKET_SECRET_BYTES
# MAGIC, ticket, object id length; then the object id, then offset and length.
_HEAD = struct.Struct(f"!8s{TICKET_BYTES}sB")
_RANGE = struct.Struct("!QQ")
MAX_OBJECT_ID_BYTES = 64
MAX_REQUEST_BYTES = _HEAD.size + MAX_OBJECT_ID_BYTES + _RANGE.size

# Stripe boundaries fall on 2 MiB: whole huge pages, and a valid mmap offset.
STRIPE_ALIGN = 2 * 2**20


def stripes(size: int, wanted: int, min_stripe: int) -> list[tuple[int, int]]:
    """Cut `size` bytes into at most `wanted` (offset, length) ranges of at least `min_stripe`
    bytes (one range when the object is smaller), aligned to STRIPE_ALIGN; an empty object
    has no range."""
    if size <= 0:
        return []
    count = max(1, min(wanted, size // max(min_stripe, 1)))
    step = -(-size // count)
    step = -(-step // STRIPE_ALIGN) * STRIPE_ALIGN
    out = []
    offset = 0
    while offset < size:
        length = min(step, size - offset)
        out.append((offset, length))
        offset += length
    return out


@dataclass(frozen=True, slots=True)
class Grant:
    """What one redeemed ticket lets its bearer read."""

    object_id: bytes
    puller: str  # the node the ticket was issued to
    offset: int
    length: int
    source: object  # the holder's open file (transfer_data.Source), opaque here


@dataclass(slots=True)
class _Ticket:
    secret: bytes
    grant: Grant
    expires: float


class TicketBook:
    """One-time tickets: issued over the authenticated framed plane, redeemed on the data
    port. Not thread-safe by itself (the data server guards it with a lock)."""

    def __init__(self, ttl_s: float) -> None:
        self._ttl = ttl_s
        self._tickets: dict[bytes, _Ticket] = {}

    def __len__(self) -> int:
        return len(self._tickets)

    def issue(self, grant: Grant, now: float) -> bytes:
        ticket_id = secrets.token_bytes(TICKET_ID_BYTES)
        secret = secrets.token_bytes(TICKET_SECRET_BYTES)
        self._tickets[ticket_id] = _Ticket(secret, grant, now + self._ttl)
        return ticket_id + secret

    def redeem(
        self, ticket: bytes, object_id: bytes, offset: int, length: int, now: float
    ) -> Grant | None:
        """The grant of a valid ticket for exactly this object and range, used up; None for a
        wrong, expired, reused or mismatched one (a wrong secret also burns the ticket)."""
        if len(ticket) != TICKET_BYTES:
            return None
        entry = self._tickets.pop(ticket[:TICKET_ID_BYTES], None)
        if entry is None:
            return None
        ok = hmac.compare_digest(entry.secret, ticket[TICKET_ID_BYTES:])
        g = entry.grant
        if not ok or entry.expires < now:
            return None
        if (g.object_id, g.offset, g.length) != (object_id, offset, length):
            return None
        return g

    def expire(self, now: float) -> list[Grant]:
        """Drop the tickets past their time; return their grants (to release their files)."""
        gone = [tid for tid, t in self._tickets.items() if t.expires < now]
        return [self._tickets.pop(tid).grant for tid in gone]

    def drain(self) -> list[Grant]:
        out = [t.grant for t in self._tickets.values()]
        self._tickets.clear()
        return out


def encode_request(ticket: bytes, object_id: bytes, offset: int, length: int) -> bytes:
    if len(object_id) > MAX_OBJECT_ID_BYTES:
        raise ValueError(f"object id of {len(object_id)} bytes; at most {MAX_OBJECT_ID_BYTES}")
    return _HEAD.pack(MAGIC, ticket, len(object_id)) + object_id + _RANGE.pack(offset, length)


def request_head_size() -> int:
    return _HEAD.size


def decode_head(head: bytes) -> tuple[bytes, int] | None:
    """(ticket, object id length) from the fixed head, or None if it is not ours."""
    magic, ticket, oid_len = _HEAD.unpack(head)
    if magic != MAGIC or oid_len > MAX_OBJECT_ID_BYTES:
        return None
    return ticket, oid_len


def decode_tail(tail: bytes, oid_len: int) -> tuple[bytes, int, int]:
    offset, length = _RANGE.unpack(tail[oid_len:])
    return tail[:oid_len], offset, length


def tail_size(oid_len: int) -> int:
    return oid_len + _RANGE.size


# ------------------------------------------------------------------ broadcast
@dataclass(frozen=True, slots=True)
class Serve:
    """Serve the pull from here."""


@dataclass(frozen=True, slots=True)
class Redirect:
    """Send the puller to `node_id`, which holds a complete copy."""

    node_id: str


@dataclass(frozen=True, slots=True)
class Wait:
    """Every serving slot is busy and no complete copy exists yet: wait for either."""


@dataclass(slots=True)
class Serving:
    """A holder's view of one object's pulls."""

    active: set[str] = field(default_factory=set)  # pullers being served now
    complete: list[str] = field(default_factory=list)  # nodes holding a full copy (from us)
    handed: dict[str, int] = field(default_factory=dict)  # complete node -> pullers sent there


def choose_source(
    serving: Serving, puller: str, redirected: bool, max_active: int, reachable: set[str]
) -> Serve | Redirect | Wait:
    """Where `puller` gets the object. A redirected pull is always served (no chains of
    redirects). Otherwise: served here while fewer than `max_active` pulls run; else sent
    to the complete copy (among `reachable`) that was handed out least; else wait."""
    if redirected or len(serving.active) < max_active:
        return Serve()
    copies = [n for n in serving.complete if n in reachable and n != puller]
    if copies:
        return Redirect(min(copies, key=lambda n: serving.handed.get(n, 0)))
    return Wait()


__all__ = [
    "MAGIC",
    "Grant",
    "Redirect",
    "Serve",
    "Serving",
    "TicketBook",
    "Wait",
    "choose_source",
    "decode_head",
    "decode_tail",
    "encode_request",
    "stripes",
]
