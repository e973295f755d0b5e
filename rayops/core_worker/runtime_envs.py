"""The runtime_env of this process and the wire forms of what it submits (``cw.runtime_envs``).

A driver's own env is the job's (``init(runtime_env=)`` / ``JobConfig``); a worker's is the
one its raylet started it in (``--runtime-env``). A task or actor given no ``runtime_env``
runs in this process's env (Ray's inheritance); one given a ``runtime_env`` runs in it merged
over this process's env (``envs.spec.merge``). Resolving uploads local ``working_dir`` and
``py_modules`` paths to the GCS's package store once per process (by path and excludes; a
file changed afterwards is not uploaded again, as a ``working_dir`` given to ``init`` is
uploaded once in Ray) and replaces them by their URIs. Each package a job resolves (a URI
given as it is included) is first reported to the GCS as the job's (once per job and URI):
the GCS keeps it until the job finishes (``rayops.gcs.package_refs``). Reported before the
upload's "is it there already?" check, so the package cannot be collected in between.

Called on user threads (it may block on the GCS); the wire form of each ``runtime_env``
object is cached by identity, so resubmitting with the same options dict costs a dict lookup.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from rayops.core_worker.threads import any_thread, user_thread
from rayops.envs import packaging
from rayops.envs import spec as envspec

if TYPE_CHECKING:
    from rayops.core_worker.core_worker import CoreWorker


class RuntimeEnvs:
    def __init__(self, cw: CoreWorker, own_wire: str = "") -> None:
        self._cw = cw
        self.own_wire = own_wire
        self.own: dict[str, Any] = envspec.from_wire(own_wire)
        self._wires: dict[int, tuple[Any, str]] = {}
        self._uploaded: dict[tuple[str, tuple[str, ...], bool], str] = {}
        self._referenced: set[tuple[int, str]] = set()  # (job id, URI) reported to the GCS
        self._lock = threading.Lock()

    @user_thread
    def set_job_env(self, given: Mapping[str, Any] | None) -> str:
        """A driver's job env (already validated): resolved, uploaded, made its own."""
        resolved = self._resolve(dict(given or {}))
        self.own_wire = envspec.wire_form(resolved)
        self.own = envspec.from_wire(self.own_wire)
        return self.own_wire

    @any_thread
    def current(self) -> dict[str, Any]:
        """This process's env (resolved: packages as URIs), as Ray's runtime context shows it."""
        return dict(self.own)

    @user_thread
    def wire_for(self, given: Mapping[str, Any] | None) -> str:
        """The wire form a task or actor given ``given`` (validated, or None) runs in."""
        if not given:
            return self.own_wire
        hit = self._wires.get(id(given))
        if hit is not None and hit[0] is given:
            return hit[1]
        wire = envspec.wire_form(self._resolve(envspec.merge(self.own, given)))
        if len(self._wires) > 4096:
            self._wires.clear()
        self._wires[id(given)] = (given, wire)
        return wire

    def _resolve(self, env: dict[str, Any]) -> dict[str, Any]:
        excludes = list(env.get("excludes") or [])
        out = {k: v for k, v in env.items() if k != "excludes"}
        if env.get("working_dir"):
            out["working_dir"] = self._upload(env["working_dir"], excludes, as_module=False)
        if env.get("py_modules"):
            out["py_modules"] = [
                self._upload(path, excludes, as_module=True) for path in env["py_modules"]
            ]
        return out

    def _reference(self, uri: str) -> None:
        """Report ``uri`` as used by the current job (once per job); called under the lock."""
        job_id = self._cw.task_context().job_id or self._cw.job_id
        if not job_id or (job_id, uri) in self._referenced:
            return
        from rayops.gcs import calls as gcs_calls  # lazily: protobuf is not imported with rayops

        self._cw.gcs().call(gcs_calls.add_job_package_references(job_id, [uri]))
        self._referenced.add((job_id, uri))

    def _upload(self, path: str, excludes: list[str], *, as_module: bool) -> str:
        key = (path, tuple(excludes), as_module)
        with self._lock:
            if envspec.is_package_uri(path):
                self._reference(path)
                return path
            uri = self._uploaded.get(key)
            if uri is not None:
                self._reference(uri)
                return uri
            if not os.path.exists(path):  # e.g. a driver's path, submitted from a worker
                raise ValueError(
                    f"runtime_env path {path!r} does not exist on this machine "
                    f"({self._cw.node_ip}); give it where the path exists (the driver)."
                )
            package = packaging.make_package(path, excludes=excludes, as_module=as_module)
            self._reference(package.uri)
            gcs = self._cw.gcs()
            ns = packaging.PACKAGE_NAMESPACE
            packaging.upload(
                package,
                lambda k: bool(gcs.kv_exists(k, namespace=ns)),
                lambda k, v: gcs.kv_put(k, v, namespace=ns, overwrite=True),
            )
            self._uploaded[key] = package.uri
            return package.uri
