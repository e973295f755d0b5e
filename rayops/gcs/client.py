"""Clients of the GCS: `GcsClient` (sync, thread-safe; drivers, CLI) and `AsyncGcsClient` (grpc.aio;
raylet and other daemons).

Both send the cluster token on every call and turn gRPC failures into rayops errors:

* the GCS refused the token              -> `rayops.exceptions.AuthenticationError`
* the GCS did not answer within `timeout` -> `GcsUnreachableError` (a `ConnectionError` and an
  `RpcError`), naming the address; calls wait for the channel to connect until the deadline,
  and a call the GCS dropped (it died under it) is sent again until the deadline, so a GCS
  that is restarting is ridden out rather than failed at once. The default timeout is the
  reconnect window (`rayops.gcs.reconnect`, 60 s unless `RAYOPS_GCS_RECONNECT_TIMEOUT_S`)
* the GCS refused the request itself      -> `GcsRefused` (a `ValueError`): `.reason` is the
  GCS's reason, `.status` the gRPC status name; callers read those, never the text
* anything else                           -> `rayops.exceptions.RpcError` with the status code

What each method sends and returns is defined once, in `rayops.gcs.calls`. Importing this
module imports grpc; `import rayops` must not import it (load it lazily).
"""

from __future__ import annotations

import asyncio
import os
import time
from collections.abc import AsyncGenerator, Iterable, Mapping
from typing import Any, TypeVar

import grpc
import grpc.aio

from rayops.exceptions import AuthenticationError, RpcError
from rayops.gcs import calls
from rayops.gcs.calls import GcsCall, Service
from rayops.gcs.codec import actor_batch_from_proto, batch_from_proto
from rayops.gcs.pubsub import Batch
from rayops.gcs.reconnect import reconnect_timeout_s, retry_delay_s
from rayops.gcs.types import GcsInfo, JobInfo, NodeInfo, ObjectStoreStats, UsageReportOutcome
from rayops.protocol import (
    gcs_actor_pb2_grpc,
    gcs_job_pb2_grpc,
    gcs_kv_pb2_grpc,
    gcs_metrics_pb2_grpc,
    gcs_node_pb2_grpc,
    gcs_pg_pb2_grpc,
    gcs_pubsub_pb2,
    gcs_pubsub_pb2_grpc,
    gcs_runtime_env_pb2_grpc,
    gcs_task_pb2_grpc,
)
from rayops.rpc.grpc_channel import token_aio_channel, token_channel

__all__ = ["AsyncGcsClient", "GcsClient", "GcsRefused", "GcsUnreachableError", "KeyedStream"]

R = TypeVar("R")

DEFAULT_TIMEOUT_S = 10.0


def _default_timeout(timeout: float | None) -> float:
    return reconnect_timeout_s(os.environ) if timeout is None else timeout


def _retriable(err: grpc.RpcError) -> bool:
    """The GCS went away under the call (it was sent, then the connection broke)."""
    return err.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined,no-any-return]


_REFUSED_REQUEST_CODES = frozenset(
    {
        grpc.StatusCode.INVALID_ARGUMENT,
        grpc.StatusCode.ALREADY_EXISTS,
        grpc.StatusCode.FAILED_PRECONDITION,
        grpc.StatusCode.NOT_FOUND,
    }
)


class GcsUnreachableError(RpcError, ConnectionError):
    """The GCS did not answer within the client's timeout: it is down, unreachable or stuck."""

    def __init__(self, address: str, method: str, timeout: float, detail: str) -> None:
        self.address = address
        self.method = method
        self.timeout = timeout
        super().__init__(
            f"could not reach the GCS at {address} within {timeout:g} s ({method}: {detail}): "
            "is the head running? (`rayops status`; the window is "
            "RAYOPS_GCS_RECONNECT_TIMEOUT_S)",
            rpc_code=grpc.StatusCode.UNAVAILABLE.value[0],
        )


