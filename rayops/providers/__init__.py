"""Node providers: where machines come from (a fixed pool of SSH hosts; later, clouds).

``NodeProvider`` is the interface the launcher and the autoscaler use; ``LocalNodeProvider``
is the static pool behind Ray's ``provider: {type: local}``.
"""

from __future__ import annotations

from rayops.providers.base import NodeProvider, ProviderNode
from rayops.providers.local import LocalNodeProvider

__all__ = ["LocalNodeProvider", "NodeProvider", "ProviderNode"]
