"""Following one channel of the GCS's event spine from a client, across broken streams.

`follow_channel` subscribes (`AsyncGcsClient.subscribe`), hands every batch to the caller's
`apply` and remembers the epoch and version it reached; when the stream breaks (the GCS
restarted, the network blinked, the GCS stopped) it subscribes again from there after a
short backoff (50 ms doubling to 1 s), so a blip costs the events missed and a GCS restart a
snapshot (another epoch). The caller learns whether it is connected: "connected" from the
first batch of a subscription until that stream ends or fails.

Every follower of the spine uses it: raylets (`rayops.raylet.cluster_view.follow_gcs`, the
"nodes" channel), the head's agent (service discovery), tests; later the dashboard. What a
batch means is the caller's business (`apply`); nothing here knows a channel's events.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from rayops.gcs.pubsub import Batch

__all__ = ["RESUBSCRIBE_MAX_S", "RESUBSCRIBE_MIN_S", "follow_channel"]

logger = logging.getLogger(__name__)

# Wait before subscribing again after the stream broke (doubling up to the cap).
RESUBSCRIBE_MIN_S = 0.05
RESUBSCRIBE_MAX_S = 1.0


async def follow_channel(
    gcs: Callable[[], Any],
    channel: str,
    apply: Callable[[Batch], bool],
    *,
    stopping: asyncio.Event | None = None,
    subscriber_id: str = "",
    on_connected: Callable[[bool], None] = lambda connected: None,
    epoch: str = "",
    version: int = 0,
) -> None:
    """Apply `channel`'s batches until `apply` returns False or `stopping` is set.

    `gcs()` returns the `AsyncGcsClient` to subscribe with (None: not yet; asked again before
    each subscription). (`epoch`, `version`) is where the caller already is ("" and 0: it
    holds nothing, so the first batch is a snapshot). `on_connected(True)` is called with
    each subscription's first batch (before `apply`), `on_connected(False)` when that stream
    ends or fails. Cancel the task to stop it while a stream is open.
    """
    delay = RESUBSCRIBE_MIN_S
    while stopping is None or not stopping.is_set():
        client = gcs()
        if client is not None:
            connected = False
            try:
                async for batch in client.subscribe(channel, epoch, version, subscriber_id):
                    delay = RESUBSCRIBE_MIN_S
                    if not connected:
                        connected = True
                        on_connected(True)
                    keep_going = apply(batch)
                    epoch, version = batch.epoch, batch.version
                    if not keep_going:
                        return
            except asyncio.CancelledError as err:
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise
                # Not us: grpc.aio raises CancelledError when the call itself was cancelled
                # (its channel closed under it); that is a lost stream like any other.
                logger.info(
                    "%s channel from the GCS cancelled (%r); subscribing again", channel, err
                )
            except Exception as err:  # GCS briefly unreachable: keep what was applied
                logger.info("%s channel from the GCS lost (%r); subscribing again", channel, err)
            finally:
                if connected:
                    on_connected(False)
        await asyncio.sleep(delay)
        delay = min(delay * 2, RESUBSCRIBE_MAX_S)
