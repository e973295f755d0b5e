"""The API server's routes (aiohttp): Ray's Jobs REST paths, packages, version, health.

| route | answer |
|---|---|
| ``GET /api/gcs_healthz`` | ``success`` (no token: the only open endpoint; says nothing else) |
| ``GET /api/version`` | Ray's VersionResponse (``version`` "4", Ray's current Jobs API version) |
| ``POST /api/jobs/`` | ``{"submission_id", "job_id"}``; 400 naming the bad field |
| ``GET /api/jobs/``, ``GET /api/jobs/{id}`` | Ray's ``JobDetails`` (a list / one; 404); with |
| | drivers started by hand (``DRIVER``, found by job id too) |
| ``GET /api/jobs/{id}/logs`` | ``{"logs": text}`` |
| ``GET /api/jobs/{id}/logs/tail`` | websocket: the log so far, then what is appended, |
| | closed when the job has ended |
| ``POST /api/jobs/{id}/stop`` | ``{"stopped": bool}`` |
| ``DELETE /api/jobs/{id}`` | ``{"deleted": true}``; 400 while the job runs |
| ``GET/PUT /api/packages/{protocol}/{name}`` | 200/404, store a working_dir package |
| ``GET /metrics`` | this server's own Prometheus metrics (refused requests) |
| ``GET /``, ``/static/*``, ``/api/dashboard/*`` | the dashboard page (``page.py``, its shell and |
| | login open) and its data (``overview.py``, token-checked) |

Every route but the health check passes the token check (``auth.py``) first; a refused
request gets 401 JSON (no credential) or 403 (a wrong one), as Ray's, and its body is never
read.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, generate_latest

from rayops.dashboard.auth import HttpTokenCheck
from rayops.dashboard.driver_jobs import driver_details, read_driver_jobs
from rayops.dashboard.jobs import BadRequest, JobManager, parse_submit, read_log
from rayops.dashboard.log_routes import LogRoutes
from rayops.dashboard.overview import ClusterOverview
from rayops.dashboard.page import DashboardPage, is_public
from rayops.dashboard.state_routes import add_state_routes
from rayops.envs import packaging
from rayops.rpc import tls
from rayops.version import __version__

__all__ = ["JOBS_API_VERSION", "ApiServer"]

logger = logging.getLogger(__name__)

JOBS_API_VERSION = "4"
# Ray's clients compare ``ray_version`` with the release that brought an API (1.9 for Jobs):
# the server reports the Ray release whose API rayops implements, and its own version as
# ``ray_commit``.
RAY_API_RELEASE = "2.60.0"
HEALTH_PATH = "/api/gcs_healthz"
_PKG_NAME = re.compile(r"^_ray_pkg_[A-Za-z0-9]{1,64}\.zip$")
TAIL_POLL_S = 0.1
TAIL_CHUNK = 64 * 1024

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _json(data: Any, status: int = 200) -> web.Response:
    return web.json_response(data, status=status)


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "message": message}, status=status)


class _RefusedCounter:
    """Exports the token check's count as a Prometheus counter."""

    def __init__(self, check: HttpTokenCheck) -> None:
        self._check = check

    def collect(self) -> Any:
        from prometheus_client.core import CounterMetricFamily

        fam = CounterMetricFamily(
            "rayops_dashboard_refused_requests",
            "HTTP requests the API server refused for a missing or wrong cluster token",
        )
        fam.add_metric([], self._check.refused)
        yield fam


