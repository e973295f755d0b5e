"""Write the list of Ray Core's public names (docs/compat/ray_<version>_names.txt), from an
installed Ray, for scripts/compat_table.py.

Run it with the Python of an environment where Ray is installed, never rayops's:

    /tmp/rayvenv/bin/python scripts/collect_ray_names.py > docs/compat/ray_2_60_names.txt

It is run once per Ray version we compare against; the list it writes is committed, so nothing
else (not the table script, not the tests) ever imports Ray: Ray is not a dependency.

What "public" means here:
- a module with `__all__`: the names in it, minus private ones (leading underscore);
- a module without `__all__`: the names it defines (their `__module__` is that module) that Ray
  marks with one of its API annotations (`PublicAPI`, `DeveloperAPI`, `Deprecated`); names it
  only imports from elsewhere (`Any`, `logger`, ...) are not its API;
- for each class that is not an exception, its public members defined by Ray (methods,
  properties, enum values), not those inherited from `object`, the standard library or pydantic
  (not for `ray.dag`, whose node classes are listed without members).
Ray's libraries (`ray.data`, `ray.workflow`), the notebook widgets, `ray.internal` and
`ray.experimental` are not Ray Core and are left out.

Each line: `<dotted name> <kind> <annotation> [bases=...|params=...]`, kind one of module,
class, exception, function, value; annotation one of public, developer, deprecated, or `-` (not
annotated: listed in the module's `__all__` only); for an exception, its base classes (see
`ancestors`), for a function its parameter names (see `parameters`), so the table can tell where
rayops's hierarchy or signatures differ. Sorted, with a comment header naming the Ray version.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import types
from typing import Any

import ray  # the installed Ray this list describes (run with Ray's Python, see above)
from signatures import parameter_names  # scripts/ is on the path when run

# Modules whose names are listed, in the order of Ray Core's API reference.
MODULES = [
    "ray",
    "ray.actor",
    "ray.remote_function",
    "ray.runtime_context",
    "ray.job_config",
    "ray.exceptions",
    "ray.util",
    "ray.util.scheduling_strategies",
    "ray.util.placement_group",
    "ray.util.actor_pool",
    "ray.util.queue",
    "ray.util.metrics",
    "ray.util.state",
    "ray.util.accelerators",
    "ray.util.multiprocessing",
    "ray.runtime_env",
    "ray.job_submission",
    "ray.autoscaler.sdk",
    "ray.dag",
]
# Names in ray.__all__ that are not Ray Core (libraries, internals, notebook widgets).
NOT_CORE = {"ray.data", "ray.workflow", "ray.widgets", "ray.internal", "ray.experimental"}
# Modules whose classes are listed without their members: the DAG node classes carry dozens of
# internal-looking methods that would drown the table (the classes themselves are listed).
NO_MEMBERS = {"ray.dag"}
_ANNOTATIONS = {"PUBLIC_API": "public", "DEVELOPER_API": "developer", "DEPRECATED": "deprecated"}


def annotation(obj: Any) -> str:
    kind = getattr(obj, "_annotated_type", None)
    if kind is None or getattr(obj, "_annotated", None) != getattr(obj, "__name__", None):
        return "-"
    return _ANNOTATIONS.get(kind.name, "-")


def kind_of(obj: Any) -> str:
    if isinstance(obj, types.ModuleType):
        return "module"
    if inspect.isclass(obj):
        return "exception" if issubclass(obj, BaseException) else "class"
    if callable(obj):
        return "function"
    return "value"


def module_names(module_name: str) -> dict[str, Any]:
    """The public names of one module and their objects."""
    module = importlib.import_module(module_name)
    exported = getattr(module, "__all__", None)
    out: dict[str, Any] = {}
    if exported is not None:
        for name in dict.fromkeys(exported):
            if name.startswith("_") and name != "__version__":
                continue
            if f"{module_name}.{name}" in NOT_CORE:
                continue
            try:
                out[name] = getattr(module, name)
            except (AttributeError, ImportError) as err:
                # Listed in __all__ but not there in this install (cpp_function) or needing an
                # optional dependency (ray.util.collective needs numpy): not listed, said so.
                print(f"skipped {module_name}.{name}: {err}", file=sys.stderr)
        return out
    for name in dir(module):
        if name.startswith("_"):
            continue
        obj = getattr(module, name)
        if getattr(obj, "__module__", None) == module_name and annotation(obj) != "-":
            out[name] = obj
    return out


def class_members(cls: type) -> dict[str, Any]:
    """Public members a class gets from Ray's code (not from object, Exception, Enum, ...)."""
    out: dict[str, Any] = {}
    for name in dir(cls):
        if name.startswith("_"):
            continue
        owner = next((k for k in cls.__mro__ if name in vars(k)), None)
        if owner is None or not (owner.__module__ or "").startswith("ray"):
            continue
        if name.startswith("model_") and hasattr(cls, "model_fields"):
            continue  # pydantic's machinery (model_config), not the class's own API
        out[name] = inspect.getattr_static(cls, name)
    return out


def ancestors(cls: type) -> str:
    """An exception's base classes, nearest first, without itself and the three roots every
    exception has (object, BaseException, Exception): `ray.exceptions.RayError,builtins.OSError`."""
    roots = {object, BaseException, Exception}
    return ",".join(f"{k.__module__}.{k.__qualname__}" for k in cls.__mro__[1:] if k not in roots)


def parameters(fn: Any) -> str | None:
    """A function's parameter names, comma-joined (see signatures.parameter_names)."""
    names = parameter_names(fn)
    return None if names is None else ",".join(names)


def extra(kind: str, obj: Any) -> str:
    """The last column: `bases=...` for an exception, `params=...` for a function."""
    if kind == "exception":
        return "bases=" + ancestors(obj)
    if kind == "function":
        params = parameters(obj)
        return "" if params is None else "params=" + params
    return ""


def collect() -> list[tuple[str, str, str, str]]:
    rows: dict[str, tuple[str, str, str]] = {}
    for module_name in MODULES:
        for name, obj in module_names(module_name).items():
            dotted = f"{module_name}.{name}"
            if dotted in NOT_CORE:
                continue
            kind = kind_of(obj)
            rows[dotted] = (kind, annotation(obj), extra(kind, obj))
            if module_name in NO_MEMBERS or not inspect.isclass(obj):
                continue
            if issubclass(obj, BaseException):
                continue
            for member, value in class_members(obj).items():
                if isinstance(value, classmethod | staticmethod):
                    value = value.__func__
                member_kind = "function" if callable(value) else "value"
                rows.setdefault(
                    f"{dotted}.{member}",
                    (member_kind, annotation(value), extra(member_kind, value)),
                )
    return sorted((name, *row) for name, row in rows.items())


def main() -> int:
    rows = collect()
    out = sys.stdout
    out.write(f"# Public names of Ray Core {ray.__version__}, collected from an installed Ray by\n")
    out.write("# scripts/collect_ray_names.py (see its docstring). Do not edit by hand.\n")
    out.write("# name kind annotation [bases=... for an exception | params=... for a function]\n")
    # The modules listed, in order: scripts/compat_table.py makes its page sections of them.
    out.write("# modules: " + " ".join(MODULES) + "\n")
    for name, kind, ann, last in rows:
        out.write(f"{name} {kind} {ann} {last}".rstrip() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
