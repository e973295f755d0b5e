"""The ``runtime_env`` spec: validation at the call, Ray's merge rules, the wire form.

A spec is checked where it is given (``@remote``, ``.options()``, ``init()``, ``JobConfig``,
``RuntimeEnv(...)``) so a mistake raises there, naming the field:

- ``env_vars`` (str -> str), ``working_dir`` (a local directory, a ``.zip`` file, or a
  ``gcs://_ray_pkg_<hash>.zip`` URI already uploaded), ``py_modules`` (a list of local package
  directories, ``.zip`` or ``.whl`` files, imported modules, or such URIs), ``excludes``
  (gitignore-style patterns), ``config`` (``setup_timeout_seconds``, ``eager_install``) work
  as in Ray 2.60;
- ``pip`` (a list of requirements, a requirements file, or a dict of ``packages``,
  ``pip_check``, ``pip_version``) and ``uv`` (a list, a file, or a dict of ``packages``,
  ``uv_version``, ``uv_check``, ``uv_pip_install_options``) are normalized to their dict form
  (a requirements file is read at the call, as Ray does); giving both raises ValueError naming
  both;
- ``conda``, ``container``, ``image_uri`` and Ray's other known fields raise
  NotImplementedError (not supported); any other field raises ValueError.

Merging (Ray's rules): an inner spec (a task's or actor's) overrides the outer one (the job's,
or the parent task's) field by field, except ``env_vars``, which are merged key by key with
the inner value winning. A task or actor given no ``runtime_env`` runs in its parent's.

The *wire form* of a resolved spec (local paths replaced by package URIs, ``excludes``
dropped: they were applied when zipping) is canonical JSON; leases carry it and the raylet
keys its worker pool by its hash, so a worker never serves two different envs. JSON, never
pickle: a raylet reads it from any lease request.
"""

from __future__ import annotations

import hashlib
import json
import os
import types
from collections.abc import Mapping
from typing import Any, cast

PKG_URI_PREFIX = "gcs://_ray_pkg_"
DEFAULT_SETUP_TIMEOUT_S = 600

# Fields that work, in Ray's order.
SUPPORTED_FIELDS = ("py_modules", "working_dir", "pip", "uv", "env_vars", "excludes", "config")
# The fields that install packages: at most one per env.
INSTALLER_FIELDS = ("pip", "uv", "conda")
# Ray's fields rayops does not support; each raises NotImplementedError naming it.
_NOT_SUPPORTED = "is not supported by rayops (not planned by any rayops issue)"
UNSUPPORTED_FIELDS: Mapping[str, str] = types.MappingProxyType(
    {
        "conda": _NOT_SUPPORTED,
        "container": _NOT_SUPPORTED,
        "image_uri": _NOT_SUPPORTED,
        "py_executable": _NOT_SUPPORTED,
        "java_jars": _NOT_SUPPORTED,
        "worker_process_setup_hook": _NOT_SUPPORTED,
        "nsight": _NOT_SUPPORTED,
        "rocprof_sys": _NOT_SUPPORTED,
    }
)
CONFIG_FIELDS = ("setup_timeout_seconds", "eager_install")


class RuntimeEnvConfig(dict):  # type: ignore[type-arg]
    """Ray's ``RuntimeEnvConfig``: ``setup_timeout_seconds`` (an int > 0, or -1 for no limit;
    default 600) and ``eager_install`` (a bool; default True)."""

    known_fields = set(CONFIG_FIELDS)

    def __init__(
        self, setup_timeout_seconds: int = DEFAULT_SETUP_TIMEOUT_S, eager_install: bool = True
    ) -> None:
        super().__init__(setup_timeout_seconds=setup_timeout_seconds, eager_install=eager_install)
        _check_config(self)

    @staticmethod
    def default_config() -> dict[str, Any]:
        return dict(RuntimeEnvConfig())

    def to_dict(self) -> dict[str, Any]:
        return dict(self)


