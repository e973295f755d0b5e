"""The core worker's IO loop: a deferred hand-off is caught up before any later one."""

from __future__ import annotations

import threading

from rayops.core_worker import threads


def test_a_hand_off_after_a_deferred_one_runs_the_catch_up_first() -> None:
    order: list[str] = []
    loop = threads.new_io_loop(lambda: order.append("catch-up"))
    try:
        # Nothing deferred: no catch-up.
        loop.call_soon_threadsafe(order.append, "a")
        loop.call_soon_threadsafe(loop.stop)
        loop.run_forever()
        assert order == ["a"]

        # Deferred from another thread: the next hand-off runs the catch-up before itself,
        # once; the one after that does not.
        def user_thread() -> None:
            loop.behind = True
            loop.call_soon_threadsafe(order.append, "b")
            loop.call_soon_threadsafe(order.append, "c")
            loop.call_soon_threadsafe(loop.stop)

        t = threading.Thread(target=user_thread)
        t.start()
        t.join()
        loop.run_forever()
        assert order == ["a", "catch-up", "b", "c"]
        assert loop.behind is False
    finally:
        loop.close()
