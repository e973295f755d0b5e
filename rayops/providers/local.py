"""The static pool of Ray's ``provider: {type: local}``: hosts that already exist.

Every host listed is a node from the start (the head plus all ``worker_ips``); ``launch``
hands out pool hosts not yet in use and ``terminate`` returns them to the pool. No I/O: the
pool's state is in memory, which also makes this provider its own fake in tests.
"""

from __future__ import annotations

from collections.abc import Mapping

from rayops.providers.base import TAG_NODE_TYPE, TAG_ROLE, NodeProvider, ProviderNode


class LocalNodeProvider(NodeProvider):
    def __init__(
        self,
        head_ip: str,
        worker_ips: list[str],
        head_node_type: str | None = None,
        worker_node_type: str | None = None,
        external_head_ip: str | None = None,
    ) -> None:
        self._nodes: dict[str, ProviderNode] = {}
        self._free: list[str] = []
        self._requests: dict[str, list[str]] = {}
        self._nodes[head_ip] = ProviderNode(
            head_ip,
            head_ip,
            external_head_ip or head_ip,
            {TAG_ROLE: "head", TAG_NODE_TYPE: head_node_type or "head"},
        )
        for ip in worker_ips:
            self._nodes[ip] = ProviderNode(
                ip, ip, ip, {TAG_ROLE: "worker", TAG_NODE_TYPE: worker_node_type or "worker"}
            )

    def non_terminated_nodes(
        self, tag_filters: Mapping[str, str] | None = None
    ) -> list[ProviderNode]:
        wanted = dict(tag_filters or {})
        return [
            n for n in self._nodes.values() if all(n.tags.get(k) == v for k, v in wanted.items())
        ]

    def launch(
        self, count: int, node_type: str, tags: Mapping[str, str], request_id: str
    ) -> list[ProviderNode]:
        if request_id in self._requests:
            return [self._nodes[i] for i in self._requests[request_id]]
        taken = self._free[:count]
        del self._free[:count]
        for ip in taken:
            self._nodes[ip] = ProviderNode(
                ip, ip, ip, {**tags, TAG_NODE_TYPE: node_type, TAG_ROLE: "worker"}
            )
        self._requests[request_id] = taken
        return [self._nodes[i] for i in taken]

    def terminate(self, node_id: str) -> None:
        node = self._nodes.pop(node_id, None)
        if node is not None and node.role != "head":
            self._free.append(node_id)

    def set_tags(self, node_id: str, tags: Mapping[str, str]) -> None:
        node = self._nodes.get(node_id)
        if node is not None:
            self._nodes[node_id] = ProviderNode(
                node.node_id, node.internal_ip, node.external_ip, {**node.tags, **tags}
            )
