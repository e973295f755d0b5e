"""Rate-limited logging of connections the framed transport refused.

Owns: the decision of when a refused peer gets a log line (at most one per peer
address per interval, carrying how many refusals it stands for), separated from the
logging itself so it can be tested with a fake clock. A scanner or a misconfigured
client hammering a port therefore costs one line a minute, not one per connection.

Must not do I/O other than emitting through the logger it is given.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

# Above this many remembered addresses, the ones whose interval has passed are dropped.
_PRUNE_ABOVE = 1024


class RefusalCounter:
    """Per-address refusal counts; ``refused`` says when a line is due. No I/O."""

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._interval = interval_s
        self._clock = clock
        # host -> (when its last line was logged, refusals since then not yet logged)
        self._seen: dict[str, tuple[float, int]] = {}

    def refused(self, host: str) -> int:
        """Count one refusal from ``host``; the number to log now, or 0 to stay quiet."""
        now = self._clock()
        last = self._seen.get(host)
        if last is None or now - last[0] >= self._interval:
            count = 1 if last is None else last[1] + 1
            if last is None and len(self._seen) >= _PRUNE_ABOVE:
                self._prune(now)
            self._seen[host] = (now, 0)
            return count
        self._seen[host] = (last[0], last[1] + 1)
        return 0

    def _prune(self, now: float) -> None:
        stale = [h for h, (t, _) in self._seen.items() if now - t >= self._interval]
        for h in stale:
            del self._seen[h]


class RefusalLog:
    """Logs refusals through ``logger`` at ``level``, rate-limited by a ``RefusalCounter``."""

    def __init__(
        self,
        logger: logging.Logger,
        level: int,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval_s
        self._counter = RefusalCounter(interval_s, clock)

    def refused(self, peer: tuple[str, int] | None, why: str) -> None:
        host = str(peer[0]) if peer else "an unknown address"
        count = self._counter.refused(host)
        if not count or not self._logger.isEnabledFor(self._level):
            return
        if count == 1:
            self._logger.log(
                self._level,
                "refused a connection from %s: %s (further refusals from this address are "
                "logged at most once every %g s)",
                host,
                why,
                self._interval,
            )
        else:
            self._logger.log(
                self._level,
                "refused %d connections from %s since the last line, the latest: %s",
                count,
                host,
                why,
            )


class RequestRefusals:
    """HTTP requests refused for want of the cluster token (the agent's and the API
    server's): ``count`` of them all, and a WARNING at most once every ``interval_s`` with
    how many since the last line and the latest path and peer, so a scanner cannot fill
    the log."""

    def __init__(
        self,
        logger: logging.Logger,
        interval_s: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._logger = logger
        self._interval = interval_s
        self._clock = clock
        self.count = 0
        self._unlogged = 0
        self._last_log = float("-inf")

    def refused(self, peer: str, path: str) -> None:
        self.count += 1
        self._unlogged += 1
        now = self._clock()
        if now - self._last_log >= self._interval:
            self._logger.warning(
                "refused %d request(s) without the cluster token (latest: %s from %s)",
                self._unlogged,
                path,
                peer,
            )
            self._unlogged = 0
            self._last_log = now
