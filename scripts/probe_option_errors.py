"""Probe which option values raise, and with which exception type, in Ray and in rayops.

Tries a table of values for every keyword of ``@remote`` / ``.options()`` (tasks and actors)
and ``@method`` against one runtime and prints, per (entry point, option, value), the outcome:
``ok``, or the exception type's name. No cluster is started: validation happens at decoration
and ``.options()`` time in both.

    /tmp/rayvenv/bin/python scripts/probe_option_errors.py --runtime ray > /tmp/ray.json
    .venv/bin/python scripts/probe_option_errors.py --runtime rayops > /tmp/rayops.json
    .venv/bin/python scripts/probe_option_errors.py --compare /tmp/ray.json /tmp/rayops.json

``--compare`` lists the differences; rayops's NotImplementedError (a value Ray accepts that
rayops cannot honour yet) counts as agreeing with Ray's ``ok``. The expected types found this
way are pinned by tests/unit/test_option_errors.py.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Callable
from typing import Any

# Values tried for every option, named so the two runtimes' outputs line up.
VALUES: dict[str, Any] = {
    "None": None,
    "True": True,
    "False": False,
    "-2": -2,
    "-1": -1,
    "0": 0,
    "1": 1,
    "2": 2,
    "1.5": 1.5,
    "-0.5": -0.5,
    "str": "x",
    "list": [],
    "dict": {},
    "dict_neg": {"a": -1},
    "dict_str": {"a": "x"},
    "dict_CPU": {"CPU": 1},
    "dict_int_key": {1: 1},
    "object": object(),
}

TASK_KEYS = [
    "num_cpus",
    "num_gpus",
    "resources",
    "memory",
    "num_returns",
    "max_retries",
    "retry_exceptions",
    "name",
    "scheduling_strategy",
    "runtime_env",
    "max_calls",
    "accelerator_type",
    "label_selector",
    "enable_task_events",
    "placement_group",
    "placement_group_bundle_index",
    "placement_group_capture_child_tasks",
    "fallback_strategy",
    "object_store_memory",
    "_metadata",
    "unknown_option",
]
ACTOR_KEYS = [
    "num_cpus",
    "num_gpus",
    "resources",
    "memory",
    "name",
    "namespace",
    "get_if_exists",
    "lifetime",
    "max_restarts",
    "max_task_retries",
    "max_concurrency",
    "max_pending_calls",
    "scheduling_strategy",
    "concurrency_groups",
    "runtime_env",
    "accelerator_type",
    "label_selector",
    "enable_task_events",
    "placement_group",
    "placement_group_bundle_index",
    "placement_group_capture_child_tasks",
    "fallback_strategy",
    "object_store_memory",
    "allow_out_of_order_execution",
    "unknown_option",
]
METHOD_KEYS = [
    "num_returns",
    "concurrency_group",
    "max_task_retries",
    "retry_exceptions",
    "name",
    "unknown_option",
]


def _outcome(call: Callable[[], Any]) -> str:
    try:
        call()
    except Exception as err:  # the type is what is probed
        return type(err).__name__
    return "ok"


def probe(runtime: str) -> dict[str, str]:
    mod = importlib.import_module(runtime)

    def f() -> int:
        return 1

    class C:
        def m(self) -> int:
            return 1

    out: dict[str, str] = {}

    def deco(target: Any, key: str, value: Any) -> Callable[[], Any]:
        return lambda: mod.remote(**{key: value})(target)

    def opts(target: Any, key: str, value: Any) -> Callable[[], Any]:
        return lambda: mod.remote(target).options(**{key: value})

    def method(key: str, value: Any) -> Callable[[], Any]:
        return lambda: mod.method(**{key: value})

    for name, value in VALUES.items():
        for key in TASK_KEYS:
            out[f"task.remote:{key}={name}"] = _outcome(deco(f, key, value))
            out[f"task.options:{key}={name}"] = _outcome(opts(f, key, value))
        for key in ACTOR_KEYS:
            out[f"actor.remote:{key}={name}"] = _outcome(deco(C, key, value))
            out[f"actor.options:{key}={name}"] = _outcome(opts(C, key, value))
        for key in METHOD_KEYS:
            out[f"method:{key}={name}"] = _outcome(method(key, value))
    return out


def compare(ray_file: str, rayops_file: str) -> int:
    with open(ray_file) as fh:
        ray = json.load(fh)
    with open(rayops_file) as fh:
        ours = json.load(fh)
    diffs = 0
    for key in sorted(ray):
        theirs, mine = ray[key], ours.get(key, "missing")
        if theirs == mine or (theirs == "ok" and mine == "NotImplementedError"):
            continue
        diffs += 1
        print(f"{key:60s} ray={theirs:22s} rayops={mine}")
    print(f"{diffs} differences", file=sys.stderr)
    return 1 if diffs else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runtime", choices=["ray", "rayops"])
    parser.add_argument("--compare", nargs=2, metavar=("RAY_JSON", "RAYOPS_JSON"))
    args = parser.parse_args()
    if args.compare:
        return compare(*args.compare)
    if not args.runtime:
        parser.error("give --runtime or --compare")
    json.dump(probe(args.runtime), sys.stdout, indent=0, sort_keys=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
