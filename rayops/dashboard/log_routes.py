"""Cluster-wide logs on the API server: Ray's ``/api/v0/logs`` routes, served by proxying to
the agent of the node that holds the file.

| route | answer |
|---|---|
| ``GET /api/v0/logs?node_id=|node_ip=&glob=`` | Ray's reply ``{"result": true, "msg": "",`` |
| | ``"data": {"result": {category: [names]}}}`` |
| ``GET /api/v0/logs/{file,stream}?...`` | the file's text, streamed; ``stream`` (or |
| | ``follow=true``) keeps sending what is appended until the client goes |

Without ``node_id``/``node_ip`` the head node is meant (Ray requires one of them).
File parameters (Ray's): ``node_id``/``node_ip``, one of ``filename``, ``actor_id`` (its node
and worker from the GCS actor table), ``pid`` (a worker of the node), ``submission_id`` (a
job's driver log, on the head), ``task_id`` with ``attempt_number`` (the log of the worker
that ran that attempt: its node and worker id from the GCS's task events; the whole file,
which also holds what the worker's other tasks printed);
``lines`` (default 1000, -1 all), ``interval`` (follow poll, seconds), ``suffix`` out|err
(a rayops worker writes fds 1 and 2 to one file, so both name it), ``format`` leading_1 (Ray's
default: each chunk starts with ``1``) or text, ``timeout``, ``attempt_number`` (0 only),
``download_filename``. An unknown parameter, a bad value, an unknown node/actor/file get a
JSON 4xx naming it before anything is streamed. Agents are reached at the address they
registered in the GCS node table (``metrics_export_port``) with the cluster token.
"""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import aiohttp
from aiohttp import web

from rayops.gcs import calls, task_calls
from rayops.gcs.types import NodeInfo
from rayops.node.session import worker_log_name
from rayops.rpc import tls

__all__ = ["LogRoutes"]

DEFAULT_LINES = 1000
_LIST_PARAMS = {"node_id", "node_ip", "glob", "timeout"}
_FILE_PARAMS = {
    "node_id",
    "node_ip",
    "filename",
    "actor_id",
    "task_id",
    "pid",
    "submission_id",
    "lines",
    "interval",
    "suffix",
    "format",
    "timeout",
    "follow",
    "attempt_number",
    "download_filename",
}
_CONNECT_RETRY_S = 5.0  # a node's agent starts a second after its raylet registers
_IDLE_CHECK_S = 1.0
_HEX = re.compile(r"^[0-9a-fA-F]+$")


class LogRequestError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "message": message}, status=status)


def _check_params(query: Any, known: set[str]) -> None:
    unknown = sorted(set(query) - known)
    if unknown:
        raise LogRequestError(
            400,
            f"unknown parameter(s) {', '.join(map(repr, unknown))}; known: "
            f"{', '.join(sorted(known))}",
        )


def _timeout(query: Any) -> float:
    raw = query.get("timeout") or "30"
    try:
        value = float(raw)
    except ValueError:
        raise LogRequestError(400, f"'timeout' must be a number of seconds, got {raw!r}") from None
    if value <= 0:
        raise LogRequestError(400, f"'timeout' must be > 0, got {raw!r}")
    return value


