"""Options rayops cannot honour yet are refused at once, naming the option and the issue that
brings it; their "not used" values are accepted as Ray accepts them (rayops/options.py).

No cluster: every refusal happens at decoration, ``.options()`` or ``init()`` time, before
anything starts (tests/conftest.py fails the run if a process or a session was left behind).
"""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

import rayops
from rayops import options
from rayops.util.scheduling_strategies import (
    NodeAffinitySchedulingStrategy,
    PlacementGroupSchedulingStrategy,
)


def f() -> int:
    return 1


class C:
    def m(self) -> int:
        return 1


def test_runtime_env_fields_not_supported_are_refused_naming_them(tmp_path: Path) -> None:
    """conda, containers and image_uri are not supported; pip with uv, a missing path or an
    unknown field raises too, all before anything starts."""
    rayops.remote(runtime_env={"env_vars": {"A": "1"}})(f)  # supported
    rayops.remote(f).options(runtime_env={"pip": ["nonexistent-package"]})  # checked at get()
    rayops.remote(runtime_env={"uv": ["x"]})(C)
    with pytest.raises(ValueError, match=r"fields 'pip' and 'uv' cannot both be given"):
        rayops.remote(runtime_env={"pip": ["x"], "uv": ["x"]})(C)
    with pytest.raises(ValueError, match=r"fields 'pip' and 'conda' cannot both be given"):
        rayops.remote(f).options(runtime_env={"pip": ["x"], "conda": "x"})
    for field in ("conda", "container", "image_uri"):
        with pytest.raises(NotImplementedError, match=rf"'{field}' is not supported by rayops"):
            rayops.remote(C).options(runtime_env={field: "x"})
    with pytest.raises(ValueError, match=r"unknown runtime_env field 'colour'"):
        rayops.remote(runtime_env={"colour": "x"})(f)
    missing = str(tmp_path / "no-such-dir")
    with pytest.raises(ValueError, match=rf"\['working_dir'\] '{missing}' is not an existing"):
        rayops.remote(C).options(runtime_env={"working_dir": missing})
    with pytest.raises(NotImplementedError, match=r"init\(runtime_env=.*'conda'.*not supported"):
        rayops.init(runtime_env={"conda": "x"}, _temp_dir=str(tmp_path))
    with pytest.raises(ValueError, match=r"init\(runtime_env=.*py_modules.*'x'"):
        rayops.init(runtime_env={"py_modules": ["x"]}, _temp_dir=str(tmp_path))
    with pytest.raises(TypeError, match=r"env_vars'\] must be a dict of str to str"):
        rayops.remote(runtime_env={"env_vars": {"A": 1}})(f)
    with pytest.raises(ValueError, match=r"setup_timeout_seconds' must be > 0 or -1"):
        rayops.remote(runtime_env={"config": {"setup_timeout_seconds": 0}})(f)
    assert not rayops.is_initialized()
    for empty in (None, {}):
        rayops.remote(runtime_env=empty)(f)
        rayops.remote(runtime_env=empty)(C)
    with pytest.raises(TypeError, match="option 'runtime_env' must be a dict"):
        rayops.remote(runtime_env="env")(f)  # a wrong type: TypeError, as in Ray


def test_placement_group_strategy_and_options_check_their_types() -> None:
    """A placement-group strategy takes a PlacementGroup (or None) and an int index; the older
    placement_group= option takes anything when given (as Ray) and refuses a non-group with
    TypeError at .remote(), before anything is submitted (placement groups run in
    tests/integration/test_placement_groups.py)."""
    with pytest.raises(TypeError, match="PlacementGroup"):
        PlacementGroupSchedulingStrategy(object())
    with pytest.raises(TypeError, match="placement_group_bundle_index must be an int"):
        PlacementGroupSchedulingStrategy(None, placement_group_bundle_index="0")  # type: ignore[arg-type]
    # None: no group, as in Ray.
    assert PlacementGroupSchedulingStrategy(None).placement_group is None
    task = rayops.remote(placement_group=object())(f)
    with pytest.raises(TypeError, match="placement_group must be a PlacementGroup"):
        task.remote()


def test_actor_and_task_strategies_are_accepted() -> None:
    """One scheduler places tasks and actors alike (issue 10): SPREAD and node affinity are
    taken by both (tests/integration/test_placement_semantics.py, test_multinode.py); only
    placement-group strategies need a placement group."""
    affinity = NodeAffinitySchedulingStrategy("ab" * 28, soft=False)
    for strategy in ("SPREAD", affinity, "DEFAULT", None):
        rayops.remote(scheduling_strategy=strategy)(C)
        rayops.remote(C).options(scheduling_strategy=strategy)
        rayops.remote(f).options(scheduling_strategy=strategy)


def test_max_calls_checks() -> None:
    with pytest.raises(ValueError, match="option 'max_calls' must be an int >= 0"):
        rayops.remote(max_calls=-1)(f)
    with pytest.raises(ValueError, match="'max_calls' can only be given to @remote"):
        rayops.remote(f).options(max_calls=0)  # as in Ray: not an .options() keyword
    with pytest.raises(ValueError, match="unknown option 'max_calls'"):
        rayops.remote(max_calls=1)(C)  # as in Ray: not an actor option


