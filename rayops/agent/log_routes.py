"""The agent's log endpoints: its node's ``logs/`` directory, for the head's API server.

| route | answer |
|---|---|
| ``GET /api/v0/node_logs?glob=G`` | ``{"node_id", "files", "categories"}`` matching G |
| ``GET /api/v0/node_logs/file?filename=F&lines=N&follow=0/1&interval=S`` | the last N lines |
| | of F (-1: all), then with follow what is appended, across rotation, until the client goes |
| ``GET /api/v0/node_logs/worker?pid=P`` | ``{"filename"}``: the log of worker P of this node |

Token-checked like /metrics (``Authorization: Bearer``); a refused name or a missing file
gets a JSON 4xx naming the parameter. File reads run in a thread, never on the event loop.
A pid's log is found while the worker lives (its fds 1/2 point at it), and afterwards for
workers the agent saw in its samples (`remember_workers`, every 2 s).
"""

from __future__ import annotations

import asyncio
import os
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from aiohttp import web

from rayops.agent import log_files
from rayops.agent.log_files import Follower, LogFileError

__all__ = ["LogRoutes"]

_CHUNK = 256 * 1024
_DEFAULT_INTERVAL_S = 0.2
_REMEMBERED = 10_000  # pid -> log name entries kept for workers that have exited


def _error(status: int, message: str) -> web.Response:
    return web.json_response({"error": message, "message": message}, status=status)


def _int(query: Any, name: str, default: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise LogFileError(400, f"'{name}' must be an integer, got {raw!r}") from None


def _flag(query: Any, name: str) -> bool:
    raw = (query.get(name) or "0").lower()
    if raw not in ("0", "1", "true", "false"):
        raise LogFileError(400, f"'{name}' must be true/false or 1/0, got {raw!r}")
    return raw in ("1", "true")


class LogRoutes:
    """The handlers; ``register`` adds them to the agent's app behind its token check."""

    def __init__(self, logs_dir: str, node_id: str, authorized: Callable[[web.Request], bool]):
        self.logs_dir = logs_dir
        self.node_id = node_id
        self._authorized = authorized
        self._stopping = asyncio.Event()
        self._pids: OrderedDict[int, str] = OrderedDict()

    def register(self, app: web.Application) -> None:
        app.router.add_get("/api/v0/node_logs", self._list)
        app.router.add_get("/api/v0/node_logs/file", self._file)
        app.router.add_get("/api/v0/node_logs/worker", self._worker)
        app.on_shutdown.append(self._on_shutdown)

    async def _on_shutdown(self, app: web.Application) -> None:
        self._stopping.set()  # followers end, so shutdown does not wait on them

    def remember_workers(self, pids: Iterable[int]) -> None:
        """Note the log of each live worker not seen yet (for ``pid`` lookups after it exits)."""
        for pid in pids:
            if pid in self._pids:
                continue
            name = log_files.worker_log_of_pid(self.logs_dir, pid)
            if name is not None:
                self._pids[pid] = name
                while len(self._pids) > _REMEMBERED:
                    self._pids.popitem(last=False)

    async def _list(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _unauthorized()
        glob = request.query.get("glob") or "*"
        names = await asyncio.to_thread(log_files.list_names, self.logs_dir, glob)
        return web.json_response(
            {"node_id": self.node_id, "files": names, "categories": log_files.categorize(names)}
        )

    async def _worker(self, request: web.Request) -> web.Response:
        if not self._authorized(request):
            return _unauthorized()
        try:
            pid = _int(request.query, "pid", -1)
        except LogFileError as err:
            return _error(err.status, str(err))
        if pid <= 0:
            return _error(400, "'pid' must be a process id > 0")
        name = log_files.worker_log_of_pid(self.logs_dir, pid) or self._pids.get(pid)
        if name is None:
            return _error(
                404,
                f"no worker with pid {pid} on node {self.node_id} (a worker's log is found "
                "while it runs, or after it ran for 2 s or more)",
            )
        self._pids[pid] = name
        return web.json_response({"filename": name})

    async def _file(self, request: web.Request) -> web.StreamResponse:
        if not self._authorized(request):
            return _unauthorized()
        q = request.query
        try:
            name = q.get("filename") or ""
            log_files.check_name(name)
            lines = _int(q, "lines", 1000)
            follow = _flag(q, "follow")
            interval = float(q.get("interval") or _DEFAULT_INTERVAL_S)
            if not 0 < interval <= 60:
                raise LogFileError(400, f"'interval' must be in (0, 60] seconds, got {interval}")
            fd = log_files.open_log(self.logs_dir, name)
        except ValueError:
            return _error(400, f"'interval' must be a number, got {q.get('interval')!r}")
        except LogFileError as err:
            return _error(err.status, str(err))
        try:
            size = os.fstat(fd).st_size
            start = await asyncio.to_thread(
                log_files.tail_start, lambda off, n: os.pread(fd, n, off), size, lines
            )
        finally:
            os.close(fd)
        follower = Follower(self.logs_dir, name, start)
        resp = web.StreamResponse(headers={"Content-Type": "text/plain; charset=utf-8"})
        await resp.prepare(request)
        try:
            await self._stream(request, resp, follower, None if follow else size - start, interval)
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            follower.close()
        return resp

    async def _stream(
        self,
        request: web.Request,
        resp: web.StreamResponse,
        follower: Follower,
        end: int | None,
        interval: float,
    ) -> None:
        """``end`` bytes (the tail of the file as it was), or with None on until the client
        goes."""
        sent = 0
        while not self._stopping.is_set():
            limit = _CHUNK if end is None else min(_CHUNK, end - sent)
            if limit <= 0:
                break
            data = await asyncio.to_thread(follower.read, limit)
            if data:
                sent += len(data)
                await resp.write(data)
                continue
            if end is not None:
                break
            transport = request.transport
            if transport is None or transport.is_closing():
                break
            try:
                await asyncio.wait_for(self._stopping.wait(), interval)
            except TimeoutError:
                pass
        await resp.write_eof()


def _unauthorized() -> web.Response:
    return web.Response(
        status=401,
        text="missing or wrong cluster token: send Authorization: Bearer <cluster token>\n",
        headers={"WWW-Authenticate": 'Bearer realm="rayops"'},
    )