class GcsRefused(ValueError):
    """The GCS refused the request itself: ``reason`` says why, ``status`` is the gRPC code."""

    def __init__(self, address: str, method: str, reason: str, status: str) -> None:
        super().__init__(f"the GCS at {address} refused {method}: {reason}")
        self.address = address
        self.method = method
        self.reason = reason
        self.status = status

    def __reduce__(self) -> tuple[Any, ...]:
        return (GcsRefused, (self.address, self.method, self.reason, self.status))


def _translate(err: grpc.RpcError, address: str, method: str, timeout: float) -> Exception:
    """The rayops error for a failed call to the GCS."""
    code: grpc.StatusCode = err.code()  # type: ignore[attr-defined]
    details: str = err.details() or code.name  # type: ignore[attr-defined]
    if code is grpc.StatusCode.UNAUTHENTICATED:
        return AuthenticationError(
            f"the GCS at {address} refused this client's cluster token ({details}); "
            "use the token file from the session directory of the cluster you mean to join"
        )
    if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
        return GcsUnreachableError(address, method, timeout, details)
    if code in _REFUSED_REQUEST_CODES:
        return GcsRefused(address, method, details, code.name)
    return RpcError(
        f"{method} to the GCS at {address} failed with {code.name}: {details}",
        rpc_code=code.value[0],
    )


def _stubs(channel: Any) -> dict[Service, Any]:
    return {
        "node": gcs_node_pb2_grpc.NodeInfoGcsServiceStub(channel),
        "job": gcs_job_pb2_grpc.JobInfoGcsServiceStub(channel),
        "kv": gcs_kv_pb2_grpc.InternalKVGcsServiceStub(channel),
        "actor": gcs_actor_pb2_grpc.ActorInfoGcsServiceStub(channel),
        "metrics": gcs_metrics_pb2_grpc.MetricsGcsServiceStub(channel),
        "pg": gcs_pg_pb2_grpc.PlacementGroupInfoGcsServiceStub(channel),
        "pubsub": gcs_pubsub_pb2_grpc.PubSubGcsServiceStub(channel),
        "runtime_env": gcs_runtime_env_pb2_grpc.RuntimeEnvGcsServiceStub(channel),
        "task": gcs_task_pb2_grpc.TaskInfoGcsServiceStub(channel),
    }


def _store_stats(used: int, capacity: int, spilled: int) -> ObjectStoreStats:
    return ObjectStoreStats(used_bytes=used, capacity_bytes=capacity, spilled_bytes=spilled)


