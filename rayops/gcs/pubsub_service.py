"""PubSubGcsService: the event spine over the GCS's gRPC server (a server-streaming call).

Why gRPC and not the framed transport: the GCS is a grpc.aio server and every one of its
clients already holds a token-checked channel to it; one more call on that channel needs no
second listener, port, handshake or token path (the interceptor in `rayops.rpc.auth`
refuses an unauthenticated `Subscribe` before the request is read, as for every GCS call).
The rate is the control plane's (a batch per subscriber per change or usage window), far
below where DESIGN.md §6 found gRPC to cost too much. Batches carry several events each.

The shell only: `rayops.gcs.pubsub.Publisher` decides what each subscriber gets;
`rayops.gcs.codec` converts, one codec per channel (`CHANNEL_CODECS`). An event's protobuf
form is built once and reused for every subscriber (`_ChannelBatches`), so fan-out costs a
copy per subscriber, not a conversion.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator
from typing import Any

import grpc
import grpc.aio

from rayops.gcs.actor_events import ActorSnapshot
from rayops.gcs.codec import (
    CHANNEL_CODECS,
    ChannelCodec,
    batch_header,
    batch_to_proto,
)
from rayops.gcs.pubsub import (
    ACTORS_CHANNEL,
    JOBS_CHANNEL,
    KV_CHANNEL,
    NODES_CHANNEL,
    PG_CHANNEL,
    Batch,
    KeyMissing,
    Publisher,
)
from rayops.protocol import gcs_pubsub_pb2, gcs_pubsub_pb2_grpc

__all__ = [
    "ACTORS_CHANNEL",
    "JOBS_CHANNEL",
    "KV_CHANNEL",
    "NODES_CHANNEL",
    "PG_CHANNEL",
    "PubSubService",
]

logger = logging.getLogger(__name__)


class _ChannelBatches:
    """One channel's batches as stream messages; recent events' protobuf form is kept by
    version (a bounded cache), so each event is converted once for all subscribers."""

    def __init__(self, codec: ChannelCodec, size: int = 4096) -> None:
        self._codec = codec
        self._size = size
        self._protos: OrderedDict[int, Any] = OrderedDict()

    def get(self, event: Any) -> Any:
        msg = self._protos.get(event.version)
        if msg is None:
            msg = self._protos[event.version] = self._codec.event_to_proto(event)
            if len(self._protos) > self._size:
                self._protos.popitem(last=False)
        return msg

    def batch(self, batch: Batch) -> gcs_pubsub_pb2.SubscribeBatch:
        if batch.is_snapshot:
            return batch_to_proto(batch)
        msg = batch_header(batch)
        getattr(msg, self._codec.events_field).extend(self.get(e) for e in batch.events)
        return msg


class _ActorBatches(_ChannelBatches):
    """The "actors" channel's batches as stream messages (each event converted once, as for
    nodes): a snapshot lists every actor, a keyed batch the changed keys and the missing."""

    def __init__(self, size: int = 4096) -> None:
        super().__init__(CHANNEL_CODECS[ACTORS_CHANNEL], size)

    def batch(self, batch: Batch) -> gcs_pubsub_pb2.SubscribeBatch:
        msg = batch_header(batch)
        if batch.is_snapshot:
            assert isinstance(batch.snapshot, ActorSnapshot)
            msg.actor_events.extend(self.get(e) for e in batch.snapshot.actors)
            return msg
        for event in batch.events:
            if isinstance(event, KeyMissing):
                msg.not_found_keys.append(event.key)
            else:
                msg.actor_events.append(self.get(event))
        return msg


class PubSubService(gcs_pubsub_pb2_grpc.PubSubGcsServiceServicer):
    """Subscribe: one stream per subscriber, fed by its `Subscription`."""

    def __init__(self, publisher: Publisher) -> None:
        self._publisher = publisher
        self._converters: dict[str, _ChannelBatches] = {
            name: _ChannelBatches(codec) for name, codec in CHANNEL_CODECS.items()
        }
        # Keyed batches carry the keys a subscriber added that the table does not hold.
        self._converters[ACTORS_CHANNEL] = _ActorBatches()

    async def Subscribe(
        self, request: gcs_pubsub_pb2.SubscribeRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[gcs_pubsub_pb2.SubscribeBatch]:
        converter = self._converters.get(request.channel)
        if converter is None or request.channel not in self._publisher.channels():
            await context.abort(
                grpc.StatusCode.NOT_FOUND,
                f"no channel {request.channel!r}; channels: {self._publisher.channels()}",
            )
            raise AssertionError("context.abort returned")
        sub = self._publisher.subscribe(request.channel, request.epoch, request.after_version)
        first = sub.first
        logger.info(
            "%s subscribed to %s after version %d: %s to version %d",
            request.subscriber_id[:12] or "a subscriber",
            request.channel,
            request.after_version,
            "snapshot" if first is not None and first.is_snapshot else "deltas",
            first.version if first is not None else 0,
        )
        try:
            async for batch in sub:
                yield converter.batch(batch)
        finally:
            sub.close()

    async def SubscribeKeys(
        self,
        request_iterator: AsyncIterator[gcs_pubsub_pb2.SubscribeRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[gcs_pubsub_pb2.SubscribeBatch]:
        try:
            first = await anext(aiter(request_iterator))
        except StopAsyncIteration:
            return
        converter = self._converters.get(first.channel)
        try:
            assert converter is not None
            sub = self._publisher.subscribe_keys(
                first.channel, first.epoch, first.after_version, list(first.add_keys)
            )
        except (KeyError, AssertionError):
            await context.abort(grpc.StatusCode.NOT_FOUND, f"no keyed channel {first.channel!r}")
            raise AssertionError("context.abort returned") from None
        logger.debug(
            "%s follows %d keys of %s after version %d",
            first.subscriber_id[:12] or "a subscriber",
            len(first.add_keys),
            first.channel,
            first.after_version,
        )

        async def read() -> None:
            # Later requests add and remove keys; the subscriber closing its side ends it.
            try:
                async for request in request_iterator:
                    sub.remove(list(request.remove_keys))
                    sub.add(list(request.add_keys))
            except Exception as err:  # the subscriber went away mid-request
                logger.debug("keyed subscription to %s ended: %r", first.channel, err)
            finally:
                sub.end()

        reader = asyncio.ensure_future(read())
        try:
            async for batch in sub:
                yield converter.batch(batch)
        finally:
            reader.cancel()
            sub.close()
