"""The static pool of Ray's ``provider: {type: local}``: hosts that already exist.

Every host listed is a machine from the start (the head plus all ``worker_ips``); ``launch``
hands out pool hosts not yet in use and ``terminate`` returns them to the pool. No I/O: the
pool's state is in memory. A launch the pool cannot fill is reported by ``poll_errors``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING

from rayops.providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST,
    TAG_ROLE,
    CloudInstance,
    NodeProvider,
    ProviderError,
)

if TYPE_CHECKING:
    from rayops.launcher.spec import ClusterSpec


class LocalNodeProvider(NodeProvider):
    def __init__(
        self,
        head_ip: str,
        worker_ips: list[str],
        head_node_type: str | None = None,
        worker_node_type: str | None = None,
        external_head_ip: str | None = None,
        cluster_name: str = "",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._clock = clock
        self._cluster = cluster_name
        self._worker_type = worker_node_type or "worker"
        self._nodes: dict[str, CloudInstance] = {}
        self._free: list[str] = []
        self._requests: set[str] = set()
        self._errors: list[ProviderError] = []
        head_type = head_node_type or "head"
        self._nodes[head_ip] = CloudInstance(
            head_ip,
            head_type,
            "",
            head_ip,
            external_head_ip or head_ip,
            self._tags("head", head_type, ""),
            True,
        )
        for ip in worker_ips:
            self._nodes[ip] = CloudInstance(
                ip, self._worker_type, "", ip, ip, self._tags("worker", self._worker_type, ""), True
            )

    @classmethod
    def from_spec(cls, spec: ClusterSpec) -> LocalNodeProvider:
        """The pool of a cluster spec's ``provider`` section."""
        return cls(
            spec.provider.head_ip,
            list(spec.provider.worker_ips),
            spec.head_node_type,
            spec.worker_node_type(),
            cluster_name=spec.cluster_name,
        )

    def _tags(self, role: str, node_type: str, request_id: str) -> dict[str, str]:
        tags = {TAG_CLUSTER: self._cluster, TAG_ROLE: role, TAG_NODE_TYPE: node_type}
        if request_id:
            tags[TAG_REQUEST] = request_id
        return tags

    def non_terminated(self) -> dict[str, CloudInstance]:
        return dict(self._nodes)

    def launch(self, node_type: str, count: int, request_id: str) -> None:
        if count < 0:
            raise ValueError(f"launch: count must be >= 0, got {count}")
        if node_type != self._worker_type:
            raise ValueError(
                f"launch: the local pool holds only node type {self._worker_type!r}, "
                f"got {node_type!r}"
            )
        if request_id in self._requests:
            return
        self._requests.add(request_id)
        taken = self._free[:count]
        del self._free[:count]
        for ip in taken:
            self._nodes[ip] = CloudInstance(
                ip, node_type, request_id, ip, ip, self._tags("worker", node_type, request_id), True
            )
        if len(taken) < count:
            self._errors.append(
                ProviderError(
                    "launch",
                    request_id,
                    f"the local pool has no free host for {count - len(taken)} of {count} "
                    f"{node_type!r} nodes; add hosts to provider.worker_ips",
                    self._clock(),
                    node_type=node_type,
                    count=count - len(taken),
                )
            )

    def terminate(self, node_ids: Sequence[str], request_id: str) -> None:
        for node_id in node_ids:
            node = self._nodes.get(node_id)
            if node is None or node.role == "head":
                continue
            del self._nodes[node_id]
            self._free.append(node_id)

    def poll_errors(self) -> list[ProviderError]:
        errors, self._errors = self._errors, []
        return errors

    def set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        node = self._nodes.get(node_id)
        if node is not None:
            self._nodes[node_id] = CloudInstance(
                node.node_id,
                node.node_type,
                node.request_id,
                node.internal_ip,
                node.external_ip,
                {**node.tags, **tags},
                node.running,
            )
