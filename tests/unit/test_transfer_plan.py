"""The decisions of object transfer (raylet/transfer_plan.py) as tables: stripes, tickets,
and where a pull is served from."""

from __future__ import annotations

import pytest

from rayops.raylet import transfer_plan as plan

MiB = 2**20


@pytest.mark.parametrize(
    ("size", "wanted", "min_stripe", "expected"),
    [
        (0, 4, MiB, []),
        (1, 4, MiB, [(0, 1)]),
        (10 * MiB, 4, 32 * MiB, [(0, 10 * MiB)]),  # too small to stripe
        (64 * MiB, 4, 32 * MiB, [(0, 32 * MiB), (32 * MiB, 32 * MiB)]),
        (100 * MiB, 1, MiB, [(0, 100 * MiB)]),
        # Boundaries on 2 MiB; the last stripe takes the rest.
        (100 * MiB + 5, 3, MiB, [(0, 34 * MiB), (34 * MiB, 34 * MiB), (68 * MiB, 32 * MiB + 5)]),
    ],
)
def test_stripes(size: int, wanted: int, min_stripe: int, expected: list[tuple[int, int]]) -> None:
    got = plan.stripes(size, wanted, min_stripe)
    assert got == expected
    assert sum(n for _, n in got) == size
    assert all(off % plan.STRIPE_ALIGN == 0 for off, _ in got)


def _grant(oid: bytes = b"o", off: int = 0, n: int = 10) -> plan.Grant:
    return plan.Grant(oid, "puller", off, n, object())


def test_ticket_redeemed_once_for_its_object_and_range_only() -> None:
    book = plan.TicketBook(ttl_s=10)
    grant = _grant()
    t = book.issue(grant, now=0)
    assert len(t) == plan.TICKET_BYTES
    assert book.redeem(t, b"o", 0, 10, now=1) is grant
    assert book.redeem(t, b"o", 0, 10, now=1) is None  # used up


@pytest.mark.parametrize(
    ("change", "now"),
    [
        ({"secret": True}, 1),
        ({"oid": b"x"}, 1),
        ({"off": 2}, 1),
        ({"n": 11}, 1),
        ({}, 11),  # expired
        ({"short": True}, 1),
    ],
)
def test_ticket_refused(change: dict[str, object], now: float) -> None:
    book = plan.TicketBook(ttl_s=10)
    grant = _grant()
    t = book.issue(grant, now=0)
    if change.get("secret"):
        t = t[: plan.TICKET_ID_BYTES] + bytes(plan.TICKET_SECRET_BYTES)
    if change.get("short"):
        t = t[:-1]
    oid = change.get("oid", b"o")
    off = change.get("off", 0)
    n = change.get("n", 10)
    assert isinstance(oid, bytes) and isinstance(off, int) and isinstance(n, int)
    assert book.redeem(t, oid, off, n, now=now) is None


def test_ticket_grant_and_expiry() -> None:
    book = plan.TicketBook(ttl_s=10)
    g1, g2 = _grant(off=0), _grant(off=10)
    t1 = book.issue(g1, now=0)
    book.issue(g2, now=5)
    assert book.redeem(t1, b"o", 0, 10, now=1) is g1
    assert book.expire(now=12) == []
    assert book.expire(now=16) == [g2]
    assert len(book) == 0


def test_request_round_trip() -> None:
    ticket = bytes(range(plan.TICKET_BYTES))
    raw = plan.encode_request(ticket, b"\x01" * 28, 5, 7)
    head = raw[: plan.request_head_size()]
    decoded = plan.decode_head(head)
    assert decoded == (ticket, 28)
    assert plan.decode_tail(raw[len(head) :], 28) == (b"\x01" * 28, 5, 7)
    assert plan.decode_head(b"X" * plan.request_head_size()) is None
    with pytest.raises(ValueError, match="object id"):
        plan.encode_request(ticket, b"x" * 65, 0, 1)


S = plan.Serving


@pytest.mark.parametrize(
    ("serving", "puller", "redirected", "reachable", "expected"),
    [
        (S(), "a", False, set(), plan.Serve()),
        (S(active={"a"}), "b", False, set(), plan.Wait()),
        (S(active={"a"}), "b", True, set(), plan.Serve()),  # redirected: always served
        (S(active={"a"}, complete=["c"]), "b", False, {"c"}, plan.Redirect("c")),
        (S(active={"a"}, complete=["c"]), "b", False, set(), plan.Wait()),  # c is dead
        (S(active={"a"}, complete=["b"]), "b", False, {"b"}, plan.Wait()),  # not to itself
        # The copy handed out least.
        (
            S(active={"a"}, complete=["c", "d"], handed={"c": 2, "d": 1}),
            "b",
            False,
            {"c", "d"},
            plan.Redirect("d"),
        ),
    ],
)
def test_choose_source(
    serving: plan.Serving, puller: str, redirected: bool, reachable: set[str], expected: object
) -> None:
    assert plan.choose_source(serving, puller, redirected, 1, reachable) == expected