class GcsClient:
    """A synchronous GCS client; safe to share between threads.

    `address` is "host:port"; `token` is the cluster token; `timeout` bounds every call,
    including the wait for a connection.
    """

    def __init__(self, address: str, token: str, *, timeout: float | None = None) -> None:
        self.address = address
        self.timeout = _default_timeout(timeout)
        self._channel = token_channel(address, token)
        self._stubs = _stubs(self._channel)

    def _call(self, call: GcsCall[R]) -> R:
        method = getattr(self._stubs[call.service], call.method)
        deadline = time.monotonic() + self.timeout
        attempt = 0
        while True:
            try:
                reply = method(
                    call.request,
                    timeout=max(0.01, deadline - time.monotonic()),
                    wait_for_ready=True,
                )
                break
            except grpc.RpcError as err:
                pause = retry_delay_s(attempt)
                if not _retriable(err) or time.monotonic() + pause >= deadline:
                    raise _translate(err, self.address, call.method, self.timeout) from err
            time.sleep(pause)
            attempt += 1
        return call.parse(reply)

    def call(self, call: GcsCall[R], timeout: float | None = None) -> R:
        """Make any call built in rayops.gcs.calls (used for the actor directory)."""
        if timeout is None:
            return self._call(call)
        saved, self.timeout = self.timeout, timeout
        try:
            return self._call(call)
        finally:
            self.timeout = saved

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> GcsClient:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # Node table.

    def register_node(self, info: NodeInfo) -> NodeInfo:
        """Register `info` as ALIVE; returns it as the GCS stored it."""
        return self._call(calls.register_node(info))

    def unregister_node(self, node_id: str, reason: str) -> bool:
        """Mark the node DEAD now; False if the GCS never knew it."""
        return self._call(calls.unregister_node(node_id, reason))

    def get_all_nodes(self, *, alive_only: bool = False) -> list[NodeInfo]:
        return self._call(calls.get_all_nodes(alive_only))

    def report_resource_usage(
        self,
        node_id: str,
        total: Mapping[str, float],
        available: Mapping[str, float],
        store_used: int,
        store_capacity: int,
        spilled: int,
        pending_demand: Any = (),
    ) -> UsageReportOutcome:
        stats = _store_stats(store_used, store_capacity, spilled)
        return self._call(
            calls.report_resource_usage(node_id, total, available, stats, pending_demand)
        )

    def check_alive(self) -> GcsInfo:
        return self._call(calls.check_alive())

    # Job table.

    def next_job_id(self) -> int:
        return self._call(calls.next_job_id())

    def add_job(
        self,
        job_id: int,
        driver_pid: int,
        driver_ip: str,
        namespace: str,
        entrypoint: str,
        *,
        start_time_ms: int = 0,
    ) -> JobInfo:
        return self._call(
            calls.add_job(job_id, driver_pid, driver_ip, namespace, entrypoint, start_time_ms)
        )

    def mark_job_finished(self, job_id: int) -> bool:
        return self._call(calls.mark_job_finished(job_id))

    def get_all_jobs(self) -> list[JobInfo]:
        return self._call(calls.get_all_jobs())

    # Internal KV.

    def kv_put(
        self, key: bytes, value: bytes, *, namespace: str = "", overwrite: bool = True
    ) -> bool:
        """Store `value`; True if the key was new."""
        return self._call(calls.kv_put(key, value, namespace, overwrite))

    def kv_get(self, key: bytes, *, namespace: str = "") -> bytes | None:
        return self._call(calls.kv_get(key, namespace))

    def kv_multi_get(self, keys: Iterable[bytes], *, namespace: str = "") -> dict[bytes, bytes]:
        """The keys that exist, with their values."""
        return self._call(calls.kv_multi_get(keys, namespace))

    def kv_del(self, key: bytes, *, namespace: str = "", by_prefix: bool = False) -> int:
        """Delete the key (or every key with this prefix); returns how many were deleted."""
        return self._call(calls.kv_del(key, namespace, by_prefix))

    def kv_keys(self, prefix: bytes, *, namespace: str = "") -> list[bytes]:
        return self._call(calls.kv_keys(prefix, namespace))

    def kv_exists(self, key: bytes, *, namespace: str = "") -> bool:
        return self._call(calls.kv_exists(key, namespace))


