"""A NodeProvider for unit tests: deterministic machines in memory, a manual clock, and
failures injected on purpose.

It keeps every guarantee of ``rayops.providers.base`` (idempotent by request id, errors as
values, terminate of unknown ids a no-op) and makes eventual consistency something a test
turns on: with ``launch_delay_s`` a launched machine is listed only that many seconds (of
``clock``) after the launch, with ``terminate_delay_s`` a terminated one stays listed that
long. Ids and addresses are deterministic (``fake-1``, ``10.0.0.1``, ...), so tables of
expected actions can name them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from rayops.providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST,
    TAG_ROLE,
    CloudInstance,
    NodeProvider,
    ProviderError,
)

__all__ = ["FakeClock", "FakeProvider", "LaunchCall"]


class FakeClock:
    """A clock tests move by hand (``advance``); call it for the time."""

    def __init__(self, start: float = 1_000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        if seconds < 0:
            raise ValueError(f"a clock only moves forward; got {seconds}")
        self.now += seconds


@dataclass(frozen=True)
class LaunchCall:
    """One call of ``launch`` (repeats included), for tests that count them."""

    node_type: str
    count: int
    request_id: str
    at: float


@dataclass
class _Machine:
    instance: CloudInstance
    visible_at: float
    gone_at: float | None = None


@dataclass
class _Failure:
    remaining: int
    cause: str


@dataclass
class FakeProvider(NodeProvider):
    """``node_types``: the types it can launch (keys; values are not read).

    ``fail_next``: node type -> how many of the next machines of that type fail to launch
    (each reported by ``poll_errors`` with the cause "injected failure"); more with
    ``fail_next_launch``. ``capacity``: node type -> at most this many machines of it at
    once (the rest of a launch fails, like a cloud out of capacity).
    """

    node_types: Mapping[str, Any]
    launch_delay_s: float = 0.0
    fail_next: Mapping[str, int] = field(default_factory=dict)
    clock: Callable[[], float] = field(default_factory=FakeClock)
    terminate_delay_s: float = 0.0
    capacity: Mapping[str, int] = field(default_factory=dict)
    cluster_name: str = "fake"
    launch_calls: list[LaunchCall] = field(default_factory=list, init=False)
    terminate_calls: list[tuple[tuple[str, ...], str]] = field(default_factory=list, init=False)
    _machines: dict[str, _Machine] = field(default_factory=dict, init=False)
    _requests: set[str] = field(default_factory=set, init=False)
    _errors: list[ProviderError] = field(default_factory=list, init=False)
    _launch_failures: dict[str, _Failure] = field(default_factory=dict, init=False)
    _terminate_failures: list[str] = field(default_factory=list, init=False)
    _serial: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        for node_type, n in self.fail_next.items():
            self.fail_next_launch(node_type, n)

    # --- failure injection -------------------------------------------------------------
    def fail_next_launch(self, node_type: str, count: int = 1, cause: str = "") -> None:
        """The next ``count`` machines of ``node_type`` launched fail with ``cause``."""
        self._check_type(node_type)
        self._launch_failures[node_type] = _Failure(count, cause or "injected failure")

    def fail_next_terminate(self, cause: str = "") -> None:
        """The next ``terminate`` call fails as a whole (its machines stay)."""
        self._terminate_failures.append(cause or "injected terminate failure")

    def add_machine(self, node_type: str, role: str = "worker", request_id: str = "") -> str:
        """A machine that exists without a launch (the head, or one made by hand)."""
        self._check_type(node_type)
        return self._make(node_type, request_id, role, visible_at=self.clock())

    # --- NodeProvider -------------------------------------------------------------------
    def launch(self, node_type: str, count: int, request_id: str) -> None:
        self._check_type(node_type)
        if count < 0:
            raise ValueError(f"launch: count must be >= 0, got {count}")
        now = self.clock()
        self.launch_calls.append(LaunchCall(node_type, count, request_id, now))
        if request_id in self._requests:
            return
        self._requests.add(request_id)
        failed, causes = 0, []
        for _ in range(count):
            cause = self._launch_failure(node_type)
            if cause is None:
                self._make(node_type, request_id, "worker", visible_at=now + self.launch_delay_s)
            else:
                failed += 1
                causes.append(cause)
        if failed:
            self._errors.append(
                ProviderError(
                    "launch",
                    request_id,
                    causes[0],
                    now,
                    node_type=node_type,
                    count=failed,
                )
            )

    def terminate(self, node_ids: Sequence[str], request_id: str) -> None:
        now = self.clock()
        self.terminate_calls.append((tuple(node_ids), request_id))
        if self._terminate_failures:
            cause = self._terminate_failures.pop(0)
            self._errors.append(
                ProviderError("terminate", request_id, cause, now, node_ids=tuple(node_ids))
            )
            return
        for node_id in node_ids:
            m = self._machines.get(node_id)
            if m is not None and m.gone_at is None:
                m.gone_at = now + self.terminate_delay_s

    def non_terminated(self) -> dict[str, CloudInstance]:
        now = self.clock()
        out = {}
        for node_id, m in self._machines.items():
            if m.visible_at <= now and (m.gone_at is None or m.gone_at > now):
                out[node_id] = m.instance
        return out

    def poll_errors(self) -> list[ProviderError]:
        errors, self._errors = self._errors, []
        return errors

    def set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        m = self._machines.get(node_id)
        if m is not None:
            m.instance = replace(m.instance, tags={**m.instance.tags, **tags})

    # --- for assertions -----------------------------------------------------------------
    def alive(self) -> dict[str, CloudInstance]:
        """Every machine launched and not terminated, listed or not yet (the truth that
        ``non_terminated`` converges to)."""
        return {k: m.instance for k, m in self._machines.items() if m.gone_at is None}

    def launched(self, request_id: str) -> int:
        """How many machines ``request_id`` made (0 for a request never seen)."""
        return sum(1 for m in self._machines.values() if m.instance.request_id == request_id)

    # --- internals ----------------------------------------------------------------------
    def _check_type(self, node_type: str) -> None:
        if node_type not in self.node_types:
            raise ValueError(
                f"unknown node type {node_type!r}; the fake provider has "
                f"{', '.join(sorted(self.node_types)) or 'none'}"
            )

    def _launch_failure(self, node_type: str) -> str | None:
        f = self._launch_failures.get(node_type)
        if f is not None and f.remaining > 0:
            f.remaining -= 1
            return f.cause
        cap = self.capacity.get(node_type)
        if (
            cap is not None
            and sum(1 for i in self.alive().values() if i.node_type == node_type) >= cap
        ):
            return f"no capacity for {node_type!r} (at most {cap})"
        return None

    def _make(self, node_type: str, request_id: str, role: str, visible_at: float) -> str:
        self._serial += 1
        node_id = f"fake-{self._serial}"
        ip = f"10.0.{self._serial // 250}.{self._serial % 250 + 1}"
        tags = {TAG_CLUSTER: self.cluster_name, TAG_ROLE: role, TAG_NODE_TYPE: node_type}
        if request_id:
            tags[TAG_REQUEST] = request_id
        self._machines[node_id] = _Machine(
            CloudInstance(node_id, node_type, request_id, ip, ip, tags, True), visible_at
        )
        return node_id