class RuntimeEnv(dict):  # type: ignore[type-arg]
    """Ray's ``RuntimeEnv``: a dict of the fields above, checked when made.

    Interchangeable with a plain dict wherever a ``runtime_env`` is taken.
    """

    known_fields = {*SUPPORTED_FIELDS, *UNSUPPORTED_FIELDS}
    extensions_fields: set[str] = set()

    def __init__(
        self,
        *,
        py_modules: list[Any] | None = None,
        working_dir: str | None = None,
        env_vars: dict[str, str] | None = None,
        excludes: list[str] | None = None,
        config: dict[str, Any] | RuntimeEnvConfig | None = None,
        _validate: bool = True,
        **kwargs: Any,
    ) -> None:
        given = {
            "py_modules": py_modules,
            "working_dir": working_dir,
            "env_vars": env_vars,
            "excludes": excludes,
            "config": config,
            **kwargs,
        }
        super().__init__({k: v for k, v in given.items() if v is not None})
        if _validate:
            checked = validate(dict(self), where="RuntimeEnv(...)")
            self.clear()
            self.update(checked)

    def to_dict(self) -> dict[str, Any]:
        return dict(self)

    def serialize(self) -> str:
        return json.dumps(dict(self), sort_keys=True)

    @classmethod
    def deserialize(cls, serialized_runtime_env: str) -> RuntimeEnv:
        return cls(_validate=False, **json.loads(serialized_runtime_env))

    def set(self, name: str, value: Any) -> None:
        """Set one field, checked as the constructor checks it."""
        checked = validate({name: value}, where=f"RuntimeEnv.set({name!r}, ...)")
        self.pop(name, None)
        self.update(checked)

    def env_vars(self) -> dict[str, str]:
        return dict(self.get("env_vars") or {})

    def has_working_dir(self) -> bool:
        return bool(self.get("working_dir"))

    def working_dir(self) -> str:
        return str(self.get("working_dir") or "")

    def working_dir_uri(self) -> str | None:
        wd = self.get("working_dir")
        return wd if isinstance(wd, str) and is_package_uri(wd) else None

    def py_modules(self) -> list[str]:
        return list(self.get("py_modules") or [])

    def py_modules_uris(self) -> list[str]:
        return [m for m in self.py_modules() if is_package_uri(m)]

    def plugin_uris(self) -> list[str]:
        return []  # rayops has no runtime_env plugins

    def has_pip(self) -> bool:
        return bool(self.get("pip"))

    def has_uv(self) -> bool:
        return bool(self.get("uv"))

    def pip_config(self) -> dict[str, Any]:
        return dict(self.get("pip") or {})

    def uv_config(self) -> dict[str, Any]:
        return dict(self.get("uv") or {})

    def has_conda(self) -> bool:
        return False  # conda is not supported

    def has_py_container(self) -> bool:
        return False  # containers are not supported


def is_package_uri(value: str) -> bool:
    return value.startswith(PKG_URI_PREFIX) and value.endswith(".zip")


def validate(value: Any, *, where: str) -> dict[str, Any]:
    """``value`` checked and normalized (local paths made absolute, module objects replaced
    by their directories); ``{}`` for Ray's "not given" (None, {}).

    Raises TypeError for a value of the wrong type, ValueError for an unknown field or a bad
    value (a missing path names it), NotImplementedError for a field rayops does not support.
    """
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise TypeError(f"{where}: runtime_env must be a dict or a RuntimeEnv, got {value!r}")
    installers = [k for k in INSTALLER_FIELDS if value.get(k) is not None]
    if len(installers) > 1:
        raise ValueError(
            f"{where}: runtime_env fields {' and '.join(map(repr, installers))} cannot both be "
            "given (each installs the packages of the env); keep one."
        )
    for key in value:
        if not isinstance(key, str):
            raise TypeError(f"{where}: runtime_env keys must be strings, got {key!r}")
        if key in UNSUPPORTED_FIELDS:
            raise NotImplementedError(
                f"{where}: runtime_env field {key!r} {UNSUPPORTED_FIELDS[key]}; supported "
                f"fields: {', '.join(SUPPORTED_FIELDS)}. Install packages with 'pip' or 'uv', "
                "or ship code with working_dir or py_modules."
            )
        if key not in SUPPORTED_FIELDS:
            raise ValueError(
                f"{where}: unknown runtime_env field {key!r}; known fields: "
                f"{', '.join(SUPPORTED_FIELDS)}."
            )
    out: dict[str, Any] = {}
    if value.get("env_vars") is not None:
        out["env_vars"] = _check_env_vars(value["env_vars"], where)
    if value.get("working_dir") is not None:
        out["working_dir"] = _check_working_dir(value["working_dir"], where)
    if value.get("py_modules") is not None:
        out["py_modules"] = _check_py_modules(value["py_modules"], where)
    if value.get("pip") is not None:
        out["pip"] = _check_installer("pip", value["pip"], where)
    if value.get("uv") is not None:
        out["uv"] = _check_installer("uv", value["uv"], where)
    if value.get("excludes") is not None:
        out["excludes"] = _check_excludes(value["excludes"], where)
    if value.get("config") is not None:
        config = value["config"]
        if not isinstance(config, dict):
            raise TypeError(
                f"{where}: runtime_env['config'] must be a dict or RuntimeEnvConfig, got {config!r}"
            )
        out["config"] = _check_config(config, where)
    return out


def _check_env_vars(env_vars: Any, where: str) -> dict[str, str]:
    if not isinstance(env_vars, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in env_vars.items()
    ):
        raise TypeError(
            f"{where}: runtime_env['env_vars'] must be a dict of str to str, got {env_vars!r}"
        )
    return dict(env_vars)


