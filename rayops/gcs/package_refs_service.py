"""The GCS's shell around `rayops.gcs.package_refs`: events in from the spine, deletions out.

`PackageReferences` follows three channels of the event spine in process (listeners on the
publisher, called as each change is published, not polled):

* "kv": a write to a package's key in the package namespace is a `PackageUploaded` (its
  temporary reference), whoever wrote it: a driver's upload or the API server's
  `PUT /api/packages/gcs/...`;
* "jobs": `JobAdded` / `JobFinished`;
* "actors": a detached actor's registration (its env's packages, read from the actor table)
  and its death.

`RuntimeEnvGcsService.AddJobPackageReferences` is how a job's processes say which packages
they use. A `DeletePackage` deletes the package's keys from the KV at once, in the same
callback (so no request handled after the release can see the package half there); a timer
task feeds `Tick`s. Deletions are logged and counted (`GetPackageReferences`).

Setting (environment of the GCS, checked by `rayops start` / `init()` before any daemon
starts): `RAYOPS_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S` (default 600, Ray's
`RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from rayops.envs import packaging
from rayops.envs import spec as envspec
from rayops.gcs import package_refs as refs
from rayops.gcs.actor_events import ActorChange, ActorChanged
from rayops.gcs.job_events import JobAdded, JobFinished
from rayops.gcs.kv_events import KeyPut
from rayops.gcs.pubsub import ACTORS_CHANNEL, JOBS_CHANNEL, KV_CHANNEL
from rayops.protocol import gcs_runtime_env_pb2 as pb
from rayops.protocol import gcs_runtime_env_pb2_grpc as pb_grpc

if TYPE_CHECKING:
    from rayops.gcs.server import GcsState

__all__ = ["PackageReferences", "RuntimeEnvService"]

logger = logging.getLogger(__name__)


def _package_uri_of(key: bytes) -> str | None:
    """``gcs://_ray_pkg_<hash>.zip`` of a package's KV key (``<uri>:meta``, ``<uri>:<i>``)."""
    uri = key.rpartition(b":")[0].decode(errors="replace")
    return uri if envspec.is_package_uri(uri) else None


class PackageReferences:
    """Feeds the spine's events to a `PackageRefs` and deletes what it releases."""

    def __init__(
        self,
        state: GcsState,
        settings: refs.PackageStoreSettings | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._state = state
        self._clock = clock
        ttl_s = (settings or refs.PackageStoreSettings()).temporary_reference_s
        self.refs = refs.PackageRefs(ttl_s)
        self.deleted = 0  # packages whose keys were deleted (at least one key each)
        self._ticker: asyncio.Task[None] | None = None
        state.publisher.listen(KV_CHANNEL, self._on_kv)
        state.publisher.listen(JOBS_CHANNEL, self._on_jobs)
        state.publisher.listen(ACTORS_CHANNEL, self._on_actors)

    # ------------------------------------------------------------------ events in
    def _on_kv(self, events: Sequence[Any]) -> None:
        for event in events:
            if isinstance(event, KeyPut) and event.namespace == packaging.PACKAGE_NAMESPACE:
                uri = _package_uri_of(event.key)
                if uri is not None:
                    self.refs.apply(refs.PackageUploaded(uri, self._clock()))

    def _on_jobs(self, events: Sequence[Any]) -> None:
        for event in events:
            if isinstance(event, JobAdded):
                self.apply(refs.JobStarted(event.job.job_id))
            elif isinstance(event, JobFinished):
                self.apply(refs.JobFinished(event.job_id))

    def _on_actors(self, events: Sequence[Any]) -> None:
        for event in events:
            if not isinstance(event, ActorChanged):
                continue
            if event.change is ActorChange.REGISTERED:
                rec = self._state.actors.get(event.actor_id)
                if rec is not None and rec.is_detached and rec.runtime_env:
                    try:
                        uris = envspec.package_uris(envspec.from_wire(rec.runtime_env))
                    except (ValueError, TypeError):
                        uris = []
                    if uris:
                        self.apply(refs.ActorCreated(event.actor_id, tuple(uris)))
            elif event.state == "DEAD":
                self.apply(refs.ActorDead(event.actor_id))

    def add_job_references(self, job_id: int, uris: Sequence[str]) -> bool:
        """Job ``job_id`` uses ``uris``; False when it is not running (nothing recorded)."""
        self.apply(refs.JobUsesPackages(job_id, tuple(uris)))
        return self.refs.is_running(job_id)

    # ------------------------------------------------------------------ actions out
    def apply(self, event: refs.PackageRefEvent) -> None:
        for action in self.refs.apply(event):
            self._delete(action)

    def _delete(self, action: refs.DeletePackage) -> None:
        prefix = f"{action.uri}:".encode()
        n = self._state.kv.delete(packaging.PACKAGE_NAMESPACE, prefix, by_prefix=True)
        if n == 0:  # referenced but never uploaded, or already deleted
            return
        self.deleted += 1
        logger.info(
            "runtime_env package %s deleted from the package store (%d keys): %s; "
            "%d packages deleted so far",
            action.uri,
            n,
            action.reason,
            self.deleted,
        )

    # ----------------------------------------------------------------------- timer
    def start(self) -> None:
        self._ticker = asyncio.ensure_future(self._tick_loop())

    async def _tick_loop(self) -> None:
        period = min(1.0, max(0.05, self.refs.ttl_s / 4))
        while True:
            await asyncio.sleep(period)
            try:
                self.apply(refs.Tick(self._clock()))
            except Exception:  # a bug must not stop later collection
                logger.exception("package reference tick failed")

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._ticker
            self._ticker = None


class RuntimeEnvService(pb_grpc.RuntimeEnvGcsServiceServicer):
    """RuntimeEnvGcsService over `PackageReferences`."""

    def __init__(self, packages: PackageReferences) -> None:
        self._packages = packages

    async def AddJobPackageReferences(
        self, request: pb.AddJobPackageReferencesRequest, context: grpc.aio.ServicerContext
    ) -> pb.AddJobPackageReferencesReply:
        for uri in request.uris:
            if not envspec.is_package_uri(uri):
                await context.abort(
                    grpc.StatusCode.INVALID_ARGUMENT,
                    f"uris: expected package URIs gcs://_ray_pkg_<hash>.zip, found {uri!r}",
                )
        running = self._packages.add_job_references(request.job_id, list(request.uris))
        return pb.AddJobPackageReferencesReply(job_running=running)

    async def GetPackageReferences(
        self, request: pb.GetPackageReferencesRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetPackageReferencesReply:
        table = self._packages.refs
        return pb.GetPackageReferencesReply(
            packages=[
                pb.PackageReferences(uri=uri, holders=sorted(table.holders(uri)))
                for uri in sorted(table.tracked())
            ],
            deleted_total=self._packages.deleted,
        )
