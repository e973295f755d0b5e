"""ActorPool: spread work over a fixed set of actors (Ray's ``ray.util.ActorPool``)."""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from typing import Any

__all__ = ["ActorPool"]


class ActorPool:
    """Run ``fn(actor, value)`` calls on whichever actor is free.

    ``submit`` queues work when every actor is busy; results come back in submission
    order with ``get_next`` or as they finish with ``get_next_unordered``.
    """

    def __init__(self, actors: Iterable[Any]) -> None:
        self._idle: list[Any] = list(actors)
        self._future_to_actor: dict[Any, tuple[int, Any]] = {}
        self._index_to_future: dict[int, Any] = {}
        self._next_task_index = 0
        self._next_return_index = 0
        self._pending: deque[tuple[Callable[[Any, Any], Any], Any]] = deque()

    def map(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Apply ``fn`` to every value; yield results in the order of ``values``."""
        self._drain_leftovers()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next()

    def map_unordered(self, fn: Callable[[Any, Any], Any], values: Iterable[Any]) -> Iterator[Any]:
        """Like ``map`` but yields each result as soon as it is ready."""
        self._drain_leftovers()
        for v in values:
            self.submit(fn, v)
        while self.has_next():
            yield self.get_next_unordered()

    def _drain_leftovers(self) -> None:
        while self.has_next():
            self.get_next_unordered()

    def submit(self, fn: Callable[[Any, Any], Any], value: Any) -> None:
        """Schedule ``fn(actor, value)`` on a free actor, or queue it until one frees up."""
        if self._idle:
            actor = self._idle.pop()
            future = fn(actor, value)
            self._future_to_actor[future] = (self._next_task_index, actor)
            self._index_to_future[self._next_task_index] = future
            self._next_task_index += 1
        else:
            self._pending.append((fn, value))

    def has_next(self) -> bool:
        """Are there results not yet returned (running or queued)?"""
        return bool(self._future_to_actor) or bool(self._pending)

    def get_next(self, timeout: float | None = None, ignore_if_timedout: bool = False) -> Any:
        """The next result in submission order; TimeoutError if it is not ready in time."""
        import rayops
        from rayops.exceptions import GetTimeoutError

        if not self.has_next():
            raise StopIteration("No more results to get")
        if self._next_return_index >= self._next_task_index:
            raise ValueError("It is not allowed to call get_next() after get_next_unordered().")
        future = self._index_to_future[self._next_return_index]
        if timeout is not None:
            ready, _ = rayops.wait([future], timeout=timeout)
            if not ready:
                if ignore_if_timedout:
                    del self._index_to_future[self._next_return_index]
                    self._next_return_index += 1
                    _, actor = self._future_to_actor.pop(future)
                    self._return_actor(actor)
                raise GetTimeoutError("Timed out waiting for result")
        del self._index_to_future[self._next_return_index]
        self._next_return_index += 1
        _, actor = self._future_to_actor.pop(future)
        self._return_actor(actor)
        return rayops.get(future)

    def get_next_unordered(
        self, timeout: float | None = None, ignore_if_timedout: bool = False
    ) -> Any:
        """Any finished result (the first to finish); TimeoutError if none finishes in time."""
        import rayops
        from rayops.exceptions import GetTimeoutError

        if not self.has_next():
            raise StopIteration("No more results to get")
        ready, _ = rayops.wait(list(self._future_to_actor), num_returns=1, timeout=timeout)
        if not ready:
            raise GetTimeoutError("Timed out waiting for result")
        future = ready[0]
        index, actor = self._future_to_actor.pop(future)
        self._index_to_future.pop(index, None)
        self._next_return_index = max(self._next_return_index, index + 1)
        self._return_actor(actor)
        return rayops.get(future)

    def _return_actor(self, actor: Any) -> None:
        self._idle.append(actor)
        if self._pending:
            fn, value = self._pending.popleft()
            self.submit(fn, value)

    def has_free(self) -> bool:
        """Is an actor idle (and no work queued for it)?"""
        return bool(self._idle) and not self._pending

    def pop_idle(self) -> Any | None:
        """Take an idle actor out of the pool (None if all are busy)."""
        return self._idle.pop() if self.has_free() else None

    def push(self, actor: Any) -> None:
        """Add an actor to the pool (it must not be in it already)."""
        busy = [a for _, a in self._future_to_actor.values()]
        if actor in self._idle or actor in busy:
            raise ValueError("Actor already belongs to current ActorPool")
        self._return_actor(actor)
