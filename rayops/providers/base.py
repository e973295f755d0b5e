"""The NodeProvider interface: launch, terminate, list, tag and address nodes.

Guarantees every implementation keeps:

* ``launch`` is idempotent by ``request_id``: calling it again with the same id returns the
  nodes of the first call and launches nothing more (a retried request never doubles a fleet).
* ``terminate`` of an unknown or already terminated node is a no-op.
* ``non_terminated_nodes`` may lag behind ``launch``/``terminate`` (clouds are eventually
  consistent); callers reconcile rather than assume.
* Implementations are safe to call from one thread at a time; callers serialise.

Providers never open SSH connections or start daemons: that is the launcher's job.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field

TAG_ROLE = "rayops-node-role"  # "head" or "worker"
TAG_NODE_TYPE = "rayops-node-type"  # a key of available_node_types


@dataclass(frozen=True)
class ProviderNode:
    node_id: str
    internal_ip: str
    external_ip: str
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def role(self) -> str:
        return self.tags.get(TAG_ROLE, "worker")


class NodeProvider(ABC):
    """A source of nodes. See the module docstring for the guarantees."""

    @abstractmethod
    def non_terminated_nodes(
        self, tag_filters: Mapping[str, str] | None = None
    ) -> list[ProviderNode]:
        """Nodes that exist and are not terminated, optionally only those whose tags match."""

    @abstractmethod
    def launch(
        self, count: int, node_type: str, tags: Mapping[str, str], request_id: str
    ) -> list[ProviderNode]:
        """Make ``count`` nodes of ``node_type`` exist with ``tags``; idempotent by request_id."""

    @abstractmethod
    def terminate(self, node_id: str) -> None:
        """Release a node; a no-op for unknown or already terminated nodes."""

    @abstractmethod
    def set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        """Merge ``tags`` into the node's tags."""
