"""A first-in, first-out queue shared between tasks and actors (Ray's
``ray.util.queue.Queue``), kept in an async actor."""

from __future__ import annotations

import asyncio
import queue as _stdlib_queue
from typing import Any

__all__ = ["Empty", "Full", "Queue"]


class Empty(_stdlib_queue.Empty):
    """get_nowait() (or get with a timeout) found nothing."""


class Full(_stdlib_queue.Full):
    """put_nowait() (or put with a timeout) found no room."""


class _QueueActor:
    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self.queue: asyncio.Queue[Any] = asyncio.Queue(maxsize)

    def qsize(self) -> int:
        return self.queue.qsize()

    def empty(self) -> bool:
        return self.queue.empty()

    def full(self) -> bool:
        return self.queue.full()

    async def put(self, item: Any, timeout: float | None = None) -> None:
        try:
            await asyncio.wait_for(self.queue.put(item), timeout)
        except TimeoutError:
            raise Full from None

    async def get(self, timeout: float | None = None) -> Any:
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            raise Empty from None

    def put_nowait(self, item: Any) -> None:
        try:
            self.queue.put_nowait(item)
        except asyncio.QueueFull:
            raise Full from None

    def put_nowait_batch(self, items: list[Any]) -> None:
        if self.maxsize > 0 and len(items) + self.qsize() > self.maxsize:
            free = self.maxsize - self.qsize()
            raise Full(f"cannot add {len(items)} items to a queue with {free} free slots")
        for item in items:
            self.queue.put_nowait(item)

    def get_nowait(self) -> Any:
        try:
            return self.queue.get_nowait()
        except asyncio.QueueEmpty:
            raise Empty from None

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        if num_items > self.qsize():
            raise Empty(f"cannot get {num_items} items from a queue of size {self.qsize()}")
        return [self.queue.get_nowait() for _ in range(num_items)]


class Queue:
    """A distributed FIFO queue. ``maxsize <= 0`` means unbounded.

    ``actor_options`` are passed to the actor that holds the items (e.g. a name).
    """

    def __init__(self, maxsize: int = 0, actor_options: dict[str, Any] | None = None) -> None:
        import rayops

        self.maxsize = maxsize
        options = {"num_cpus": 0, **(actor_options or {})}
        self.actor = rayops.remote(_QueueActor).options(**options).remote(maxsize)

    def __len__(self) -> int:
        return self.size()

    def size(self) -> int:
        import rayops

        return int(rayops.get(self.actor.qsize.remote()))

    def qsize(self) -> int:
        return self.size()

    def empty(self) -> bool:
        import rayops

        return bool(rayops.get(self.actor.empty.remote()))

    def full(self) -> bool:
        import rayops

        return bool(rayops.get(self.actor.full.remote()))

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        """Add an item; with block=False raise Full at once when there is no room."""
        import rayops

        if not block:
            rayops.get(self.actor.put_nowait.remote(item))
            return
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        rayops.get(self.actor.put.remote(item, timeout))

    async def put_async(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        if not block:
            await self.actor.put_nowait.remote(item)
            return
        await self.actor.put.remote(item, timeout)

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        """Remove and return an item; with block=False raise Empty at once if there is none."""
        import rayops

        if not block:
            return rayops.get(self.actor.get_nowait.remote())
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        return rayops.get(self.actor.get.remote(timeout))

    async def get_async(self, block: bool = True, timeout: float | None = None) -> Any:
        if not block:
            return await self.actor.get_nowait.remote()
        return await self.actor.get.remote(timeout)

    def put_nowait(self, item: Any) -> None:
        self.put(item, block=False)

    def put_nowait_batch(self, items: list[Any]) -> None:
        import rayops

        rayops.get(self.actor.put_nowait_batch.remote(list(items)))

    def get_nowait(self) -> Any:
        return self.get(block=False)

    def get_nowait_batch(self, num_items: int) -> list[Any]:
        import rayops

        return list(rayops.get(self.actor.get_nowait_batch.remote(num_items)))

    def shutdown(self, force: bool = False, grace_period_s: int = 5) -> None:
        import rayops

        if self.actor is not None:
            rayops.kill(self.actor)
        self.actor = None
