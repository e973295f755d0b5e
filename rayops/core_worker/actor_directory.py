"""Where the actors this process calls are: one keyed subscription to the GCS's "actors"
channel (the event spine), shared by every actor the process calls.

The actor queue machine (``actor_queue``) says when it needs an actor's address
(``WatchActor``, ``wants_address``); the submitter then ``want``s the actor here and this
module adds its id to the subscription; the GCS answers with the actor's current state, then
each change. What comes in is handed to the submitter (``deliver``), which turns it into the
machine's events; once the machine no longer needs the address the submitter ``drop``s the
key, so the GCS streams this process only the actors it is resolving, and its work grows
with what callers ask for, not with workers x actors.

Each state the GCS sends is delivered once per (GCS epoch, version): a machine that asks
again (its connection broke) while the GCS still says the same thing (the GCS has not heard
of the death yet, or only the link broke) gets that state again after ``REFEED_S`` (the
long poll this replaced answered after a 10 s timeout the same way), and any newer state at
once. After a broken stream the subscription is made again with the epoch and version held,
so only what changed meanwhile comes back (everything after a GCS restart); if the GCS stays
unreachable for the client's timeout, every actor still wanted fails (``ActorDiedError``,
"could not reach the GCS").

Runs only on the core worker's IO loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from rayops.gcs.actor_events import ActorChanged

__all__ = ["ActorDirectory"]

logger = logging.getLogger(__name__)

ACTORS_CHANNEL = "actors"
# How long a machine that asked again waits for the state it already had.
REFEED_S = 1.0
RESUBSCRIBE_MIN_S = 0.05
RESUBSCRIBE_MAX_S = 1.0


class ActorDirectory:
    """The process's subscription to the actors it resolves.

    ``gcs`` returns the IO loop's async GCS client; ``wants(aid)`` says whether the machine
    still needs the actor's address; ``deliver(aid, info)`` hands over an actor's state
    (None: the GCS does not know the actor); ``fail(aid, err)`` fails an actor's calls when
    the GCS cannot be reached.
    """

    def __init__(
        self,
        gcs: Callable[[], Any],
        spawn: Callable[[Any], Any],
        wants: Callable[[bytes], bool],
        deliver: Callable[[bytes, ActorChanged | None], None],
        fail: Callable[[bytes, BaseException], None],
        subscriber_id: Callable[[], str] = str,
    ) -> None:
        self._gcs = gcs
        self._spawn = spawn
        self._wants = wants
        self._deliver = deliver
        self._fail = fail
        self._subscriber_id = subscriber_id
        self._keys: set[bytes] = set()  # followed (or to be)
        self._answered: set[bytes] = set()  # of those, the ones the GCS answered on this stream
        self._to_add: set[bytes] = set()
        self._to_remove: set[bytes] = set()
        self._latest: dict[bytes, tuple[str, ActorChanged]] = {}
        self._fed: dict[bytes, tuple[str, int]] = {}
        self._refeeding: set[bytes] = set()
        self._epoch = ""
        self._version = 0
        self._stream: Any = None
        self._running: asyncio.Future[Any] | None = None
        self._flushing = False

    def following(self) -> int:
        return len(self._keys)

    def want(self, actor_id: bytes) -> None:
        """The machine needs the actor's address: follow it, or hand over what is known."""
        if actor_id not in self._keys:
            self._keys.add(actor_id)
            self._to_remove.discard(actor_id)
            self._to_add.add(actor_id)
            self._kick()
            return
        # Handed over on the next turn of the loop, not inside the machine's instructions.
        asyncio.get_running_loop().call_soon(self._hand_over, actor_id)

    def _hand_over(self, actor_id: bytes) -> None:
        latest = self._latest.get(actor_id)
        if latest is None or actor_id not in self._keys or not self._wants(actor_id):
            return  # not answered yet: the answer is handed over when it comes
        if self._fed.get(actor_id) != (latest[0], latest[1].version):
            self._feed(actor_id, latest[0], latest[1])
        else:
            self._refeed_later(actor_id)

    def drop(self, actor_id: bytes) -> None:
        """The machine no longer needs the actor's address: stop following it."""
        if actor_id not in self._keys:
            return
        self._keys.discard(actor_id)
        self._answered.discard(actor_id)
        self._latest.pop(actor_id, None)
        if actor_id in self._to_add:
            self._to_add.discard(actor_id)
        else:
            self._to_remove.add(actor_id)
            self._kick()

    # ------------------------------------------------------------------ internals
    def _feed(self, actor_id: bytes, epoch: str, info: ActorChanged) -> None:
        self._fed[actor_id] = (epoch, info.version)
        self._deliver(actor_id, info)

    def _refeed_later(self, actor_id: bytes) -> None:
        if actor_id in self._refeeding:
            return
        self._refeeding.add(actor_id)
        asyncio.get_running_loop().call_later(REFEED_S, self._refeed, actor_id)

    def _refeed(self, actor_id: bytes) -> None:
        self._refeeding.discard(actor_id)
        latest = self._latest.get(actor_id)
        if latest is not None and actor_id in self._keys and self._wants(actor_id):
            self._feed(actor_id, latest[0], latest[1])

    def _kick(self) -> None:
        if self._running is None or self._running.done():
            self._running = self._spawn(self._run())
        elif self._stream is not None and not self._flushing:
            self._flushing = True
            self._spawn(self._flush())

    async def _flush(self) -> None:
        """Send the keys added and removed since the last request (one request for all)."""
        try:
            while self._stream is not None and (self._to_add or self._to_remove):
                add, self._to_add = self._to_add, set()
                remove, self._to_remove = self._to_remove, set()
                try:
                    await self._stream.update(add, remove)
                except Exception as err:  # the reader sees the broken stream and resubscribes
                    logger.debug("actors subscription update failed: %r", err)
                    return
        finally:
            self._flushing = False

    async def _run(self) -> None:
        delay = RESUBSCRIBE_MIN_S
        failing_since: float | None = None
        while True:
            started = time.monotonic()
            gcs = await self._gcs()
            stream = None
            try:
                # Keys the GCS answered on the last stream resync from the version held;
                # the others (added, not answered yet) get their current state.
                resync = self._answered & self._keys
                fresh = self._keys - resync
                self._to_add.clear()
                self._to_remove.clear()
                stream = gcs.subscribe_keys(
                    ACTORS_CHANNEL, self._epoch, self._version, resync, self._subscriber_id()
                )
                if fresh:
                    await stream.update(fresh, ())
                first = await asyncio.wait_for(stream.next(), gcs.timeout)
                self._stream = stream
                failing_since = None
                delay = RESUBSCRIBE_MIN_S
                self._apply(first)
                if self._to_add or self._to_remove:
                    self._kick()
                while True:
                    self._apply(await stream.next())
            except asyncio.CancelledError:  # the core worker is shutting down
                self._stream = None
                if stream is not None:
                    stream.cancel()
                raise
            except Exception as err:
                if stream is not None:
                    stream.cancel()
                if self._stream is not None:  # it was up until now
                    self._stream = None
                    failing_since = time.monotonic()
                failing_since = failing_since or started
                if time.monotonic() - failing_since >= gcs.timeout:
                    self._fail_all(err)
                else:
                    logger.info("actors subscription to the GCS lost (%r); subscribing again", err)
            await asyncio.sleep(delay)
            delay = min(delay * 2, RESUBSCRIBE_MAX_S)

    def _fail_all(self, err: BaseException) -> None:
        from rayops import exceptions as rex

        cause = rex.ActorDiedError(error_msg=f"could not reach the GCS: {err}")
        for actor_id in list(self._keys):
            self.drop(actor_id)
            self._fail(actor_id, cause)

    def _apply(self, batch: Any) -> None:
        epoch = batch.epoch
        self._epoch, self._version = epoch, batch.version
        for event in batch.events:
            if not isinstance(event, ActorChanged):  # KeyMissing: the GCS has no such actor
                actor_id = event.key
                if actor_id in self._keys:
                    self.drop(actor_id)
                    self._deliver(actor_id, None)
                continue
            actor_id = event.actor_id
            if actor_id not in self._keys:
                continue  # dropped since
            self._answered.add(actor_id)
            self._latest[actor_id] = (epoch, event)
            if not self._wants(actor_id):
                continue
            if self._fed.get(actor_id) != (epoch, event.version):
                self._feed(actor_id, epoch, event)
            else:
                self._refeed_later(actor_id)
