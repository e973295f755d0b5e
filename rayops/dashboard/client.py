"""``JobSubmissionClient``: Ray's Jobs SDK against the head's API server.

Plain HTTP with the standard library for the request/answer calls (a CLI process starts
fast) and aiohttp's websocket for ``tail_job_logs``. Where things come from, as Ray's client:

* the address: the argument (``http://HOST:PORT``, or ``HOST:PORT``), else
  ``RAYOPS_API_SERVER_ADDRESS``, else ``RAYOPS_ADDRESS`` when it is an ``http(s)://`` URL, else
  the API server of the cluster running on this machine (its ``node.json``);
* the token: an ``Authorization`` or ``x-ray-authorization`` header in ``headers``, else the
  file ``RAYOPS_TOKEN_FILE``, else the local session's ``cluster_token``.

A local ``working_dir`` or ``py_modules`` directory in ``runtime_env`` is zipped and uploaded
(``PUT /api/packages/gcs/<name>``, skipped when ``GET`` finds it there) before the job is
submitted, as Ray's client does. Failures raise RuntimeError with the server's message, as
Ray's client does; a refused token raises ``rayops.exceptions.AuthenticationError``.
"""

from __future__ import annotations

import http.client
import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

from rayops.dashboard.models import JobDetails, JobStatus
from rayops.exceptions import AuthenticationError
from rayops.rpc import tls

__all__ = ["JobSubmissionClient", "resolve_address", "resolve_token", "token_refused", "with_token"]

_CONNECT_WAIT_S = 10.0  # init() does not wait for the API server; a new client does, briefly


def _temp_dir() -> str:
    from rayops.node import session as sess

    return os.environ.get("RAYOPS_TEMP_DIR") or sess.DEFAULT_TEMP_DIR


def _session_dir() -> str | None:
    """The session of the cluster this process is connected to (a driver's or worker's,
    whatever temp dir it used), else the latest under the temp dir."""
    from rayops.node import session as sess

    # Looked up, not imported: the launcher uses this client and never loads the runtime.
    state = sys.modules.get("rayops.core_worker.state")
    cw = state.current() if state is not None else None
    if cw is not None and cw.session_dir:
        return str(cw.session_dir)
    return sess.latest_session(_temp_dir())


def resolve_address(address: str | None) -> str:
    """``http://HOST:PORT`` of the API server to talk to (see the module docstring)."""
    from rayops.node import session as sess

    address = address or os.environ.get("RAYOPS_API_SERVER_ADDRESS")
    if not address:
        env = os.environ.get("RAYOPS_ADDRESS") or ""
        if env.startswith(("http://", "https://")):
            address = env
    if not address or address == "auto":
        temp_dir = _temp_dir()
        session_dir = _session_dir()
        rec = None
        if session_dir is not None:
            try:
                rec = sess.NodeRecord.load(session_dir)
            except (OSError, ValueError, TypeError):
                rec = None
        if rec is None or not rec.dashboard_url:
            raise ConnectionError(
                f"no API server address given and no running head with one under {temp_dir}: "
                "pass --address http://HOST:8265 (or set RAYOPS_API_SERVER_ADDRESS)"
            )
        address = rec.dashboard_url
    if "://" not in address:
        address = f"{tls.url_scheme()}://" + address
    if not address.startswith(("http://", "https://")):
        raise ValueError(f"the API server address must be http(s)://HOST:PORT, got {address!r}")
    return address.rstrip("/")


def resolve_token() -> tuple[str, str]:
    """(token, the file it came from)."""
    from rayops.node import session as sess
    from rayops.rpc.auth import read_token_file

    path = os.environ.get("RAYOPS_TOKEN_FILE")
    if not path:
        session_dir = _session_dir()
        if session_dir is None:
            raise AuthenticationError(
                "no cluster token found: set RAYOPS_TOKEN_FILE to a copy (mode 0600) of the "
                "head's <temp-dir>/session_latest/cluster_token, or pass headers="
                "{'Authorization': 'Bearer <token>'}"
            )
        path = os.path.join(session_dir, sess.TOKEN_FILE)
    return read_token_file(path), path


def with_token(headers: dict[str, Any] | None) -> tuple[dict[str, Any], str]:
    """The request headers, with the cluster token as a Bearer credential unless they carry
    one (``Authorization`` or Ray's ``x-ray-authorization``), and where the token came from."""
    out = dict(headers or {})
    lower = {k.lower() for k in out}
    if "authorization" in lower or "x-ray-authorization" in lower:
        return out, "the given headers"
    token, source = resolve_token()
    out["Authorization"] = f"Bearer {token}"
    # TLS found where the token is (rpc/tls.py), unless this process already chose (a driver).
    tls.adopt_beside_token(source, override=False)
    return out, source


