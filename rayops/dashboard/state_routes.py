"""The state API's HTTP routes (Ray's ``/api/v0/...`` paths and response envelope).

| route | answer (inside ``{"result", "msg", "data": {"result": ...}}``) |
|---|---|
| ``GET /api/v0/{nodes,actors,tasks,objects,jobs,placement_groups,workers}`` | Ray's |
| | ``ListApiResponse``: total, num_after_truncation, num_filtered, result, ... |
| ``GET /api/v0/{tasks,actors,objects}/summarize`` | Ray's ``SummaryApiResponse``, |
| | ``result`` = ``{"node_id_to_summary": {"cluster": <Task/Actor/ObjectSummaries>}}`` |
| ``GET /api/v0/tasks/timeline`` | Chrome trace events (a JSON list); ``job_id`` filters |

Query parameters are Ray's: ``limit`` (default 100, at most 10,000), ``timeout`` (s, default
30), ``detail``, ``filter_keys``/``filter_predicates``/``filter_values`` (repeated, in step),
``exclude_driver`` (tasks; default true). A bad one gets 400 with the envelope's ``msg``
naming it; a source that did not answer gets 500 (the GCS) or a ``partial_failure_warning``
(a node or worker). Every route sits behind the server's token check (``server.py``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rayops.dashboard import state_query as q
from rayops.dashboard.state_schema import RESOURCES, resource
from rayops.dashboard.state_sources import Gathered, StateSources

__all__ = ["StateRoutes", "add_state_routes"]

logger = logging.getLogger(__name__)


def _reply(result: Any, status: int = 200, msg: str = "") -> web.Response:
    return web.json_response(q.list_response(result, msg, ok=status == 200), status=status)


class StateRoutes:
    def __init__(self, sources: StateSources) -> None:
        self.sources = sources

    def _fetch(self, name: str) -> Callable[[float], Awaitable[Gathered]]:
        return getattr(self.sources, name)  # type: ignore[no-any-return]

    async def _gather(self, name: str, timeout: float) -> Gathered:
        try:
            return await self._fetch(name)(timeout)
        except TimeoutError as err:
            raise _Unavailable(f"the cluster did not answer within {timeout:g} s") from err
        except (ConnectionError, OSError) as err:
            raise _Unavailable(f"the GCS is unreachable: {err}") from err

    async def list(self, request: web.Request, name: str) -> web.Response:
        try:
            res = resource(name)
            options = q.ListOptions.from_query(request.query, request.query.getall)
            q.check_filters(res, options.filters)
        except ValueError as err:
            return _reply(None, 400, str(err))
        try:
            got = await self._gather(res.name, options.timeout)
        except _Unavailable as err:
            return _reply(None, 500, str(err))
        listed = q.apply(
            res,
            got.rows,
            options,
            total=got.total,
            partial_failure_warning=got.partial_failure_warning,
            warnings=got.warnings,
        )
        return _reply(listed.to_json())

    async def summarize(self, request: web.Request, name: str) -> web.Response:
        summarize = {
            "tasks": q.summarize_tasks,
            "actors": q.summarize_actors,
            "objects": q.summarize_objects,
        }.get(name)
        if summarize is None:
            return _reply(None, 404, f"no summary for {name!r}; try tasks, actors or objects")
        try:
            options = q.ListOptions.from_query(request.query, request.query.getall)
            res = RESOURCES[name]
            filters = q.check_filters(res, options.filters)
            by = request.query.get("summary_by")
            if by not in (None, "func_name") or (by and name != "tasks"):
                raise ValueError(f"summary_by={by!r} is not supported (tasks: func_name)")
        except ValueError as err:
            return _reply(None, 400, str(err))
        try:
            got = await self._gather(name, options.timeout)
        except _Unavailable as err:
            return _reply(None, 500, str(err))
        rows = [r for r in got.rows if q._matches(r, filters)] if filters else got.rows
        summary = summarize(rows)
        return _reply(
            {
                "total": len(rows),
                "result": {"node_id_to_summary": {"cluster": summary}},
                "partial_failure_warning": got.partial_failure_warning or None,
                "warnings": got.warnings or None,
                "num_after_truncation": len(rows),
                "num_filtered": len(rows),
            }
        )

    async def timeline(self, request: web.Request) -> web.Response:
        job_hex = request.query.get("job_id")
        job_id = None
        if job_hex:
            try:
                job_id = int.from_bytes(bytes.fromhex(job_hex), "little")
            except ValueError:
                return _reply(None, 400, f"job_id must be a hex job id like 01000000: {job_hex!r}")
        try:
            got = await self.sources.tasks(q.DEFAULT_TIMEOUT_S, job_id=job_id)
        except (TimeoutError, ConnectionError, OSError) as err:
            return _reply(None, 500, f"the GCS did not answer: {err}")
        headers = None
        if request.query.get("download") == "1":
            name = f"timeline-{job_hex or 'all'}.json"
            headers = {"Content-Disposition": f'attachment; filename="{name}"'}
        return web.json_response(q.timeline(got.rows), headers=headers)


class _Unavailable(Exception):
    pass


def add_state_routes(app: web.Application, gcs: Any, token: str, jobs: Any) -> StateRoutes:
    """Register the state API on ``app`` (behind its middlewares: the token check)."""
    routes = StateRoutes(StateSources(gcs, token, jobs))
    r = app.router
    # One path per resource (not a pattern), so other /api/v0/ routes (logs) stay free.
    for name in RESOURCES:
        r.add_get(f"/api/v0/{name}", _with_resource(routes.list, name))
    for name in ("tasks", "actors", "objects"):
        r.add_get(f"/api/v0/{name}/summarize", _with_resource(routes.summarize, name))
    r.add_get("/api/v0/tasks/timeline", routes.timeline)
    app.on_cleanup.append(lambda _app: _close(routes))
    return routes


def _with_resource(
    handler: Callable[[web.Request, str], Awaitable[web.Response]], name: str
) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def route(request: web.Request) -> web.Response:
        return await handler(request, name)

    return route


async def _close(routes: StateRoutes) -> None:
    routes.sources.close()