def _check_working_dir(working_dir: Any, where: str) -> str:
    if not isinstance(working_dir, str):
        raise TypeError(
            f"{where}: runtime_env['working_dir'] must be a string (a local directory, a .zip "
            f"file or a {PKG_URI_PREFIX}... URI), got {working_dir!r}"
        )
    if is_package_uri(working_dir):
        return working_dir
    if "://" in working_dir:
        raise NotImplementedError(
            f"{where}: runtime_env['working_dir'] {working_dir!r}: remote URIs are not "
            "supported by rayops; give a local directory or .zip file (the driver uploads it)."
        )
    path = os.path.abspath(os.path.expanduser(working_dir))
    if os.path.isdir(path) or (os.path.isfile(path) and path.endswith(".zip")):
        return path
    raise ValueError(
        f"{where}: runtime_env['working_dir'] {working_dir!r} is not an existing local "
        "directory or .zip file; give a path that exists on this machine."
    )


def _check_py_modules(py_modules: Any, where: str) -> list[str]:
    if not isinstance(py_modules, list):
        raise TypeError(
            f"{where}: runtime_env['py_modules'] must be a list of local package directories, "
            f".zip or .whl files, or modules, got {py_modules!r}"
        )
    out = []
    for entry in py_modules:
        if isinstance(entry, types.ModuleType):
            files = getattr(entry, "__path__", None)
            if not files:
                raise ValueError(
                    f"{where}: runtime_env['py_modules'] entry {entry!r} is a single-file "
                    "module; give its package directory instead."
                )
            entry = next(iter(files))
        if not isinstance(entry, str):
            raise TypeError(
                f"{where}: runtime_env['py_modules'] entries must be paths or modules, got "
                f"{entry!r}"
            )
        if is_package_uri(entry):
            out.append(entry)
            continue
        if "://" in entry:
            raise NotImplementedError(
                f"{where}: runtime_env['py_modules'] entry {entry!r}: remote URIs are not "
                "supported by rayops; give a local directory, .zip or .whl file."
            )
        path = os.path.abspath(os.path.expanduser(entry))
        if os.path.isdir(path) or (os.path.isfile(path) and path.endswith((".zip", ".whl"))):
            out.append(path)
            continue
        raise ValueError(
            f"{where}: runtime_env['py_modules'] entry {entry!r} is not an existing local "
            "package directory, .zip or .whl file; give a path that exists on this machine."
        )
    return out


# Each installer's dict form: its option keys, their types and defaults (Ray 2.60's).
_INSTALLER_OPTIONS: Mapping[str, Mapping[str, tuple[type, Any]]] = types.MappingProxyType(
    {
        "pip": {"pip_check": (bool, False), "pip_version": (str, None)},
        "uv": {
            "uv_version": (str, None),
            "uv_check": (bool, False),
            "uv_pip_install_options": (list, ["--no-cache"]),
        },
    }
)


def _check_installer(field: str, given: Any, where: str) -> dict[str, Any]:
    """A ``pip`` or ``uv`` field in its dict form: ``packages`` (a list of requirement
    lines) and the installer's options with their defaults filled in."""
    name = f"runtime_env[{field!r}]"
    options = _INSTALLER_OPTIONS[field]
    if isinstance(given, (str, list)):
        given = {"packages": given}
    if not isinstance(given, dict):
        raise TypeError(
            f"{where}: {name} must be a list of requirements, a requirements file path or a "
            f"dict with 'packages', got {given!r}"
        )
    for key in given:
        if key != "packages" and key not in options:
            raise ValueError(
                f"{where}: unknown {name} key {key!r}; known keys: packages, {', '.join(options)}."
            )
    if "packages" not in given:
        raise ValueError(f"{where}: {name} needs 'packages' (a list or a requirements file)")
    out: dict[str, Any] = {"packages": _requirements(given["packages"], name, where)}
    for key, (kind, default) in options.items():
        value: Any = given.get(key, default)
        if value is None:
            continue
        ok = isinstance(value, kind)
        if kind is list:
            ok = ok and all(isinstance(v, str) for v in cast("list[Any]", value))
        if not ok:
            raise TypeError(
                f"{where}: {name}[{key!r}] must be a {kind.__name__}"
                f"{' of strings' if kind is list else ''}, got {value!r}"
            )
        out[key] = list(cast("list[str]", value)) if kind is list else value
    return out


