"""A node provider the user writes: ``provider: {type: external, module: "pkg.mod:Class"}``.

The class must subclass ``rayops.providers.base.NodeProvider`` (or at least define every one
of its methods) and is built as ``Class(provider_config, cluster_name, node_configs)``:
the ``provider`` section as a dict, the spec's ``cluster_name`` and each node type's
``node_config``. Ray's dotted form (``module: pkg.mod.Class``) is accepted too. Every problem
(module not importable, no such class, not a class, a method missing, a constructor that
refuses those arguments) raises ``RayOpsConfigError`` naming ``provider.module``.
"""

from __future__ import annotations

import importlib
import inspect
from typing import TYPE_CHECKING, Any, cast

from rayops.exceptions import RayOpsConfigError
from rayops.providers.base import NodeProvider

if TYPE_CHECKING:
    from rayops.launcher.spec import ClusterSpec

__all__ = ["load_external_provider", "load_provider_class"]

_KEY = "provider.module"


def load_provider_class(module: str) -> type[NodeProvider]:
    """The class ``module`` ("pkg.mod:Class" or "pkg.mod.Class") names, checked."""
    module_name, sep, class_name = module.partition(":")
    if not sep:
        module_name, _, class_name = module.rpartition(".")
    if not module_name or not class_name:
        raise RayOpsConfigError(f"{_KEY}: expected 'package.module:ClassName', found {module!r}")
    try:
        mod = importlib.import_module(module_name)
    except Exception as err:  # not only ImportError: the module's own code may raise
        raise RayOpsConfigError(
            f"{_KEY}: cannot import module {module_name!r} (from {module!r}): "
            f"{type(err).__name__}: {err}"
        ) from err
    cls = getattr(mod, class_name, None)
    if cls is None:
        raise RayOpsConfigError(
            f"{_KEY}: module {module_name!r} has no attribute {class_name!r} (from {module!r})"
        )
    if not inspect.isclass(cls):
        raise RayOpsConfigError(
            f"{_KEY}: {module!r} is a {type(cls).__name__}, expected a NodeProvider class"
        )
    missing = sorted(
        name
        for name in NodeProvider.__abstractmethods__
        if not callable(getattr(cls, name, None))
        or getattr(getattr(cls, name), "__isabstractmethod__", False)
    )
    if missing:
        raise RayOpsConfigError(
            f"{_KEY}: {module!r} does not implement the NodeProvider interface: "
            f"missing {', '.join(missing)} (subclass rayops.providers.base.NodeProvider)"
        )
    return cast("type[NodeProvider]", cls)  # checked above: it has every method


def load_external_provider(spec: ClusterSpec, **options: Any) -> NodeProvider:
    """Build the user's provider for ``spec``; ``options`` go to its constructor as keywords."""
    module = spec.provider.module
    if not module:
        raise RayOpsConfigError(f"{_KEY}: required for provider type 'external'")
    cls = load_provider_class(module)
    # Ray hands a provider class its whole provider section; rayops keeps the class's own
    # settings under provider.config (the spec refuses unknown keys) and flattens them back.
    provider_config = {"type": "external", "module": module, **(spec.provider.config or {})}
    node_configs = {name: dict(t.node_config) for name, t in spec.available_node_types.items()}
    try:
        provider = cls(provider_config, spec.cluster_name, node_configs, **options)  # type: ignore[call-arg]
    except TypeError as err:
        raise RayOpsConfigError(
            f"{_KEY}: {module!r} could not be built as Class(provider_config, cluster_name, "
            f"node_configs): {err}"
        ) from err
    if not isinstance(provider, NodeProvider) and missing_methods(provider):
        raise RayOpsConfigError(
            f"{_KEY}: {module!r} built an object without {', '.join(missing_methods(provider))}"
        )
    return provider


def missing_methods(obj: Any) -> list[str]:
    return sorted(
        n for n in NodeProvider.__abstractmethods__ if not callable(getattr(obj, n, None))
    )
