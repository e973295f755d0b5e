"""``JobConfig``: settings of a job (one driver), passed as ``init(job_config=...)``.

It takes Ray's constructor arguments and setters. What rayops honours today is the
namespace (``ray_namespace``, as ``init(namespace=...)``); a setting it cannot honour yet
(a non-empty runtime environment, metadata, Java options, a detached default lifetime)
is refused by ``init()``, naming it, rather than accepted and ignored. No I/O here.
"""

from __future__ import annotations

import inspect
from typing import Any

__all__ = ["JobConfig"]

_LIFETIMES = ("non_detached", "detached")


class JobConfig:
    """A job's configuration (Ray's ``ray.job_config.JobConfig``)."""

    def __init__(
        self,
        jvm_options: list[str] | None = None,
        code_search_path: list[str] | None = None,
        runtime_env: dict[str, Any] | None = None,
        _client_job: bool = False,
        metadata: dict[str, str] | None = None,
        ray_namespace: str | None = None,
        default_actor_lifetime: str = "non_detached",
        _disable_job_level_lineage_reconstruction: bool = False,
        _py_driver_sys_path: list[str] | None = None,
    ) -> None:
        self.jvm_options = list(jvm_options or [])
        self.code_search_path = list(code_search_path or [])
        self.runtime_env: dict[str, Any] = {}
        self.set_runtime_env(runtime_env)
        self._client_job = _client_job
        self.metadata: dict[str, str] = {}
        self.set_metadata_dict(metadata)
        self.ray_namespace: str | None = None
        self.set_ray_namespace(ray_namespace)
        self.default_actor_lifetime = "non_detached"
        self.set_default_actor_lifetime(default_actor_lifetime)
        self._disable_job_level_lineage_reconstruction = _disable_job_level_lineage_reconstruction
        self._py_driver_sys_path = list(_py_driver_sys_path or [])

    # ------------------------------------------------------------------ setters (Ray's)
    def set_metadata(self, key: str, value: str) -> None:
        """Set one metadata entry."""
        if not isinstance(key, str) or not isinstance(value, str):
            raise TypeError(
                f"JobConfig.set_metadata(key, value) takes strings, got {key!r}: {value!r}"
            )
        self.metadata[key] = value

    def set_metadata_dict(self, metadata: dict[str, str] | None) -> None:
        for key, value in (metadata or {}).items():
            self.set_metadata(key, value)

    def set_ray_namespace(self, ray_namespace: str | None) -> None:
        if ray_namespace is not None and not isinstance(ray_namespace, str):
            raise TypeError(
                f"JobConfig(ray_namespace=...) must be a str or None, got {ray_namespace!r}"
            )
        self.ray_namespace = ray_namespace

    def set_runtime_env(self, runtime_env: dict[str, Any] | None, validate: bool = False) -> None:
        if runtime_env is not None and not isinstance(runtime_env, dict):
            raise TypeError(
                f"JobConfig(runtime_env=...) must be a dict or None, got {runtime_env!r}"
            )
        if validate:  # else checked by init(), as Ray (paths may be given before they exist)
            from rayops.envs.spec import validate as validate_env

            validate_env(runtime_env, where="JobConfig.set_runtime_env(...)")
        self.runtime_env = dict(runtime_env or {})

    def set_default_actor_lifetime(self, default_actor_lifetime: str) -> None:
        if default_actor_lifetime not in _LIFETIMES:
            raise ValueError(
                "JobConfig(default_actor_lifetime=...) must be 'non_detached' or 'detached', "
                f"got {default_actor_lifetime!r}"
            )
        self.default_actor_lifetime = default_actor_lifetime

    @classmethod
    def from_json(cls, job_config_json: dict[str, Any]) -> JobConfig:
        """A JobConfig from a dict of its constructor's arguments (Ray's ``from_json``)."""
        if not isinstance(job_config_json, dict):
            raise TypeError(
                f"JobConfig.from_json() expects a dict, got {type(job_config_json).__name__}"
            )
        known = set(inspect.signature(cls.__init__).parameters) - {"self"}
        unknown = sorted(set(job_config_json) - known)
        if unknown:
            raise ValueError(
                f"JobConfig.from_json(): unknown key(s) {', '.join(unknown)}; known: "
                f"{', '.join(sorted(known))}"
            )
        return cls(**job_config_json)

    def _validate_runtime_env(self) -> dict[str, Any]:
        return dict(self.runtime_env)

    def __repr__(self) -> str:
        return (
            f"JobConfig(ray_namespace={self.ray_namespace!r}, runtime_env={self.runtime_env!r}, "
            f"metadata={self.metadata!r})"
        )

    # ----------------------------------------------------------------- rayops's checks
    def not_honoured(self) -> list[str]:
        """The settings rayops cannot honour yet, each with why (empty when all can be)."""
        out = []
        if self.jvm_options:
            out.append("jvm_options: Java workers are not planned by any rayops issue")
        if self.code_search_path:
            out.append("code_search_path: Java workers are not planned by any rayops issue")
        if self.metadata:
            out.append(
                "metadata: the job table keeps no metadata (not planned by any rayops issue)"
            )
        if self.default_actor_lifetime != "non_detached":
            out.append(
                "default_actor_lifetime='detached': pass lifetime='detached' to each actor's "
                "options instead"
            )
        if self._py_driver_sys_path:
            out.append("_py_driver_sys_path: workers do not take the driver's sys.path")
        return out