def _requirements(packages: Any, name: str, where: str) -> list[str]:
    if isinstance(packages, str):  # a requirements file, read here as Ray does
        path = os.path.abspath(os.path.expanduser(packages))
        try:
            with open(path, encoding="utf-8") as f:
                lines = f.read().splitlines()
        except OSError as err:
            raise ValueError(
                f"{where}: {name} requirements file {packages!r} cannot be read ({err}); give "
                "a path that exists on this machine or a list of requirements."
            ) from err
        packages = [ln.strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]
    if not isinstance(packages, list) or not all(isinstance(p, str) for p in packages):
        raise TypeError(
            f"{where}: {name} packages must be a list of requirement strings or a "
            f"requirements file path, got {packages!r}"
        )
    return [p.strip() for p in packages if p.strip()]


def _check_excludes(excludes: Any, where: str) -> list[str]:
    if not isinstance(excludes, list) or not all(isinstance(e, str) for e in excludes):
        raise TypeError(
            f"{where}: runtime_env['excludes'] must be a list of gitignore-style patterns "
            f"(strings), got {excludes!r}"
        )
    return list(excludes)


def _check_config(
    config: Mapping[str, Any], where: str = "RuntimeEnvConfig(...)"
) -> dict[str, Any]:
    for key in config:
        if key not in CONFIG_FIELDS:
            raise ValueError(
                f"{where}: unknown runtime_env config field {key!r}; known fields: "
                f"{', '.join(CONFIG_FIELDS)}."
            )
    timeout = config.get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
    if isinstance(timeout, bool) or not isinstance(timeout, int):
        raise TypeError(
            f"{where}: runtime_env config 'setup_timeout_seconds' must be an int, got {timeout!r}"
        )
    if timeout <= 0 and timeout != -1:
        raise ValueError(
            f"{where}: runtime_env config 'setup_timeout_seconds' must be > 0 or -1 (no "
            f"limit), got {timeout!r}"
        )
    eager = config.get("eager_install", True)
    if not isinstance(eager, bool):
        raise TypeError(
            f"{where}: runtime_env config 'eager_install' must be a bool, got {eager!r}"
        )
    return {"setup_timeout_seconds": timeout, "eager_install": eager}


def merge(outer: Mapping[str, Any] | None, inner: Mapping[str, Any] | None) -> dict[str, Any]:
    """``inner`` over ``outer`` by Ray's rules: field by field, ``env_vars`` key by key."""
    if not inner:
        return dict(outer or {})
    out = dict(outer or {})
    if any(k in inner for k in INSTALLER_FIELDS):  # the inner env's installer replaces the outer's
        for key in INSTALLER_FIELDS:
            out.pop(key, None)
    for key, value in inner.items():
        if key == "env_vars" and out.get("env_vars"):
            out["env_vars"] = {**out["env_vars"], **value}
        else:
            out[key] = value
    return out


def wire_form(resolved: Mapping[str, Any]) -> str:
    """The canonical JSON of a resolved spec ("" for the empty one): what leases carry."""
    body = {k: v for k, v in resolved.items() if k != "excludes" and v not in (None, {}, [])}
    if not body:
        return ""
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def env_hash(wire: str) -> str:
    """The pool key of a wire form ("" for the empty env)."""
    if not wire:
        return ""
    return hashlib.blake2b(wire.encode(), digest_size=12).hexdigest()


def from_wire(wire: str) -> dict[str, Any]:
    """A wire form read back; raises ValueError on anything but a resolved spec."""
    if not wire:
        return {}
    spec = json.loads(wire)
    if not isinstance(spec, dict):
        raise ValueError(f"a runtime_env wire form must be a JSON object, got {wire[:100]!r}")
    for key in spec:
        if key not in SUPPORTED_FIELDS:
            raise ValueError(f"unknown runtime_env field {key!r} in a wire form")
    for uri in package_uris(spec):
        if not is_package_uri(uri):
            raise ValueError(f"runtime_env package {uri!r} is not a {PKG_URI_PREFIX}... URI")
    _check_env_vars(spec.get("env_vars", {}), "runtime_env wire form")
    for field in ("pip", "uv"):
        if spec.get(field) is not None:
            spec[field] = _check_installer(field, spec[field], "runtime_env wire form")
    return spec


def package_uris(spec: Mapping[str, Any]) -> list[str]:
    """The package URIs a resolved spec needs, working_dir first."""
    uris = [spec["working_dir"]] if spec.get("working_dir") else []
    return uris + list(spec.get("py_modules") or [])


def installer_of(spec: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """``("pip", options)`` or ``("uv", options)`` of a resolved spec; None without one."""
    for field in ("pip", "uv"):
        if spec.get(field):
            return field, dict(spec[field])
    return None


def setup_timeout_s(spec: Mapping[str, Any]) -> float | None:
    """The spec's ``setup_timeout_seconds`` (None: no limit)."""
    timeout = (spec.get("config") or {}).get("setup_timeout_seconds", DEFAULT_SETUP_TIMEOUT_S)
    return None if timeout == -1 else float(timeout)
