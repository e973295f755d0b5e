"""The public surface: what `import rayops` exports is exactly what __all__ lists."""

from __future__ import annotations

import rayops

EXPECTED = {
    "DynamicObjectRefGenerator",
    "ObjectID",
    "ObjectRef",
    "ObjectRefGenerator",
    "__version__",
    "available_resources",
    "cancel",
    "cluster_resources",
    "exceptions",
    "get",
    "get_actor",
    "get_gpu_ids",
    "get_runtime_context",
    "init",
    "is_initialized",
    "job_config",
    "kill",
    "method",
    "nodes",
    "put",
    "remote",
    "shutdown",
    "wait",
}


def test_all_matches_the_public_surface() -> None:
    assert set(rayops.__all__) == EXPECTED


def test_every_exported_name_resolves() -> None:
    for name in rayops.__all__:
        assert getattr(rayops, name) is not None, name


def test_ray_module_paths_exist() -> None:
    from rayops.exceptions import GetTimeoutError, RayTaskError
    from rayops.util.metrics import Counter, Gauge, Histogram
    from rayops.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    assert issubclass(GetTimeoutError, TimeoutError)
    assert RayTaskError.__name__ == "RayTaskError"
    assert NodeAffinitySchedulingStrategy("ab", soft=True).soft
    assert rayops.ObjectID is rayops.ObjectRef  # Ray's older name, kept as an alias
    assert rayops.job_config.JobConfig(ray_namespace="ns").ray_namespace == "ns"
    assert Counter.__module__ == Gauge.__module__ == Histogram.__module__ == "rayops.util.metrics"


def test_unknown_attribute_is_an_attribute_error() -> None:
    import pytest

    with pytest.raises(AttributeError):
        rayops.not_a_thing  # noqa: B018