class AsyncGcsClient:
    """A grpc.aio GCS client with the same methods as `GcsClient`, as coroutines.

    The channel is made on the first call, inside the event loop that runs it; use one client
    per event loop.
    """

    def __init__(self, address: str, token: str, *, timeout: float | None = None) -> None:
        self.address = address
        self.timeout = _default_timeout(timeout)
        self._token = token
        self._channel: grpc.aio.Channel | None = None
        self._stubs: dict[Service, Any] = {}

    async def _call(self, call: GcsCall[R], timeout: float | None = None) -> R:
        if self._channel is None:
            self._channel = token_aio_channel(self.address, self._token)
            self._stubs = _stubs(self._channel)
        method = getattr(self._stubs[call.service], call.method)
        timeout = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + timeout
        attempt = 0
        while True:
            try:
                reply = await method(
                    call.request,
                    timeout=max(0.01, deadline - time.monotonic()),
                    wait_for_ready=True,
                )
                break
            except grpc.RpcError as err:
                pause = retry_delay_s(attempt)
                if not _retriable(err) or time.monotonic() + pause >= deadline:
                    raise _translate(err, self.address, call.method, timeout) from err
            await asyncio.sleep(pause)
            attempt += 1
        return call.parse(reply)

    async def call(self, call: GcsCall[R], timeout: float | None = None) -> R:
        """Make any call built in rayops.gcs.calls; ``timeout`` overrides the client's."""
        return await self._call(call, timeout)

    async def close(self) -> None:
        if self._channel is not None:
            channel, self._channel = self._channel, None
            await channel.close(None)

    async def __aenter__(self) -> AsyncGcsClient:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # Node table.

    async def register_node(self, info: NodeInfo) -> NodeInfo:
        """Register `info` as ALIVE; returns it as the GCS stored it."""
        return await self._call(calls.register_node(info))

    async def unregister_node(self, node_id: str, reason: str) -> bool:
        """Mark the node DEAD now; False if the GCS never knew it."""
        return await self._call(calls.unregister_node(node_id, reason))

    async def get_all_nodes(self, *, alive_only: bool = False) -> list[NodeInfo]:
        return await self._call(calls.get_all_nodes(alive_only))

    async def report_resource_usage(
        self,
        node_id: str,
        total: Mapping[str, float],
        available: Mapping[str, float],
        store_used: int,
        store_capacity: int,
        spilled: int,
        pending_demand: Any = (),
    ) -> UsageReportOutcome:
        stats = _store_stats(store_used, store_capacity, spilled)
        return await self._call(
            calls.report_resource_usage(node_id, total, available, stats, pending_demand)
        )

    async def check_alive(self) -> GcsInfo:
        return await self._call(calls.check_alive())

    async def subscribe(
        self, channel: str, epoch: str = "", after_version: int = 0, subscriber_id: str = ""
    ) -> AsyncGenerator[Batch, None]:
        """Follow one channel of the GCS's event spine ("nodes", "jobs", "kv",
        "placement_groups"): the first batch brings the caller from (`epoch`, `after_version`)
        to the current version (a snapshot when new or too far behind), then batches of change
        events as they happen. Ends when the GCS stops; errors as for every call (no deadline:
        the stream is meant to stay open; an unknown channel is `GcsRefused` NOT_FOUND).
        `rayops.gcs.follower.follow_channel` adds the resubscribing."""
        if self._channel is None:
            self._channel = token_aio_channel(self.address, self._token)
            self._stubs = _stubs(self._channel)
        request = gcs_pubsub_pb2.SubscribeRequest(
            channel=channel, epoch=epoch, after_version=after_version, subscriber_id=subscriber_id
        )
        stream = self._stubs["pubsub"].Subscribe(request, wait_for_ready=True)
        try:
            async for msg in stream:
                yield batch_from_proto(msg)
        except grpc.RpcError as err:
            raise _translate(err, self.address, "Subscribe", self.timeout) from err
        finally:
            stream.cancel()

    def subscribe_keys(
        self,
        channel: str,
        epoch: str = "",
        after_version: int = 0,
        keys: Iterable[bytes] = (),
        subscriber_id: str = "",
    ) -> KeyedStream:
        """Follow some keys of a keyed channel ("actors": actor ids) on one stream; see
        `KeyedStream`. Nothing is sent until the stream is first read or updated."""
        if self._channel is None:
            self._channel = token_aio_channel(self.address, self._token)
            self._stubs = _stubs(self._channel)
        first = gcs_pubsub_pb2.SubscribeRequest(
            channel=channel,
            epoch=epoch,
            after_version=after_version,
            subscriber_id=subscriber_id,
            add_keys=list(keys),
        )
        return KeyedStream(self._stubs["pubsub"].SubscribeKeys(wait_for_ready=True), first, self)

    def subscribe_nodes(
        self, epoch: str = "", after_version: int = 0, subscriber_id: str = ""
    ) -> AsyncGenerator[Batch, None]:
        """`subscribe` to the "nodes" channel."""
        return self.subscribe("nodes", epoch, after_version, subscriber_id)

    # Job table.

    async def next_job_id(self) -> int:
        return await self._call(calls.next_job_id())

    async def add_job(
        self,
        job_id: int,
        driver_pid: int,
        driver_ip: str,
        namespace: str,
        entrypoint: str,
        *,
        start_time_ms: int = 0,
    ) -> JobInfo:
        return await self._call(
            calls.add_job(job_id, driver_pid, driver_ip, namespace, entrypoint, start_time_ms)
        )

    async def mark_job_finished(self, job_id: int) -> bool:
        return await self._call(calls.mark_job_finished(job_id))

    async def get_all_jobs(self) -> list[JobInfo]:
        return await self._call(calls.get_all_jobs())

    # Internal KV.

    async def kv_put(
        self, key: bytes, value: bytes, *, namespace: str = "", overwrite: bool = True
    ) -> bool:
        """Store `value`; True if the key was new."""
        return await self._call(calls.kv_put(key, value, namespace, overwrite))

    async def kv_get(self, key: bytes, *, namespace: str = "") -> bytes | None:
        return await self._call(calls.kv_get(key, namespace))

    async def kv_multi_get(
        self, keys: Iterable[bytes], *, namespace: str = ""
    ) -> dict[bytes, bytes]:
        """The keys that exist, with their values."""
        return await self._call(calls.kv_multi_get(keys, namespace))

    async def kv_del(self, key: bytes, *, namespace: str = "", by_prefix: bool = False) -> int:
        """Delete the key (or every key with this prefix); returns how many were deleted."""
        return await self._call(calls.kv_del(key, namespace, by_prefix))

    async def kv_keys(self, prefix: bytes, *, namespace: str = "") -> list[bytes]:
        return await self._call(calls.kv_keys(prefix, namespace))

    async def kv_exists(self, key: bytes, *, namespace: str = "") -> bool:
        return await self._call(calls.kv_exists(key, namespace))


