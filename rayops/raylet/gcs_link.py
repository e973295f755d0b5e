"""Whether the raylet's link to the GCS has been down for longer than the reconnect window.

The raylet follows the GCS's node channel (`cluster_view.follow_gcs`); that stream's
connected/disconnected reports come here. While the GCS is away (restarting) the raylet keeps
running its workers and leases; once the link has been down for the whole window
(`rayops.gcs.reconnect`) the raylet gives up and exits with a clear log line instead of
retrying forever. Pure: the caller passes the time.
"""

from __future__ import annotations

__all__ = ["GcsLink"]


class GcsLink:
    """Tracks the link's state; `expired(now)` once it has been down for `window_s`."""

    def __init__(self, window_s: float, now: float) -> None:
        self.window_s = window_s
        # Down from the start until the first batch arrives (registration succeeded already).
        self._down_since: float | None = now
        self.reconnects = 0
        self._was_up = False

    def connected(self, up: bool, now: float) -> bool:
        """Record a report; True when this is a reconnection after an outage."""
        if up:
            again = self._was_up and self._down_since is not None
            self._down_since = None
            self._was_up = True
            if again:
                self.reconnects += 1
            return again
        if self._down_since is None:
            self._down_since = now
        return False

    def down_for(self, now: float) -> float:
        return 0.0 if self._down_since is None else now - self._down_since

    def expired(self, now: float) -> bool:
        return self._down_since is not None and now - self._down_since >= self.window_s