class ApiServer:
    def __init__(
        self,
        jobs: JobManager,
        check: HttpTokenCheck,
        session_name: str,
        overview: ClusterOverview | None = None,
    ) -> None:
        self.jobs = jobs
        self.check = check
        self.session_name = session_name
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(_RefusedCounter(check))  # type: ignore[arg-type]
        self._requests = Counter(
            "rayops_dashboard_requests",
            "HTTP requests served by the API server, by route and status",
            ["route", "status"],
            registry=self.registry,
        )
        self._runner: web.AppRunner | None = None
        app = web.Application(
            middlewares=[self._auth_middleware],
            client_max_size=packaging.MAX_PACKAGE_BYTES + 1024 * 1024,
        )
        r = app.router
        r.add_get(HEALTH_PATH, self._healthz)
        r.add_get("/api/version", self._version)
        r.add_get("/metrics", self._metrics)
        r.add_post("/api/jobs/", self._submit)
        r.add_get("/api/jobs/", self._list)
        r.add_get("/api/jobs/{job_id}", self._get)
        r.add_get("/api/jobs/{job_id}/logs", self._logs)
        r.add_get("/api/jobs/{job_id}/logs/tail", self._tail)
        r.add_post("/api/jobs/{job_id}/stop", self._stop)
        r.add_delete("/api/jobs/{job_id}", self._delete)
        r.add_get("/api/packages/{protocol}/{package_name}", self._package_exists)
        r.add_put("/api/packages/{protocol}/{package_name}", self._package_upload)
        LogRoutes(jobs._gcs, check.token).register(app)

        # The dashboard page (page.py) and its data (overview.py).
        DashboardPage(check).register(r)
        if overview is not None:
            overview.register(r)

        # The state API: /api/v0/... (state_routes.py).
        add_state_routes(app, jobs._gcs, check.token, jobs)
        self.app = app
        self.port = 0

    async def start(self, host: str, port: int) -> None:
        self._runner = web.AppRunner(self.app, access_log=None, handle_signals=False)
        await self._runner.setup()
        site = web.TCPSite(
            self._runner, host, port, reuse_address=True, ssl_context=tls.server_ssl_context()
        )
        await site.start()
        server = site._server
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1] if sockets else port

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    # ------------------------------------------------------------------- plumbing
    @web.middleware
    async def _auth_middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        route = request.match_info.route.resource
        name = route.canonical if route is not None else "unmatched"
        public = request.path == HEALTH_PATH or is_public(request.path)
        if not public and not self.check.allows(
            request.headers, request.cookies, str(request.remote), request.path
        ):
            # As Ray's: 401 without a credential, 403 with a wrong one.
            status = 403 if self.check.presented(request.headers, request.cookies) else 401
            self._requests.labels(name, str(status)).inc()
            return web.json_response(
                {
                    "error": "missing or wrong cluster token: send 'Authorization: Bearer "
                    "<token>' (the head's <session>/cluster_token)"
                },
                status=status,
                headers={"WWW-Authenticate": 'Bearer realm="rayops"'},
            )
        try:
            resp = await handler(request)
        except BadRequest as err:
            resp = _error(400, str(err))
        except web.HTTPException as err:
            if err.status >= 400 and err.content_type != "application/json":
                resp = _error(err.status, err.reason)
            else:
                raise
        self._requests.labels(name, str(resp.status)).inc()
        return resp

    async def _json_body(self, request: web.Request) -> Any:
        try:
            return await request.json(loads=json.loads)
        except (json.JSONDecodeError, UnicodeDecodeError) as err:
            raise BadRequest(f"the request body is not valid JSON: {err}") from err

    async def _record_or_404(self, request: web.Request) -> Any:
        sid = request.match_info["job_id"]
        record = await self.jobs.get(sid)
        if record is None:
            raise web.HTTPNotFound(reason=f"Job {sid} does not exist")
        return record

    # ---------------------------------------------------------------------- routes
    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="success")

    async def _version(self, request: web.Request) -> web.Response:
        return _json(
            {
                "version": JOBS_API_VERSION,
                "ray_version": RAY_API_RELEASE,
                "ray_commit": f"rayops-{__version__}",
                "session_name": self.session_name,
            }
        )

    async def _metrics(self, request: web.Request) -> web.Response:
        return web.Response(
            body=generate_latest(self.registry), headers={"Content-Type": CONTENT_TYPE_LATEST}
        )

    async def _submit(self, request: web.Request) -> web.Response:
        fields = parse_submit(await self._json_body(request))
        sid = await self.jobs.submit(fields)
        return _json({"submission_id": sid, "job_id": sid})

    async def _list(self, request: web.Request) -> web.Response:
        table, submission_of = await read_driver_jobs(self.jobs._gcs)
        job_of = {sid: job_id for job_id, sid in submission_of.items()}
        submitted = [r.details() for r in await self.jobs.list()]
        for d in submitted:
            d["job_id"] = job_of.get(d["submission_id"])
        return _json(submitted + driver_details(table, submission_of))

    async def _get(self, request: web.Request) -> web.Response:
        sid = request.match_info["job_id"]
        record = await self.jobs.get(sid)
        if record is not None:
            return _json(record.details())
        # As Ray's, a driver started by hand is found by its job id.
        table, submission_of = await read_driver_jobs(self.jobs._gcs)
        for details in driver_details(table, submission_of):
            if details["job_id"] == sid:
                return _json(details)
        raise web.HTTPNotFound(reason=f"Job {sid} does not exist")

    async def _logs(self, request: web.Request) -> web.Response:
        record = await self._record_or_404(request)
        data = await asyncio.to_thread(read_log, record.log_path)
        return _json({"logs": data.decode(errors="replace")})

    async def _tail(self, request: web.Request) -> web.StreamResponse:
        record = await self._record_or_404(request)
        ws = web.WebSocketResponse(heartbeat=30.0)
        await ws.prepare(request)
        offset = 0
        sid = record.submission_id
        ended = False
        while not ws.closed:
            chunk = await asyncio.to_thread(read_log, record.log_path, offset, TAIL_CHUNK)
            if chunk:
                offset += len(chunk)
                await ws.send_str(chunk.decode(errors="replace"))
                continue
            if ended:
                break
            # Read once more after the job ends: what it wrote last is sent before closing.
            current = await self.jobs.get(sid)
            ended = current is None or current.terminal
            if not ended:
                try:
                    msg = await ws.receive(timeout=TAIL_POLL_S)
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED):
                        break
                except TimeoutError:
                    pass
        await ws.close()
        return ws

    async def _stop(self, request: web.Request) -> web.Response:
        sid = request.match_info["job_id"]
        stopped = await self.jobs.stop(sid)
        if stopped is None:
            raise web.HTTPNotFound(reason=f"Job {sid} does not exist")
        return _json({"stopped": stopped})

    async def _delete(self, request: web.Request) -> web.Response:
        sid = request.match_info["job_id"]
        deleted = await self.jobs.delete(sid)
        if deleted is None:
            raise web.HTTPNotFound(reason=f"Job {sid} does not exist")
        return _json({"deleted": True})

    def _package_uri(self, request: web.Request) -> str:
        protocol = request.match_info["protocol"]
        name = request.match_info["package_name"]
        if protocol != "gcs":
            raise BadRequest(f"'protocol' must be 'gcs' (the GCS package store), got {protocol!r}")
        if not _PKG_NAME.match(name):
            raise BadRequest(f"'package_name' must look like _ray_pkg_<hash>.zip, got {name!r}")
        return f"gcs://{name}"

    async def _package_exists(self, request: web.Request) -> web.Response:
        uri = self._package_uri(request)
        gcs = self.jobs._gcs
        if await gcs.kv_exists(packaging.meta_key(uri), namespace=packaging.PACKAGE_NAMESPACE):
            return web.Response(text="")
        raise web.HTTPNotFound(reason=f"package {uri} is not in the store")

    async def _package_upload(self, request: web.Request) -> web.Response:
        uri = self._package_uri(request)
        data = await request.read()
        if not data:
            raise BadRequest("the package body is empty; PUT the zip file's bytes")
        if data[:2] != b"PK":
            raise BadRequest("the package body is not a zip file")
        gcs = self.jobs._gcs
        pkg = packaging.Package(uri, data, strip_top=False)
        ns = packaging.PACKAGE_NAMESPACE
        exists = await gcs.kv_exists(packaging.meta_key(uri), namespace=ns)
        if not exists:
            chunks = max(1, -(-len(data) // packaging.CHUNK_BYTES))
            for i in range(chunks):
                part = data[i * packaging.CHUNK_BYTES : (i + 1) * packaging.CHUNK_BYTES]
                await gcs.kv_put(packaging.chunk_key(uri, i), part, namespace=ns)
            meta = {"size": len(data), "chunks": chunks, "strip_top": pkg.strip_top}
            await gcs.kv_put(packaging.meta_key(uri), json.dumps(meta).encode(), namespace=ns)
        return web.Response(text="")