def token_refused(address: str, source: str) -> AuthenticationError:
    """What a client raises when the API server refuses its credential (401/403)."""
    return AuthenticationError(
        f"the API server at {address} refused the cluster token from {source}: use the "
        "token of the cluster you mean to reach (RAYOPS_TOKEN_FILE)"
    )


class JobSubmissionClient:
    """Submit and manage jobs on a rayops cluster's API server (Ray's JobSubmissionClient)."""

    def __init__(
        self,
        address: str | None = None,
        create_cluster_if_needed: bool = False,
        cookies: dict[str, Any] | None = None,
        metadata: dict[str, Any] | None = None,
        headers: dict[str, Any] | None = None,
        verify: str | bool | None = True,
    ) -> None:
        if create_cluster_if_needed:
            raise NotImplementedError(
                "JobSubmissionClient(create_cluster_if_needed=True) is not supported: start the "
                "cluster first (rayops start --head)"
            )
        if verify is not True:
            raise NotImplementedError(
                "JobSubmissionClient(verify=...) is not supported: the API server speaks plain "
                "HTTP on 127.0.0.1 unless told otherwise"
            )
        # The token first: TLS is found where it is, and decides the address's scheme.
        self._headers, self._token_source = with_token(headers)
        self._address = resolve_address(address)
        self._cookies = dict(cookies or {})
        self._default_metadata = dict(metadata or {})
        if self._cookies:
            self._headers["Cookie"] = "; ".join(f"{k}={v}" for k, v in self._cookies.items())
        self._check_connection()

    def get_address(self) -> str:
        return self._address

    # --------------------------------------------------------------------- HTTP
    def _request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        content_type: str = "application/json",
        timeout: float = 30.0,
    ) -> tuple[int, bytes]:
        headers = dict(self._headers)
        if body is not None:
            headers["Content-Type"] = content_type
        req = urllib.request.Request(
            self._address + path, data=body, method=method, headers=headers
        )
        material = tls.current()
        context = material.client_context() if material is not None else None
        try:
            with urllib.request.urlopen(req, timeout=timeout, context=context) as resp:
                return resp.status, resp.read()
        except urllib.error.HTTPError as err:
            data = err.read()
            if err.code in (401, 403):
                raise token_refused(self._address, self._token_source) from err
            return err.code, data
        except (http.client.RemoteDisconnected, ConnectionResetError) as err:
            # A TLS server drops a plaintext request without an answer.
            raise ConnectionError(
                tls.describe_mismatch(f"the API server at {self._address}", False)
                if self._address.startswith("http://")
                else f"the API server at {self._address} closed the connection: {err}"
            ) from None
        except urllib.error.URLError as err:
            if isinstance(err.reason, ssl.SSLError):
                raise ConnectionError(_tls_failure(self._address, err.reason)) from None
            raise

    def _json(self, method: str, path: str, payload: Any = None) -> Any:
        body = None if payload is None else json.dumps(payload).encode()
        status, data = self._request(method, path, body)
        if status != 200:
            raise RuntimeError(f"Request failed with status code {status}: {_message(data)}")
        return json.loads(data) if data else None

    def _check_connection(self) -> None:
        deadline = time.monotonic() + _CONNECT_WAIT_S
        while True:
            try:
                self.get_version()
                return
            except urllib.error.URLError as err:
                if time.monotonic() >= deadline or not _refused(err):
                    raise ConnectionError(
                        f"Failed to connect to the API server at {self._address}: {err.reason}. "
                        "Is the cluster running (rayops start --head), and is this its address?"
                    ) from err
                time.sleep(0.05)

    # ------------------------------------------------------------------ methods
    def get_version(self) -> str:
        version: str = self._json("GET", "/api/version")["version"]
        return version

    def submit_job(
        self,
        *,
        entrypoint: str,
        job_id: str | None = None,
        runtime_env: dict[str, Any] | None = None,
        metadata: dict[str, str] | None = None,
        submission_id: str | None = None,
        entrypoint_num_cpus: float | None = None,
        entrypoint_num_gpus: float | None = None,
        entrypoint_memory: int | None = None,
        entrypoint_resources: dict[str, float] | None = None,
        entrypoint_label_selector: dict[str, str] | None = None,
    ) -> str:
        """Submit a job; returns its submission id."""
        if entrypoint_label_selector:
            raise NotImplementedError(
                "submit_job(entrypoint_label_selector=...) is not supported yet: rayops runs "
                "entrypoints on the head node (issue 12, phase 2)"
            )
        env = self._upload_packages(dict(runtime_env or {}))
        payload: dict[str, Any] = {
            "entrypoint": entrypoint,
            "submission_id": submission_id or job_id,
            "runtime_env": env,
            "metadata": {**self._default_metadata, **(metadata or {})},
        }
        for name, value in (
            ("entrypoint_num_cpus", entrypoint_num_cpus),
            ("entrypoint_num_gpus", entrypoint_num_gpus),
            ("entrypoint_memory", entrypoint_memory),
            ("entrypoint_resources", entrypoint_resources),
        ):
            if value is not None:
                payload[name] = value
        sid: str = self._json("POST", "/api/jobs/", payload)["submission_id"]
        return sid

    def _upload_packages(self, env: dict[str, Any]) -> dict[str, Any]:
        from rayops.envs import spec as env_spec

        if not env:
            return env
        env = env_spec.validate(env, where="submit_job(runtime_env=...)")
        excludes = list(env.pop("excludes", None) or [])
        if env.get("working_dir") and not env_spec.is_package_uri(env["working_dir"]):
            env["working_dir"] = self._upload(env["working_dir"], excludes, as_module=False)
        if env.get("py_modules"):
            env["py_modules"] = [
                m if env_spec.is_package_uri(m) else self._upload(m, excludes, as_module=True)
                for m in env["py_modules"]
            ]
        return env

    def _upload(self, path: str, excludes: list[str], *, as_module: bool) -> str:
        from rayops.envs import packaging

        if not os.path.isdir(path):
            raise ValueError(
                f"runtime_env: {path!r}: only a local directory can be uploaded by the job "
                "client (zip files are not yet); give the directory"
            )
        pkg = packaging.make_package(path, excludes=excludes, as_module=as_module)
        name = pkg.uri[len("gcs://") :]
        status, _ = self._request("GET", f"/api/packages/gcs/{name}")
        if status == 200:
            return pkg.uri
        status, data = self._request(
            "PUT", f"/api/packages/gcs/{name}", pkg.data, "application/octet-stream", 300.0
        )
        if status != 200:
            raise RuntimeError(f"uploading {path!r} failed ({status}): {_message(data)}")
        return pkg.uri

    def stop_job(self, job_id: str) -> bool:
        stopped: bool = self._json("POST", f"/api/jobs/{job_id}/stop")["stopped"]
        return stopped

    def delete_job(self, job_id: str) -> bool:
        deleted: bool = self._json("DELETE", f"/api/jobs/{job_id}")["deleted"]
        return deleted

    def get_job_info(self, job_id: str) -> JobDetails:
        return JobDetails.from_json(self._json("GET", f"/api/jobs/{job_id}"))

    def list_jobs(self) -> list[JobDetails]:
        return [JobDetails.from_json(d) for d in self._json("GET", "/api/jobs/")]

    def get_job_status(self, job_id: str) -> JobStatus:
        return self.get_job_info(job_id).status

    def get_job_logs(self, job_id: str) -> str:
        logs: str = self._json("GET", f"/api/jobs/{job_id}/logs")["logs"]
        return logs

    async def tail_job_logs(self, job_id: str) -> AsyncIterator[str]:
        """The job's log as it grows: what was written so far, then each new chunk, until the
        job has ended (Ray's websocket ``/logs/tail``)."""
        import aiohttp

        url = self._address.replace("http", "ws", 1) + f"/api/jobs/{job_id}/logs/tail"
        material = tls.current()
        connector = aiohttp.TCPConnector(
            ssl=material.client_context() if material is not None else True
        )
        async with aiohttp.ClientSession(headers=self._headers, connector=connector) as session:
            try:
                ws = await session.ws_connect(url)
            except aiohttp.WSServerHandshakeError as err:
                if err.status in (401, 403):
                    raise token_refused(self._address, self._token_source) from err
                raise RuntimeError(
                    f"Request failed with status code {err.status}: {err.message}"
                ) from err
            async with ws:
                async for msg in ws:
                    if msg.type == aiohttp.WSMsgType.TEXT:
                        yield msg.data
                    elif msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                        break


def _message(data: bytes) -> str:
    try:
        parsed = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return data.decode(errors="replace").strip()
    if isinstance(parsed, dict):
        return str(parsed.get("message") or parsed.get("error") or parsed)
    return str(parsed)


def _tls_failure(address: str, err: ssl.SSLError) -> str:
    if isinstance(err, ssl.SSLCertVerificationError):
        return (
            f"TLS with the API server at {address} failed: its certificate did not verify "
            f"({err.verify_message}): is it from this cluster's CA?"
        )
    if "WRONG_VERSION_NUMBER" in str(err.reason or "").upper():
        return tls.describe_mismatch(f"the API server at {address}", True)
    return f"TLS with the API server at {address} failed: {err.reason or err}"


def _refused(err: urllib.error.URLError) -> bool:
    return isinstance(err.reason, ConnectionRefusedError)
