"""The generator state machine (rayops/core_worker/generator_state.py): event sequences in,
instructions out. No processes, no sockets, no threads."""

from __future__ import annotations

from typing import Any

import pytest

from rayops.core_worker import generator_state as gs

T = b"t" * 16
V: gs.Entry = ("v", (b"", b"x", []))  # an inline value
S: gs.Entry = ("s", "node", 10)  # a value in the shared-memory store


def item(i: int) -> bytes:
    return gs.item_id(T, i)


def run(*events: gs.Event, dynamic: bool = False) -> tuple[gs.GeneratorStates, list[Any]]:
    """Feed ``events`` after Started; the instructions of each event, in order."""
    m = gs.GeneratorStates()
    assert m.handle(gs.Started(T, dynamic)) == []
    return m, [m.handle(e) for e in events]


CASES = [
    pytest.param(
        [gs.ItemReported(T, 0, V), gs.Released(T, taken=1)],
        [
            [gs.PinItem(T, item(0), V, (), 1)],
            [gs.UnpinCompleted(T)],
        ],
        id="item taken: its pin went with the ref, release leaves it alone",
    ),
    pytest.param(
        [gs.ItemReported(T, 0, V), gs.ItemReported(T, 1, V), gs.ItemReported(T, 0, V)],
        [
            [gs.PinItem(T, item(0), V, (), 1)],
            [gs.PinItem(T, item(1), V, (), 2)],
            [],
        ],
        id="retried attempt re-yielding an item is ignored",
    ),
    pytest.param(
        [gs.Released(T), gs.ItemReported(T, 0, S), gs.ItemReported(T, 1, V)],
        [[gs.UnpinCompleted(T)], [gs.DeleteStoreCopy(item(0))], []],
        id="item after release: dropped, its store copy deleted",
    ),
    pytest.param(
        [gs.ItemReported(T, 0, V), gs.Finished(T, 1), gs.Released(T)],
        [
            [gs.PinItem(T, item(0), V, (), 1)],
            [gs.StoreCompleted(T), gs.StoreEndMarker(item(1)), gs.WakeWaiters(T, 1, True)],
            [gs.ReleaseNested((item(0),)), gs.UnpinCompleted(T), gs.DeleteEndMarker(item(1))],
        ],
        id="finish before release: release forgets it",
    ),
    pytest.param(
        [gs.ItemReported(T, 0, V), gs.Released(T), gs.Finished(T, 1)],
        [
            [gs.PinItem(T, item(0), V, (), 1)],
            [gs.ReleaseNested((item(0),)), gs.UnpinCompleted(T)],
            [gs.StoreCompleted(T)],
        ],
        id="release before finish: finish forgets it",
    ),
    pytest.param(
        [
            gs.ItemReported(T, 0, V),
            gs.ItemReported(T, 1, V),
            gs.ItemReported(T, 2, V),
            gs.Released(T, taken=1),
            gs.Released(T, taken=1),
        ],
        [
            [gs.PinItem(T, item(0), V, (), 1)],
            [gs.PinItem(T, item(1), V, (), 2)],
            [gs.PinItem(T, item(2), V, (), 3)],
            [gs.ReleaseNested((item(1), item(2))), gs.UnpinCompleted(T)],
            [],
        ],
        id="taken tracking: release drops the pins of the items not taken, once",
    ),
    pytest.param(
        [gs.ItemReported(T, 0, V), gs.Released(T, taken=5)],
        [[gs.PinItem(T, item(0), V, (), 1)], [gs.UnpinCompleted(T)]],
        id="a taken count past what was reported counts only what was",
    ),
    pytest.param(
        [gs.ItemReported(T, 0, V), gs.Failed(T, S)],
        [
            [gs.PinItem(T, item(0), V, (), 1)],
            [
                gs.PinItem(T, item(1), S, (), 2),
                gs.StoreCompleted(T, S),
                gs.StoreEndMarker(item(2)),
                gs.WakeWaiters(T, 2, True),
            ],
        ],
        id="streaming failure: the error is the last item and the completion's value",
    ),
    pytest.param(
        [gs.Finished(T, 0), gs.Finished(T, 0), gs.ItemReported(T, 0, V)],
        [
            [gs.StoreCompleted(T), gs.StoreEndMarker(item(0)), gs.WakeWaiters(T, 0, True)],
            [],
            [],
        ],
        id="finished twice, and an item after the end, change nothing",
    ),
]


@pytest.mark.parametrize(("events", "expected"), CASES)
def test_streaming(events: list[gs.Event], expected: list[list[gs.Instruction]]) -> None:
    _, got = run(*events)
    assert got == expected


def test_state_is_forgotten_once_finished_and_released_in_either_order() -> None:
    orders: list[list[gs.Event]] = [
        [gs.Finished(T, 0), gs.Released(T)],
        [gs.Released(T), gs.Finished(T, 0)],
    ]
    for order in orders:
        m, _ = run(*order)
        assert T not in m and len(m) == 0
        # Anything late about it is ignored.
        assert m.handle(gs.ItemReported(T, 0, S)) == []
        assert m.handle(gs.Released(T)) == []


def test_record_tracks_progress() -> None:
    m, _ = run(gs.ItemReported(T, 0, V), gs.ItemReported(T, 1, V), gs.Released(T, taken=1))
    r = m.record(T)
    assert r is not None
    assert (r.items, r.done, r.released, r.taken) == (2, False, True, 1)


def test_contained_refs_travel_with_the_pin() -> None:
    inner = ((b"i" * 28, ("127.0.0.1", 5)),)
    _, got = run(gs.ItemReported(T, 0, V, inner))
    assert got[0][0] == gs.PinItem(T, item(0), V, inner, 1)


def test_dynamic_items_move_into_the_one_return_value() -> None:
    m, got = run(
        gs.ItemReported(T, 0, V), gs.ItemReported(T, 1, V), gs.Finished(T, 2), dynamic=True
    )
    # Nobody iterates a dynamic generator: no waiters to wake while it runs.
    assert got == [
        [gs.PinItem(T, item(0), V, (), 1)],
        [gs.PinItem(T, item(1), V, (), 2)],
        [gs.StoreDynamicResult(T, (item(0), item(1)))],
    ]
    assert T not in m


def test_dynamic_failure_stores_the_error_and_drops_the_items() -> None:
    m, got = run(gs.ItemReported(T, 0, V), gs.Failed(T, S), dynamic=True)
    assert got[1] == [gs.ReleaseNested((item(0),)), gs.StoreFailure(T, S)]
    assert T not in m


def test_a_resubmission_keeps_progress() -> None:
    m, _ = run(gs.ItemReported(T, 0, V))
    assert m.handle(gs.Started(T)) == []
    record = m.record(T)
    assert record is not None and record.items == 1


def test_unknown_event_type_is_refused() -> None:
    with pytest.raises(TypeError, match="not a generator event"):
        gs.GeneratorStates().handle(object())  # type: ignore[arg-type]
