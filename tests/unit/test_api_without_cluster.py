"""Ray 2.60's API pieces that need no cluster: JobConfig, refs made from ids, and the
signature check every ``.remote()`` makes."""

from __future__ import annotations

import pytest

import rayops
from rayops import call_signature
from rayops.job_config import JobConfig


def test_job_config_takes_rays_arguments_and_says_what_it_cannot_honour() -> None:
    jc = JobConfig(ray_namespace="ns", runtime_env={}, metadata=None)
    assert (jc.ray_namespace, jc.runtime_env, jc.not_honoured()) == ("ns", {}, [])
    jc.set_metadata("team", "a")
    jc.set_default_actor_lifetime("detached")
    refused = " ".join(jc.not_honoured())
    assert "metadata" in refused and "default_actor_lifetime" in refused
    with pytest.raises(ValueError, match="default_actor_lifetime"):
        jc.set_default_actor_lifetime("forever")
    with pytest.raises(TypeError, match="ray_namespace"):
        JobConfig(ray_namespace=3)  # type: ignore[arg-type]
    again = JobConfig.from_json({"ray_namespace": "x", "runtime_env": {"env_vars": {}}})
    assert again.ray_namespace == "x" and again.runtime_env == {"env_vars": {}}
    with pytest.raises(ValueError, match=r"unknown key.*namespace"):
        JobConfig.from_json({"namespace": "x"})


def test_object_ref_from_ids_without_a_cluster() -> None:
    ref = rayops.ObjectRef.from_random()
    assert rayops.ObjectRef(ref.binary()) == ref
    assert rayops.ObjectRef.from_binary(ref.binary()) == ref
    assert rayops.ObjectRef.from_hex(ref.hex()) == ref
    assert rayops.ObjectRef.nil().is_nil() and not ref.is_nil()
    assert ref.size() == len(ref.binary())
    with pytest.raises(ValueError, match="hex string"):
        rayops.ObjectRef.from_hex("zz")


def test_signature_check_binds_as_python_does() -> None:
    def f(a: int, /, b: int = 1, *args: int, c: int, **kw: int) -> None: ...

    params = call_signature.params_of(f, bound=False)
    assert params is not None
    call_signature.check(params, (1,), {"c": 2}, "f")
    call_signature.check(params, (1, 2, 3, 4), {"c": 2, "z": 1}, "f")
    with pytest.raises(TypeError, match=r"^f\(\): missing a required argument: 'c'"):
        call_signature.check(params, (1,), {}, "f")
    with pytest.raises(TypeError, match=r"^f\(\):.*'a'"):
        call_signature.check(params, (), {"a": 1, "c": 2}, "f")

    class C:
        def m(self, x: int) -> None: ...

    bound = call_signature.params_of(C.m, bound=True)
    assert bound == (("x", 1, False),)
    with pytest.raises(TypeError, match=r"too many positional"):
        call_signature.check(bound, (1, 2), {}, "m")
    assert call_signature.params_of(object.__init__, bound=True) == ()
