"""The NodeProvider interface: launch, terminate, list, tag and address machines.

Modelled on Ray autoscaler v2's ``ICloudInstanceProvider``. Guarantees every implementation
keeps (and ``rayops.testing.fake_provider.FakeProvider`` keeps, so tests can rely on them):

* ``launch`` is idempotent by ``request_id``: calling it again with an id it has seen launches
  nothing more (a retried or replayed request never doubles a fleet). It may return before
  the machines exist; they show up in ``non_terminated`` later.
* Failures are values, not exceptions: a launch or terminate that fails (quota, capacity, an
  unreachable pool host, a refused API call) comes back from ``poll_errors`` as a
  ``ProviderError`` naming the request and a cause a human can act on. Only a programming
  error (a node type the provider does not know, a negative count) raises, at once.
* ``terminate`` of an unknown or already terminated machine is a no-op.
* ``non_terminated`` is eventually consistent: it may lag behind ``launch`` and ``terminate``
  (clouds are); callers reconcile against it rather than assume.
* Every machine the provider lists carries the tags of this module (cluster, role, node type,
  launch request): the tags are the cluster's record, so a restarted autoscaler can match
  machines to the requests that made them.
* Implementations are called from one thread at a time; callers serialise.

Providers never start rayops on a machine unless their docstring says so: a machine that is
``running`` exists and is up, which says nothing about raylets.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

__all__ = [
    "TAG_CLUSTER",
    "TAG_NODE_TYPE",
    "TAG_REQUEST",
    "TAG_ROLE",
    "CloudInstance",
    "NodeProvider",
    "ProviderError",
]

TAG_CLUSTER = "rayops-cluster-name"  # the spec's cluster_name
TAG_ROLE = "rayops-node-role"  # "head" or "worker"
TAG_NODE_TYPE = "rayops-node-type"  # a key of available_node_types
TAG_REQUEST = "rayops-launch-request"  # the request_id of the launch that made the machine


@dataclass(frozen=True)
class CloudInstance:
    """One machine as the provider sees it."""

    node_id: str  # the provider's id (EC2 instance id, pool host address, fake id)
    node_type: str  # a key of available_node_types
    request_id: str  # the launch request that made it ("" for machines no launch made)
    internal_ip: str  # "" until known
    external_ip: str  # "" until known
    tags: Mapping[str, str] = field(default_factory=dict)
    running: bool = False  # the machine exists and is up (not: rayops runs on it)

    @property
    def role(self) -> str:
        """``head`` or ``worker`` (from ``TAG_ROLE``; untagged machines are workers)."""
        return self.tags.get(TAG_ROLE, "worker")


@dataclass(frozen=True)
class ProviderError:
    """A launch or terminate that failed, as ``poll_errors`` reports it."""

    kind: Literal["launch", "terminate"]
    request_id: str
    cause: str  # one line a human can act on
    timestamp: float  # time.time()
    node_type: str | None = None
    count: int = 0  # launch: how many of the request failed
    node_ids: tuple[str, ...] = ()  # terminate: which ones
    # launch: the provider has other capacity for this request right now (the machine that
    # failed rests under the provider's own backoff), so a retry need not wait: the
    # autoscaler retries at once instead of after its backoff.
    retry_now: bool = False


class NodeProvider(ABC):
    """A source of machines. See the module docstring for the guarantees."""

    @abstractmethod
    def launch(self, node_type: str, count: int, request_id: str) -> None:
        """Start making ``count`` machines of ``node_type``; idempotent by ``request_id``.

        May return before the machines exist; failures come back from ``poll_errors``.
        """

    @abstractmethod
    def terminate(self, node_ids: Sequence[str], request_id: str) -> None:
        """Release machines; unknown or already terminated ids are no-ops."""

    @abstractmethod
    def non_terminated(self) -> dict[str, CloudInstance]:
        """Every machine of this cluster not terminated, by ``node_id`` (eventually
        consistent)."""

    @abstractmethod
    def poll_errors(self) -> list[ProviderError]:
        """The errors since the last call (each reported once)."""

    @abstractmethod
    def set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        """Merge ``tags`` into the machine's tags; a no-op for an unknown machine."""
