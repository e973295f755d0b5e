"""Who holds each runtime_env package in the GCS's package store, and when one goes (issue 11).

A ``working_dir`` or ``py_modules`` package (``gcs://_ray_pkg_<hash>.zip``, stored in the
internal KV by ``rayops.envs.packaging``) is kept while something holds it, as in Ray's
``RuntimeEnvManager``:

* a **job** that uses it: its drivers (and workers) report each package they resolve, the
  job-level env's included, before they upload it (``JobUsesPackages``); released when the
  job finishes (``JobFinished``);
* a **detached actor** whose env has it (``ActorCreated``, from its registration); released
  when the actor is dead for good (``ActorDead``); a non-detached actor dies with its job,
  whose reference covers it;
* a **temporary reference** taken when the package is written (``PackageUploaded``, from the
  KV's change events, so an upload through the API server's ``PUT /api/packages/...`` counts
  the same), for ``ttl_s`` (Ray's ``RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S``,
  default 10 minutes): what lets a package uploaded for a job that is still waiting to start,
  or never used, live long enough, and then be collected.

A package no job, actor or live temporary reference holds is deleted (``DeletePackage``), and
forgotten: written again, it is tracked again. Time comes in with the events (``Tick``);
nothing here does I/O. The shell is ``rayops.gcs.package_refs_service``.

Legal changes, one line each:

  PackageUploaded(u, now)       temporary reference of u until now + ttl (extended, never
                                shortened)
  JobStarted(j)                 j is running: its references count from now on
  JobUsesPackages(j, us)        j holds every u in us, if j is running (else nothing: a
                                finished job's driver is gone, and an unknown one never
                                registered; the temporary reference is what keeps the package)
  JobFinished(j)                j holds nothing; each u it held that nothing else holds goes
  ActorCreated(a, us)           detached actor a holds us (a second one for a is ignored)
  ActorDead(a)                  a holds nothing; each u it held that nothing else holds goes
  Tick(now)                     expired temporary references end; their unheld packages go
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

__all__ = [
    "DEFAULT_TEMPORARY_REFERENCE_S",
    "TTL_VAR",
    "ActorCreated",
    "ActorDead",
    "DeletePackage",
    "JobFinished",
    "JobStarted",
    "JobUsesPackages",
    "PackageRefEvent",
    "PackageRefs",
    "PackageStoreSettings",
    "PackageUploaded",
    "Tick",
]

# Ray's RAY_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S default.
DEFAULT_TEMPORARY_REFERENCE_S = 600.0

TTL_VAR = "RAYOPS_RUNTIME_ENV_TEMPORARY_REFERENCE_EXPIRATION_S"


@dataclass(frozen=True)
class PackageStoreSettings:
    temporary_reference_s: float = DEFAULT_TEMPORARY_REFERENCE_S

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PackageStoreSettings:
        env = os.environ if environ is None else environ
        raw = env.get(TTL_VAR, "").strip()
        if not raw:
            return cls()
        try:
            value = float(raw)
        except ValueError:
            value = -1.0
        if not value >= 0:
            raise ValueError(f"{TTL_VAR}={raw!r}: expected a number of seconds >= 0")
        return cls(value)


@dataclass(frozen=True, slots=True)
class PackageUploaded:
    """A key of package ``uri`` was written at ``now`` (seconds, the shell's clock)."""

    uri: str
    now: float


@dataclass(frozen=True, slots=True)
class JobStarted:
    job_id: int


@dataclass(frozen=True, slots=True)
class JobUsesPackages:
    """A process of job ``job_id`` resolved an env with these packages."""

    job_id: int
    uris: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class JobFinished:
    job_id: int


@dataclass(frozen=True, slots=True)
class ActorCreated:
    """A detached actor registered with an env holding these packages."""

    actor_id: bytes
    uris: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class ActorDead:
    """An actor is DEAD for good (no restart left); any actor may be named."""

    actor_id: bytes


@dataclass(frozen=True, slots=True)
class Tick:
    now: float


PackageRefEvent = (
    PackageUploaded | JobStarted | JobUsesPackages | JobFinished | ActorCreated | ActorDead | Tick
)


@dataclass(frozen=True, slots=True)
class DeletePackage:
    """Delete every key of package ``uri`` from the store; ``reason`` says what released it."""

    uri: str
    reason: str


_Holder = tuple[str, int | bytes]  # ("job", job_id) or ("actor", actor_id)


class PackageRefs:
    """The references of every package the GCS tracks; ``apply`` returns what to delete."""

    def __init__(self, ttl_s: float = DEFAULT_TEMPORARY_REFERENCE_S) -> None:
        if ttl_s < 0:
            raise ValueError(f"temporary reference expiration must be >= 0 s, got {ttl_s}")
        self.ttl_s = ttl_s
        self._holders: dict[str, set[_Holder]] = {}
        self._temporary: dict[str, float] = {}  # uri -> when its temporary reference ends
        self._held: dict[_Holder, set[str]] = {}
        self._running: set[int] = set()

    # ------------------------------------------------------------------ reading
    def holders(self, uri: str) -> set[str]:
        """Who holds ``uri``: ``job:<id>``, ``actor:<hex>``, ``temporary`` (for tests, logs)."""
        out = {
            f"{kind}:{i if isinstance(i, int) else i.hex()}"
            for kind, i in self._holders.get(uri, ())
        }
        if uri in self._temporary:
            out.add("temporary")
        return out

    def is_running(self, job_id: int) -> bool:
        return job_id in self._running

    def tracked(self) -> set[str]:
        return set(self._holders) | set(self._temporary)

    def next_expiry(self) -> float | None:
        """When the earliest temporary reference ends (None: there is none)."""
        return min(self._temporary.values(), default=None)

    # ----------------------------------------------------------------- changing
    def apply(self, event: PackageRefEvent) -> list[DeletePackage]:
        match event:
            case PackageUploaded(uri, now):
                self._temporary[uri] = max(self._temporary.get(uri, now), now + self.ttl_s)
                return []
            case JobStarted(job_id):
                self._running.add(job_id)
                return []
            case JobUsesPackages(job_id, uris):
                if job_id in self._running:
                    self._hold(("job", job_id), uris)
                return []
            case JobFinished(job_id):
                self._running.discard(job_id)
                return self._release(("job", job_id), f"job {job_id} finished")
            case ActorCreated(actor_id, uris):
                if ("actor", actor_id) not in self._held:
                    self._hold(("actor", actor_id), uris)
                return []
            case ActorDead(actor_id):
                return self._release(("actor", actor_id), f"detached actor {actor_id.hex()} died")
            case Tick(now):
                expired = sorted(u for u, until in self._temporary.items() if until <= now)
                for uri in expired:
                    del self._temporary[uri]
                return self._collect(expired, "its temporary reference expired")
        raise TypeError(f"not a package reference event: {event!r}")

    def _hold(self, holder: _Holder, uris: Iterable[str]) -> None:
        held = self._held.setdefault(holder, set())
        for uri in uris:
            held.add(uri)
            self._holders.setdefault(uri, set()).add(holder)

    def _release(self, holder: _Holder, reason: str) -> list[DeletePackage]:
        uris = sorted(self._held.pop(holder, ()))
        for uri in uris:
            holders = self._holders.get(uri)
            if holders is not None:
                holders.discard(holder)
        return self._collect(uris, reason)

    def _collect(self, uris: Iterable[str], reason: str) -> list[DeletePackage]:
        out = []
        for uri in uris:
            if self._holders.get(uri) or uri in self._temporary:
                continue
            self._holders.pop(uri, None)
            out.append(DeletePackage(uri, reason))
        return out