class KeyedStream:
    """A `SubscribeKeys` stream: read batches with `next` (or `async for`), add and remove
    keys with `update`. The first batch comes at once (empty if the keys hold nothing new),
    so a reader can put a deadline on it to tell an unreachable GCS. Errors as for every
    call; `cancel` ends it."""

    def __init__(self, call: Any, first: gcs_pubsub_pb2.SubscribeRequest, client: Any) -> None:
        self._call = call
        self._first: gcs_pubsub_pb2.SubscribeRequest | None = first
        self._client = client

    def _error(self, err: grpc.RpcError) -> Exception:
        return _translate(err, self._client.address, "SubscribeKeys", self._client.timeout)

    async def _start(self) -> None:
        if self._first is not None:
            first, self._first = self._first, None
            await self._write(first)

    async def _write(self, request: gcs_pubsub_pb2.SubscribeRequest) -> None:
        try:
            await self._call.write(request)
        except grpc.RpcError as err:
            raise self._error(err) from err

    async def update(self, add: Iterable[bytes] = (), remove: Iterable[bytes] = ()) -> None:
        await self._start()
        await self._write(gcs_pubsub_pb2.SubscribeRequest(add_keys=add, remove_keys=remove))

    async def next(self) -> Batch:
        await self._start()
        try:
            msg = await self._call.read()
        except grpc.RpcError as err:
            raise self._error(err) from err
        if msg is grpc.aio.EOF:
            raise ConnectionError("the GCS ended the stream")
        return actor_batch_from_proto(msg)

    def __aiter__(self) -> KeyedStream:
        return self

    async def __anext__(self) -> Batch:
        return await self.next()

    def cancel(self) -> None:
        self._call.cancel()