class LogRoutes:
    def __init__(self, gcs: Any, token: str) -> None:
        self._gcs = gcs
        self._headers = {"Authorization": f"Bearer {token}"}
        self._session: aiohttp.ClientSession | None = None

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/v0/logs", self._list)
        app.router.add_get("/api/v0/logs/{media_type}", self._get)
        app.on_shutdown.append(self._close)

    async def _close(self, app: web.Application) -> None:
        if self._session is not None:
            await self._session.close()

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None:
            material = tls.current()  # the agents speak HTTPS when the cluster has TLS on
            connector = aiohttp.TCPConnector(
                ssl=material.client_context() if material is not None else True
            )
            self._session = aiohttp.ClientSession(headers=self._headers, connector=connector)
        return self._session

    # ------------------------------------------------------------------ resolving
    async def _node(self, query: Any, *, default_head: bool = False) -> NodeInfo:
        node_id, node_ip = query.get("node_id"), query.get("node_ip")
        nodes: list[NodeInfo] = await self._gcs.get_all_nodes()
        if node_id:
            found = [n for n in nodes if n.node_id == node_id]
            what = f"node_id {node_id!r}"
        elif node_ip:
            found = [n for n in nodes if n.node_ip == node_ip and n.is_alive]
            what = f"node_ip {node_ip!r}"
        elif default_head:
            found = [n for n in nodes if n.is_head_node and n.is_alive]
            what = "the head node"
        else:
            raise LogRequestError(400, "give 'node_id' or 'node_ip' (the node holding the log)")
        if not found:
            raise LogRequestError(404, f"no node with {what} in the cluster")
        if len(found) > 1:
            raise LogRequestError(400, f"several nodes have {what}; give 'node_id'")
        node = found[0]
        if not node.is_alive:
            raise LogRequestError(404, f"node {node.node_id} is dead; its agent cannot serve logs")
        if not node.metrics_export_port:
            raise LogRequestError(503, f"node {node.node_id} registered no agent")
        return node

    async def _agent(
        self, node: NodeInfo, path: str, params: dict[str, str], timeout: float | None
    ) -> aiohttp.ClientResponse:
        url = f"{tls.url_scheme()}://{node.node_ip}:{node.metrics_export_port}{path}"
        loop = asyncio.get_running_loop()
        deadline = loop.time() + _CONNECT_RETRY_S
        client_timeout = aiohttp.ClientTimeout(total=timeout, sock_connect=5)
        while True:
            try:
                return await self._http().get(url, params=params, timeout=client_timeout)
            except aiohttp.ClientConnectorError as err:
                if loop.time() >= deadline:
                    raise LogRequestError(
                        503, f"the agent of node {node.node_id} at {url} is not reachable: {err}"
                    ) from err
                await asyncio.sleep(0.1)

    async def _agent_json(
        self, node: NodeInfo, path: str, params: dict[str, str], timeout: float
    ) -> Any:
        resp = await self._agent(node, path, params, timeout)
        async with resp:
            body = await resp.read()
            data = _json_or_text(body)
            if resp.status != 200:
                raise LogRequestError(resp.status, _message(data))
            return data

    async def _resolve_file(self, query: Any, timeout: float) -> tuple[NodeInfo, str]:
        kinds = ("filename", "actor_id", "task_id", "pid", "submission_id")
        given = [k for k in kinds if query.get(k)]
        if len(given) != 1:
            raise LogRequestError(
                400,
                "give exactly one of 'filename', 'actor_id', 'pid', 'submission_id' or "
                f"'task_id'; got {', '.join(map(repr, given)) or 'none'}",
            )
        suffix = query.get("suffix") or "out"
        if suffix not in ("out", "err"):
            raise LogRequestError(400, f"'suffix' must be 'out' or 'err', got {suffix!r}")
        kind = given[0]
        if kind != "task_id" and (query.get("attempt_number") or "0") != "0":
            raise LogRequestError(400, "'attempt_number' goes with 'task_id' only")
        if kind in ("actor_id", "submission_id", "task_id") and (
            query.get("node_id") or query.get("node_ip")
        ):
            raise LogRequestError(
                400, f"'node_id'/'node_ip' do not go with '{kind}': its node is looked up"
            )
        if kind == "task_id":
            return await self._task_log(query["task_id"], query.get("attempt_number") or "0")
        if kind == "filename":
            return await self._node(query, default_head=True), query["filename"]
        if kind == "submission_id":
            sid = query["submission_id"]
            if not re.match(r"^[A-Za-z0-9_.:-]{1,128}$", sid):
                raise LogRequestError(400, f"'submission_id' is not a job id: {sid!r}")
            return await self._node({}, default_head=True), f"job-driver-{sid}.log"
        if kind == "pid":
            raw = query["pid"]
            if not raw.isdigit() or int(raw) <= 0:
                raise LogRequestError(400, f"'pid' must be a process id > 0, got {raw!r}")
            node = await self._node(query, default_head=True)
            return node, await self._worker_log(node, int(raw), timeout)
        actor_hex = query["actor_id"]
        if not _HEX.match(actor_hex) or len(actor_hex) % 2:
            raise LogRequestError(400, f"'actor_id' must be an actor id in hex, got {actor_hex!r}")
        actor = await self._gcs.call(calls.get_actor_info(bytes.fromhex(actor_hex)))
        if actor is None:
            raise LogRequestError(404, f"no actor with actor_id {actor_hex} in the cluster")
        if not actor.node_id or not actor.pid:
            raise LogRequestError(404, f"actor {actor_hex} has no worker yet (state {actor.state})")
        node = await self._node({"node_id": actor.node_id})
        return node, await self._worker_log(node, actor.pid, timeout)

    async def _task_log(self, task_hex: str, raw_attempt: str) -> tuple[NodeInfo, str]:
        """The log of the worker that ran the task's attempt, found in the GCS's task
        events (its node and worker id; the file is named after the worker id)."""
        if not _HEX.match(task_hex) or len(task_hex) % 2:
            raise LogRequestError(400, f"'task_id' must be a task id in hex, got {task_hex!r}")
        if not raw_attempt.isdigit():
            raise LogRequestError(400, f"'attempt_number' must be >= 0, got {raw_attempt!r}")
        attempt = int(raw_attempt)
        reply = await self._gcs.call(task_calls.get_task_events(task_id=bytes.fromhex(task_hex)))
        attempts = {t.attempt: t for t in reply.tasks}
        if not attempts:
            raise LogRequestError(
                404,
                f"no task with task_id {task_hex} in the GCS's task events (they arrive about "
                "a second after a change, and the oldest finished ones are evicted)",
            )
        t = attempts.get(attempt)
        if t is None:
            known = ", ".join(map(str, sorted(attempts)))
            raise LogRequestError(
                404, f"task {task_hex} has no attempt {attempt} (attempts: {known})"
            )
        if not t.node_id or not t.worker_id:
            raise LogRequestError(
                404,
                f"task {task_hex} attempt {attempt} has not run on a worker yet (state {t.state})",
            )
        node = await self._node({"node_id": t.node_id})
        return node, worker_log_name(t.worker_id)

    async def _worker_log(self, node: NodeInfo, pid: int, timeout: float) -> str:
        data = await self._agent_json(node, "/api/v0/node_logs/worker", {"pid": str(pid)}, timeout)
        return str(data["filename"])

    # --------------------------------------------------------------------- routes
    async def _list(self, request: web.Request) -> web.Response:
        q = request.query
        try:
            _check_params(q, _LIST_PARAMS)
            node = await self._node(q, default_head=True)
            data = await self._agent_json(
                node, "/api/v0/node_logs", {"glob": q.get("glob") or "*"}, _timeout(q)
            )
        except LogRequestError as err:
            return _error(err.status, str(err))
        return web.json_response(
            {"result": True, "msg": "", "data": {"result": data["categories"]}}
        )

    async def _get(self, request: web.Request) -> web.StreamResponse:
        q = request.query
        media_type = request.match_info["media_type"]
        try:
            _check_params(q, _FILE_PARAMS)
            if media_type not in ("file", "stream"):
                raise LogRequestError(
                    404, f"media type must be 'file' or 'stream', got {media_type!r}"
                )
            fmt = q.get("format") or "leading_1"
            if fmt not in ("leading_1", "text"):
                raise LogRequestError(400, f"'format' must be 'leading_1' or 'text', got {fmt!r}")
            follow_raw = (q.get("follow") or "false").lower()
            if follow_raw not in ("true", "false", "1", "0"):
                raise LogRequestError(400, f"'follow' must be true or false, got {follow_raw!r}")
            follow = media_type == "stream" or follow_raw in ("true", "1")
            timeout = _timeout(q)
            lines = q.get("lines") or str(DEFAULT_LINES)
            if not re.match(r"^-?\d+$", lines) or int(lines) < -1:
                raise LogRequestError(400, f"'lines' must be an integer >= -1, got {lines!r}")
            node, filename = await self._resolve_file(q, timeout)
            params = {"filename": filename, "lines": lines, "follow": "1" if follow else "0"}
            if q.get("interval"):
                params["interval"] = q["interval"]
            upstream = await self._agent(
                node, "/api/v0/node_logs/file", params, None if follow else timeout
            )
        except LogRequestError as err:
            return _error(err.status, str(err))
        async with upstream:
            if upstream.status != 200:
                return _error(upstream.status, _message(_json_or_text(await upstream.read())))
            headers = {"Content-Type": "text/plain; charset=utf-8"}
            if q.get("download_filename"):
                safe = re.sub(r"[^A-Za-z0-9._-]", "_", q["download_filename"])
                headers["Content-Disposition"] = f'attachment; filename="{safe}"'
            resp = web.StreamResponse(headers=headers)
            await resp.prepare(request)
            prefix = b"1" if fmt == "leading_1" else b""
            try:
                while True:
                    try:
                        chunk = await asyncio.wait_for(upstream.content.readany(), _IDLE_CHECK_S)
                    except TimeoutError:
                        # Nothing new: stop following once our client has gone.
                        if request.transport is None or request.transport.is_closing():
                            return resp
                        continue
                    if not chunk:
                        break
                    await resp.write(prefix + chunk)
            except (TimeoutError, aiohttp.ClientError) as err:
                failed = b"0" if fmt == "leading_1" else b"[get_logs] Fetch log error: "
                why = f"the stream from node {node.node_id} broke: {err}"
                await resp.write(failed + why.encode())
            except ConnectionResetError:
                return resp
            await resp.write_eof()
            return resp


def _json_or_text(body: bytes) -> Any:
    try:
        return json.loads(body)
    except ValueError:
        return body.decode(errors="replace").strip()


def _message(data: Any) -> str:
    if isinstance(data, dict):
        return str(data.get("message") or data.get("error") or data)
    return str(data)