def test_actor_method_options_refused_until_supported() -> None:
    with pytest.raises(NotImplementedError, match=r"option name='call' .*issue 12"):
        options.validate_actor_method_options({"name": "call"}, where="m.options()")
    with pytest.raises(ValueError, match="unknown option 'num_cpus'"):
        rayops.method(num_cpus=1)
    assert rayops.method(max_task_retries=2, retry_exceptions=False, num_returns=2)(C.m)


def test_other_ray_options_not_honoured_yet_are_refused() -> None:
    with pytest.raises(NotImplementedError, match="option fallback_strategy="):
        rayops.remote(fallback_strategy=[{"label_selector": {"a": "b"}}])(f)
    with pytest.raises(NotImplementedError, match="option object_store_memory="):
        rayops.remote(object_store_memory=2**20)(C)
    with pytest.raises(ValueError, match="'object_store_memory' must be None for a task"):
        rayops.remote(object_store_memory=2**20)(f)  # as in Ray: an actor option
    with pytest.raises(NotImplementedError, match="option allow_out_of_order_execution=True"):
        rayops.remote(allow_out_of_order_execution=True)(C)


def test_unknown_and_bad_options_are_value_errors() -> None:
    with pytest.raises(ValueError, match=r"unknown option '_metadata'"):
        rayops.remote(_metadata={"x": 1})(f)  # as in Ray 2.60: not an option
    # A value of a type Ray does not take is a TypeError (tests/unit/test_option_errors.py).
    with pytest.raises(TypeError, match="option 'enable_task_events' must be a bool"):
        rayops.remote(enable_task_events=1)(f)
    with pytest.raises(TypeError, match="option 'accelerator_type' must be a string"):
        rayops.remote(accelerator_type=3)(C)
    with pytest.raises(TypeError, match="label_selector: keys and values must be strings"):
        rayops.remote(label_selector={"a": 1})(f)  # Ray: TypeError too
    for value in (True, False):
        rayops.remote(enable_task_events=value)(f)  # no task events are kept (issue 12)


def test_init_refuses_before_anything_starts(tmp_path: Path) -> None:
    temp = str(tmp_path)
    # _system_config takes Ray's spilling keys only (rayops/raylet/spilling.py).
    with pytest.raises(NotImplementedError, match=r"_system_config.*key 'x' is not supported"):
        rayops.init(_system_config={"x": 1}, _temp_dir=temp)
    with pytest.raises(TypeError, match=r"unexpected keyword argument.*num_cpu"):
        rayops.init(num_cpu=1, _temp_dir=temp)
    with pytest.raises(ValueError, match=r"init\(dashboard_port=...\) must be a port"):
        rayops.init(dashboard_port=70000, _temp_dir=temp)
    with pytest.raises(TypeError, match=r"init\(job_config=...\) expects a .*JobConfig"):
        rayops.init(job_config=object(), _temp_dir=temp)
    with pytest.raises(TypeError, match=r"init\(dashboard_host=...\) must be a string"):
        rayops.init(dashboard_host=1, _temp_dir=temp)
    with pytest.raises(ValueError, match=r"include_dashboard=\.\.\.\) must be a bool or None"):
        rayops.init(include_dashboard="yes", _temp_dir=temp)
    with pytest.raises(ValueError, match=r"logging_level=\.\.\.\) must be a logging level"):
        rayops.init(logging_level="loud", _temp_dir=temp)
    assert not rayops.is_initialized()
    assert not list(tmp_path.iterdir()), "init() made files before refusing"


def test_logging_level_names_and_numbers() -> None:
    assert options.logging_level_number("info") == logging.INFO
    assert options.logging_level_number("DEBUG") == logging.DEBUG
    assert options.logging_level_number(logging.ERROR) == logging.ERROR
    for bad in (True, -1, "loud", None):
        with pytest.raises(ValueError, match="logging_level"):
            options.logging_level_number(bad)


def test_an_option_given_as_none_goes_back_to_its_default() -> None:
    """Ray 2.60: ``f.options(num_cpus=None)`` of ``@remote(num_cpus=2)`` needs 1 CPU again
    (checked side by side: it runs on a 1-CPU cluster); the decorator's value is not kept."""
    assert options.merged_options({"num_cpus": 2, "max_retries": 1}, {"num_cpus": None}, {}) == {
        "max_retries": 1
    }
    assert options.merged_options({"num_cpus": 2}, {"num_cpus": 3}, {"num_cpus": 3}) == {
        "num_cpus": 3
    }

    @rayops.remote(num_cpus=2, max_retries=1)
    def f() -> None:
        pass

    assert "num_cpus" not in f.options(num_cpus=None)._options
    assert f.options(num_cpus=None)._options["max_retries"] == 1

    @rayops.remote(num_cpus=2)
    class A:
        pass

    assert "num_cpus" not in A.options(num_cpus=None)._options


def test_node_affinity_private_knobs_are_refused_not_dropped() -> None:
    with pytest.raises(NotImplementedError, match="_spill_on_unavailable"):
        NodeAffinitySchedulingStrategy("ab" * 28, soft=True, _spill_on_unavailable=True)
    with pytest.raises(NotImplementedError, match="_fail_on_unavailable"):
        NodeAffinitySchedulingStrategy("ab" * 28, soft=True, _fail_on_unavailable=True)
