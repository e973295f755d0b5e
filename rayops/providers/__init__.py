"""Node providers: where machines come from (a pool of SSH hosts, EC2, or a user's class).

``NodeProvider`` (``base``) is the interface the launcher and the autoscaler use;
``make_provider`` picks the implementation a cluster spec names in ``provider.type``.
Implementations are imported lazily, so a cluster that never uses EC2 never imports boto3.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rayops.providers.base import (
    TAG_CLUSTER,
    TAG_NODE_TYPE,
    TAG_REQUEST,
    TAG_ROLE,
    CloudInstance,
    NodeProvider,
    ProviderError,
)
from rayops.providers.local import LocalNodeProvider

if TYPE_CHECKING:
    from rayops.launcher.spec import ClusterSpec

__all__ = [
    "TAG_CLUSTER",
    "TAG_NODE_TYPE",
    "TAG_REQUEST",
    "TAG_ROLE",
    "CloudInstance",
    "LocalNodeProvider",
    "NodeProvider",
    "ProviderError",
    "make_provider",
]

PROVIDER_TYPES = ("local", "aws", "external")


def make_provider(spec: ClusterSpec, **options: Any) -> NodeProvider:
    """The provider of ``spec.provider.type``: ``local`` (the SSH host pool), ``aws`` (EC2)
    or ``external`` (``provider.module: "pkg.mod:Class"``).

    Each implementation is built by its own ``from_spec(spec, **options)`` (for ``external``,
    ``rayops.providers.external.load_external_provider(spec, **options)``), so ``options``
    (for example a clock or a boto3 endpoint for tests) mean what that implementation says;
    one it does not take raises TypeError naming it.
    """
    kind = spec.provider.type
    if kind == "local":
        return LocalNodeProvider.from_spec(spec, **options)
    if kind == "aws":
        from rayops.providers.aws import AwsNodeProvider  # boto3 only when asked for

        provider: NodeProvider = AwsNodeProvider.from_spec(spec, **options)
        return provider
    if kind == "external":
        from rayops.providers.external import load_external_provider

        loaded: NodeProvider = load_external_provider(spec, **options)
        return loaded
    raise ValueError(f"provider.type: expected one of {', '.join(PROVIDER_TYPES)}, got {kind!r}")
