"""Which thread a core-worker method runs on, stated in code and asserted in debug runs.

A core worker has two kinds of threads: the **IO thread** (named ``IO_THREAD_NAME``),
which runs the asyncio loop and owns every connection and every state machine; and
**user threads** (the driver's threads, a worker's main thread and its actor threads),
which call the public API and may block. The rule:

- ``@io_thread``: mutates owner state or touches a connection. Runs only on the IO
  thread; user threads reach it with ``loop.call_soon_threadsafe``.
- ``@user_thread``: may block (waits for a reply, a store read, a condition). Must not
  run on the IO thread, where blocking would deadlock the process.
- ``@any_thread``: documented as safe from either (it only reads immutable data or
  takes its own lock).

With ``RAYOPS_DEBUG_THREADS=1`` in the environment when this module is imported (the
test command sets it, and workers inherit it) each decorated call checks the current
thread and raises ``WrongThread`` naming the method; otherwise the decorators return the
function unchanged, so production calls pay nothing.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable
from typing import Any, TypeVar

IO_THREAD_NAME = "rayops-io"
DEBUG = os.environ.get("RAYOPS_DEBUG_THREADS", "") == "1"

F = TypeVar("F", bound=Callable[..., Any])


class WrongThread(AssertionError):
    """A method ran on a thread its declaration forbids (only raised in debug runs)."""


def on_io_thread() -> bool:
    """Whether the caller is a core worker's IO thread."""
    return threading.current_thread().name == IO_THREAD_NAME


def io_thread(fn: F) -> F:
    """Declare that ``fn`` runs only on the IO thread (asserted when DEBUG)."""
    if not DEBUG:
        return fn

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if not on_io_thread():
            raise WrongThread(
                f"{fn.__qualname__} must run on the IO thread, "
                f"ran on {threading.current_thread().name!r}"
            )
        return fn(*args, **kwargs)

    return checked  # type: ignore[return-value]


def user_thread(fn: F) -> F:
    """Declare that ``fn`` may block and so never runs on the IO thread (asserted when DEBUG)."""
    if not DEBUG:
        return fn

    @functools.wraps(fn)
    def checked(*args: Any, **kwargs: Any) -> Any:
        if on_io_thread():
            raise WrongThread(f"{fn.__qualname__} may block and must not run on the IO thread")
        return fn(*args, **kwargs)

    return checked  # type: ignore[return-value]


def any_thread(fn: F) -> F:
    """Declare that ``fn`` is safe on any thread (documentation only)."""
    return fn


def new_io_loop(catch_up: Callable[[], object]) -> Any:
    """The IO thread's event loop (uvloop when installed), able to defer a wake-up.

    A user thread that hands work over which the IO thread may take later (a call it
    already wrote through an actor's direct lane: the reply wakes the IO thread, which
    catches up then) sets ``loop.behind = True`` instead of waking it. Every later hand-off
    through ``call_soon_threadsafe`` then runs ``catch_up`` first, so nothing a user
    thread hands over afterwards (a cancel, a released ref) reaches the IO thread before
    the work it refers to. ``catch_up`` clears ``behind`` before it takes the work.
    """
    try:
        import uvloop

        base: type[Any] = uvloop.Loop
    except ImportError:  # pragma: no cover - uvloop is a declared dependency
        import asyncio

        base = type(asyncio.new_event_loop())

    class IoLoop(base):  # type: ignore[misc,valid-type]
        behind = False

        def call_soon_threadsafe(self, callback: Any, *args: Any, context: Any = None) -> Any:
            if self.behind:
                self.behind = False
                super().call_soon_threadsafe(catch_up)
            return super().call_soon_threadsafe(callback, *args, context=context)

    return IoLoop()
